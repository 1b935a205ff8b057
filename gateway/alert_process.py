"""The alert worker in a process of its own, so rules, escalation and sends never wait for the ingest's GIL.

In one process the worker's rule lookups took a sixth of the gateway's single core at full load, and a
door page waited behind ingest batches for the interpreter (docs/benchmarks.md). The child is
spawned, not forked (the parent runs threads), and owns its own SQLite connection and Apprise pool; it
takes commands over a pipe: wake, settle, stop.

When the parent dies, the pipe reaches end-of-file and the child leaves at once, as if killed with it:
a restarted gateway starts its own worker, and two workers must never dispatch side by side. A child
that dies on its own is started again; everything it was doing is in the database.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sqlite3
import threading
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from gateway.ack_links import AckLinks
from gateway.alert_worker import AlertWorker
from gateway.policy import Policy
from gateway.store_process import BatchSummary
from isowatch.clock import SystemClock

log = logging.getLogger(__name__)

_WAKE, _SETTLE, _STOP = "wake", "settle", "stop"
START_TIMEOUT_S = 60.0
RESPAWN_DELAY_S = 1.0


class AlertProcess:
    """Runs an `AlertWorker` (system clock) in a child process; the ingest listener only sends it a wake-up."""

    def __init__(self, db_path: Path, policy: Policy, secret: str, public_url: str, *,
                 snapshot_dir: Path, worker_options: dict[str, Any] | None = None) -> None:
        self.db_path = Path(db_path)
        self.policy = policy
        self._args = (str(self.db_path), policy, secret, public_url, str(snapshot_dir), dict(worker_options or {}),
                      logging.getLogger().level)
        self._conn: Connection | None = None
        self._process: multiprocessing.process.BaseProcess | None = None
        self._lock = threading.Lock()  # one command (and its reply) at a time on the pipe
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None
        self.restarts = 0

    def start(self) -> "AlertProcess":
        """Returns once the worker has pinned its cursors: what ingest stores from now on is looked at."""
        self._spawn()
        self._watcher = threading.Thread(target=self._watch, name="alert-process-watch", daemon=True)
        self._watcher.start()
        return self

    def _spawn(self) -> None:
        context = multiprocessing.get_context("spawn")
        mine, theirs = context.Pipe()
        process = context.Process(target=_serve, args=(theirs, *self._args), name="isowatch-alerts", daemon=True)
        process.start()
        theirs.close()
        if not mine.poll(START_TIMEOUT_S):
            process.kill()
            raise RuntimeError(f"the alert worker did not start within {START_TIMEOUT_S:.0f} s")
        try:
            ready = mine.recv()
        except EOFError:
            process.join(5)
            raise RuntimeError(f"the alert worker exited while starting (exit code {process.exitcode})") from None
        if ready != "ready":
            process.join(5)
            raise RuntimeError(f"the alert worker could not start: {ready}")
        with self._lock:
            self._conn, self._process = mine, process

    def _watch(self) -> None:
        while not self._stopping.is_set():
            process = self._process
            if process is None or not wait([process.sentinel], timeout=1.0) or self._stopping.is_set():
                continue
            self.restarts += 1
            log.error("alert worker exited (code %s); starting it again in %.0f s", process.exitcode,
                      RESPAWN_DELAY_S)
            if self._stopping.wait(RESPAWN_DELAY_S):
                return
            try:
                self._spawn()
            except Exception:
                log.exception("alert worker could not be started again; retrying")

    def _command(self, command: str, reply_timeout: float | None = None) -> object:
        with self._lock:
            if self._conn is None:
                return None
            try:
                self._conn.send(command)
                if reply_timeout is not None and self._conn.poll(reply_timeout):
                    return self._conn.recv()
            except (OSError, EOFError):
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
        self._stopping.set()
        self._command(_STOP, reply_timeout=timeout)
        if self._process is not None:
            self._process.join(5)
            if self._process.is_alive():
                log.error("alert worker did not stop within %.0f s; killing it", timeout)
                self._process.kill()
                self._process.join(5)
        if self._conn is not None:
            self._conn.close()
        if self._watcher is not None:
            self._watcher.join(5)


def _serve(conn: Connection, db_path: str, policy: Policy, secret: str, public_url: str, snapshot_dir: str,
           options: dict[str, Any], log_level: int) -> None:
    # The parent decides when we stop (a Ctrl-C or systemd's SIGTERM reaches the whole process group).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        clock = SystemClock()
        links = AckLinks(secret, clock, ttl_hours=policy.ack_link_ttl_hours)
        worker = AlertWorker(db_path, policy, clock, links, public_url, snapshot_dir=Path(snapshot_dir), **options)
        worker.start()
    except Exception as exc:
        conn.send(f"{type(exc).__name__}: {exc}")
        return
    conn.send("ready")
    while True:
        try:
            command = conn.recv()
        except (EOFError, OSError):
            os._exit(1)  # the gateway died: leave now, as if killed with it, before its successor starts
        if command == _WAKE:
            worker.wake()
        elif command == _SETTLE:
            worker.settle()
            conn.send("settled")
        elif command == _STOP:
            worker.stop()
            conn.send("stopped")
            return
