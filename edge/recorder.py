"""What every input of an edge device records through: stamp a message, then store it in the outbox,
which numbers it; the courier publishes it from there."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar, cast

from edge.outbox import Outbox
from isowatch.contract import DeviceMessage
from isowatch.stamper import Stamper

M = TypeVar("M", bound=DeviceMessage)


class Recorder:
    """The same `stamp`/`send` shape as the uplink, so firmware_bridge loops use either unchanged."""

    def __init__(self, stamper: Stamper, outbox: Outbox) -> None:
        self.stamper = stamper
        self.outbox = outbox

    def stamp(self, model: type[M], *, at: datetime | None = None, **fields: Any) -> M:
        return self.stamper.make(model, 0, at=at, **fields)  # the outbox assigns the real seq

    def send(self, message: M) -> M:
        return self.outbox.add(lambda seq: cast(M, message.model_copy(update={"seq": seq})))  # the same model class
