"""One device's outbox, uplink and courier, for a process that publishes a device's readings without the
whole edge agent (`isowatch bridge run`).

A reading is on disk before `send` returns (so before the sensor gets its ACK) and leaves the outbox only
when the gateway says it has stored it: a broker that dies after its PUBACK, or this process restarting
while the broker is down, loses nothing. The edge agent composes the same three pieces itself.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from edge.courier import Courier
from edge.outbox import Outbox
from edge.recorder import Recorder
from edge.uplink import DeviceIdentity, Uplink
from isowatch.broker import BrokerUrl
from isowatch.clock import Clock
from isowatch.contract import DeviceMessage
from isowatch.stamper import Stamper

M = TypeVar("M", bound=DeviceMessage)


class DurableUplink:
    """`stamp`/`send` like the uplink (a firmware_bridge `ReadingSink`), through the outbox."""

    def __init__(self, broker: BrokerUrl | str, identity: DeviceIdentity, outbox_path: Path | str, *,
                 clock: Clock | None = None, resend_after_s: float = 20.0, reconnect_max_s: int = 30) -> None:
        self.outbox = Outbox(outbox_path)
        stamper = Stamper(identity.device, clock)
        self.uplink = Uplink(broker, identity, stamper=stamper, reconnect_max_s=reconnect_max_s)
        self.courier = Courier(self.outbox, self.uplink, resend_after_s=resend_after_s)
        self.recorder = Recorder(stamper, self.outbox)

    def start(self) -> "DurableUplink":
        """Record at once; the courier publishes whenever the broker is (or comes) up."""
        self.uplink.start(wait=0)
        self.courier.start()
        return self

    def stamp(self, model: type[M], *, at: datetime | None = None, **fields: Any) -> M:
        return self.recorder.stamp(model, at=at, **fields)

    def send(self, message: M) -> M:
        return self.recorder.send(message)

    def stop(self, flush_timeout: float = 5.0) -> None:
        """Give the gateway a moment to acknowledge what is out; the rest stays in the outbox for next time."""
        self.courier.stop(flush_timeout=flush_timeout)
        self.uplink.stop()
        self.outbox.close()
