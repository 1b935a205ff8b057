"""The serial link to our own firmware: read, decode, acknowledge, count, and reconnect after an unplug.

The configured path is resolved again at every reconnect, so a stable name such as
/dev/serial/by-id/usb-... keeps working when the kernel hands the adapter a new /dev/ttyUSBn.
"""

from __future__ import annotations

import logging
import os
import random
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import serial

from firmware_bridge import line_protocol as lp
from firmware_bridge.errors import PortUnavailable
from isowatch.clock import Clock, SystemClock
from isowatch.log_limit import RateLimitedLog

log = logging.getLogger(__name__)

DEFAULT_BAUDRATE = 115200  # USB CDC and USB-serial adapters; RS-485 installs pass --baud 9600


@dataclass
class LinkCounters:
    """Totals since the link object was made; the edge heartbeat will report them."""

    frames_ok: int = 0
    bad_checksum: int = 0
    bad_frame: int = 0
    bad_field: int = 0
    bad_value: int = 0
    unknown_type: int = 0
    unsupported_version: int = 0
    overflow: int = 0
    truncated: int = 0
    timeout: int = 0
    garbage_bytes: int = 0
    duplicates: int = 0
    acks_sent: int = 0
    naks_sent: int = 0
    disconnects: int = 0
    reconnects: int = 0
    open_failures: int = 0
    silences: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def log_text(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.as_dict().items())


class Backoff:
    """Exponential delay with jitter, capped: 0.5 s, 1 s, 2 s ... 30 s, each +-25 %.

    Jitter so that a dozen bridges on one hub do not hammer it in step after a power blip.
    """

    def __init__(
        self, initial: float = 0.5, cap: float = 30.0, factor: float = 2.0, jitter: float = 0.25, rng: random.Random | None = None
    ) -> None:
        self.initial, self.cap, self.factor, self.jitter = initial, cap, factor, jitter
        self.rng = rng or random.Random()
        self.attempt = 0

    def next(self) -> float:
        base = min(self.cap, self.initial * self.factor**self.attempt)
        self.attempt += 1
        return min(self.cap, base * (1 + self.rng.uniform(-self.jitter, self.jitter)))

    def reset(self) -> None:
        self.attempt = 0


def open_serial(path: str, baudrate: int, timeout: float) -> serial.Serial:
    """Open a serial port 8N1 by path (symlinks resolved by the OS). Raises PortUnavailable."""
    try:
        # exclusive: a second bridge (or a forgotten picocom) on the same port would steal half the bytes.
        return serial.Serial(
            path, baudrate=baudrate, bytesize=8, parity="N", stopbits=1, timeout=timeout, write_timeout=1.0, exclusive=True
        )
    except (serial.SerialException, OSError) as exc:
        raise PortUnavailable(f"cannot open {path}: {exc}") from exc


