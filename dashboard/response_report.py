"""Response report: per team and per role, how fast alerts are acknowledged and who carries the load.

Over alerts opened in [since, until): time to acknowledge (median, 90th percentile, nearest-rank),
escalations (alerts that went past their first step or were re-paged), alerts still unacknowledged,
and the false-alarm share of those resolved with a verdict.
"""

from __future__ import annotations

import io
import math
import sqlite3
from collections import defaultdict
from datetime import datetime

from pydantic import BaseModel

from dashboard.csv_cells import SafeWriter
from dashboard.deps import Scope
from isowatch.clock import iso, parse_iso
from isowatch.localtime import DEFAULT_ZONE, iso_local


class Figures(BaseModel):
    alerts: int = 0
    acknowledged: int = 0
    ack_median_min: float | None = None
    ack_p90_min: float | None = None
    escalations: int = 0
    unacknowledged: int = 0
    resolved: int = 0
    false_alarms: int = 0
    false_alarm_share: float | None = None
    pages: int = 0  # notifications addressed to this team or role


class TeamRow(Figures):
    team: str
    name: str


class RoleRow(Figures):
    role: str


class ResponseReport(BaseModel):
    since: str
    until: str
    teams: list[TeamRow]
    roles: list[RoleRow]


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile: a value that actually occurred, which staff find easier to read."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _finish(f: Figures, waits: list[float]) -> None:
    f.acknowledged = len(waits)
    median, p90 = percentile(waits, 50), percentile(waits, 90)  # None without waits
    f.ack_median_min = round(median, 1) if median is not None else None
    f.ack_p90_min = round(p90, 1) if p90 is not None else None
    f.false_alarm_share = round(f.false_alarms / f.resolved, 3) if f.resolved else None


def report(db: sqlite3.Connection, scope: Scope, since: datetime, until: datetime) -> ResponseReport:
    where, params = scope.sql("a.household")
    alerts = db.execute(
        "SELECT a.id, a.opened_at, a.acknowledged_at, a.acknowledged_by, a.step, a.renotified, a.verdict, "  # noqa: S608
        "a.resolved_at, coalesce(h.team, '') AS team, coalesce(t.name, h.team, '') AS team_name, s.role AS ack_role "
        "FROM alerts a LEFT JOIN households h ON h.household = a.household LEFT JOIN teams t ON t.team = h.team "
        f"LEFT JOIN staff s ON s.staff = a.acknowledged_by WHERE a.opened_at >= ? AND a.opened_at < ? AND {where}",
        [iso(since), iso(until), *params]).fetchall()
    teams: dict[str, TeamRow] = {}
    team_waits: dict[str, list[float]] = defaultdict(list)
    roles: dict[str, RoleRow] = {}
    role_waits: dict[str, list[float]] = defaultdict(list)
    for a in alerts:
        team = teams.setdefault(a["team"], TeamRow(team=a["team"], name=a["team_name"]))
        team.alerts += 1
        escalated = (a["step"] or 0) > 1 or (a["renotified"] or 0) > 0
        team.escalations += escalated
        if a["acknowledged_at"]:
            wait = (parse_iso(a["acknowledged_at"]) - parse_iso(a["opened_at"])).total_seconds() / 60
            team_waits[a["team"]].append(wait)
            role = roles.setdefault(a["ack_role"] or "other", RoleRow(role=a["ack_role"] or "other"))
            role_waits[role.role].append(wait)
            if a["verdict"]:
                role.resolved += 1
                role.false_alarms += a["verdict"] == "false_alarm"
            role.escalations += escalated
        else:
            team.unacknowledged += 1
        if a["verdict"]:
            team.resolved += 1
            team.false_alarms += a["verdict"] == "false_alarm"
    # Load: pages sent to each role and team, and per role the alerts they were paged on but nobody acknowledged.
    pages = db.execute(
        "SELECT n.role, coalesce(h.team, '') AS team, count(*) AS n, "  # noqa: S608
        "count(DISTINCT CASE WHEN a.acknowledged_at IS NULL THEN a.id END) AS open FROM notifications n "
        # A storm's group page (no alert of its own) counts once, as a page for the group's first member.
        "JOIN alerts a ON a.id = coalesce(n.alert_id, (SELECT min(m.id) FROM alerts m WHERE m.group_id = n.group_id)) "
        "LEFT JOIN households h ON h.household = a.household "
        f"WHERE a.opened_at >= ? AND a.opened_at < ? AND {where} GROUP BY n.role, h.team",
        [iso(since), iso(until), *params]).fetchall()
    for p in pages:
        role = roles.setdefault(p["role"] or "other", RoleRow(role=p["role"] or "other"))
        role.pages += p["n"]
        role.unacknowledged += p["open"]
        if p["team"] in teams:
            teams[p["team"]].pages += p["n"]
    for key, team_row in teams.items():
        _finish(team_row, team_waits[key])
    for key, role_row in roles.items():
        _finish(role_row, role_waits[key])
        role_row.alerts = role_row.acknowledged + role_row.unacknowledged
    order = {"leader": 0, "medical": 1, "police": 2, "social": 3}
    return ResponseReport(since=iso(since), until=iso(until), teams=sorted(teams.values(), key=lambda r: r.team),
                          roles=sorted(roles.values(), key=lambda r: (order.get(r.role, 9), r.role)))


FIELDS = list(Figures.model_fields)


def to_csv(rep: ResponseReport, zone: str = DEFAULT_ZONE) -> str:
    """One row per team and role; the period in site time with its offset (ISO 8601), as the page shows it."""
    buffer = io.StringIO()
    writer = SafeWriter(buffer)
    writer.writerow(["group", "key", "name", *FIELDS, "since", "until"])
    since, until = iso_local(rep.since, zone), iso_local(rep.until, zone)
    for t in rep.teams:
        writer.writerow(["team", t.team, t.name, *[_cell(getattr(t, f)) for f in FIELDS], since, until])
    for r in rep.roles:
        writer.writerow(["role", r.role, "", *[_cell(getattr(r, f)) for f in FIELDS], since, until])
    return buffer.getvalue()


def _cell(value: object) -> object:
    return "" if value is None else value
