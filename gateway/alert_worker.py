"""The alert worker: one thread runs rules, escalation and delivery off the ingest thread.

Everything it needs is in the database, so a restarted gateway carries on where it was: cursors over
the events and readings tables (each row is looked at once, in the same transaction as the alerts it
opens), escalation deadlines (`alerts.next_step_at`) and pending deliveries (`notifications`). The
ingest listener only wakes it. Delivery (gateway/delivery.py) runs Apprise in a small thread pool so one
slow URL holds nobody else; their results come back to this thread, the only one that writes.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Callable
from datetime import datetime
from functools import partial
from pathlib import Path
from zoneinfo import ZoneInfo

from gateway import alerts, resident_rules, retention
from gateway.ack_links import AckLinks
from gateway.delivery import Deliveries, Sender, new_key, page_exists, recipients, record_page
from gateway.escalation import Page, first_page, next_page
from gateway.grouping import Grouping
from gateway.messages import AlertFacts, render
from gateway.policy import Policy
from gateway.registry import Registry, isolation_day
from gateway.rules import (
    SCANS,
    Finding,
    candidates,
    evaluate_event,
    evaluate_reading,
    flag_clock_skew,
    may_page_now,
    screen,
)
from gateway.store import BatchOutcome, connect
from gateway.vocabulary import AlertKind
from isowatch.clock import Clock, iso, parse_iso
from isowatch.log_limit import RateLimitedLog

log = logging.getLogger(__name__)


class AlertWorker:
    def __init__(self, db_path: Path | str, policy: Policy, clock: Clock, links: AckLinks, public_url: str, *,
                 pool_size: int = 8, scan_every_s: float = 5.0, purge_every_s: float = 3600.0,
                 snapshot_dir: Path | None = None, sender: Sender | None = None,
                 rate_limits: dict[str, tuple[float, float]] | None = None) -> None:
        self.db_path = Path(db_path)
        self.policy = policy
        self.clock = clock
        self.links = links
        self.public_url = public_url.rstrip("/")
        self.snapshot_dir = snapshot_dir or self.db_path.parent / "snapshots"
        self.scan_every_s = scan_every_s
        self.purge_every_s = purge_every_s
        self.conn = connect(self.db_path, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.registry = Registry(self.conn, clock)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        # Silences are first scanned one interval after start: a restarted gateway lets devices reconnect first.
        self._last_scan = clock.monotonic()
        self._last_purge = clock.monotonic()
        self._positions: dict[str, int] = {}
        self._cursor_saved: dict[str, float] = {}
        self.counters = {"alerts_opened": 0, "attached": 0, "pages": 0}
        self._failure_log = RateLimitedLog(log)
        self.deliveries = Deliveries(self.conn, policy.delivery, clock, wake=self._wake.set, counters=self.counters,
                                     sender=sender, rate_limits=rate_limits, pool_size=pool_size)
        self.pool = self.deliveries.pool
        # Storms: alerts of one kind opening together for one team page as one group.
        self.grouping = Grouping(self.conn, self.registry, policy, links, self.public_url, self.counters,
                                 page_alone=self._page_alone)
        self.deliveries.resume(clock.now())
        for table in ("events", "readings"):
            self._cursor(table)  # pin the starting point now, before ingest stores anything

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> "AlertWorker":
        self.deliveries.warm_up()
        self._thread = threading.Thread(target=self._loop, name="alert-worker", daemon=True)
        self._thread.start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def on_batch(self, outcome: BatchOutcome) -> None:
        """Ingest listener (runs on the ingest thread, so it only looks): wake at once for what may page now."""
        if may_page_now(outcome, self.policy):
            self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(30)
        with self._lock:
            self.deliveries.stop()
        self.conn.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.2)
            self._wake.clear()
            try:
                self.run_once()
            except Exception as exc:
                # A locked or full database, or a row this code cannot handle: a dead worker pages nobody, so
                # log (once a minute for the same failure) and keep going; every step resumes from the DB.
                self._failure_log.log(logging.ERROR, f"alert worker step failed; retrying: {exc!r:.300}",
                                      exc_info=True)
                self._stop.wait(1.0)

    def run_once(self, *, force_scan: bool = False) -> None:
        """One pass: record finished sends, run rules on new rows, escalate, scan silences, dispatch."""
        with self._lock:
            now = self.clock.now()
            self.deliveries.collect()
            # Door and tamper events first, and their pages out at once: readings can wait a pass. One
            # write turn for both (`store.TurnTakingConnection`): queueing twice behind the store
            # processes' commits put ~70 ms on a page's p99 under load.
            with self.conn:
                self._process_new(now, "events", evaluate_event)
                self.deliveries.dispatch(now)
            self._process_new(now, "readings", evaluate_reading)
            self._escalate(now)
            mono = self.clock.monotonic()
            if force_scan or mono - self._last_scan >= self.scan_every_s:
                self._last_scan = mono
                self._scan(now)
            if force_scan or mono - self._last_purge >= self.purge_every_s:
                self._last_purge = mono
                retention.purge(self.conn, self.policy, now, self.snapshot_dir)
            self.deliveries.report_overdue(now)
            self.deliveries.dispatch(now)

    def tick(self) -> None:
        """A full pass by the injected clock with the silence scans forced, then wait for the sends (tests)."""
        self.run_once(force_scan=True)
        self.drain()

    def settle(self) -> None:
        """A pass without forcing the silence scans, then wait for the sends (tests)."""
        self.run_once()
        self.drain()

    def drain(self, timeout: float = 30.0) -> None:
        """Wait for sends in flight and record them; repeat while immediate fallbacks are due."""
        for _ in range(20):
            for future in self.deliveries.in_flight():
                future.result(timeout)
            self.run_once()
            # A send that finished after the pass collected results has left in-flight but waits in the
            # queue of outcomes: only both empty mean every send is recorded.
            if not self.deliveries.in_flight() and not self.deliveries.has_outcomes():
                return

    # -- rules ------------------------------------------------------------------------------------

    def _cursor(self, name: str) -> int:
        row = self.conn.execute("SELECT position FROM worker_cursors WHERE name = ?", (name,)).fetchone()
        if row is None:
            # A fresh engine on an existing database starts at the end: history does not page anyone.
            start = self.conn.execute(f"SELECT coalesce(max(rowid), 0) FROM {name}").fetchone()[0]  # noqa: S608
            with self.conn:
                self.conn.execute("INSERT INTO worker_cursors (name, position) VALUES (?, ?)", (name, start))
            return start
        return row[0]

    CURSOR_SAVE_S = 2.0  # a cursor that only moved past rows no rule cared about is saved this often

    # Only the columns the rules read: a reading's JSON payload stays on disk. The rules go by the gateway's
    # receive time; the device's own time is for display.
    _COLUMNS = {
        "events": "rowid, id, site, household, device, type, received_at, state, payload",
        "readings": "rowid, id, site, household, device, type, received_at, celsius, subject, method, plausible, open",
    }

    def _process_new(self, now: datetime, table: str, evaluate: Callable, batch: int = 1000) -> None:
        """Rules over rows stored since the cursor. Rows committed later have higher rowids (one writer)."""
        position = self._positions.get(table) or self._cursor(table)
        high = self.conn.execute(f"SELECT coalesce(max(rowid), 0) FROM {table}").fetchone()[0]  # noqa: S608
        if high <= position:
            return
        # Only rows some rule is triggered by (gateway.rules.ROW_RULES): SQLite skips the rest (most readings are
        # normal) in C.
        where, params = candidates(table, self.policy.rules)
        rows = self.conn.execute(
            f"SELECT {self._COLUMNS[table]} FROM {table} WHERE rowid > ? AND rowid <= ? AND {where} "  # noqa: S608
            "ORDER BY rowid LIMIT ?", (position, high, *params, batch),
        ).fetchall()
        if len(rows) == batch:
            high = rows[-1]["rowid"]
            self._wake.set()  # more to do: come straight back after escalating and dispatching
        self._positions[table] = high
        mono = self.clock.monotonic()
        if not rows and mono - self._cursor_saved.get(table, float("-inf")) < self.CURSOR_SAVE_S:
            # No candidate rows: spare the writers a commit. Re-running these rules after a crash is
            # harmless (every write they make is keyed by the row's id).
            return
        self._cursor_saved[table] = mono
        screened = screen(self.conn, rows)
        at = iso(now)
        # One transaction, one wait for the write turn: the rules record door violations as they go, and each
        # row's alerts are raised before the next row is evaluated (a second report of one opening joins them).
        with self.conn:
            verdicts = []
            for row in rows:
                verdict = screened.get(row["rowid"]) or evaluate(self.conn, self.registry, self.policy, row)
                if verdict:
                    verdicts.append((row, verdict))
                    for finding in verdict.findings:
                        self._raise(finding, now)
            self.conn.executemany(
                "INSERT OR IGNORE INTO rule_log (ref, household, outcome, kind, detail, at) VALUES (?, ?, ?, ?, ?, ?)",
                [(row["id"], row["household"], verdict.outcome, ",".join(f.kind.value for f in verdict.findings),
                  verdict.detail, at) for row, verdict in verdicts],
            )
            self.conn.execute("UPDATE worker_cursors SET position = ? WHERE name = ?", (high, table))

    def _scan(self, now: datetime) -> None:
        with self.conn:
            for device, skew, flagged in flag_clock_skew(self.conn, self.policy):
                if flagged:
                    log.warning("device clock off device=%s skew_s=%.0f (rules use the gateway's time)", device, skew)
                else:
                    log.info("device clock back in bounds device=%s skew_s=%.1f", device, skew)
            for scan in (*SCANS, *resident_rules.SCANS):
                for finding in scan(self.conn, self.registry, self.policy, now):
                    self._raise(finding, now)
                    if finding.mark:
                        self.conn.execute("INSERT OR REPLACE INTO rule_marks (household, rule, mark) VALUES (?, ?, ?)",
                                          (finding.household, *finding.mark))

    def _raise(self, finding: Finding, now: datetime) -> None:
        opened = alerts.open_or_attach(
            self.conn, site=finding.site, household=finding.household, kind=finding.kind.value, at=finding.at,
            ref=finding.ref, now=now, isolation_id=finding.isolation_id, detail=finding.detail,
            snapshot=finding.snapshot,
        )
        if not opened.new:
            self.counters["attached"] += 1
            return
        self.counters["alerts_opened"] += 1
        if self.grouping.admit(opened.alert_id, finding.kind.value, finding.household, now):
            return  # joined a live group, or waits for the next pass to be paged alone or grouped
        self._page(opened.alert_id, first_page(self.policy.kinds[finding.kind], now), now)

    def _page_alone(self, alert_id: int, kind: str, now: datetime) -> None:
        self._page(alert_id, first_page(self.policy.kinds[AlertKind(kind)], now), now)

    # -- escalation -------------------------------------------------------------------------------

    def _escalate(self, now: datetime) -> None:
        self.grouping.release(now)  # first: a waiting alert is decided, never escalated as if it had paged
        due = self.conn.execute(
            "SELECT id, kind, step, renotified, route FROM alerts WHERE next_step_at IS NOT NULL AND next_step_at <= ? "
            "AND acknowledged_at IS NULL AND resolved_at IS NULL ORDER BY next_step_at", (iso(now),),
        ).fetchall()
        for row in due:
            page = next_page(self.policy.escalation(row["kind"], row["route"]), self.policy.renotify, step=row["step"],
                             round=row["renotified"], now=now)
            with self.conn:
                if page is None:
                    self.conn.execute("UPDATE alerts SET next_step_at = NULL WHERE id = ?", (row["id"],))
                    alerts.audit(self.conn, "gateway", "alert.escalation_exhausted", f"alert:{row['id']}", "", now)
                else:
                    self._page(row["id"], page, now)
        self.grouping.escalate(now)

    def _page(self, alert_id: int, page: Page, now: datetime) -> None:
        """Create this step's notifications (once per person) and schedule the next step. In a transaction."""
        alert = self.conn.execute("SELECT * FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        household = self.registry.household(alert["household"])
        people = recipients(self.conn, page.roles, partial(self.registry.team_member, alert["household"]),
                            f"alert:{alert_id}", now)
        for staff, (member, role_name) in people.items():
            if page_exists(self.conn, page.step, page.round, staff, alert_id=alert_id):
                continue
            token = self.links.issue(self.conn, alert_id, staff, page.step)
            key = new_key()
            title, body = render(self._facts(alert, household, page, token, key), member["language"])
            record_page(self.conn, alert_id=alert_id, step=page.step, round=page.round, staff=staff, role=role_name,
                        language=member["language"], title=title, body=body,
                        urls=json.loads(member["contacts"] or "[]"), key=key, now=now)
            self.counters["pages"] += 1
        self.conn.execute("UPDATE alerts SET step = ?, renotified = ?, next_step_at = ? WHERE id = ?",
                          (page.step, page.round, iso(page.next_at) if page.next_at else None, alert_id))

    def _facts(self, alert: sqlite3.Row, household: sqlite3.Row, page: Page, token: str, key: str) -> AlertFacts:
        at = parse_iso(alert["last_event_at"])
        tz = household["timezone"]
        day = days = None
        if alert["isolation_id"]:
            period = self.registry.isolation(alert["isolation_id"])
            day, days = isolation_day(period, at, tz), period.days
        ack_url = f"{self.public_url}/ack/{token}"
        return AlertFacts(
            alert_id=alert["id"], kind=alert["kind"], household=alert["household"], address=household["address"] or "",
            unit=household["unit"] or "", at_local=at.astimezone(ZoneInfo(tz)), day=day, days=days,
            count=alert["count"], detail=alert["detail"] or "", step=page.step, round=page.round,
            snapshot_url=f"{ack_url}/snapshot" if alert["snapshot"] else None, ack_url=ack_url, notification_id=key,
        )
