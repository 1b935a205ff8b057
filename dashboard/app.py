"""Assemble the dashboard: one router per area, the read-only database as a dependency."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles

from dashboard.deps import DatabasePath
from dashboard.routes import ack, events, registry_api
from dashboard.routes.registry_api import RegistryDesk
from gateway.ack_links import AckDesk

STATIC_DIR = Path(__file__).parent / "static"


def create_app(db_path: Path | str, *, ack_desk: AckDesk | None = None, admin: RegistryDesk | None = None,
               extra_routers: Sequence[APIRouter] = ()) -> FastAPI:
    app = FastAPI(title="isowatch", version="1", docs_url="/api/docs", openapi_url="/api/v1/openapi.json")
    app.dependency_overrides[DatabasePath] = lambda: Path(db_path)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(events.router)
    app.include_router(ack.router)
    app.include_router(registry_api.router)
    if ack_desk is not None:  # issue 6: acknowledge links need the gateway's signing key and clock
        app.dependency_overrides[ack.ack_desk] = lambda: ack_desk
    if admin is not None:
        app.dependency_overrides[registry_api.registry_desk] = lambda: admin
    for router in extra_routers:
        app.include_router(router)
    return app
