"""Assemble the dashboard: one router per area, the read-only database as a dependency."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from dashboard.deps import DatabasePath
from dashboard.routes import events

STATIC_DIR = Path(__file__).parent / "static"


def create_app(db_path: Path | str) -> FastAPI:
    app = FastAPI(title="isowatch", version="1", docs_url="/api/docs", openapi_url="/api/v1/openapi.json")
    app.dependency_overrides[DatabasePath] = lambda: Path(db_path)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(events.router)
    return app
