"""Named exceptions of the firmware bridge; the CLI turns them into click errors."""

from __future__ import annotations


class BridgeError(RuntimeError):
    """Base class: anything the bridge reports to its caller."""


class FrameError(ValueError):
    """One line of the serial protocol was rejected. `reason` is a short stable code that is counted.

    Raised only by the single-line parser; the streaming decoder turns it into a `Rejected` event so
    the read loop never sees an exception for bad input.
    """

    def __init__(self, reason: str, detail: str = "", *, seq: int | None = None, ack: bool = False) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.seq = seq  # known when the header parsed, so the host can NAK
        self.ack = ack


class PortUnavailable(BridgeError):
    """The serial port could not be opened (absent, busy or no permission)."""


class ModbusReadError(BridgeError):
    """A Modbus poll failed: no answer, an exception response, or a short reply."""


class PresetError(BridgeError, KeyError):
    """No Modbus preset by that name."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""
