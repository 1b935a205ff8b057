"""A simulated microcontroller speaking the serial line protocol on a pty: tests, bench and demo.

It behaves as the firmware described in docs/serial-protocol.md should: HELLO at boot with seq 0,
one seq per new frame, the same seq when resending an unacknowledged frame.

    python -m firmware_bridge.simulator /tmp/isowatch-sim   # then: isowatch bridge run --port /tmp/isowatch-sim --stdout
"""

from __future__ import annotations

import argparse
import logging
import random
import signal
import threading
import time
from typing import TypeVar

from firmware_bridge import line_protocol as lp
from firmware_bridge.virtual_port import VirtualPort

log = logging.getLogger(__name__)

F = TypeVar("F", bound=lp.Frame)


class SimulatedFirmware:
    """Writes frames to a VirtualPort's device side and collects the host's ACK/NAK frames."""

    def __init__(self, port: VirtualPort, device_id: str = "sim-01", firmware: str = "1.0.0-sim") -> None:
        self.port = port
        self.device_id = device_id
        self.firmware = firmware
        self.seq = 0
        self.replies: list[lp.Frame] = []
        self._replied = threading.Condition()
        self._stop = threading.Event()
        self._reader: threading.Thread | None = None

    # -- host replies ---------------------------------------------------------------------

    def start(self) -> "SimulatedFirmware":
        self._stop.clear()
        self._reader = threading.Thread(target=self._read_replies, name="sim-firmware-rx", daemon=True)
        self._reader.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._reader is not None:
            self._reader.join(5)
            self._reader = None

    def _read_replies(self) -> None:
        decoder = lp.LineDecoder()
        while not self._stop.is_set():
            data = self.port.read(0.05)
            for event in decoder.feed(data, time.monotonic()) if data else []:
                if isinstance(event, lp.Frame):
                    with self._replied:
                        self.replies.append(event)
                        self._replied.notify_all()

    def wait_reply(self, acked: int, timeout: float = 10.0) -> lp.Frame | None:
        """The host's ACK or NAK for our frame `acked`, or None if none came within `timeout`."""
        deadline = time.monotonic() + timeout
        with self._replied:
            while True:
                for reply in self.replies:
                    if isinstance(reply, (lp.Ack, lp.Nak)) and reply.acked == acked:
                        return reply
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._replied.wait(left)

    # -- sending --------------------------------------------------------------------------

    def reset(self) -> None:
        """Power-on state: seq back to 0, and nothing remembered of what the host said before."""
        self.seq = 0
        with self._replied:
            self.replies.clear()

    def hello_frame(self) -> lp.Hello:
        return lp.Hello(seq=0, ack=True, device_id=self.device_id, firmware=self.firmware)

    def boot(self, ack: bool = True) -> lp.Hello:
        """What the firmware does at power-on: seq restarts at 0 with a HELLO."""
        self.reset()
        return self.send(lp.Hello(seq=0, ack=ack, device_id=self.device_id, firmware=self.firmware))

    def _next(self) -> int:
        seq = self.seq
        self.seq = (self.seq + 1) % (lp.SEQ_MAX + 1)
        return seq

    def send(self, frame: F) -> F:
        """Send a frame as given (its seq is used as is, and the counter moves past it)."""
        self.seq = (frame.seq + 1) % (lp.SEQ_MAX + 1)
        self.port.write(lp.encode(frame))
        return frame

    def resend(self, frame: lp.Frame) -> None:
        """Retransmission after a missing ACK: same bytes, same seq."""
        self.port.write(lp.encode(frame))

    def send_until_acked(self, frame: lp.Frame, *, timeout: float = 30.0, ack_wait: float = 0.5) -> lp.Frame | None:
        """Send, then resend the same bytes every `ack_wait` s until the host answers or `timeout` passes.

        The spec's firmware gives up after 3 tries; the simulator keeps trying so a test can start it
        before the host has opened the port.
        """
        deadline = time.monotonic() + timeout
        self.send(frame)
        while True:
            reply = self.wait_reply(frame.seq, min(ack_wait, max(0.0, deadline - time.monotonic())))
            if reply is not None or time.monotonic() >= deadline:
                return reply
            self.resend(frame)

    def write_raw(self, data: bytes) -> None:
        self.port.write(data)

    def body(self, centi_c: int, method: str = "axillary", sensor: str = "", ack: bool = True) -> lp.Frame:
        return self.send(lp.BodyTemperature(seq=self._next(), ack=ack, centi_c=centi_c, method=method, sensor=sensor))

    def ambient(self, centi_c: int, sensor: str = "", ack: bool = False) -> lp.Frame:
        return self.send(lp.AmbientTemperature(seq=self._next(), ack=ack, centi_c=centi_c, sensor=sensor))

    def door(self, is_open: bool, sensor: str = "", ack: bool = True) -> lp.Frame:
        return self.send(lp.DoorContact(seq=self._next(), ack=ack, open=is_open, sensor=sensor))

    def battery(self, pct: int, millivolts: int | None = None, ack: bool = False) -> lp.Frame:
        return self.send(lp.Battery(seq=self._next(), ack=ack, pct=pct, millivolts=millivolts))

    def unplug(self) -> None:
        self.stop()
        self.port.unplug()

    def replug(self) -> None:
        """Plugged back: a new pty behind the same link, and the board reboots (USB powers it)."""
        self.port.plug()
        with self._replied:
            self.replies.clear()  # answers from before the unplug are not answers to what we send now
        self.start()

    def __enter__(self) -> "SimulatedFirmware":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def demo_readings(sim: SimulatedFirmware, interval: float, stop: threading.Event) -> None:
    """Readings every `interval` s, behaving as section 6 of the spec asks: resend, then HELLO again."""
    rng = random.Random()
    door_open = False
    greeted = False
    while not stop.is_set():
        if not greeted:
            sim.reset()
            greeted = sim.send_until_acked(sim.hello_frame(), timeout=interval) is not None
            continue
        sim.battery(rng.randint(80, 100))
        sim.ambient(rng.randint(1800, 2600))
        body = lp.BodyTemperature(seq=sim.seq, ack=True, centi_c=rng.randint(3600, 3760), method="axillary")
        greeted = sim.send_until_acked(body, timeout=2.0) is not None  # 500 ms x (1 + 3 resends)
        if greeted and rng.random() < 0.3:
            door_open = not door_open
            door = lp.DoorContact(seq=sim.seq, ack=True, open=door_open, sensor="front")
            greeted = sim.send_until_acked(door, timeout=2.0) is not None
        stop.wait(interval)


def main() -> None:
    parser = argparse.ArgumentParser(description="Simulated isowatch firmware on a pty behind LINK.")
    parser.add_argument("link", help="symlink path to create, e.g. /tmp/isowatch-sim")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between reading bursts")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())  # so the link is removed on a plain kill
    with VirtualPort(args.link) as port, SimulatedFirmware(port) as sim:
        print(f"simulated firmware on {args.link} -> {port.slave_name}", flush=True)
        try:
            demo_readings(sim, args.interval, stop)
        except KeyboardInterrupt:
            stop.set()


if __name__ == "__main__":
    main()
