"""Sensor values become wire-contract readings (isowatch.contract) and go to a `ReadingSink`.

The sink is the edge outbox (the agent's Recorder, or `bridge run`'s DurableUplink) or stdout; all of them
only need `stamp` and `send`, so that is all this module asks for.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime
from typing import Any, Protocol, TypeVar

from firmware_bridge import line_protocol as lp
from isowatch.clock import Clock
from isowatch.contract import ContactReading, DeviceMessage, TemperatureReading
from isowatch.stamper import Stamper

log = logging.getLogger(__name__)

BODY_PLAUSIBLE_C = (34.0, 43.0)  # outside this a body reading is a bad measurement, not a fever

M = TypeVar("M", bound=DeviceMessage)


class ReadingSink(Protocol):
    """What the bridge needs from where its readings go (edge.recorder.Recorder, edge.durable_uplink.DurableUplink)."""

    def stamp(self, model: type[M], *, at: datetime | None = None, **fields: Any) -> M: ...

    def send(self, message: DeviceMessage) -> Any: ...


class TextStream(Protocol):
    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...


class StdoutSink:
    """Prints each stamped message as one line of contract JSON: `bridge run --stdout` and `bridge read`."""

    def __init__(self, device: str = "bench", stream: TextStream | None = None, clock: Clock | None = None) -> None:
        self.stamper = Stamper(device, clock)
        self.stream = stream or sys.stdout
        self.sent: list[DeviceMessage] = []

    def stamp(self, model: type[M], *, at: datetime | None = None, **fields: Any) -> M:
        return self.stamper.stamp(model, at=at, **fields)

    def send(self, message: DeviceMessage) -> None:
        self.sent.append(message)
        self.stream.write(message.model_dump_json() + "\n")
        self.stream.flush()


class MemorySink(StdoutSink):
    """Keeps messages in a list; for tests and for callers that batch."""

    def __init__(self, device: str = "bench", clock: Clock | None = None) -> None:
        super().__init__(device, stream=_NullStream(), clock=clock)


class _NullStream:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def body_plausible(celsius: float) -> bool:
    low, high = BODY_PLAUSIBLE_C
    return low <= celsius <= high


def temperature(
    sink: ReadingSink,
    celsius: float,
    *,
    subject: str,
    method: str | None = None,
    sensor: str | None = None,
    battery_pct: float | None = None,
) -> TemperatureReading:
    """A stamped temperature reading; a body value outside 34-43 C is flagged, never dropped."""
    plausible = body_plausible(celsius) if subject == "body" else True
    if not plausible:
        log.warning("implausible body temperature celsius=%.2f sensor=%s", celsius, sensor)
    return sink.stamp(
        TemperatureReading,
        type="temperature",
        celsius=round(celsius, 2),
        subject=subject,
        method=(method or "unknown") if subject == "body" else None,
        plausible=plausible,
        sensor=sensor or None,
        battery_pct=battery_pct,
    )


def contact(sink: ReadingSink, is_open: bool, *, sensor: str | None = None, battery_pct: float | None = None) -> ContactReading:
    return sink.stamp(ContactReading, type="contact", open=is_open, sensor=sensor or None, battery_pct=battery_pct)


def dumps(message: DeviceMessage) -> str:
    return json.dumps(json.loads(message.model_dump_json()), sort_keys=True)


class FirmwareSession:
    """What the host remembers about one firmware between frames: its id and last battery level.

    HELLO resets it (the microcontroller rebooted); BATT sets the battery level that later readings
    carry, because the contract puts `battery_pct` on each reading rather than in a message of its own.
    """

    def __init__(self) -> None:
        self.device_id: str | None = None
        self.firmware: str | None = None
        self.battery_pct: float | None = None

    def reading(self, frame: lp.Frame, sink: ReadingSink) -> DeviceMessage | None:
        """The contract message for a frame, or None for frames that only update the session."""
        if isinstance(frame, lp.Hello):
            self.device_id, self.firmware, self.battery_pct = frame.device_id, frame.firmware, None
            log.info("firmware hello device_id=%s firmware=%s protocol=%s", frame.device_id, frame.firmware, frame.protocol)
            return None
        if isinstance(frame, lp.Battery):
            self.battery_pct = float(frame.pct)
            return None
        if isinstance(frame, lp.BodyTemperature):
            return temperature(
                sink, frame.celsius, subject="body", method=frame.method, sensor=self._sensor(frame.sensor), battery_pct=self.battery_pct
            )
        if isinstance(frame, lp.AmbientTemperature):
            return temperature(sink, frame.celsius, subject="ambient", sensor=self._sensor(frame.sensor), battery_pct=self.battery_pct)
        if isinstance(frame, lp.DoorContact):
            return contact(sink, frame.open, sensor=self._sensor(frame.sensor), battery_pct=self.battery_pct)
        return None  # ACK/NAK are host frames; a device echoing them is ignored

    def _sensor(self, sensor: str) -> str | None:
        # A frame's own sensor name wins; else the firmware's HELLO id tells which box it came from.
        return sensor or self.device_id