class SerialLink:
    """Frames from one firmware over one serial port; survives unplugging. Never raises on bad input."""

    def __init__(
        self,
        path: str,
        *,
        baudrate: int = DEFAULT_BAUDRATE,
        read_timeout: float = 0.2,
        backoff: Backoff | None = None,
        clock: Clock | None = None,
        send_acks: bool = True,
        silent_after_s: float = 180.0,
        counters_every_s: float = 60.0,
    ) -> None:
        self.path = path
        self.baudrate = baudrate
        self.read_timeout = read_timeout
        self.backoff = backoff or Backoff()
        self.clock = clock or SystemClock()
        self.send_acks = send_acks
        self.silent_after_s = silent_after_s
        self.counters_every_s = counters_every_s
        self.counters = LinkCounters()
        self.connected = threading.Event()
        self.device_path: str | None = None  # what `path` resolved to when last opened
        self._port: serial.Serial | None = None
        self._decoder = lp.LineDecoder()
        self._host_seq = 0
        self._last_body: str | None = None
        self._unacked: lp.Frame | None = None  # yielded, asked for an ACK, not acknowledged yet
        self._last_frame_at = 0.0
        self._silent = False
        self._counters_logged_at = self.clock.monotonic()
        self._ever_connected = False
        # One warning per reason per 10 s, the rest at debug: a noisy cable cannot flood the log.
        self._warn = RateLimitedLog(log, every_s=10.0, clock=self.clock.monotonic, held_level=logging.DEBUG)

    # -- connection -----------------------------------------------------------------------

    def _open(self) -> bool:
        resolved = os.path.realpath(self.path)
        try:
            self._port = open_serial(resolved, self.baudrate, self.read_timeout)
        except PortUnavailable as exc:
            self.counters.open_failures += 1
            self._warn.log(logging.WARNING, f"serial open failed port={self.path} error={exc}", key="open")
            return False
        self.device_path = resolved
        self._decoder = lp.LineDecoder()  # half a frame from before the unplug means nothing now
        self._last_frame_at = self.clock.monotonic()
        if self._ever_connected:
            self.counters.reconnects += 1
        self._ever_connected = True
        self.connected.set()
        log.info("serial connected port=%s device=%s baud=%d", self.path, resolved, self.baudrate)
        return True

    def _lost(self, why: object) -> None:
        self.counters.disconnects += 1
        log.warning("serial lost port=%s device=%s error=%s", self.path, self.device_path, why)
        self.close()

    def _vanished(self) -> bool:
        """The path is gone or now names another device: the adapter was unplugged (and maybe replugged)."""
        if not os.path.exists(self.path):
            return True
        return os.path.realpath(self.path) != self.device_path

    def close(self) -> None:
        self.connected.clear()
        if self._port is not None:
            try:
                self._port.close()
            except (serial.SerialException, OSError) as exc:  # closing a dead port may fail; it is gone either way
                log.debug("serial close error port=%s error=%s", self.path, exc)
            self._port = None

    # -- reading --------------------------------------------------------------------------

    def frames(self, stop: threading.Event) -> Iterator[lp.Frame]:
        """Yield valid frames until `stop` is set; reconnects with backoff in between."""
        try:
            while not stop.is_set():
                if self._port is None:
                    if not self._open():
                        stop.wait(self.backoff.next())
                        continue
                port = self._port
                assert port is not None  # opened above
                try:
                    data = port.read(max(1, port.in_waiting))
                except (serial.SerialException, OSError) as exc:
                    self._lost(exc)
                    stop.wait(self.backoff.next())
                    continue
                now = self.clock.monotonic()
                if data:
                    events: list[lp.Frame | lp.Rejected] = self._decoder.feed(data, now)
                else:
                    events = list(self._decoder.expire(now))
                    if self._vanished():
                        self._lost("path vanished or points elsewhere")
                        stop.wait(self.backoff.next())
                        continue
                if self._decoder.garbage_bytes:  # moved over so the total survives a new decoder
                    self.counters.garbage_bytes += self._decoder.garbage_bytes
                    self._decoder.garbage_bytes = 0
                for event in events:
                    frame = self._handle(event, now)
                    if frame is not None:
                        self._unacked = frame if frame.ack else None
                        yield frame
                        # The consumer had its turn; if it did not acknowledge explicitly, do it now.
                        if self._unacked is frame:
                            self.acknowledge(frame)
                self._housekeeping(now)
        finally:
            self.close()

    def _handle(self, event: lp.Frame | lp.Rejected, now: float) -> lp.Frame | None:
        if isinstance(event, lp.Rejected):
            setattr(self.counters, event.reason, getattr(self.counters, event.reason) + 1)
            self._warn.log(logging.WARNING, f"frame rejected port={self.path} reason={event.reason} seq={event.seq} "
                           f"detail={event.detail}", key=event.reason)
            if event.ack and event.seq is not None and event.reason != "unsupported_version":
                self.counters.naks_sent += 1  # counted first: whoever sees the NAK sees the count
                self._reply(lp.Nak(seq=self._next_host_seq(), acked=event.seq, reason=event.reason))
            return None
        if isinstance(event, (lp.Ack, lp.Nak)):
            return None  # our own frames echoed back (a loopback plug): not from the firmware
        self._last_frame_at, self._silent = now, False
        self.backoff.reset()  # a good frame means the link really works again
        if event.body() == self._last_body:
            # The firmware resent because our ACK was lost; it is acknowledged again but forwarded once.
            self.counters.duplicates += 1
            log.info("duplicate frame port=%s seq=%d", self.path, event.seq)
            if event.ack:
                self._send_ack(event)
            return None
        self._last_body = event.body()
        self.counters.frames_ok += 1
        return event

    def acknowledge(self, frame: lp.Frame) -> None:
        """ACK a frame the consumer has handed on (to the uplink, later the outbox).

        Acknowledging only after the handover means a bridge that dies in between leaves the frame
        unacknowledged, so the firmware sends it again. Frames not acknowledged by the consumer are
        acknowledged when it asks for the next frame.
        """
        if self._unacked is frame:
            self._unacked = None
            self._send_ack(frame)

    def _send_ack(self, frame: lp.Frame) -> None:
        self.counters.acks_sent += 1
        self._reply(lp.Ack(seq=self._next_host_seq(), acked=frame.seq))

    def _reply(self, frame: lp.Frame) -> None:
        if not self.send_acks or self._port is None:
            return
        try:
            self._port.write(lp.encode(frame))
        except (serial.SerialException, OSError) as exc:
            self._lost(exc)

    def _next_host_seq(self) -> int:
        seq = self._host_seq
        self._host_seq = (self._host_seq + 1) % (lp.SEQ_MAX + 1)
        return seq

    def _housekeeping(self, now: float) -> None:
        if not self._silent and now - self._last_frame_at > self.silent_after_s:
            self._silent = True
            self.counters.silences += 1
            log.warning("firmware silent port=%s seconds=%.0f", self.path, now - self._last_frame_at)
        if now - self._counters_logged_at >= self.counters_every_s:
            self._counters_logged_at = now
            log.info("serial counters port=%s %s", self.path, self.counters.log_text())
