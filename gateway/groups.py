"""Alert groups in the database: form, join, acknowledge, resolve, and what a group holds.

A group gathers the live alerts of one kind that opened close together for one team (a building's power
cut, a broker restart): it pages once per recipient and escalation step instead of once per household
(gateway/grouping.py decides when), and its members stop escalating on their own. Acknowledging or
resolving the group does so for each member, each in the audit log as usual plus one row for the group.
A group ends with its last member (gateway.alerts). Functions run inside the caller's transaction.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from dataclasses import dataclass
from datetime import datetime

from gateway import alerts
from gateway.alerts import AlertError, audit
from isowatch.clock import iso, parse_iso
from isowatch.localtime import DEFAULT_ZONE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Member:
    """One alert of a group, as the group's pages list it."""

    alert_id: int
    household: str
    address: str
    unit: str
    site_name: str
    timezone: str
    state: str
    opened_at: datetime
    detail: str
    acknowledged: bool
    resolved: bool
    verdict: str | None

    @property
    def place(self) -> str:
        return " ".join(p for p in (self.address, self.unit) if p) or self.household


@dataclass(frozen=True)
class Group:
    id: int
    team: str
    kind: str
    opened_at: datetime
    first_at: datetime
    step: int
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    members: tuple[Member, ...]

    @property
    def live(self) -> tuple[Member, ...]:
        return tuple(m for m in self.members if not m.resolved)

    @property
    def places(self) -> list[str]:
        """Site names of the members, the first member's first (for "... in Xingfu Street")."""
        return list(dict.fromkeys(m.site_name for m in self.members))

    @property
    def timezone(self) -> str:
        return self.members[0].timezone if self.members else DEFAULT_ZONE


def _when(text: str | None) -> datetime | None:
    return parse_iso(text) if text else None


def load(conn: sqlite3.Connection, group_id: int) -> Group:
    """The group and its members, oldest first (the first member names the place and the time)."""
    row = conn.execute("SELECT * FROM alert_groups WHERE id = ?", (group_id,)).fetchone()
    if row is None:
        raise AlertError(f"no such alert group {group_id}")
    members = tuple(
        Member(alert_id=m["id"], household=m["household"], address=m["address"] or "", unit=m["unit"] or "",
               site_name=m["site_name"] or m["site"] or "", timezone=m["timezone"], state=m["state"],
               opened_at=parse_iso(m["opened_at"]), detail=m["detail"] or "",
               acknowledged=m["acknowledged_at"] is not None, resolved=m["resolved_at"] is not None,
               verdict=m["verdict"])
        for m in conn.execute(
            "SELECT a.id, a.household, a.site, a.state, a.opened_at, a.detail, a.acknowledged_at, a.resolved_at, "
            "a.verdict, h.address, h.unit, s.name AS site_name, coalesce(s.timezone, ?) AS timezone FROM alerts a "
            "LEFT JOIN households h ON h.household = a.household LEFT JOIN sites s ON s.site = a.site "
            "WHERE a.group_id = ? ORDER BY julianday(a.opened_at), a.id", (DEFAULT_ZONE, group_id)))
    return Group(id=row["id"], team=row["team"], kind=row["kind"], opened_at=parse_iso(row["opened_at"]),
                 first_at=parse_iso(row["first_at"]), step=row["step"], acknowledged_by=row["acknowledged_by"],
                 acknowledged_at=_when(row["acknowledged_at"]), resolved_at=_when(row["resolved_at"]), members=members)


def live_group(conn: sqlite3.Connection, team: str, kind: str, opened_at: datetime, window_s: float) -> int | None:
    """The team's live group of this kind whose latest member opened at most `window_s` before `opened_at`."""
    row = conn.execute(
        "SELECT id FROM alert_groups WHERE team = ? AND kind = ? AND resolved_at IS NULL "
        "AND julianday(?) - julianday(last_member_at) <= ? / 86400.0 ORDER BY julianday(last_member_at) DESC, id DESC "
        "LIMIT 1",
        (team, kind, iso(opened_at), window_s)).fetchone()
    return row[0] if row else None


def form(conn: sqlite3.Connection, team: str, kind: str, alert_ids: list[int], now: datetime) -> int:
    """A new group of these live alerts; they stop escalating on their own (the group's pages take over)."""
    opened = conn.execute("SELECT site, opened_at FROM alerts WHERE id IN (SELECT value FROM json_each(?)) "
                          "ORDER BY julianday(opened_at), id", (_ids(alert_ids),)).fetchall()
    cursor = conn.execute(
        "INSERT INTO alert_groups (team, kind, site, opened_at, first_at, last_member_at) VALUES (?, ?, ?, ?, ?, ?)",
        (team, kind, opened[0][0], iso(now), opened[0][1], opened[-1][1]))
    assert cursor.lastrowid is not None
    group_id = cursor.lastrowid
    conn.execute("UPDATE alerts SET group_id = ?, next_step_at = NULL WHERE id IN (SELECT value FROM json_each(?))",
                 (group_id, _ids(alert_ids)))
    audit(conn, "gateway", "group.open", f"group:{group_id}",
          {"kind": kind, "team": team, "members": len(alert_ids)}, now)
    log.info("alert group opened id=%d kind=%s team=%s members=%d", group_id, kind, team, len(alert_ids))
    return group_id


