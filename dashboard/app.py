"""Assemble the dashboard: one router per area, the database and clock as dependencies, errors translated here."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from urllib.parse import urlencode

import swagger_ui_bundle
from fastapi import APIRouter, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from dashboard import accounts, api_docs
from dashboard.deps import (
    CsrfFailed,
    DatabasePath,
    Forbidden,
    NotAuthenticated,
    NotInScope,
    current_clock,
    render,
)
from dashboard.event_log import BadCursor
from dashboard.password_policy import WeakPassword
from dashboard.routes import (
    ack,
    alerts,
    audit,
    auth,
    devices,
    events,
    groups,
    households,
    registry_api,
    reports,
    resident,
    users,
)
from dashboard.routes.registry_api import RegistryDesk
from dashboard.security_headers import SecurityHeaders
from gateway import alerts as alert_lib
from gateway.ack_links import AckDesk
from gateway.device_config import PushError
from gateway.policy import Policy
from gateway.resident import ResidentDesk
from isowatch.clock import Clock
from isowatch.contract import DeviceConfig

log = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).parent / "static"
SWAGGER_UI_DIR = Path(str(swagger_ui_bundle.swagger_ui_path))  # Swagger UI's own files, served at /api/docs

ConfigPusher = Callable[[str, str, DeviceConfig], None]  # (site, household, config): publish retained to the device


PENDING_ACTION = re.compile(r"^/alerts/(\d{1,19})/(acknowledge|resolve)$")


async def pending_action(request: Request) -> str:
    """Where the login leads after a form was sent without a session (it ended while the page was open):
    an acknowledge or resolve comes back to its alert with the action pending (and the chosen outcome),
    for the person to confirm with one tap; acting at login on a URL's say-so would let a link act for them."""
    match = PENDING_ACTION.match(request.url.path)
    if match is None:
        return "/"
    alert_id, action = match.groups()
    query = {"pending": action}
    if action == "resolve":
        form = await request.form()
        verdict = form.get("verdict")
        if isinstance(verdict, str) and verdict in alert_lib.VERDICTS:
            query["verdict"] = verdict
    return f"/alerts/{alert_id}?{urlencode(query)}#act"


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _error(request: Request, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """The API answers with the library's English message; a page says what happened in the reader's
    language (the English message is shown to English readers as the detail)."""
    if _wants_json(request):
        return JSONResponse({"detail": message}, status_code=status, headers=headers)
    return render(request, "error.html", {"status": status, "message": message}, status_code=status, headers=headers)


def _status_handler(status: int) -> Callable[[Request, Exception], Awaitable[Response]]:
    async def handle(request: Request, exc: Exception) -> Response:
        return _error(request, status, str(exc))

    return handle


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(NotAuthenticated)
    async def not_authenticated(request: Request, exc: NotAuthenticated) -> Response:
        if _wants_json(request):
            return JSONResponse({"detail": "log in first"}, status_code=401, headers={"WWW-Authenticate": "Cookie"})
        if request.url.path == "/alerts/stream":  # EventSource stops on a 401; the board then offers the login
            return Response(status_code=401, headers={"WWW-Authenticate": "Cookie"})
        if request.method == "GET":
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        else:
            target = await pending_action(request)
        return RedirectResponse(f"/login?{urlencode({'next': target}, safe='/')}", status_code=303)

    # Named library errors -> HTTP status; the message is the exception's own text.
    statuses: dict[type[Exception], int] = {
        Forbidden: 403,
        NotInScope: 404,
        BadCursor: 422,
        alert_lib.AlertError: 409,
        devices.ConfigUnavailable: 503,
        PushError: 502,
        accounts.UserExists: 409,
        accounts.UnknownReference: 422,
        WeakPassword: 422,
    }
    for error_type, status in statuses.items():
        app.add_exception_handler(error_type, _status_handler(status))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        headers = getattr(exc, "headers", None)
        if _wants_json(request):  # as FastAPI answers by default: the detail may be structured
            return JSONResponse({"detail": jsonable_encoder(exc.detail)}, status_code=exc.status_code, headers=headers)
        return _error(request, exc.status_code, str(exc.detail), headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        if _wants_json(request):
            return JSONResponse({"detail": jsonable_encoder(exc.errors())}, status_code=422)
        return _error(request, 422, "; ".join(str(e.get("msg", "")) for e in exc.errors()))

    @app.exception_handler(CsrfFailed)
    async def csrf_failed(request: Request, exc: CsrfFailed) -> Response:
        log.warning("csrf check failed path=%s", request.url.path)
        return _error(request, 403, str(exc))

    @app.exception_handler(accounts.TooManyAttempts)
    async def too_many(request: Request, exc: accounts.TooManyAttempts) -> Response:
        return _error(request, 429, str(exc), headers={"Retry-After": str(exc.retry_after_s)})


def create_app(db_path: Path | str, *, ack_desk: AckDesk | None = None, admin: RegistryDesk | None = None,
               extra_routers: Sequence[APIRouter] = (), clock: Clock | None = None,
               snapshot_dir: Path | str | None = None, push_config: ConfigPusher | None = None,
               resident_desk: ResidentDesk | None = None, policy: Policy | None = None) -> FastAPI:
    app = FastAPI(title="isowatch", version="1", docs_url=None, redoc_url=None,
                  openapi_url="/api/v1/openapi.json",
                  description="Same permissions as the pages: log in with POST /api/v1/session (cookie), then send "
                              "the returned csrf token as X-CSRF-Token on every POST.")
    app.dependency_overrides[DatabasePath] = lambda: Path(db_path)
    if clock is not None:
        app.dependency_overrides[current_clock] = lambda: clock
    snapshots = Path(snapshot_dir) if snapshot_dir else Path(db_path).parent / "snapshots"
    app.dependency_overrides[households.snapshot_dir] = lambda: snapshots
    if push_config is not None:
        app.dependency_overrides[devices.config_pusher] = lambda: push_config
    if policy is not None:  # the fever line and hot readings follow the gateway's own thresholds
        app.dependency_overrides[households.fever_rules] = lambda: policy.rules
    app.add_middleware(SecurityHeaders)
    api_docs.install(app, "isowatch API")
    app.mount("/static/swagger-ui", StaticFiles(directory=SWAGGER_UI_DIR), name="swagger-ui")
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    for area in (auth, alerts, groups, households, events, reports, devices, audit, users):
        app.include_router(area.router)
    app.include_router(ack.router)
    app.include_router(resident.router)  # the household's own link, outside the session guard
    app.include_router(resident.staff_router)
    app.include_router(registry_api.router)
    if ack_desk is not None:  # acknowledge links need the gateway's signing key and clock
        app.dependency_overrides[ack.ack_desk] = lambda: ack_desk
    if resident_desk is not None:
        app.dependency_overrides[resident.resident_desk] = lambda: resident_desk
    if admin is not None:
        app.dependency_overrides[registry_api.registry_desk] = lambda: admin
    for router in extra_routers:
        app.include_router(router)
    _install_error_handlers(app)
    return app
