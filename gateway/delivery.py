"""Pages out through Apprise until they get through: the `notifications` rows, dispatch, outcomes, outages.

Owned by the alert worker's thread (the only writer); Apprise calls run in a small thread pool so one
slow URL holds nobody else, and their results come back through a queue. A page is tried while its
alert is unacknowledged and no newer page of the same alert went to the same person: the next URL at
once, then backoff up to `delivery.backoff_max_s`, forever rather than silently giving up. A page that
has not got through after `delivery.undelivered_after_s` is said once, loudly: an ERROR line, an
`alert.page_undelivered` audit row, and the board's "page not delivered" (`undelivered_at`). The
escalation does not wait for any of this: an undelivered page is an unacknowledged one.

An attempt that went out and got no answer (a timeout) may have arrived: it is not resent within
`delivery.unknown_hold_s`, and every copy carries the page's `delivery_key`, so a receiver that dedupes
on it shows the page once (docs/alerts.md, "At least once").
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway import alerts, notify
from gateway.policy import Delivery, Role
from isowatch.clock import Clock, iso, parse_iso
from isowatch.ids import uuid7

log = logging.getLogger(__name__)

# (url, title, body, key, timeout_s) -> result; tests may inject their own.
Sender = Callable[..., notify.DeliveryResult]


def new_key() -> str:
    """A page's idempotency key: globally unique (several gateways may page one receiver), time-ordered."""
    return f"isowatch-{uuid7()}"


def subject(row: sqlite3.Row) -> str:
    """What a page is about, for logs and the audit log: "alert:12", or "group:3" for a group's page."""
    return f"group:{row['group_id']}" if row["group_id"] is not None else f"alert:{row['alert_id']}"


def page_exists(conn: sqlite3.Connection, step: int, round: int, staff: str, *, alert_id: int | None = None,
                group_id: int | None = None) -> bool:
    """Whether this step's (or reminder's) page to this person exists already, for an alert or a group."""
    return conn.execute("SELECT 1 FROM notifications WHERE alert_id IS ? AND group_id IS ? AND step = ? AND round = ? "
                        "AND staff = ?", (alert_id, group_id, step, round, staff)).fetchone() is not None


def recipients(conn: sqlite3.Connection, roles: Iterable[Role], member_for: Callable[[str], sqlite3.Row | None],
               subject: str, now: datetime) -> dict[str, tuple[sqlite3.Row, str]]:
    """Whom a step pages: staff id -> (staff row, role), once per person however many of the roles they hold.
    A role nobody holds is logged and audited (`alert.no_recipient`) on `subject` ("alert:12", "group:3")."""
    people: dict[str, tuple[sqlite3.Row, str]] = {}
    for role in roles:
        member = member_for(role.value)
        if member is None:
            log.warning("no team member to page %s role=%s", subject, role.value)
            alerts.audit(conn, "gateway", "alert.no_recipient", subject, {"role": role.value}, now)
            continue
        people.setdefault(member["staff"], (member, role.value))
    return people


def record_page(conn: sqlite3.Connection, *, alert_id: int | None = None, group_id: int | None = None, step: int,
                round: int, staff: str, role: str, language: str, title: str, body: str, urls: list[str], key: str,
                now: datetime) -> int:
    """A page as a `notifications` row (inside the caller's transaction), for an alert or a group. It carries
    the same facts as an older page to the same person still waiting for its turn, and a fresh link: that
    one stops."""
    cursor = conn.execute(
        "INSERT INTO notifications (alert_id, group_id, step, round, staff, role, language, title, body, urls, "
        "url_index, state, attempts, next_attempt_at, created_at, delivery_key) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, 0, ?, ?, ?)",
        (alert_id, group_id, step, round, staff, role, language, title, body, json.dumps(urls),
         "pending" if urls else "undeliverable", iso(now), iso(now), key),
    )
    assert cursor.lastrowid is not None
    created = cursor.lastrowid
    conn.execute("UPDATE notifications SET state = 'cancelled', last_error = ? WHERE alert_id IS ? AND group_id IS ? "
                 "AND staff = ? AND state = 'pending' AND id < ?",
                 (f"superseded by notification {created}", alert_id, group_id, staff, created))
    return created


