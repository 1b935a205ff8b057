"""The alert worker in a process of its own, so rules, escalation and sends never wait for the ingest's GIL.

In one process the worker's rule lookups took a sixth of the gateway's single core at full load, and a
door page waited behind ingest batches for the interpreter (docs/benchmarks.md). The child
(`gateway.child_process`) owns its own SQLite connection and Apprise pool; it takes commands over a pipe:
wake, settle, stop.

When the parent dies, the pipe reaches end-of-file and the child leaves at once, as if killed with it:
a restarted gateway starts its own worker, and two workers must never dispatch side by side. A child
that dies on its own is started again; everything it was doing is in the database.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from gateway.ack_links import AckLinks
from gateway.alert_worker import AlertWorker
from gateway.child_process import START_TIMEOUT_S, ChildGone, ChildSupervisor
from gateway.policy import Policy
from gateway.store_process import BatchSummary
from isowatch.clock import SystemClock

log = logging.getLogger(__name__)

_WAKE, _SETTLE = "wake", "settle"
RESPAWN_DELAY_S = 1.0


class AlertProcess:
    """Runs an `AlertWorker` (system clock) in a child process; the ingest listener only sends it a wake-up."""

    def __init__(self, db_path: Path, policy: Policy, secret: str, public_url: str, *,
                 snapshot_dir: Path, worker_options: dict[str, Any] | None = None) -> None:
        self.db_path = Path(db_path)
        self.policy = policy
        self._child = ChildSupervisor("alert worker", "isowatch-alerts", _Served, (
            str(self.db_path), policy, secret, public_url, str(snapshot_dir), dict(worker_options or {})))
        self._lock = threading.Lock()  # one command (and its reply) at a time on the pipe

    @property
    def restarts(self) -> int:
        return self._child.restarts

    @property
    def _process(self) -> BaseProcess | None:  # the current worker's process (its pid, whether it is alive)
        return self._child.process

    def start(self) -> "AlertProcess":
        """Returns once the worker has pinned its cursors: what ingest stores from now on is looked at."""
        self._child.start_and_wait(START_TIMEOUT_S)
        self._child.watch(RESPAWN_DELAY_S, START_TIMEOUT_S)
        return self

    def _command(self, command: str, reply_timeout: float | None = None) -> object:
        with self._lock:
            child = self._child.child
            if child is None:
                return None
            try:
                child.send(command)
                if reply_timeout is not None and child.has_reply(reply_timeout):
                    return child.reply()
            except ChildGone:
                log.warning("alert worker unreachable for %r; the watcher restarts it", command)
        return None

    def on_batch(self, summary: BatchSummary) -> None:
        """Ingest listener: wake the worker for what may page now (the store process applied `may_page_now`)."""
        if summary.urgent:
            self._command(_WAKE)

    def settle(self, timeout: float = 60.0) -> None:
        """Wait until the worker has run a pass and its sends in flight have landed (demo, before counting)."""
        self._command(_SETTLE, reply_timeout=timeout)

    def summary(self) -> dict[str, int]:
        conn = sqlite3.connect(self.db_path, timeout=30)
        try:
            alerts_n = conn.execute("SELECT count(*) FROM alerts").fetchone()[0]
            sent = conn.execute("SELECT count(*) FROM notifications WHERE state = 'sent'").fetchone()[0]
        finally:
            conn.close()
        return {"alerts": alerts_n, "notifications_sent": sent}

    def stop(self, timeout: float = 40.0) -> None:
        """Let the worker finish its pass and the sends in flight, then end it."""
        self._child.stop(timeout)


class _Served:
    """The alert child's side: the worker, woken or settled on command."""

    def __init__(self, db_path: str, policy: Policy, secret: str, public_url: str, snapshot_dir: str,
                 options: dict[str, Any]) -> None:
        clock = SystemClock()
        links = AckLinks(secret, clock, ttl_hours=policy.ack_link_ttl_hours)
        self.worker = AlertWorker(db_path, policy, clock, links, public_url, snapshot_dir=Path(snapshot_dir),
                                  **options)
        self.worker.start()

    def handle(self, command: str) -> str | None:
        if command == _WAKE:
            self.worker.wake()
        elif command == _SETTLE:
            self.worker.settle()
            return "settled"
        return None

    def stop(self) -> None:
        self.worker.stop()
