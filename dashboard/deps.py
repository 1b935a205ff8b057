"""Dependencies shared by the routers: database, clock, current user, team scope, and scoped objects.

Deny by default: every area router is built with `protected_router()`, whose dependency requires a
session, checks the CSRF token on every unsafe method and refuses changes by auditors. Routes that
must work without a session (login, acknowledge links) live on plain routers and say so.
"""

from __future__ import annotations

import hmac
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi import Path as PathParam
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from dashboard import accounts
from dashboard.accounts import Session, User
from dashboard.i18n import MESSAGES, code_namer, translator
from gateway.store import connect
from gateway.vocabulary import detail_text
from isowatch.clock import Clock, SystemClock
from isowatch.localtime import DEFAULT_ZONE, clock_text, label, stamp

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")


def _when(at: datetime | str | None, zone: str | None, seconds: bool = False) -> str:
    """Templates write every time as `when(at, zone)`: site-local and labelled; a missing time is a dash."""
    return stamp(at, zone, seconds=seconds) if at else "—"


def _when_cell(at: datetime | str | None, zone: str | None, seconds: bool = False) -> Markup:
    """A table cell's time: the wall-clock time unbroken, its offset label small beside it."""
    if not at:
        return Markup("—")
    return Markup('<time class="local" datetime="{}">{}</time> <small class="zone">{}</small>').format(
        at, clock_text(at, zone, seconds=seconds), label(at, zone))


templates.env.globals["when"] = _when
templates.env.globals["when_cell"] = _when_cell

SESSION_COOKIE = "isowatch_session"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


class NotAuthenticated(Exception):
    """No valid session: pages redirect to the login form, the API answers 401."""


class Forbidden(Exception):
    """Logged in, but this role may not do this."""


class NotInScope(LookupError):
    """The object does not exist or lies outside the user's teams: both answer 404, so ids are not probed."""


class CsrfFailed(Exception):
    pass


def DatabasePath() -> Path:  # a dependency key, overridden by create_app
    raise RuntimeError("create_app() binds the database path")


def current_clock() -> Clock:
    return SystemClock()


def read_connection(path: Annotated[Path, Depends(DatabasePath)]) -> Iterator[sqlite3.Connection]:
    """A read-only connection: WAL lets readers run beside the ingest writer without blocking it."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    try:
        yield conn
    finally:
        conn.close()


def write_connection(path: Annotated[Path, Depends(DatabasePath)]) -> Iterator[sqlite3.Connection]:
    """A writable connection for the few requests that change something (acknowledge, log in, push config)."""
    conn = connect(path, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    try:
        yield conn
    finally:
        conn.close()


ReadDB = Annotated[sqlite3.Connection, Depends(read_connection)]
WriteDB = Annotated[sqlite3.Connection, Depends(write_connection)]
ClockDep = Annotated[Clock, Depends(current_clock)]


async def _csrf_token_sent(request: Request) -> str:
    header = request.headers.get("x-csrf-token")
    if header:
        return header
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()  # Starlette caches it, so the route's Form fields still read it
        value = form.get("csrf")
        return value if isinstance(value, str) else ""
    return ""


def check_csrf_token(expected: str, sent: str) -> None:
    if not sent or not hmac.compare_digest(expected.encode(), sent.encode()):
        raise CsrfFailed("missing or wrong CSRF token")


async def session_user(request: Request, db: ReadDB, clock: ClockDep) -> Session:
    """The session behind the cookie; CSRF is checked on unsafe methods. Auditors are not refused here."""
    token = request.cookies.get(SESSION_COOKIE, "")
    found = accounts.session(db, token, now=clock.now()) if token else None
    if found is None:
        raise NotAuthenticated()
    if request.method not in SAFE_METHODS:
        check_csrf_token(found.csrf, await _csrf_token_sent(request))
    request.state.session = found
    return found


async def optional_session(request: Request, db: ReadDB, clock: ClockDep) -> Session | None:
    """The session if there is one (CSRF still checked on unsafe methods); for routes that also take a token."""
    try:
        return await session_user(request, db, clock)
    except NotAuthenticated:
        return None


async def authenticated(session: Annotated[Session, Depends(session_user)], request: Request) -> User:
    """The default guard of every area router: a session, and no changes by auditors."""
    if request.method not in SAFE_METHODS and not session.user.can_change:
        raise Forbidden("auditors read everything and change nothing")
    return session.user


CurrentUser = Annotated[User, Depends(authenticated)]
CurrentSession = Annotated[Session, Depends(session_user)]


def protected_router(**kwargs: Any) -> APIRouter:
    """An area router whose every route needs a logged-in user (deny by default)."""
    dependencies = [Depends(authenticated), *kwargs.pop("dependencies", [])]
    return APIRouter(dependencies=dependencies, **kwargs)


def require_role(*roles: str) -> Callable[[User], User]:
    def check(user: CurrentUser) -> User:
        if user.role not in roles:
            raise Forbidden(f"only {', '.join(roles)} may do this")
        return user

    return check


AdminUser = Annotated[User, Depends(require_role("admin"))]
Overseer = Annotated[User, Depends(require_role("admin", "auditor"))]


@dataclass(frozen=True)
class Scope:
    """Which households a user may see: None means all (admins and auditors)."""

    households: tuple[str, ...] | None
    teams: tuple[str, ...] | None

    def allows(self, household: str) -> bool:
        return self.households is None or household in self.households

    def sql(self, column: str = "household") -> tuple[str, list[str]]:
        """A WHERE fragment limiting `column` to the scope, and its parameters."""
        if self.households is None:
            return "1", []
        if not self.households:
            return "0", []
        return f"{column} IN ({','.join('?' * len(self.households))})", list(self.households)


def team_scope(user: CurrentUser, db: ReadDB) -> Scope:
    if user.sees_all:
        return Scope(None, None)
    if not user.teams:
        return Scope((), ())
    marks = ",".join("?" * len(user.teams))
    rows = db.execute(f"SELECT household FROM households WHERE team IN ({marks})", user.teams)  # noqa: S608
    return Scope(tuple(r[0] for r in rows), user.teams)


UserScope = Annotated[Scope, Depends(team_scope)]


def scoped_household(household: str, db: ReadDB, scope: UserScope) -> sqlite3.Row:
    """One dependency loads the household and checks the scope, so no handler forgets to."""
    row = db.execute(
        "SELECT h.*, coalesce(s.timezone, 'Asia/Shanghai') AS timezone FROM households h "
        "LEFT JOIN sites s ON s.site = h.site WHERE h.household = ?", (household,)).fetchone()
    if row is None or not scope.allows(household):
        raise NotInScope(f"no such household: {household}")
    return row


def home_zone(db: ReadDB) -> str:
    """The zone for times that belong to no one site (audit log, report periods): the sites' usual zone."""
    row = db.execute("SELECT timezone FROM sites GROUP BY timezone ORDER BY count(*) DESC, timezone LIMIT 1").fetchone()
    return row[0] if row and row[0] else DEFAULT_ZONE


