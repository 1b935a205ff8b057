"""A storm's group of alerts (gateway/groups.py) for a logged-in user: its page, acknowledge and resolve.

The same operations as the group's link (dashboard/routes/ack.py), through gateway.groups, so each member is
acknowledged or resolved and the audit log says who did it for the group.
"""

from __future__ import annotations

import dataclasses
import re
import sqlite3
from typing import Annotated

from fastapi import Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from dashboard.board import Verdict
from dashboard.deps import (
    AlertId,
    ClockDep,
    CurrentUser,
    NotInScope,
    ReadDB,
    UserScope,
    WriteDB,
    protected_router,
    render,
)
from dashboard.i18n import translator
from dashboard.routes.alerts import age_text
from gateway import alerts as alert_lib
from gateway import groups
from gateway.vocabulary import TODO, detail_text, group_text
from isowatch.clock import Clock
from isowatch.localtime import clock_text, local

router = protected_router(tags=["alerts"])
STORED_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z")  # as rules write it into a detail


def member_detail(text: str, language: str, zone: str) -> str:
    """A member's detail in the reader's language, its stored UTC times in site time ("dev-7 silent since
    2026-11-26 02:13"), so a long list reads at a glance."""
    return STORED_TIME.sub(lambda m: clock_text(m.group(0), zone), detail_text(text, language))


def scoped_group(group_id: AlertId, db: ReadDB, scope: UserScope) -> groups.Group:
    """The group with the members the user may see; none: as if it did not exist."""
    try:
        group = groups.load(db, group_id)
    except alert_lib.AlertError:
        raise NotInScope(f"no such alert group: {group_id}") from None
    members = tuple(m for m in group.members if scope.allows(m.household))
    if not members:
        raise NotInScope(f"no such alert group: {group_id}")
    return dataclasses.replace(group, members=members)


GroupRow = Annotated[groups.Group, Depends(scoped_group)]


def headline(group: groups.Group, language: str) -> str:
    """"Devices offline in 37 households in Xingfu Street since 02:14", as the group's page said it."""
    return group_text(group.kind, len(group.live) or len(group.members), group.places,
                      f"{local(group.first_at, group.timezone):%H:%M}", language)


@router.get("/groups/{group_id}", response_class=HTMLResponse, include_in_schema=False)
def group_page(request: Request, group: GroupRow, db: ReadDB, clock: ClockDep, user: CurrentUser,
               done: str = "") -> Response:
    t = translator(user.language)
    taken = db.execute("SELECT name FROM staff WHERE staff = ?", (group.acknowledged_by,)).fetchone()
    return render(request, "group.html", {
        "g": group, "headline": headline(group, user.language), "outcomes": alert_lib.outcomes_for(group.kind),
        "taken": taken[0] if taken else group.acknowledged_by,
        "done": done if done in ("acknowledged", "resolved") else "",
        "age": lambda at: age_text(t, max(0.0, (clock.now() - at).total_seconds())),
        "steps": TODO.get(user.language, TODO["zh"]).get(group.kind, ()),
        "detail": lambda text, zone: member_detail(text, user.language, zone)})


@router.post("/groups/{group_id}/acknowledge", include_in_schema=False)
def acknowledge_group(group: GroupRow, db: WriteDB, clock: ClockDep, user: CurrentUser) -> Response:
    """Acknowledge every member not acknowledged yet; the group's escalation stops."""
    _acknowledge(db, group.id, user.actor, clock)
    return RedirectResponse(f"/groups/{group.id}?done=acknowledged", status_code=303)


def _acknowledge(db: sqlite3.Connection, group_id: int, actor: str, clock: Clock) -> None:
    with db:
        groups.acknowledge(db, group_id, actor, clock.now(), via="dashboard")


@router.post("/groups/{group_id}/resolve", include_in_schema=False)
def resolve_group(group: GroupRow, db: WriteDB, clock: ClockDep, user: CurrentUser,
                  verdict: Annotated[Verdict, Form()], note: Annotated[str, Form(max_length=2000)] = "") -> Response:
    """Close every member still open with one outcome that fits the group's kind (409 if it does not)."""
    groups.resolve(db, group.id, staff=user.actor, verdict=verdict, note=note, now=clock.now(), via="dashboard")
    return RedirectResponse(f"/groups/{group.id}?done=resolved", status_code=303)
