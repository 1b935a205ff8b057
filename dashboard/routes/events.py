"""The event log: newest door events, tamper events and readings."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from dashboard.deps import ReadDB, templates

router = APIRouter(tags=["events"])

LATEST_SQL = """
SELECT * FROM (
  SELECT id, site, household, device, seq, type, state AS detail, device_time, received_at FROM events
  UNION ALL
  SELECT id, site, household, device, seq, type,
         CASE WHEN type = 'temperature' THEN printf('%.1f °C %s', celsius, subject)
              WHEN open = 1 THEN 'open' ELSE 'closed' END,
         device_time, received_at FROM readings
) ORDER BY device_time DESC LIMIT ?
"""


def latest(db: ReadDB, limit: int) -> list[dict[str, Any]]:
    return [dict(row) for row in db.execute(LATEST_SQL, [limit])]


@router.get("/api/v1/events/latest")
def latest_events(db: ReadDB, limit: int = Query(50, ge=1, le=500)) -> list[dict[str, Any]]:
    """Newest events and readings, newest first."""
    return latest(db, limit)


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def event_page(request: Request, db: ReadDB) -> HTMLResponse:
    counts = {
        table: db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608 - fixed names
        for table in ("events", "readings", "rejects", "devices")
    }
    return templates.TemplateResponse(request, "events.html", {"rows": latest(db, 100), "counts": counts})
