"""The live alert board: open alerts in a user's scope, who was paged, and a cheap change fingerprint."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from dashboard.deps import Scope
from dashboard.household_view import actor_name
from gateway.alerts import VERDICTS
from gateway.vocabulary import KINDS, UNKNOWN_SEVERITY, severity
from isowatch.clock import parse_iso
from isowatch.localtime import DEFAULT_ZONE

# Every outcome of gateway.alerts.OUTCOMES (a Literal built at import); resolve checks it fits the kind.
Verdict = Literal[VERDICTS]  # type: ignore[valid-type]


class Notified(BaseModel):
    """One person paged for an alert, once however often: the latest page's step and state, and how many."""
    staff: str
    name: str
    role: str
    step: int
    state: str
    sent_at: str | None
    # Not delivered for `delivery.undelivered_after_s` (or no contact URL) and still being tried: act on it.
    undelivered: bool = False
    pages: int = 1


class GroupBrief(BaseModel):
    """A live group of alerts (a storm, gateway/groups.py) as the board shows it: one row for all its members."""
    id: int
    kind: str
    live: int = Field(description="Members not resolved yet")
    places: list[str] = Field(description="The members' site names, the first member's first")
    first_at: str
    timezone: str
    step: int
    acknowledged_by: str | None
    acknowledged_by_name: str | None = None
    notified: list[Notified]


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
    severity: int = Field(description="1 first (door, fever, welfare), 3 last (offline, missed reading)")
    acknowledged_by: str | None
    acknowledged_by_name: str | None = None
    acknowledged_at: str | None
    resolved_by: str | None
    resolved_by_name: str | None = None
    resolved_at: str | None
    verdict: str | None
    note: str | None
    notified: list[Notified]
    timezone: str  # the site's: pages show times in it
    group_id: int | None = Field(None, description="The group this alert pages with (a storm), if any")
    group: GroupBrief | None = Field(None, description="On the board: the row stands for its whole group")


class ResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    verdict: Verdict
    note: str = Field("", max_length=2000)


def _notified(db: sqlite3.Connection, alert_ids: list[int]) -> dict[int, list[Notified]]:
    if not alert_ids:
        return {}
    marks = ",".join("?" * len(alert_ids))
    rows = db.execute(
        "SELECT n.alert_id, n.staff, coalesce(s.name, n.staff) AS name, n.role, n.step, n.state, n.sent_at, "  # noqa: S608
        "n.undelivered_at IS NOT NULL AND n.state IN ('pending', 'sending', 'undeliverable') "
        "AND a.acknowledged_at IS NULL AND a.resolved_at IS NULL AS undelivered "
        "FROM notifications n JOIN alerts a ON a.id = n.alert_id LEFT JOIN staff s ON s.staff = n.staff "
        f"WHERE n.alert_id IN ({marks}) ORDER BY n.id", alert_ids)
    people: dict[int, dict[str, Notified]] = {}
    for r in rows:  # oldest first: a later page (renotify, next step) replaces the person's state
        seen = people.setdefault(r["alert_id"], {})
        before = seen.get(r["staff"])
        seen[r["staff"]] = Notified(staff=r["staff"], name=r["name"], role=r["role"] or "", step=r["step"],
                                    state=r["state"], sent_at=r["sent_at"] or (before.sent_at if before else None),
                                    pages=before.pages + 1 if before else 1, undelivered=bool(r["undelivered"]))
    return {alert_id: list(seen.values()) for alert_id, seen in people.items()}


def _public(row: sqlite3.Row, notified: list[Notified], now: datetime) -> AlertPublic:
    return AlertPublic(
        id=row["id"], site=row["site"], household=row["household"], address=row["address"], kind=row["kind"],
        state=row["state"], opened_at=row["opened_at"], last_event_at=row["last_event_at"], count=row["count"] or 1,
        step=row["step"] or 0, age_s=max(0.0, (now - parse_iso(row["opened_at"])).total_seconds()),
        detail=row["detail"], snapshot=row["snapshot"], severity=severity(row["kind"]),
        acknowledged_by=row["acknowledged_by"], acknowledged_by_name=row["ack_name"],
        acknowledged_at=row["acknowledged_at"], resolved_by=row["resolved_by"], resolved_by_name=row["resolve_name"],
        resolved_at=row["resolved_at"],
        verdict=row["verdict"], note=row["note"], notified=notified, timezone=row["timezone"], group_id=row["group_id"])


ALERT_SQL = ("SELECT a.*, trim(coalesce(h.address, '') || ' ' || coalesce(h.unit, '')) AS address, "  # noqa: S608
             f"{actor_name('a.acknowledged_by')} AS ack_name, {actor_name('a.resolved_by')} AS resolve_name, "
             f"coalesce(s.timezone, '{DEFAULT_ZONE}') AS timezone FROM alerts a "
             "LEFT JOIN households h ON h.household = a.household LEFT JOIN sites s ON s.site = a.site")
# The board's order: most urgent kind first (gateway.vocabulary), newest first within a severity.
SEVERITY_SQL = ("CASE a.kind " + " ".join(f"WHEN '{kind}' THEN {severity(kind)}" for kind in KINDS)
                + f" ELSE {UNKNOWN_SEVERITY} END")


@dataclass(frozen=True)
class Mine:
    """Alerts paged to this staff member or to anyone of this role ("mine" on the board)."""
    staff: str | None
    role: str

    def sql(self) -> tuple[str, list[str]]:
        return ("EXISTS (SELECT 1 FROM notifications n WHERE (n.alert_id = a.id OR n.group_id = a.group_id) "
                "AND (n.staff = ? OR n.role = ?))", [self.staff or "", self.role])


