"""Households: the list, one household's timeline and temperature charts, and its snapshots.

Privacy: each household page view is one audit row naming the snapshots it shows; the page's thumbnails
carry that row's id, so fetching them adds no row. A snapshot fetched any other way is audited on its own.
"""

from __future__ import annotations

import functools
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from pydantic import BaseModel

from dashboard import household_view
from dashboard.deps import (
    ClockDep,
    CurrentUser,
    HouseholdRow,
    NotInScope,
    ReadDB,
    UserScope,
    WriteDB,
    protected_router,
    render,
)
from dashboard.household_view import ChartText, HouseholdSummary, TimelineItem
from dashboard.i18n import translator
from dashboard.routes.resident import Desk as ResidentDeskDep
from dashboard.routes.resident import link_for
from gateway.alerts import audit
from gateway.policy import Rules, load_policy
from isowatch.clock import parse_iso
from isowatch.localtime import label

router = protected_router(tags=["households"])
API_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Not logged in"}, 404: {"description": "No such household in your teams"}}


VIEW_COVERS = timedelta(minutes=30)  # a page's thumbnails load within this of the page view they belong to


def snapshot_dir() -> Path:  # overridden by create_app
    return Path("snapshots")


@functools.lru_cache(maxsize=1)
def fever_rules() -> Rules:  # overridden by create_app with the gateway's policy; else the default policy's
    return load_policy().rules


Fever = Annotated[Rules, Depends(fever_rules)]


class HouseholdDetail(BaseModel):
    summary: HouseholdSummary
    since: str
    until: str
    timeline: list[TimelineItem]


@router.get("/households", response_class=HTMLResponse, include_in_schema=False)
def households_page(request: Request, db: ReadDB, scope: UserScope, clock: ClockDep, rules: Fever,
                    site: str = "", page: Annotated[int, Query(ge=0, le=10_000)] = 0) -> Response:
    rows = household_view.summaries(db, scope, clock.now(), site=site or None, limit=200, offset=page * 200)
    return render(request, "households.html", {"rows": rows, "page": page, "site": site,
                                               "fever": rules.fever_celsius})


@router.get("/households/{household}", response_class=HTMLResponse, include_in_schema=False)
def household_page(request: Request, household: str, row: HouseholdRow, db: ReadDB, writer: WriteDB,
                   clock: ClockDep, user: CurrentUser, rules: Fever, resident: ResidentDeskDep) -> Response:
    now = clock.now()
    since, until = household_view.timeline_window(db, row, now)
    t = translator(user.language)
    zone = row["timezone"]
    items = household_view.timeline(db, household, since, until)
    shown = sorted({i.snapshot for i in items if i.snapshot})
    with writer:
        audit(writer, user.actor, "household.view", f"household:{household}", {"snapshots": shown}, now)
        view = writer.execute("SELECT last_insert_rowid()").fetchone()[0]
    axis = t("hours_local", label=label(now, zone))
    body = ChartText(t("body_temperature"), axis, t("fever_line", c=rules.fever_celsius), t("no_readings"))
    return render(request, "household.html", {
        "h": household_view.summary(db, row, now), "row": row, "items": items, "view": view,
        "fever": rules.fever_celsius, "zone": zone,
        # The charts end where the timeline ends: now, or the end of an isolation that is over.
        "body_chart": household_view.body_chart(db, household, until, zone, body, rules.fever_threshold),
        "room_chart": household_view.room_chart(db, household, until, zone, ChartText(t("room_temperature"), axis)),
        "resident_link": link_for(resident, household), "resident_links_on": resident is not None,
    })


def _covered_by_page_view(db: WriteDB, view: int | None, who: str, sha256: str, now: datetime) -> bool:
    """The thumbnail belongs to this user's recent household page view, whose audit row already names it."""
    if view is None:
        return False
    row = db.execute("SELECT at, detail FROM audit_log WHERE id = ? AND who = ? AND action = 'household.view'",
                     (view, who)).fetchone()
    if row is None or parse_iso(row[0]) < now - VIEW_COVERS:
        return False
    try:
        return sha256 in json.loads(row[1]).get("snapshots", [])
    except (ValueError, AttributeError):
        return False


@router.get("/snapshots/{sha256}", include_in_schema=False)
def snapshot(sha256: str, db: WriteDB, scope: UserScope, user: CurrentUser, clock: ClockDep,
             folder: Annotated[Path, Depends(snapshot_dir)],
             view: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None) -> FileResponse:
    """A snapshot JPEG, if one of its events is in your teams; every view goes to the audit log (privacy),
    once per household page view for the page's thumbnails."""
    rows = db.execute("SELECT household, path, event_id FROM snapshots WHERE sha256 = ?", (sha256,)).fetchall()
    allowed = [r for r in rows if scope.allows(r["household"])]
    if not allowed:
        raise NotInScope("no such snapshot")
    path = folder / allowed[0]["path"]
    if not path.is_file():
        raise NotInScope("snapshot file is gone (purged)")
    if not _covered_by_page_view(db, view, user.actor, sha256, clock.now()):
        with db:
            audit(db, user.actor, "snapshot.view", f"snapshot:{sha256}",
                  {"household": allowed[0]["household"], "event": allowed[0]["event_id"], "via": "dashboard"},
                  clock.now())
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "private, no-store"})


@router.get("/api/v1/households", responses=API_ERRORS)
def list_households(db: ReadDB, scope: UserScope, clock: ClockDep, site: str | None = None,
                    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
                    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0) -> list[HouseholdSummary]:
    """Households of your teams: isolation day, door state, last temperature, devices online."""
    return household_view.summaries(db, scope, clock.now(), site=site, limit=limit, offset=offset)


@router.get("/api/v1/households/{household}", responses=API_ERRORS)
def get_household(household: str, row: HouseholdRow, db: ReadDB, clock: ClockDep) -> HouseholdDetail:
    """One household and its timeline over the isolation period: events, readings, alerts, pages, verdicts."""
    now = clock.now()
    since, until = household_view.timeline_window(db, row, now)
    return HouseholdDetail(summary=household_view.summary(db, row, now), since=since.isoformat(),
                           until=until.isoformat(), timeline=household_view.timeline(db, household, since, until))
