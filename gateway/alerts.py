"""Alert lifecycle in the database: open (or attach to the live one), page, acknowledge, resolve.

open -> notified -> acknowledged -> resolved (verdict + note). One live alert per household and kind
(a partial unique index): later events attach to it with a count instead of paging again.
Functions take a connection and run inside the caller's transaction unless they say otherwise.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from dataclasses import dataclass
from datetime import datetime

from gateway.vocabulary import OUTCOMES as OUTCOMES  # how an alert may be closed, per kind (read from here too)
from gateway.vocabulary import VERDICTS, outcomes_for
from isowatch.clock import iso

log = logging.getLogger(__name__)


class AlertError(ValueError):
    pass


@dataclass(frozen=True)
class Opened:
    alert_id: int
    new: bool


def audit(conn: sqlite3.Connection, who: str, action: str, obj: str, detail: dict | str, at: datetime) -> None:
    text = detail if isinstance(detail, str) else json.dumps(detail, ensure_ascii=False, sort_keys=True)
    conn.execute("INSERT INTO audit_log (at, who, action, object, detail) VALUES (?, ?, ?, ?, ?)",
                 (iso(at), who, action, obj, text))


def open_or_attach(conn: sqlite3.Connection, *, site: str, household: str, kind: str, at: datetime, ref: str,
                   now: datetime, isolation_id: int | None, detail: str = "", snapshot: str | None = None) -> Opened:
    """The live alert of this household and kind gets `ref` attached (count + 1), or a new alert opens."""
    row = conn.execute("SELECT id FROM alerts WHERE household = ? AND kind = ? AND resolved_at IS NULL",
                       (household, kind)).fetchone()
    if row is not None:
        alert_id = row[0]
        if conn.execute("INSERT OR IGNORE INTO alert_events (alert_id, ref, at) VALUES (?, ?, ?)",
                        (alert_id, ref, iso(at))).rowcount:
            conn.execute("UPDATE alerts SET count = count + 1, last_event_at = max(last_event_at, ?), "
                         "snapshot = coalesce(snapshot, ?) WHERE id = ?", (iso(at), snapshot, alert_id))
        return Opened(alert_id, False)
    cursor = conn.execute(
        "INSERT INTO alerts (site, household, kind, state, opened_at, first_event_id, last_event_at, count, "
        "isolation_id, detail, snapshot, step, renotified) VALUES (?, ?, ?, 'open', ?, ?, ?, 1, ?, ?, ?, 0, 0)",
        (site, household, kind, iso(now), ref, iso(at), isolation_id, detail, snapshot),
    )
    assert cursor.lastrowid is not None  # an INSERT sets it
    alert_id = int(cursor.lastrowid)
    conn.execute("INSERT INTO alert_events (alert_id, ref, at) VALUES (?, ?, ?)", (alert_id, ref, iso(at)))
    log.info("alert opened id=%d kind=%s household=%s ref=%s", alert_id, kind, household, ref)
    return Opened(alert_id, True)


def acknowledge(conn: sqlite3.Connection, alert_id: int, staff: str, now: datetime, *, via: str,
                group: int | None = None) -> str | None:
    """Stop the escalation and cancel unsent pages; returns who had acknowledged already, if anyone. `group`:
    acknowledged with its group (gateway.groups), said in the audit log."""
    row = conn.execute("SELECT acknowledged_by, resolved_at FROM alerts WHERE id = ?", (alert_id,)).fetchone()
    if row is None:
        raise AlertError(f"no such alert {alert_id}")
    if row[0] is not None:
        audit(conn, staff, "alert.ack_again", f"alert:{alert_id}", {"first_by": row[0], "via": via, **_in(group)}, now)
        return row[0]
    conn.execute("UPDATE alerts SET state = CASE WHEN resolved_at IS NULL THEN 'acknowledged' ELSE state END, "
                 "acknowledged_by = ?, acknowledged_at = ?, next_step_at = NULL WHERE id = ?",
                 (staff, iso(now), alert_id))
    conn.execute("UPDATE notifications SET state = 'cancelled', last_error = 'acknowledged' "
                 "WHERE alert_id = ? AND state = 'pending'", (alert_id,))
    audit(conn, staff, "alert.acknowledge", f"alert:{alert_id}", {"via": via, **_in(group)}, now)
    log.info("alert acknowledged id=%d staff=%s via=%s", alert_id, staff, via)
    return None


def resolve(conn: sqlite3.Connection, alert_id: int, *, staff: str, verdict: str, note: str, now: datetime,
            via: str = "") -> None:
    """Close with a verdict; acknowledges first if nobody had. One transaction. `via` is for the audit log."""
    with conn:
        resolve_in(conn, alert_id, staff=staff, verdict=verdict, note=note, now=now, via=via)


def resolve_in(conn: sqlite3.Connection, alert_id: int, *, staff: str, verdict: str, note: str, now: datetime,
               via: str = "", group: int | None = None) -> None:
    """`resolve` inside the caller's transaction; `group`: resolved with its group, said in the audit log."""
    if verdict not in VERDICTS:
        raise AlertError(f"verdict must be one of {', '.join(VERDICTS)}")
    row = conn.execute("SELECT resolved_at, acknowledged_by, kind FROM alerts WHERE id = ?", (alert_id,)).fetchone()
    if row is None:
        raise AlertError(f"no such alert {alert_id}")
    if verdict not in outcomes_for(row[2]):
        raise AlertError(f"a {row[2]} alert is closed with one of {', '.join(outcomes_for(row[2]))}, not {verdict}")
    if row[0] is not None:
        raise AlertError(f"alert {alert_id} is already resolved")
    if row[1] is None:
        acknowledge(conn, alert_id, staff, now, via=f"resolve {via}".strip(), group=group)
    conn.execute("UPDATE alerts SET state = 'resolved', resolved_by = ?, resolved_at = ?, verdict = ?, note = ?, "
                 "next_step_at = NULL WHERE id = ?", (staff, iso(now), verdict, note, alert_id))
    conn.execute("UPDATE notifications SET state = 'cancelled', last_error = 'resolved' "
                 "WHERE alert_id = ? AND state = 'pending'", (alert_id,))
    audit(conn, staff, "alert.resolve", f"alert:{alert_id}",
          {"verdict": verdict, "note": note, **({"via": via} if via else {}), **_in(group)}, now)
    _close_group_when_done(conn, alert_id, now)


def _in(group: int | None) -> dict:
    return {"group": group} if group is not None else {}


def _close_group_when_done(conn: sqlite3.Connection, alert_id: int, now: datetime) -> None:
    """A group (gateway.groups) ends with its last member: no more escalation, unsent pages cancelled."""
    closed = conn.execute(
        "UPDATE alert_groups SET resolved_at = ?, next_step_at = NULL WHERE resolved_at IS NULL "
        "AND id = (SELECT group_id FROM alerts WHERE id = ?) AND NOT EXISTS (SELECT 1 FROM alerts m "
        "WHERE m.group_id = alert_groups.id AND m.resolved_at IS NULL) RETURNING id", (iso(now), alert_id)).fetchone()
    if closed is not None:
        conn.execute("UPDATE notifications SET state = 'cancelled', last_error = 'resolved' "
                     "WHERE group_id = ? AND state = 'pending'", (closed[0],))
        log.info("alert group closed id=%d (its last member resolved)", closed[0])
