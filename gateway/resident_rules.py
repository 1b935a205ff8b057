"""The rule a household's own announcement adds: a door left open past the announced window pages.

An opening inside the window is `expected` (gateway.rules, through `Registry.visit_covering`); one that
starts after it pages as any other. What neither sees is a door opened inside the window and still open
when it ends: this scan looks at each window the household announced, once it has ended (plus a short
grace for the closing event to arrive), and raises `door_opened` when the door's last state by then, by
camera or contact, was open. Time is the gateway's receive time, as the window's own. Each window fires
at most once (`rule_marks`, rule `overstay`).
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta

from gateway.policy import AlertKind, Policy
from gateway.registry import Registry
from gateway.rules import Finding
from isowatch.clock import iso, parse_iso

CLOSE_GRACE = timedelta(seconds=30)  # the closing event's way from the edge
LOOKBACK = timedelta(hours=1)  # windows that ended longer ago than this are not looked at again


def scan_overstays(conn: sqlite3.Connection, registry: Registry, policy: Policy, now: datetime) -> list[Finding]:
    rows = conn.execute(
        "SELECT v.id, v.household, v.starts_at, v.ends_at, h.site FROM visits v JOIN households h "
        "ON h.household = v.household LEFT JOIN rule_marks m ON m.household = v.household AND m.rule = 'overstay' "
        "WHERE v.source = 'resident' AND v.ends_at <= ? AND v.ends_at > ? AND v.ends_at > coalesce(m.mark, '') "
        "ORDER BY v.ends_at", (iso(now - CLOSE_GRACE), iso(now - LOOKBACK))).fetchall()
    out = []
    for visit_id, household, starts_at, ends_at, site in rows:
        end = parse_iso(ends_at)
        last = conn.execute(
            "SELECT state FROM (SELECT received_at AS at, state FROM events WHERE household = ?1 AND type = 'door' "
            "AND received_at >= ?2 AND received_at <= ?3 UNION ALL SELECT received_at, CASE WHEN open THEN 'open' "
            "ELSE 'closed' END FROM readings WHERE household = ?1 AND type = 'contact' AND received_at >= ?2 "
            "AND received_at <= ?3) ORDER BY at DESC LIMIT 1",
            (household, starts_at, iso(end + CLOSE_GRACE))).fetchone()
        if last is None or last[0] != "open":
            continue
        active = registry.active_isolation(household, end)
        if active is None:
            continue
        minutes = round((end - parse_iso(starts_at)).total_seconds() / 60)
        out.append(Finding(AlertKind.DOOR_OPENED, site, household, end, f"overstay:{visit_id}", active[0].id,
                           detail=f"door still open after the {minutes} min the household announced",
                           mark=("overstay", ends_at)))
    return out


SCANS = (scan_overstays,)
