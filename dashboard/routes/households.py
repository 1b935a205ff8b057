"""Households: the list, one household's timeline and temperature chart, and its snapshots (each view audited)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

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
from dashboard.household_view import HouseholdSummary, TimelineItem
from dashboard.i18n import translator
from dashboard.routes.resident import Desk as ResidentDeskDep, link_for
from gateway.alerts import audit

router = protected_router(tags=["households"])
API_ERRORS = {401: {"description": "Not logged in"}, 404: {"description": "No such household in your teams"}}


def snapshot_dir() -> Path:  # overridden by create_app
    return Path("snapshots")


class HouseholdDetail(BaseModel):
    summary: HouseholdSummary
    since: str
    until: str
    timeline: list[TimelineItem]


@router.get("/households", response_class=HTMLResponse, include_in_schema=False)
def households_page(request: Request, db: ReadDB, scope: UserScope, clock: ClockDep,
                    site: str = "", page: Annotated[int, Query(ge=0, le=10_000)] = 0) -> Response:
    rows = household_view.summaries(db, scope, clock.now(), site=site or None, limit=200, offset=page * 200)
    return render(request, "households.html", {"rows": rows, "page": page, "site": site})


@router.get("/households/{household}", response_class=HTMLResponse, include_in_schema=False)
def household_page(request: Request, household: str, row: HouseholdRow, db: ReadDB, clock: ClockDep,
                   user: CurrentUser, resident: ResidentDeskDep) -> Response:
    now = clock.now()
    since, until = household_view.timeline_window(db, row, now)
    t = translator(user.language)
    return render(request, "household.html", {
        "h": household_view.summary(db, row, now), "row": row,
        "items": household_view.timeline(db, household, since, until),
        "chart": household_view.temperature_svg(db, household, since, until, title=t("temperature_chart")),
        "resident_link": link_for(resident, household), "resident_links_on": resident is not None,
    })


@router.get("/snapshots/{sha256}", include_in_schema=False)
def snapshot(sha256: str, db: WriteDB, scope: UserScope, user: CurrentUser, clock: ClockDep,
             folder: Annotated[Path, Depends(snapshot_dir)]) -> FileResponse:
    """A snapshot JPEG, if one of its events is in your teams; every view goes to the audit log (privacy)."""
    rows = db.execute("SELECT household, path, event_id FROM snapshots WHERE sha256 = ?", (sha256,)).fetchall()
    allowed = [r for r in rows if scope.allows(r["household"])]
    if not allowed:
        raise NotInScope("no such snapshot")
    path = folder / allowed[0]["path"]
    if not path.is_file():
        raise NotInScope("snapshot file is gone (purged)")
    with db:
        audit(db, user.actor, "snapshot.view", f"snapshot:{sha256}",
              {"household": allowed[0]["household"], "event": allowed[0]["event_id"], "via": "dashboard"}, clock.now())
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