def open_alerts(db: sqlite3.Connection, scope: Scope, now: datetime, limit: int = 500,
                mine: Mine | None = None, groups: bool = False) -> list[AlertPublic]:
    """`groups`: a live group's members as one row (its oldest live member's, carrying `group`), as the board
    shows a storm; otherwise every alert (the API)."""
    where, params = scope.sql("a.household")
    if mine is not None:
        mine_sql, mine_params = mine.sql()
        where, params = f"{where} AND {mine_sql}", [*params, *mine_params]
    if groups:
        where += (" AND (a.group_id IS NULL OR a.id = (SELECT min(m.id) FROM alerts m WHERE m.group_id = a.group_id "
                  "AND m.resolved_at IS NULL))")
    rows = db.execute(f"{ALERT_SQL} WHERE a.resolved_at IS NULL AND {where} "
                      f"ORDER BY {SEVERITY_SQL}, a.opened_at DESC LIMIT ?", [*params, limit]).fetchall()
    notified = _notified(db, [r["id"] for r in rows])
    public = [_public(r, notified.get(r["id"], []), now) for r in rows]
    if groups:
        briefs = group_briefs(db, [a.group_id for a in public if a.group_id is not None])
        public = [a.model_copy(update={"group": briefs.get(a.group_id)}) if a.group_id else a for a in public]
    return public


GROUP_SQL = (f"SELECT g.*, {actor_name('g.acknowledged_by')} AS ack_name, "  # noqa: S608 - constant fragments
             f"coalesce(s.timezone, '{DEFAULT_ZONE}') AS timezone, "
             "(SELECT count(*) FROM alerts m WHERE m.group_id = g.id AND m.resolved_at IS NULL) AS live "
             "FROM alert_groups g LEFT JOIN sites s ON s.site = g.site WHERE g.id IN (SELECT value FROM json_each(?))")


def group_briefs(db: sqlite3.Connection, group_ids: list[int]) -> dict[int, GroupBrief]:
    """The board's line for each of these groups: live members, places, first time, step, who took it, pages."""
    if not group_ids:
        return {}
    ids = json.dumps(sorted(set(group_ids)))
    rows = db.execute(GROUP_SQL, (ids,)).fetchall()
    places: dict[int, list[str]] = {}
    for group_id, name in db.execute(
            "SELECT a.group_id, coalesce(s.name, a.site) FROM alerts a LEFT JOIN sites s ON s.site = a.site "
            "WHERE a.group_id IN (SELECT value FROM json_each(?)) ORDER BY julianday(a.opened_at), a.id", (ids,)):
        if name not in places.setdefault(group_id, []):
            places[group_id].append(name)
    pages: dict[int, dict[str, Notified]] = {}
    for r in db.execute(
            "SELECT n.group_id, n.staff, coalesce(s.name, n.staff) AS name, n.role, n.step, n.state, n.sent_at, "
            "n.undelivered_at IS NOT NULL AND n.state IN ('pending', 'sending', 'undeliverable') "
            "AND g.acknowledged_at IS NULL AND g.resolved_at IS NULL AS undelivered FROM notifications n "
            "JOIN alert_groups g ON g.id = n.group_id LEFT JOIN staff s ON s.staff = n.staff "
            "WHERE n.group_id IN (SELECT value FROM json_each(?)) ORDER BY n.id", (ids,)):
        seen = pages.setdefault(r["group_id"], {})
        before = seen.get(r["staff"])
        seen[r["staff"]] = Notified(staff=r["staff"], name=r["name"], role=r["role"] or "", step=r["step"],
                                    state=r["state"], sent_at=r["sent_at"] or (before.sent_at if before else None),
                                    pages=before.pages + 1 if before else 1, undelivered=bool(r["undelivered"]))
    return {r["id"]: GroupBrief(id=r["id"], kind=r["kind"], live=r["live"], places=places.get(r["id"], []),
                                first_at=r["first_at"], timezone=r["timezone"], step=r["step"],
                                acknowledged_by=r["acknowledged_by"], acknowledged_by_name=r["ack_name"],
                                notified=list(pages.get(r["id"], {}).values())) for r in rows}


def alert(db: sqlite3.Connection, alert_id: int, now: datetime) -> AlertPublic:
    row = db.execute(f"{ALERT_SQL} WHERE a.id = ?", (alert_id,)).fetchone()
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


class Missed(BaseModel):
    id: int
    kind: str
    household: str
    resolved: bool


def newest_alert_id(db: sqlite3.Connection) -> int:
    """The board stream's cursor: alert ids only grow, so 'after id N' is 'opened since the cursor'."""
    return int(db.execute("SELECT coalesce(max(id), 0) FROM alerts").fetchone()[0])


def opened_since(db: sqlite3.Connection, scope: Scope, cursor: int, limit: int = 200) -> list[Missed]:
    """Alerts in scope opened after the cursor, oldest first, resolved ones included (the board drops them)."""
    where, params = scope.sql("household")
    rows = db.execute(f"SELECT id, kind, household, resolved_at FROM alerts WHERE id > ? AND {where} "  # noqa: S608
                      "ORDER BY id LIMIT ?", [cursor, *params, limit])
    return [Missed(id=r["id"], kind=r["kind"], household=r["household"], resolved=r["resolved_at"] is not None)
            for r in rows]
