"""The live alert board (home page), one alert's phone page, acknowledge and resolve; the alerts API.

Acknowledge and resolve go through gateway.alerts, as the ack link and `isowatch admin resolve` do,
so the escalation stops, pending pages are cancelled and the audit log records who did it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from dashboard import accounts, board
from dashboard.board import AlertPublic, ResolveIn, Verdict
from dashboard.deps import (
    SESSION_COOKIE,
    AlertId,
    AlertRow,
    ClockDep,
    CurrentUser,
    DatabasePath,
    ReadDB,
    UserScope,
    WriteDB,
    protected_router,
    render,
    templates,
)
from dashboard.i18n import code_namer, translator
from dashboard.routes.resident import announced_now
from gateway import alerts as alert_lib
from gateway.vocabulary import TODO, group_text
from isowatch.clock import Clock
from isowatch.localtime import local

log = logging.getLogger(__name__)
router = protected_router(tags=["alerts"])
STREAM_MAX_S = 600.0  # the browser's EventSource reconnects by itself; bounded streams let the server stop cleanly
POLL_S = 1.0
RENDER_EVERY_S = 30.0  # ages on the board move on even when nothing changes
PING_S = 2.0  # the board treats 5 s without any event as a dropped stream


def age_text(t: Callable[..., str], seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 1:
        return t("just_now")
    if minutes < 60:
        return t("ago_min", n=minutes)
    if minutes < 24 * 60:
        return t("ago_h", h=minutes // 60, m=minutes % 60)
    return t("ago_d", d=minutes // 1440)


def _rows_html(request: Request, rows: list[AlertPublic], user: accounts.User, csrf: str, mine: bool) -> str:
    t = translator(user.language)
    return templates.get_template("_alert_rows.html").render(
        rows=rows, t=t, age=lambda s: age_text(t, s), user=user, csrf=csrf, code=code_namer(user.language),
        mine=mine, group_line=group_line(user.language))


def group_line(language: str) -> Callable[[board.GroupBrief], str]:
    """A storm's row on the board: "Devices offline in 37 households in Xingfu Street since 02:14"."""
    return lambda g: group_text(g.kind, g.live, g.places, f"{local(g.first_at, g.timezone):%H:%M}", language)


def _mine(user: accounts.User, mine: bool) -> board.Mine | None:
    return board.Mine(user.staff, user.role) if mine else None


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def board_page(request: Request, db: ReadDB, scope: UserScope, clock: ClockDep, user: CurrentUser,
               mine: bool = False) -> Response:
    rows = board.open_alerts(db, scope, clock.now(), mine=_mine(user, mine), groups=True)
    t = translator(user.language)
    return render(request, "board.html", {"rows": rows, "age": lambda s: age_text(t, s), "mine": mine,
                                          "group_line": group_line(user.language),
                                          "announced": announced_now(db, scope, clock.now()),
                                          "cursor": board.newest_alert_id(db)})


