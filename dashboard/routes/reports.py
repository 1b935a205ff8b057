"""Response report: time to acknowledge, escalations, unacknowledged alerts and false alarms per team and role."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Annotated

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, PlainTextResponse, Response

from dashboard import response_report
from dashboard.csv_cells import BOM
from dashboard.deps import ClockDep, HomeZone, ReadDB, UserScope, protected_router, render
from dashboard.response_report import ResponseReport
from isowatch.localtime import BadTime, parse_picked, picker_value

router = protected_router(tags=["reports"])


class Period:
    """since/until as aware datetimes; default the last 14 days (one isolation period)."""

    def __init__(self, since: datetime, until: datetime) -> None:
        self.since, self.until = since, until


def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=timezone.utc) if value is not None and value.tzinfo is None else value


# 2000 to 2100 in any zone: a picked local 2000-01-01 00:00 in Shanghai is 1999-12-31 16:00 UTC.
EARLIEST = datetime(1999, 12, 31, tzinfo=timezone.utc)
LATEST = datetime(2100, 1, 2, tzinfo=timezone.utc)


def period(clock: ClockDep, since: datetime | None = None, until: datetime | None = None) -> Period:
    end = _aware(until) or clock.now()
    start = _aware(since) or end - timedelta(days=14) if EARLIEST <= end <= LATEST else end
    for value in (start, end):
        if not EARLIEST <= value <= LATEST:
            raise RequestValidationError([{"loc": ("query", "since/until"), "msg": "must be between 2000 and 2100",
                                           "type": "value_error"}])
    return Period(start, end)


def _form_period(clock: ClockDep, zone: HomeZone, since: str = "", until: str = "") -> Period:
    """The page's pickers are local days ("to" includes that whole day); an unreadable value means the default."""
    def parse(text: str, end: bool) -> datetime | None:
        try:
            return parse_picked(text[:40], zone, end=end)
        except BadTime:
            return None
    return period(clock, parse(since, False), parse(until, True))


PeriodDep = Annotated[Period, Depends(period)]


@router.get("/reports", response_class=HTMLResponse, include_in_schema=False)
def report_page(request: Request, db: ReadDB, scope: UserScope, zone: HomeZone,
                p: Annotated[Period, Depends(_form_period)]) -> Response:
    rep = response_report.report(db, scope, p.since, p.until)
    return render(request, "reports.html", {
        "rep": rep, "zone": zone, "period_since": p.since, "period_until": p.until,
        "since": picker_value(p.since, zone), "until": picker_value(p.until - timedelta(microseconds=1), zone)})


@router.get("/reports/response.csv", include_in_schema=False)
def report_csv_page(db: ReadDB, scope: UserScope, zone: HomeZone,
                    p: Annotated[Period, Depends(_form_period)]) -> Response:
    return _csv(response_report.report(db, scope, p.since, p.until), zone)


def _csv(rep: ResponseReport, zone: str) -> Response:
    return PlainTextResponse(BOM + response_report.to_csv(rep, zone), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": 'attachment; filename="isowatch-response.csv"'})


@router.get("/api/v1/reports/response", responses={401: {"description": "Not logged in"}})
def api_report(db: ReadDB, scope: UserScope, p: PeriodDep) -> ResponseReport:
    """Per team and per role over alerts opened in [since, until) (default the last 14 days)."""
    return response_report.report(db, scope, p.since, p.until)


@router.get("/api/v1/reports/response.csv", responses={401: {"description": "Not logged in"},
                                                       200: {"content": {"text/csv": {}}}},
            response_class=PlainTextResponse)
def api_report_csv(db: ReadDB, scope: UserScope, zone: HomeZone, p: PeriodDep) -> Response:
    """The report as CSV (UTF-8 with a byte-order mark); since/until in the sites' zone with their offset."""
    return _csv(response_report.report(db, scope, p.since, p.until), zone)