HomeZone = Annotated[str, Depends(home_zone)]


def zones_by_site(db: sqlite3.Connection) -> dict[str, str]:
    return {r[0]: r[1] or DEFAULT_ZONE for r in db.execute("SELECT site, timezone FROM sites")}


AlertId = Annotated[int, PathParam(ge=1, le=2**63 - 1)]  # SQLite's INTEGER range; larger ids are a 422


def scoped_alert(alert_id: AlertId, db: ReadDB, scope: UserScope) -> sqlite3.Row:
    row = db.execute("SELECT * FROM alerts WHERE id = ?", (alert_id,)).fetchone()
    if row is None or not scope.allows(row["household"]):
        raise NotInScope(f"no such alert: {alert_id}")
    return row


def scoped_device(device: str, db: ReadDB, scope: UserScope) -> sqlite3.Row:
    row = db.execute(f"SELECT d.*, coalesce(s.timezone, '{DEFAULT_ZONE}') AS timezone FROM devices d "  # noqa: S608
                     "LEFT JOIN sites s ON s.site = d.site WHERE d.device = ?", (device,)).fetchone()
    if row is None or not scope.allows(row["household"]):
        raise NotInScope(f"no such device: {device}")
    return row


HouseholdRow = Annotated[sqlite3.Row, Depends(scoped_household)]
AlertRow = Annotated[sqlite3.Row, Depends(scoped_alert)]
DeviceRow = Annotated[sqlite3.Row, Depends(scoped_device)]


def render(request: Request, name: str, context: dict[str, Any], status_code: int = 200,
           headers: dict[str, str] | None = None) -> Any:
    """A page in the user's language, with the CSRF token for its forms."""
    session: Session | None = getattr(request.state, "session", None)
    language = session.user.language if session else getattr(request.state, "language", None) or request.cookies.get("lang", "zh")
    language = language if language in MESSAGES else "zh"
    base = {"user": session.user if session else None, "csrf": session.csrf if session else "",
            "t": translator(language), "lang": language, "code": code_namer(language),
            "detail": lambda text: detail_text(text, language), "known": MESSAGES["en"]}
    return templates.TemplateResponse(request, name, {**base, **context}, status_code=status_code, headers=headers)
