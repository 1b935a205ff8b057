"""The live alert board: open alerts in a user's scope, who was paged, and a cheap change fingerprint."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from dashboard.deps import Scope
from gateway.alerts import VERDICTS
from gateway.registry import parse_iso
from isowatch.localtime import DEFAULT_ZONE

Verdict = Literal[VERDICTS]  # every outcome of gateway.alerts.OUTCOMES; resolve checks it fits the kind


class Notified(BaseModel):
    staff: str
    name: str
    role: str
    step: int
    state: str
    sent_at: str | None
    # Not delivered for `delivery.undelivered_after_s` (or no contact URL) and still being tried: act on it.
    undelivered: bool = False


class AlertPublic(BaseModel):
    id: int
    site: str
    household: str
    address: str | None
    kind: str
    state: str
    opened_at: str
    last_event_at: str | None
    count: int
    step: int
    age_s: float
    detail: str | None
    snapshot: str | None
    acknowledged_by: str | None
    acknowledged_at: str | None
    resolved_by: str | None
    resolved_at: str | None
    verdict: str | None
    note: str | None
    notified: list[Notified]
    timezone: str  # the site's: pages show times in it


class ResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    verdict: Verdict
    note: str = Field("", max_length=2000)


def _notified(db: sqlite3.Connection, alert_ids: list[int]) -> dict[int, list[Notified]]:
    if not alert_ids:
        return {}
    marks = ",".join("?" * len(alert_ids))
    rows = db.execute(
        "SELECT n.alert_id, n.staff, coalesce(s.name, n.staff) AS name, n.role, n.step, n.state, n.sent_at, "
        "n.undelivered_at IS NOT NULL AND n.state IN ('pending', 'sending', 'undeliverable') "
        "AND a.acknowledged_at IS NULL AND a.resolved_at IS NULL AS undelivered "
        "FROM notifications n JOIN alerts a ON a.id = n.alert_id LEFT JOIN staff s ON s.staff = n.staff "
        f"WHERE n.alert_id IN ({marks}) ORDER BY n.id", alert_ids)  # noqa: S608
    out: dict[int, list[Notified]] = {}
    for r in rows:
        out.setdefault(r["alert_id"], []).append(Notified(staff=r["staff"], name=r["name"], role=r["role"] or "",
                                                          step=r["step"], state=r["state"], sent_at=r["sent_at"],
                                                          undelivered=bool(r["undelivered"])))
    return out


def _public(row: sqlite3.Row, notified: list[Notified], now: datetime) -> AlertPublic:
    return AlertPublic(
        id=row["id"], site=row["site"], household=row["household"], address=row["address"], kind=row["kind"],
        state=row["state"], opened_at=row["opened_at"], last_event_at=row["last_event_at"], count=row["count"] or 1,
        step=row["step"] or 0, age_s=max(0.0, (now - parse_iso(row["opened_at"])).total_seconds()),
        detail=row["detail"], snapshot=row["snapshot"], acknowledged_by=row["acknowledged_by"],
        acknowledged_at=row["acknowledged_at"], resolved_by=row["resolved_by"], resolved_at=row["resolved_at"],
        verdict=row["verdict"], note=row["note"], notified=notified, timezone=row["timezone"])


ALERT_SQL = ("SELECT a.*, trim(coalesce(h.address, '') || ' ' || coalesce(h.unit, '')) AS address, "
             f"coalesce(s.timezone, '{DEFAULT_ZONE}') AS timezone FROM alerts a "
             "LEFT JOIN households h ON h.household = a.household LEFT JOIN sites s ON s.site = a.site")


def open_alerts(db: sqlite3.Connection, scope: Scope, now: datetime, limit: int = 500) -> list[AlertPublic]:
    where, params = scope.sql("a.household")
    rows = db.execute(f"{ALERT_SQL} WHERE a.resolved_at IS NULL AND {where} ORDER BY a.opened_at DESC LIMIT ?",  # noqa: S608
                      [*params, limit]).fetchall()
    notified = _notified(db, [r["id"] for r in rows])
    return [_public(r, notified.get(r["id"], []), now) for r in rows]


def alert(db: sqlite3.Connection, alert_id: int, now: datetime) -> AlertPublic:
    row = db.execute(f"{ALERT_SQL} WHERE a.id = ?", (alert_id,)).fetchone()  # noqa: S608
    return _public(row, _notified(db, [alert_id]).get(alert_id, []), now)


def fingerprint(db: sqlite3.Connection) -> tuple:
    """Changes whenever an alert opens, attaches, escalates, is acknowledged or resolved, a page goes out, or a
    page is reported as not delivered.

    Read every second per open board: the aggregates walk the live alerts only (resolved ones drop out of
    the partial unique index's rows) plus the notifications table's newest id, both cheap.
    """
    live = db.execute("SELECT count(*), coalesce(sum(count), 0), coalesce(sum(step), 0), "
                      "count(acknowledged_at), coalesce(max(id), 0) FROM alerts WHERE resolved_at IS NULL").fetchone()
    latest = db.execute("SELECT coalesce(max(id), 0) FROM alerts").fetchone()
    pages = db.execute("SELECT coalesce(max(id), 0), (SELECT count(*) FROM notifications WHERE state = 'sent'), "
                       "(SELECT count(*) FROM notifications WHERE undelivered_at IS NOT NULL "
                       "AND state IN ('pending', 'sending', 'undeliverable')) FROM notifications").fetchone()
    return (*live, latest[0], *pages)