def _event(name: str, data: str, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return head + f"event: {name}\n" + "".join(f"data: {line}\n" for line in (data.splitlines() or [""])) + "\n"


def _cursor_from(request: Request, since: int | None) -> int | None:
    """Where the browser left off: EventSource's own Last-Event-ID on its reconnects, else ?since= (the
    board passes it when it opens a new stream after a failed one)."""
    header = request.headers.get("last-event-id", "")
    if header.isdigit():
        return int(header)
    return since


@router.get("/alerts/stream", include_in_schema=False)
async def board_stream(request: Request, scope: UserScope, clock: ClockDep, user: CurrentUser,
                       path: Annotated[Path, Depends(DatabasePath)],
                       since: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None,
                       mine: bool = False) -> StreamingResponse:
    """Server-sent events: the board's rows, re-sent when the alerts table changes (checked every second).

    Each `alerts` event carries the newest alert id as its event id. A stream resumed from a cursor first
    sends `missed`: the alerts opened meanwhile in the user's scope, those already resolved included (they
    are no longer on the board). A `ping` every few seconds lets the board notice a silent drop, and the
    stream ends with `session_end` as soon as the session does (logout elsewhere, expiry, disabled user).
    """
    csrf = request.state.session.csrf
    token = request.cookies.get(SESSION_COOKIE, "")
    cursor = _cursor_from(request, since)
    t = translator(user.language)

    async def events() -> AsyncIterator[str]:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        loop = asyncio.get_running_loop()
        started = last_render = last_ping = loop.time()
        seen: tuple | None = None
        try:
            yield "retry: 1000\n\n"
            if cursor is not None:
                missed = board.opened_since(conn, scope, cursor)
                yield _event("missed", json.dumps([{"id": a.id, "kind": t(a.kind), "household": a.household,
                                                    "resolved": a.resolved} for a in missed], ensure_ascii=False))
            while loop.time() - started < STREAM_MAX_S:
                if await request.is_disconnected():
                    return
                if accounts.session(conn, token, now=clock.now()) is None:
                    log.info("board stream closed: session ended user=%s", user.username)
                    yield _event("session_end", "")
                    return
                mark = board.fingerprint(conn)
                if mark != seen or loop.time() - last_render >= RENDER_EVERY_S:
                    seen, last_render = mark, loop.time()
                    html = _rows_html(request, board.open_alerts(conn, scope, clock.now(), mine=_mine(user, mine),
                                                                 groups=True), user, csrf, mine)
                    yield _event("alerts", html, board.newest_alert_id(conn))
                    last_ping = loop.time()
                elif loop.time() - last_ping >= PING_S:
                    yield _event("ping", "")
                    last_ping = loop.time()
                await asyncio.sleep(POLL_S)
            yield _event("bye", "")  # a routine end of a bounded stream: the board reconnects without alarm
        finally:
            conn.close()

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@router.get("/alerts/{alert_id}", response_class=HTMLResponse, include_in_schema=False)
def alert_page(request: Request, alert_id: AlertId, row: AlertRow, db: ReadDB, clock: ClockDep,
               user: CurrentUser, done: str = "", pending: str = "", verdict: str = "") -> Response:
    """`pending` names an action sent while the session had ended (see app.pending_action): shown, not done."""
    item = board.alert(db, alert_id, clock.now())
    t = translator(user.language)
    outcomes = alert_lib.outcomes_for(item.kind)
    return render(request, "alert.html", {
        "a": item, "age": lambda s: age_text(t, s), "done": done if done in ("acknowledged", "resolved") else "",
        "outcomes": outcomes, "pending": pending if pending in ("acknowledge", "resolve") else "",
        "steps": TODO.get(user.language, TODO["zh"]).get(item.kind, ()),
        "chosen": verdict if verdict in outcomes else ""})


def _acknowledge(db: sqlite3.Connection, alert_id: AlertId, actor: str, clock: Clock) -> str | None:
    with db:
        return alert_lib.acknowledge(db, alert_id, actor, clock.now(), via="dashboard")


@router.post("/alerts/{alert_id}/acknowledge", include_in_schema=False)
def acknowledge_form(alert_id: AlertId, row: AlertRow, db: WriteDB, clock: ClockDep, user: CurrentUser) -> Response:
    _acknowledge(db, alert_id, user.actor, clock)
    return RedirectResponse(f"/alerts/{alert_id}?done=acknowledged", status_code=303)


@router.post("/alerts/{alert_id}/resolve", include_in_schema=False)
def resolve_form(alert_id: AlertId, row: AlertRow, db: WriteDB, clock: ClockDep, user: CurrentUser,
                 verdict: Annotated[Verdict, Form()], note: Annotated[str, Form(max_length=2000)] = "") -> Response:
    alert_lib.resolve(db, alert_id, staff=user.actor, verdict=verdict, note=note, now=clock.now())
    return RedirectResponse(f"/alerts/{alert_id}?done=resolved", status_code=303)


# -- REST API -------------------------------------------------------------------------------------

API_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Not logged in"}, 403: {"description": "Role may not do this"},
    404: {"description": "No such alert in your teams"}}


@router.get("/api/v1/alerts", responses=API_ERRORS)
def list_open_alerts(db: ReadDB, scope: UserScope, clock: ClockDep, user: CurrentUser,
                     mine: bool = False) -> list[AlertPublic]:
    """Open (unresolved) alerts of your teams' households, most severe kind first, then newest first;
    `mine=true`: only those paged to you or to your role."""
    return board.open_alerts(db, scope, clock.now(), mine=_mine(user, mine))


@router.get("/api/v1/alerts/{alert_id}", responses=API_ERRORS)
def get_alert(alert_id: AlertId, row: AlertRow, db: ReadDB, clock: ClockDep) -> AlertPublic:
    return board.alert(db, alert_id, clock.now())


@router.post("/api/v1/alerts/{alert_id}/acknowledge", responses=API_ERRORS)
def api_acknowledge(alert_id: AlertId, row: AlertRow, db: WriteDB, clock: ClockDep, user: CurrentUser) -> AlertPublic:
    """Acknowledge: stops the escalation. Acknowledging again is harmless and recorded."""
    _acknowledge(db, alert_id, user.actor, clock)
    return board.alert(db, alert_id, clock.now())


@router.post("/api/v1/alerts/{alert_id}/resolve", responses={**API_ERRORS, 409: {"description": "Already resolved"}})
def api_resolve(alert_id: AlertId, body: ResolveIn, row: AlertRow, db: WriteDB, clock: ClockDep,
                user: CurrentUser) -> AlertPublic:
    alert_lib.resolve(db, alert_id, staff=user.actor, verdict=body.verdict, note=body.note, now=clock.now())
    return board.alert(db, alert_id, clock.now())
