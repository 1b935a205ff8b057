"""Drains the outbox over the uplink, oldest first, and lets rows go only when the gateway acknowledges them.

A broker that crashes between its PUBACK and the gateway storing the message must not lose anything,
so the broker's PUBACK only frees a slot in the send window; the row stays on disk until a GatewayAck
covers it. Rows not acknowledged in time are sent again (same id: the gateway stores them once), with
the wait doubling while the gateway stays silent so a long gateway outage does not flood the broker.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from edge.outbox import Outbox, Pending
from edge.uplink import Uplink
from isowatch.contract import GatewayAck

log = logging.getLogger(__name__)


@dataclass
class _InFlight:
    seq: int | None
    sha256: str | None
    sent_at: float


class Courier:
    def __init__(
        self,
        outbox: Outbox,
        uplink: Uplink,
        *,
        window: int = 1000,
        resend_after_s: float = 20.0,
        max_resend_after_s: float = 600.0,
    ) -> None:
        self.outbox = outbox
        self.uplink = uplink
        self.window = window
        self.resend_after_s = resend_after_s
        self.max_resend_after_s = max_resend_after_s
        self.sent = 0
        self.resends = 0
        self._wait_s = resend_after_s
        self._lock = threading.Lock()
        self._in_flight: dict[int, _InFlight] = {}
        self._cursor = 0  # last outbox position published on this connection
        self._connection = -1
        self._stop = threading.Event()
        self._wake = threading.Event()  # a row was added, or an ack freed room in the window
        self._thread = threading.Thread(target=self._run, name="courier", daemon=True)
        uplink.on_ack = self.on_ack
        outbox.on_add = self._wake.set

    def start(self) -> "Courier":
        self._thread.start()
        return self

    def stop(self, flush_timeout: float = 5.0) -> None:
        """Give the gateway up to `flush_timeout` to acknowledge what is out, then stop sending."""
        deadline = time.monotonic() + flush_timeout
        while self.outbox.depth() and self.uplink.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        self._stop.set()
        self._wake.set()
        self._thread.join(10)

    def on_ack(self, ack: GatewayAck) -> None:
        """Called on the network thread for each GatewayAck addressed to this device."""
        if self.outbox.acknowledge(ack.ranges, ack.snapshots) is None:
            return  # not forgotten (full disk): left in flight, so they go out again and are acked again
        hashes = set(ack.snapshots)
        with self._lock:
            for pos in [pos for pos, f in self._in_flight.items() if _covered(f, ack.ranges, hashes)]:
                del self._in_flight[pos]
            self._wait_s = self.resend_after_s  # the gateway is alive: back to the short wait
        self._wake.set()

    def in_flight(self) -> int:
        with self._lock:
            return len(self._in_flight)

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.uplink.connected:
                self._stop.wait(0.1)
                continue
            self._maybe_rewind()
            self._wake.clear()  # before looking, so a wake-up that comes while we look is not lost
            with self._lock:
                room = self.window - len(self._in_flight)
            rows = self.outbox.pending(self._cursor, min(room, 500)) if room > 0 else []
            for row in rows:
                self._publish(row)
            if not rows:
                self._wake.wait(0.1)

    def _maybe_rewind(self) -> None:
        """Start again from the oldest row after a reconnect, or when the gateway has been silent too long."""
        now = time.monotonic()
        with self._lock:
            if self.uplink.connections != self._connection:
                self._connection = self.uplink.connections
                reason = "reconnected"
            elif self._in_flight and now - min(f.sent_at for f in self._in_flight.values()) > self._wait_s:
                reason = f"no gateway ack for {self._wait_s:.0f} s"
                self._wait_s = min(self._wait_s * 2, self.max_resend_after_s)
                self.resends += 1
            else:
                return
            self._in_flight.clear()
            self._cursor = 0
        if self.outbox.depth():
            log.info("courier resending from the oldest row depth=%d reason=%s", self.outbox.depth(), reason)

    def _publish(self, row: Pending) -> None:
        with self._lock:
            self._in_flight[row.pos] = _InFlight(row.seq, row.sha256, time.monotonic())
            self._cursor = row.pos
        self.uplink.send_raw(row.kind, row.payload, row.event_id)
        self.sent += 1


def _covered(flight: _InFlight, ranges: list[tuple[int, int]], hashes: set[str]) -> bool:
    if flight.sha256 is not None:
        return flight.sha256 in hashes
    return flight.seq is not None and any(first <= flight.seq <= last for first, last in ranges)