def join(conn: sqlite3.Connection, group_id: int, alert_id: int, now: datetime) -> None:
    """A later alert joins: listed on the group's page, not paged. In an acknowledged group it is acknowledged
    in the name of whoever took the group (the person handling the storm handles its members)."""
    conn.execute("UPDATE alerts SET group_id = ?, next_step_at = NULL WHERE id = ?", (group_id, alert_id))
    conn.execute("UPDATE alert_groups SET last_member_at = (SELECT opened_at FROM alerts WHERE id = ?) WHERE id = ? "
                 "AND julianday(last_member_at) < (SELECT julianday(opened_at) FROM alerts WHERE id = ?)",
                 (alert_id, group_id, alert_id))
    taken = conn.execute("SELECT acknowledged_by FROM alert_groups WHERE id = ?", (group_id,)).fetchone()[0]
    if taken is not None:
        alerts.acknowledge(conn, alert_id, taken, now, via="group", group=group_id)
    log.info("alert joined group alert=%d group=%d", alert_id, group_id)


def acknowledge(conn: sqlite3.Connection, group_id: int, staff: str, now: datetime, *, via: str) -> str | None:
    """"I'm handling it" for the whole group: its escalation stops, its unsent pages are cancelled, and each
    member not acknowledged yet is acknowledged (audited per member). Returns who had taken it, if anyone."""
    row = conn.execute("SELECT acknowledged_by FROM alert_groups WHERE id = ?", (group_id,)).fetchone()
    if row is None:
        raise AlertError(f"no such alert group {group_id}")
    if row[0] is not None:
        audit(conn, staff, "group.ack_again", f"group:{group_id}", {"first_by": row[0], "via": via}, now)
        return row[0]
    conn.execute("UPDATE alert_groups SET acknowledged_by = ?, acknowledged_at = ?, next_step_at = NULL WHERE id = ?",
                 (staff, iso(now), group_id))
    conn.execute("UPDATE notifications SET state = 'cancelled', last_error = 'acknowledged' "
                 "WHERE group_id = ? AND state = 'pending'", (group_id,))
    members = [r[0] for r in conn.execute("SELECT id FROM alerts WHERE group_id = ? AND acknowledged_at IS NULL "
                                          "AND resolved_at IS NULL ORDER BY id", (group_id,))]
    for alert_id in members:
        alerts.acknowledge(conn, alert_id, staff, now, via=via, group=group_id)
    audit(conn, staff, "group.acknowledge", f"group:{group_id}", {"via": via, "members": len(members)}, now)
    log.info("alert group acknowledged id=%d staff=%s via=%s members=%d", group_id, staff, via, len(members))
    return None


def resolve(conn: sqlite3.Connection, group_id: int, *, staff: str, verdict: str, note: str, now: datetime,
            via: str) -> int:
    """Close every live member with one outcome (that fits the group's kind); the group ends with them.
    Acknowledges first if nobody had. One transaction; returns how many members it closed."""
    with conn:
        row = conn.execute("SELECT kind, acknowledged_by, resolved_at FROM alert_groups WHERE id = ?",
                           (group_id,)).fetchone()
        if row is None:
            raise AlertError(f"no such alert group {group_id}")
        if verdict not in alerts.outcomes_for(row[0]):
            raise AlertError(f"a {row[0]} group is closed with one of {', '.join(alerts.outcomes_for(row[0]))}, "
                             f"not {verdict}")
        if row[2] is not None:
            raise AlertError(f"alert group {group_id} is already resolved")
        if row[1] is None:
            acknowledge(conn, group_id, staff, now, via=f"resolve {via}".strip())
        members = [r[0] for r in conn.execute("SELECT id FROM alerts WHERE group_id = ? AND resolved_at IS NULL "
                                              "ORDER BY id", (group_id,))]
        for alert_id in members:
            alerts.resolve_in(conn, alert_id, staff=staff, verdict=verdict, note=note, now=now, via=via,
                              group=group_id)
        # Closed by its last member above; a group whose members were all resolved one by one is closed already.
        conn.execute("UPDATE alert_groups SET resolved_at = coalesce(resolved_at, ?), next_step_at = NULL "
                     "WHERE id = ?", (iso(now), group_id))
        audit(conn, staff, "group.resolve", f"group:{group_id}",
              {"verdict": verdict, "note": note, "members": len(members), **({"via": via} if via else {})}, now)
    return len(members)


def _ids(alert_ids: list[int]) -> str:
    return json.dumps([int(i) for i in alert_ids])