@dataclass(frozen=True)
class _Done:
    notification_id: int
    url: str
    attempt: int
    started: datetime
    result: notify.DeliveryResult


class Deliveries:
    def __init__(self, conn: sqlite3.Connection, policy: Delivery, clock: Clock, *, wake: Callable[[], None],
                 counters: dict[str, int], sender: Sender | None = None,
                 rate_limits: dict[str, tuple[float, float]] | None = None, pool_size: int = 8) -> None:
        self.conn = conn
        self.policy = policy
        self.clock = clock
        self.wake = wake
        self.counters = counters
        self.sender: Sender = sender or notify.send
        self.limiter = notify.RateLimiter(clock, rate_limits)
        self.pool = ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="notify")
        # A service that hangs (every attempt waits out the timeout) may hold only part of the pool, so
        # pages to other services, the next escalation step's among them, still go at once.
        self.per_service = max(1, pool_size // 2)
        self._busy: Counter[str] = Counter()
        self._done: queue.Queue[_Done] = queue.Queue()
        self._in_flight: set[Future] = set()
        self._flight_lock = threading.Lock()
        for name in ("sent", "failed_attempts", "unknown_attempts", "undelivered"):
            counters.setdefault(name, 0)

    def warm_up(self) -> None:
        if self.sender is notify.send:
            notify.warm_up()

    def resume(self, now: datetime) -> None:
        """At start: a send cut off by a stop may or may not have arrived. Recorded as unknown, and sent again
        with the same key once `unknown_hold_s` has passed since it began (at least once, one copy at an
        idempotent receiver)."""
        with self.conn:
            cut = self.conn.execute("SELECT id, attempts, urls, url_index, sending_since FROM notifications "
                                    "WHERE state = 'sending'").fetchall()
            for row in cut:
                began = parse_iso(row["sending_since"]) if row["sending_since"] else None
                urls = json.loads(row["urls"])
                self.conn.execute(
                    "INSERT INTO delivery_attempts (notification_id, url, attempt, at, ok, status, error, elapsed_ms) "
                    "VALUES (?, ?, ?, ?, 0, 'unknown', 'cut off by a gateway stop', NULL)",
                    (row["id"], notify.redact(urls[row["url_index"] % len(urls)]), row["attempts"], iso(began or now)))
                retry_at = max(now, began + timedelta(seconds=self.policy.unknown_hold_s)) if began else now
                self.conn.execute("UPDATE notifications SET state = 'pending', next_attempt_at = ?, "
                                  "last_error = 'cut off by a gateway stop' WHERE id = ?", (iso(retry_at), row["id"]))
        if cut:
            log.warning("notifications cut off by a stop resume count=%d (same key; at least once)", len(cut))

    # -- sending ----------------------------------------------------------------------------------

    def in_flight(self) -> list[Future]:
        with self._flight_lock:
            return list(self._in_flight)

    def dispatch(self, now: datetime) -> None:
        due = self.conn.execute(
            "SELECT id, urls, url_index, attempts, title, body, delivery_key FROM notifications "
            "WHERE state = 'pending' AND next_attempt_at <= ? ORDER BY id LIMIT 200", (iso(now),),
        ).fetchall()
        deferred = []
        for row in due:
            urls = json.loads(row["urls"])
            url = urls[row["url_index"] % len(urls)]
            with self._flight_lock:
                full = self._busy[notify.service_key(url)] >= self.per_service
            if full:
                deferred.append((iso(now + timedelta(seconds=1)), row["id"]))
                continue
            wait = self.limiter.take(url)
            with self.conn:
                if wait > 0:  # the service's budget is spent: try again when a token is back, without blocking
                    self.conn.execute("UPDATE notifications SET next_attempt_at = ? WHERE id = ?",
                                      (iso(now + timedelta(seconds=wait)), row["id"]))
                    continue
                self.conn.execute("UPDATE notifications SET state = 'sending', attempts = attempts + 1, "
                                  "sending_since = ? WHERE id = ?", (iso(now), row["id"]))
            self._submit(row["id"], url, row["attempts"] + 1, row["title"], row["body"], row["delivery_key"] or "",
                         now)
        if deferred:  # out of the due list for a moment, so the LIMIT does not keep picking them over others
            with self.conn:
                self.conn.executemany("UPDATE notifications SET next_attempt_at = ? WHERE id = ?", deferred)

    def _submit(self, notification_id: int, url: str, attempt: int, title: str, body: str, key: str,
                now: datetime) -> None:
        timeout_s = self.policy.timeout_s
        service = notify.service_key(url)

        def run() -> None:
            try:
                result = self.sender(url, title, body, key=key, timeout_s=timeout_s)
            finally:
                with self._flight_lock:
                    self._busy[service] -= 1
            self._done.put(_Done(notification_id, url, attempt, now, result))
            self.wake()

        with self._flight_lock:
            self._busy[service] += 1
        future = self.pool.submit(run)
        with self._flight_lock:
            self._in_flight.add(future)
        future.add_done_callback(self._landed)

    def _landed(self, future: Future) -> None:
        with self._flight_lock:
            self._in_flight.discard(future)

    # -- outcomes ---------------------------------------------------------------------------------

    def has_outcomes(self) -> bool:
        """Finished sends not yet recorded by `collect`."""
        return not self._done.empty()

    def collect(self) -> None:
        while True:
            try:
                done = self._done.get_nowait()
            except queue.Empty:
                return
            self._record(done)

    def _record(self, done: _Done) -> None:
        now = self.clock.now()
        result = done.result
        row = self.conn.execute("SELECT id, alert_id, group_id, staff, urls, url_index, attempts, state, created_at, "
                                "undelivered_at FROM notifications WHERE id = ?", (done.notification_id,)).fetchone()
        with self.conn:
            self.conn.execute(
                "INSERT INTO delivery_attempts (notification_id, url, attempt, at, ok, status, error, elapsed_ms) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (done.notification_id, notify.redact(done.url), done.attempt, iso(done.started), int(result.ok),
                 result.status, result.error, result.elapsed_ms),
            )
            if result.ok:
                self._delivered(row, done, now)
                return
            self.counters["unknown_attempts" if result.unknown else "failed_attempts"] += 1
            # WARNING until the page is reported undelivered; after that one ERROR, each try is only counted.
            level = logging.INFO if row["undelivered_at"] else logging.WARNING
            log.log(level, "notification attempt %s id=%d %s attempt=%d url=%s error=%s",
                    "unanswered" if result.unknown else "failed", done.notification_id, subject(row).replace(":", "="),
                    done.attempt, notify.redact(done.url), result.error)
            stop = self._why_stop(row)
            if row["state"] != "sending" or stop:
                self.conn.execute("UPDATE notifications SET state = 'cancelled', last_error = ? WHERE id = ? "
                                  "AND state = 'sending'", (stop or result.error, done.notification_id))
                return
            nxt = notify.after_failure(url_index=row["url_index"], url_count=len(json.loads(row["urls"])),
                                       attempts=row["attempts"], now=now, first_s=self.policy.backoff_first_s,
                                       max_s=self.policy.backoff_max_s, unknown=result.unknown,
                                       hold_s=self.policy.unknown_hold_s)
            self.conn.execute("UPDATE notifications SET state = 'pending', url_index = ?, next_attempt_at = ?, "
                              "last_error = ? WHERE id = ?", (nxt.url_index, iso(nxt.at), result.error,
                                                              done.notification_id))

    def _delivered(self, row: sqlite3.Row, done: _Done, now: datetime) -> None:
        self.counters["sent"] += 1
        self.conn.execute("UPDATE notifications SET state = 'sent', sent_at = ?, last_error = NULL WHERE id = ?",
                          (iso(now), done.notification_id))
        if row["group_id"] is not None:  # a group's page notifies each of its members
            self.conn.execute("UPDATE alert_groups SET notified_at = coalesce(notified_at, ?) WHERE id = ?",
                              (iso(now), row["group_id"]))
            self.conn.execute("UPDATE alerts SET state = 'notified', notified_at = coalesce(notified_at, ?) "
                              "WHERE group_id = ? AND state = 'open'", (iso(now), row["group_id"]))
        self.conn.execute("UPDATE alerts SET state = 'notified', notified_at = coalesce(notified_at, ?) "
                          "WHERE id = ? AND state = 'open'", (iso(now), row["alert_id"]))
        if row["undelivered_at"]:
            late_s = (now - parse_iso(row["created_at"])).total_seconds()
            log.warning("page delivered late notification=%d %s staff=%s after %.0f s attempt=%d",
                        done.notification_id, subject(row).replace(":", "="), row["staff"], late_s, done.attempt)
            alerts.audit(self.conn, "gateway", "alert.page_delivered_late", subject(row),
                         {"notification": done.notification_id, "staff": row["staff"], "after_s": round(late_s),
                          "attempts": done.attempt}, now)
        else:
            log.info("notification sent id=%d %s attempt=%d ms=%.0f", done.notification_id,
                     subject(row).replace(":", "="), done.attempt, done.result.elapsed_ms)

    def _why_stop(self, row: sqlite3.Row) -> str:
        """'' while the page still matters: its alert (or group) is unacknowledged and unresolved, and the
        person has not been paged for it again since (the newer page carries the same facts and a fresh link)."""
        if row["group_id"] is not None:
            live = self.conn.execute("SELECT acknowledged_at, resolved_at FROM alert_groups WHERE id = ?",
                                     (row["group_id"],)).fetchone()
        else:
            live = self.conn.execute("SELECT acknowledged_at, resolved_at FROM alerts WHERE id = ?",
                                     (row["alert_id"],)).fetchone()
        if live["resolved_at"]:
            return "resolved"
        if live["acknowledged_at"]:
            return "acknowledged"
        newer = self.conn.execute("SELECT id FROM notifications WHERE alert_id IS ? AND group_id IS ? AND staff = ? "
                                  "AND id > ? ORDER BY id LIMIT 1",
                                  (row["alert_id"], row["group_id"], row["staff"], row["id"])).fetchone()
        return f"superseded by notification {newer[0]}" if newer else ""

    # -- outages ----------------------------------------------------------------------------------

    def report_overdue(self, now: datetime) -> None:
        """Pages of live alerts not delivered for `undelivered_after_s` (or with no URL at all): said once."""
        since = iso(now - timedelta(seconds=self.policy.undelivered_after_s))
        rows = self.conn.execute(
            "SELECT n.id, n.alert_id, n.group_id, n.staff, n.role, n.step, n.round, n.state, n.attempts, "
            "n.created_at, n.last_error FROM notifications n LEFT JOIN alerts a ON a.id = n.alert_id "
            "LEFT JOIN alert_groups g ON g.id = n.group_id "
            "WHERE n.state IN ('pending', 'sending', 'undeliverable') AND n.undelivered_at IS NULL "
            "AND (n.created_at <= ? OR n.state = 'undeliverable') "
            "AND coalesce(a.acknowledged_at, a.resolved_at, g.acknowledged_at, g.resolved_at) IS NULL "
            "AND (a.id IS NOT NULL OR g.id IS NOT NULL)", (since,),
        ).fetchall()
        if not rows:
            return
        with self.conn:
            for r in rows:
                waited = (now - parse_iso(r["created_at"])).total_seconds()
                why = "no contact URL" if r["state"] == "undeliverable" else (r["last_error"] or "no answer yet")
                self.counters["undelivered"] += 1
                log.error("page not delivered notification=%d %s staff=%s role=%s step=%d for %.0f s "
                          "attempts=%d last_error=%s; %s", r["id"], subject(r).replace(":", "="), r["staff"], r["role"],
                          r["step"],
                          waited, r["attempts"], why,
                          "nobody can be reached" if r["state"] == "undeliverable" else "still trying")
                self.conn.execute("UPDATE notifications SET undelivered_at = ? WHERE id = ?", (iso(now), r["id"]))
                alerts.audit(self.conn, "gateway", "alert.page_undelivered", subject(r),
                             {"notification": r["id"], "staff": r["staff"], "role": r["role"], "step": r["step"],
                              "round": r["round"], "attempts": r["attempts"], "waited_s": round(waited),
                              "last_error": why}, now)

    def stop(self) -> None:
        self.pool.shutdown(wait=True)
        self.collect()
