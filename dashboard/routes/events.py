"""The event log: filter by time, site, household, type, alert kind and verdict; keyset pages; CSV export."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from pydantic import ValidationError

from dashboard import event_log
from dashboard.accounts import User
from dashboard.csv_cells import BOM
from dashboard.deps import (
    ClockDep,
    CurrentUser,
    DatabasePath,
    ReadDB,
    Scope,
    UserScope,
    WriteDB,
    home_zone,
    protected_router,
    render,
    zones_by_site,
)
from dashboard.event_log import ALERT_KINDS, LogFilter, LogPage
from gateway.alerts import VERDICTS, audit
from isowatch.clock import Clock, iso
from isowatch.localtime import BadTime, parse_picked, picker_value

router = protected_router(tags=["events"])
API_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Not logged in"}, 422: {"description": "Bad filter or cursor"}}


def log_filter(since: datetime | None = None, until: datetime | None = None, site: str | None = Query(None, max_length=64),
               household: str | None = Query(None, max_length=64),
               type: event_log.EntryType | None = None,
               alert_kind: event_log.AlertKind | None = None,
               verdict: event_log.VerdictName | None = None) -> LogFilter:
    try:
        return LogFilter(since=since, until=until, site=site, household=household, type=type,
                         alert_kind=alert_kind, verdict=verdict)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False, include_context=False)) from None


def _picked_zone(db: sqlite3.Connection, site: str) -> str:
    """Dates picked on the page are the site's local days (the sites' usual zone when no site is chosen)."""
    return zones_by_site(db).get(site) or home_zone(db) if site else home_zone(db)


def _form_filter(db: ReadDB, since: str = "", until: str = "", site: str = "", household: str = "",
                 type: str = "", alert_kind: str = "", verdict: str = "") -> LogFilter:
    """The page's form sends empty strings for "any" and local dates ("to" includes that whole day) or local
    date-times without a zone; both are the site's local time, converted to UTC for the query."""
    zone = _picked_zone(db, site[:64])
    try:
        start, end = parse_picked(since[:40], zone), parse_picked(until[:40], zone, end=True)
    except BadTime as exc:
        raise RequestValidationError([{"loc": ("query", "since/until"), "msg": str(exc), "type": "value_error"}]) from None
    try:
        return LogFilter.model_validate({"since": start, "until": end, "site": site or None,
                                         "household": household or None, "type": type or None,
                                         "alert_kind": alert_kind or None, "verdict": verdict or None})
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False, include_context=False)) from None


Filter = Annotated[LogFilter, Depends(log_filter)]
FormFilter = Annotated[LogFilter, Depends(_form_filter)]
Before = Annotated[str | None, Query(max_length=200, description="next_cursor of the previous page")]


def _picker_values(f: LogFilter, zone: str) -> dict[str, str]:
    """The local days the date pickers show for the filter's UTC bounds ("to" is the last day included)."""
    return {"since": picker_value(f.since, zone) if f.since else "",
            "until": picker_value(f.until - timedelta(microseconds=1), zone) if f.until else ""}


@router.get("/events", response_class=HTMLResponse, include_in_schema=False)
def events_page(request: Request, db: ReadDB, scope: UserScope, f: FormFilter, before: Before = None) -> Response:
    result = event_log.page(db, f, scope, before=before, limit=50)
    query = {k: v for k, v in request.query_params.items() if k != "before"}
    return render(request, "events.html", {"page": result, "f": f, "q": query, "kinds": ALERT_KINDS,
                                           "verdicts": VERDICTS, **pickers(db, scope),
                                           "picked": _picker_values(f, _picked_zone(db, f.site or ""))})


def pickers(db: sqlite3.Connection, scope: Scope) -> dict[str, list[tuple[str, str]]]:
    """The filter's choices by name (address, site name), limited to the user's teams; values stay ids."""
    where, params = scope.sql("household")
    households = [(r[0], r[1] or r[0]) for r in db.execute(
        f"SELECT household, trim(coalesce(address, '') || ' ' || coalesce(unit, '')) FROM households "  # noqa: S608
        f"WHERE {where} ORDER BY address, unit, household", params)]
    sites = [(r[0], r[1] or r[0]) for r in db.execute(
        f"SELECT site, name FROM sites WHERE site IN (SELECT site FROM households WHERE {where}) "  # noqa: S608
        "ORDER BY name", params)]
    return {"households": households, "sites": sites}


def _csv_response(db: sqlite3.Connection, path: Path, f: LogFilter, scope: Scope, user: User,
                  clock: Clock) -> StreamingResponse:
    # An export copies personal data out of the gateway: who took what goes to the audit log.
    with db:
        audit(db, user.actor, "events.export", "events", f.model_dump(mode="json", exclude_none=True), clock.now())
    name = f"isowatch-events-{iso(clock.now())[:19].replace(':', '')}.csv"

    def rows() -> Iterator[str]:
        # Its own connection: the stream outlives the request's dependencies.
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        try:
            yield BOM
            yield from event_log.export_csv(conn, f, scope)
        finally:
            conn.close()

    return StreamingResponse(rows(), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{name}"'})


DbPath = Annotated[Path, Depends(DatabasePath)]


@router.get("/events.csv", include_in_schema=False)
def events_csv_page(f: FormFilter, scope: UserScope, user: CurrentUser, clock: ClockDep, db: WriteDB,
                    path: DbPath) -> StreamingResponse:
    return _csv_response(db, path, f, scope, user, clock)


@router.get("/api/v1/events", responses=API_ERRORS)
def list_events(db: ReadDB, scope: UserScope, f: Filter, before: Before = None,
                limit: Annotated[int, Query(ge=1, le=500)] = 50) -> LogPage:
    """Door and tamper events and readings of your teams' households, newest first, keyset-paged."""
    return event_log.page(db, f, scope, before=before, limit=limit)


@router.get("/api/v1/events/export.csv", responses={**API_ERRORS, 200: {"content": {"text/csv": {}}}},
            response_class=StreamingResponse)
def export_events(f: Filter, scope: UserScope, user: CurrentUser, clock: ClockDep,
                  db: WriteDB, path: DbPath) -> StreamingResponse:
    """Everything the filter matches as CSV (streamed)."""
    return _csv_response(db, path, f, scope, user, clock)
