"""The envelope of a device's messages: its id, the device, the sequence number and the device's time.

Every producer of device messages (edge agent, sensor drivers, simulators) stamps through this one class,
so the envelope's rules live in one place.
"""

from __future__ import annotations

import itertools
import threading
from datetime import datetime
from typing import Any, TypeVar

from isowatch.clock import Clock, SystemClock
from isowatch.contract import DeviceMessage
from isowatch.ids import uuid7

M = TypeVar("M", bound=DeviceMessage)


class Stamper:
    """Fills the envelope (id, device, seq, device_time) of messages made on one device."""

    def __init__(self, device: str, clock: Clock | None = None, first_seq: int = 1) -> None:
        self.device = device
        self.clock = clock or SystemClock()
        self._seq = itertools.count(first_seq)
        self._lock = threading.Lock()

    def make(self, model: type[M], seq: int, *, at: datetime | None = None, **fields: Any) -> M:
        return model(id=uuid7(), device=self.device, seq=seq, device_time=at or self.clock.now(), **fields)

    def stamp(self, model: type[M], *, at: datetime | None = None, **fields: Any) -> M:
        """Number from this object's own counter (simulators; a real device numbers in its outbox)."""
        with self._lock:
            seq = next(self._seq)
        return self.make(model, seq, at=at, **fields)
