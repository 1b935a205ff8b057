"""Simulated households: edge nodes that publish door events, heartbeats and temperature readings
through the real MQTT path (their own credentials, the real uplink), for the demo and load tests."""

from __future__ import annotations

import logging
import random
import threading
from dataclasses import dataclass

from edge.uplink import DeviceIdentity, Uplink
from isowatch.broker import BrokerUrl
from isowatch.contract import DoorEvent, Heartbeat, TemperatureReading

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SimulationPace:
    """Seconds between things happening; the demo compresses a day into seconds."""

    heartbeat_s: float = 30.0
    reading_s: tuple[float, float] = (8.0, 15.0)
    door_gap_s: tuple[float, float] = (6.0, 20.0)
    door_open_s: tuple[float, float] = (2.0, 6.0)
    fever_share: float = 0.1


class SimulatedHousehold:
    """One household's edge node in a thread: its own uplink, its own random but seeded life."""

    def __init__(self, broker: BrokerUrl, identity: DeviceIdentity, pace: SimulationPace, seed: int) -> None:
        self.identity = identity
        self.pace = pace
        self.rng = random.Random(seed)
        self.uplink = Uplink(broker, identity)
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"household-{identity.household}", daemon=True)

    def start(self) -> "SimulatedHousehold":
        self.uplink.start()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.uplink.stop()

    def _send(self, message) -> None:  # type: ignore[no-untyped-def]
        self.uplink.send(message)
        self.sent += 1

    def _run(self) -> None:
        clock = self.uplink.stamper.clock
        start = clock.monotonic()
        next_heartbeat = start
        next_reading = start + self.rng.uniform(1.0, self.pace.reading_s[0])
        next_door = start + self.rng.uniform(1.0, self.pace.door_gap_s[0])
        open_event: DoorEvent | None = None
        close_at = 0.0
        while not self._stop.wait(0.1):
            now = clock.monotonic()
            if now >= next_heartbeat:
                self._send(self.uplink.stamp(Heartbeat, type="heartbeat", uptime_s=now - start, fps=10.0))
                next_heartbeat = now + self.pace.heartbeat_s
            if now >= next_reading:
                fever = self.rng.random() < self.pace.fever_share
                celsius = round(self.rng.gauss(38.4 if fever else 36.6, 0.2), 1)
                self._send(self.uplink.stamp(TemperatureReading, type="temperature", celsius=celsius,
                                             subject="body", method="axillary", plausible=34 <= celsius <= 43))
                next_reading = now + self.rng.uniform(*self.pace.reading_s)
            if open_event is None and now >= next_door:
                open_event = self.uplink.stamp(DoorEvent, type="door", state="open")
                self._send(open_event)
                close_at = now + self.rng.uniform(*self.pace.door_open_s)
            elif open_event is not None and now >= close_at:
                duration = round((self.uplink.stamper.clock.now() - open_event.device_time).total_seconds(), 2)
                self._send(self.uplink.stamp(DoorEvent, type="door", state="closed", opening_id=open_event.id,
                                             duration_s=duration, exit_suspected=self.rng.random() < 0.2))
                open_event = None
                next_door = now + self.rng.uniform(*self.pace.door_gap_s)
