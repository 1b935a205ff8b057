"""Retention: a household's snapshots and readings are purged `purge_after_days` after its isolation ends;
pictures that never met their event are purged `snapshots.match_wait_minutes` after they arrived.

Each purge is written to the audit log. The newest row of each table is kept for now: the alert
worker's cursor is a rowid, and SQLite would hand a deleted maximum rowid out again.
"""

from __future__ import annotations

import logging
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

from gateway.alerts import audit
from gateway.policy import Policy
from gateway.registry import Isolation, _isolation, isolation_ends_at
from isowatch.clock import iso

log = logging.getLogger(__name__)


def purge_due(periods: list[Isolation], tz: str, now: datetime, keep_days: int) -> datetime | None:
    """The end of the household's last isolation when it ended more than `keep_days` ago and none is running
    or planned after it; else None."""
    if not periods:
        return None
    ends = [isolation_ends_at(p, tz) for p in periods]
    last_end = max(ends)
    if any(end > now for end in ends):
        return None
    return last_end if now - last_end >= timedelta(days=keep_days) else None


def _file_in_use(conn: sqlite3.Connection, path: str) -> bool:
    """Files are named by content: the same picture may still be kept for another event."""
    return any(conn.execute(f"SELECT 1 FROM {table} WHERE path = ? LIMIT 1", (path,)).fetchone() is not None  # noqa: S608
               for table in ("snapshots", "pending_snapshots"))


def purge_orphan_snapshots(conn: sqlite3.Connection, policy: Policy, now: datetime, snapshot_dir: Path) -> int:
    """Delete pictures still waiting for their event after `match_wait_minutes` (its event never came, or
    came from another device or household) and their files; audited and logged. Returns how many."""
    before = iso(now - timedelta(minutes=policy.snapshots.match_wait_minutes))
    with conn:
        rows = conn.execute("SELECT path, bytes, device FROM pending_snapshots WHERE received_at <= ?",
                            (before,)).fetchall()
        if not rows:
            return 0
        conn.execute("DELETE FROM pending_snapshots WHERE received_at <= ?", (before,))
        files = 0
        for path in {row[0] for row in rows}:
            if not _file_in_use(conn, path):
                (snapshot_dir / path).unlink(missing_ok=True)
                files += 1
        devices = sorted({row[2] for row in rows})
        detail = {"snapshots": len(rows), "bytes": sum(row[1] for row in rows), "files": files,
                  "devices": devices[:50], "waited_minutes": policy.snapshots.match_wait_minutes}
        audit(conn, "gateway", "retention.orphan_snapshots", ",".join(devices)[:200], detail, now)
    log.warning("purged %d snapshots that never met their event (%d bytes) devices=%s", len(rows),
                detail["bytes"], ",".join(devices[:20]))
    return len(rows)


def purge(conn: sqlite3.Connection, policy: Policy, now: datetime, snapshot_dir: Path) -> list[str]:
    """Purge orphan snapshots, then every household that is due; returns the households' ids."""
    purge_orphan_snapshots(conn, policy, now, snapshot_dir)
    conn.row_factory = sqlite3.Row
    # One query narrows 50,000 households to the few that may be due (a day's slack for time zones, exact
    # check in purge_due) and still hold something to purge; the worker runs this on its paging thread.
    cutoff = (now - timedelta(days=policy.purge_after_days - 1)).date().isoformat()
    households = conn.execute(
        "SELECT h.household, coalesce(s.timezone, ?) AS tz FROM households h LEFT JOIN sites s ON s.site = h.site "
        "JOIN (SELECT household FROM isolation_periods GROUP BY household HAVING max(CASE WHEN ended_at IS NOT NULL "
        "THEN substr(ended_at, 1, 10) ELSE date(start_date, '+' || days || ' days') END) <= ?) due "
        "ON due.household = h.household "
        "WHERE EXISTS (SELECT 1 FROM readings r WHERE r.household = h.household) "
        "OR EXISTS (SELECT 1 FROM snapshots n WHERE n.household = h.household)",
        (policy.timezone, cutoff),
    ).fetchall()
    purged = []
    for row in households:
        household = row["household"]
        periods = [_isolation(r) for r in conn.execute("SELECT * FROM isolation_periods WHERE household = ?",
                                                       (household,))]
        end = purge_due(periods, row["tz"], now, policy.purge_after_days)
        if end is None:
            continue
        before = iso(end)
        with conn:
            readings = conn.execute(
                "DELETE FROM readings WHERE household = ? AND received_at <= ? AND rowid < (SELECT max(rowid) FROM readings)",
                (household, before)).rowcount
            paths = [r[0] for r in conn.execute(
                "SELECT path FROM snapshots WHERE household = ? AND received_at <= ?", (household, before))]
            snaps = conn.execute("DELETE FROM snapshots WHERE household = ? AND received_at <= ?",
                                 (household, before)).rowcount
            files = 0
            for path in set(paths):
                # Content-addressed: the same picture may belong to another event that is still kept.
                if not _file_in_use(conn, path):
                    (snapshot_dir / path).unlink(missing_ok=True)
                    files += 1
            if readings or snaps:
                audit(conn, "gateway", "retention.purge", household,
                      {"readings": readings, "snapshots": snaps, "files": files, "isolation_ended": before,
                       "after_days": policy.purge_after_days}, now)
                purged.append(household)
                log.info("purged household=%s readings=%d snapshots=%d files=%d", household, readings, snaps, files)
    return purged
