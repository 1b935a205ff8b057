"""The isowatch serial line protocol v1 (docs/serial-protocol.md): CRC, frame codec and a streaming decoder.

A frame is one ASCII line, `$IW1,<seq>,<A|N>,<TYPE>[,<field>...]*<CRC16>\\r\\n`. ASCII because an
installer can read it with any serial terminal; a CRC because USB-serial and RS-485 cables in
corridors do flip bits. The decoder never raises on bad input: it returns `Rejected` events that
the link counts and logs.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

from firmware_bridge.errors import FrameError

PROTOCOL_TAG = "IW1"  # "IW" + major version; a host drops frames of another major version
PROTOCOL_VERSION = "1.0"  # major.minor as sent in HELLO; minor versions only add
MAX_LINE = 128  # bytes from '$' to '\n' inclusive; a longer line is dropped as "overflow"
PARTIAL_FRAME_TIMEOUT_S = 1.0  # a started frame with no end after this long is dropped as "timeout"
SEQ_MAX = 2**32 - 1  # the firmware's uint32_t sequence counter wraps to 0 after this

CENTI_C_MIN = -4000  # -40.00 C: below, no thermometer we support is working
CENTI_C_MAX = 12500  # 125.00 C: the contract's upper bound for a sensor value
METHODS = ("oral", "axillary", "tympanic", "forehead", "rectal", "unknown")

_INT = re.compile(r"^-?(0|[1-9][0-9]{0,9})$")
_DEVICE_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_FIRMWARE = re.compile(r"^[A-Za-z0-9._+-]{1,24}$")
_SENSOR = re.compile(r"^[A-Za-z0-9_-]{0,16}$")
_VERSION = re.compile(r"^([0-9]{1,3})\.([0-9]{1,3})$")
_CRC_HEX = re.compile(rb"^[0-9A-Fa-f]{4}$")


def crc16_ccitt_false(data: bytes) -> int:
    """CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, no final xor; check("123456789") = 0x29B1.

    Bitwise on purpose: it is the same twelve lines the firmware writes in C (see the document).
    """
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


# ---------------------------------------------------------------------------------------------
# Frames


@dataclass(frozen=True, kw_only=True)
class Frame:
    """Common header: the sender's sequence number and whether it wants an ACK."""

    TYPE: ClassVar[str] = ""
    seq: int
    ack: bool = False

    def fields(self) -> list[str]:
        """The type's own fields, as sent after the type name."""
        return []

    def body(self) -> str:
        fields = self.fields()
        while fields and fields[-1] == "":
            fields.pop()  # optional trailing fields left empty are not sent at all
        header = [PROTOCOL_TAG, str(self.seq), "A" if self.ack else "N", self.TYPE]
        return ",".join(header + fields)

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.TYPE, **asdict(self)}


@dataclass(frozen=True, kw_only=True)
class Hello(Frame):
    """Sent at boot (seq 0) and whenever the firmware thinks the host may have restarted."""

    TYPE: ClassVar[str] = "HELLO"
    device_id: str
    firmware: str
    protocol: str = PROTOCOL_VERSION

    def fields(self) -> list[str]:
        return [self.device_id, self.firmware, self.protocol]


@dataclass(frozen=True, kw_only=True)
class BodyTemperature(Frame):
    TYPE: ClassVar[str] = "BODY"
    centi_c: int
    method: str = "unknown"
    sensor: str = ""

    @property
    def celsius(self) -> float:
        return self.centi_c / 100

    def fields(self) -> list[str]:
        return [str(self.centi_c), self.method, self.sensor]


@dataclass(frozen=True, kw_only=True)
class AmbientTemperature(Frame):
    TYPE: ClassVar[str] = "AMB"
    centi_c: int
    sensor: str = ""

    @property
    def celsius(self) -> float:
        return self.centi_c / 100

    def fields(self) -> list[str]:
        return [str(self.centi_c), self.sensor]


@dataclass(frozen=True, kw_only=True)
class DoorContact(Frame):
    TYPE: ClassVar[str] = "DOOR"
    open: bool
    sensor: str = ""

    def fields(self) -> list[str]:
        return ["open" if self.open else "closed", self.sensor]


@dataclass(frozen=True, kw_only=True)
class Battery(Frame):
    TYPE: ClassVar[str] = "BATT"
    pct: int
    millivolts: int | None = None

    def fields(self) -> list[str]:
        return [str(self.pct)] + ([] if self.millivolts is None else [str(self.millivolts)])


@dataclass(frozen=True, kw_only=True)
class Ack(Frame):
    """Host -> device: the frame with sequence number `acked` was received and is being forwarded."""

    TYPE: ClassVar[str] = "ACK"
    acked: int

    def fields(self) -> list[str]:
        return [str(self.acked)]


@dataclass(frozen=True, kw_only=True)
class Nak(Frame):
    """Host -> device: frame `acked` arrived intact but was refused; resending it will not help."""

    TYPE: ClassVar[str] = "NAK"
    acked: int
    reason: str

    def fields(self) -> list[str]:
        return [str(self.acked), self.reason]


FRAME_TYPES: dict[str, type[Frame]] = {
    cls.TYPE: cls for cls in (Hello, BodyTemperature, AmbientTemperature, DoorContact, Battery, Ack, Nak)
}


def encode(frame: Frame) -> bytes:
    """The frame as it goes on the wire, CRC and CRLF included."""
    body = frame.body().encode("ascii")
    line = b"$" + body + b"*" + f"{crc16_ccitt_false(body):04X}".encode() + b"\r\n"
    if len(line) > MAX_LINE:
        raise FrameError("overflow", f"{len(line)} bytes > {MAX_LINE}")
    return line


# ---------------------------------------------------------------------------------------------
# Parsing one line


def _int(text: str, name: str, lo: int, hi: int, seq: int | None = None, ack: bool = False) -> int:
    if not _INT.match(text):
        raise FrameError("bad_field", f"{name} is not a decimal integer: {text[:16]!r}", seq=seq, ack=ack)
    value = int(text)
    if not lo <= value <= hi:
        raise FrameError("bad_value", f"{name}={value} outside {lo}..{hi}", seq=seq, ack=ack)
    return value


def _match(pattern: re.Pattern[str], text: str, name: str, seq: int, ack: bool) -> str:
    if not pattern.match(text):
        raise FrameError("bad_field", f"bad {name}: {text[:32]!r}", seq=seq, ack=ack)
    return text


def parse_line(line: bytes) -> Frame:
    """One complete line, with or without its CR/LF. Raises FrameError with a stable reason code."""
    line = line.rstrip(b"\n").rstrip(b"\r")
    if not line.startswith(b"$"):
        raise FrameError("bad_frame", "does not start with '$'")
    if len(line) + 2 > MAX_LINE:
        raise FrameError("overflow", f"{len(line) + 2} bytes > {MAX_LINE}")
    star = line.rfind(b"*")
    if star < 0:
        raise FrameError("bad_frame", "no '*' before the checksum")
    body, crc_text = line[1:star], line[star + 1 :]
    if not _CRC_HEX.match(crc_text):
        raise FrameError("bad_frame", "checksum is not 4 hex digits")
    if int(crc_text, 16) != crc16_ccitt_false(body):
        raise FrameError("bad_checksum", f"got {crc_text.decode()} want {crc16_ccitt_false(body):04X}")
    # The CRC is good from here on, so what follows is the sender's mistake, not line noise.
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise FrameError("bad_frame", "non-ASCII byte in frame") from None
    if not text.isprintable() or "$" in text:
        raise FrameError("bad_frame", "control character or '$' in frame")
    parts = text.split(",")
    if parts[0] != PROTOCOL_TAG:
        if re.match(r"^IW[0-9]+$", parts[0]):
            raise FrameError("unsupported_version", f"protocol tag {parts[0]!r}")
        raise FrameError("bad_frame", f"unknown protocol tag {parts[0][:8]!r}")
    if len(parts) < 4:
        raise FrameError("bad_frame", "header needs tag, seq, ack flag and type")
    seq = _int(parts[1], "seq", 0, SEQ_MAX)
    if parts[2] not in ("A", "N"):
        raise FrameError("bad_field", f"ack flag must be A or N, got {parts[2][:4]!r}", seq=seq)
    ack = parts[2] == "A"
    kind, args = parts[3], parts[4:]
    if kind not in FRAME_TYPES:
        raise FrameError("unknown_type", f"{kind[:16]!r}", seq=seq, ack=ack)
    return _build(kind, args, seq, ack)


def _arg(args: list[str], index: int, default: str | None = None) -> str:
    if index < len(args):
        return args[index]
    if default is None:
        raise IndexError(index)
    return default


def _build(kind: str, args: list[str], seq: int, ack: bool) -> Frame:
    # Trailing fields beyond the ones we know are ignored: a later 1.x firmware may add some.
    try:
        if kind == "HELLO":
            version = _match(_VERSION, _arg(args, 2), "protocol version", seq, ack)
            if version.split(".")[0] != PROTOCOL_VERSION.split(".")[0]:
                raise FrameError("unsupported_version", f"HELLO protocol {version}", seq=seq, ack=ack)
            return Hello(
                seq=seq,
                ack=ack,
                device_id=_match(_DEVICE_ID, _arg(args, 0), "device id", seq, ack),
                firmware=_match(_FIRMWARE, _arg(args, 1), "firmware version", seq, ack),
                protocol=version,
            )
        if kind == "BODY":
            method = _arg(args, 1)
            if method not in METHODS:
                raise FrameError("bad_field", f"unknown method {method[:16]!r}", seq=seq, ack=ack)
            return BodyTemperature(
                seq=seq,
                ack=ack,
                centi_c=_int(_arg(args, 0), "centi_c", CENTI_C_MIN, CENTI_C_MAX, seq, ack),
                method=method,
                sensor=_match(_SENSOR, _arg(args, 2, ""), "sensor", seq, ack),
            )
        if kind == "AMB":
            return AmbientTemperature(
                seq=seq,
                ack=ack,
                centi_c=_int(_arg(args, 0), "centi_c", CENTI_C_MIN, CENTI_C_MAX, seq, ack),
                sensor=_match(_SENSOR, _arg(args, 1, ""), "sensor", seq, ack),
            )
        if kind == "DOOR":
            state = _arg(args, 0)
            if state not in ("open", "closed"):
                raise FrameError("bad_field", f"door state must be open or closed, got {state[:8]!r}", seq=seq, ack=ack)
            return DoorContact(
                seq=seq, ack=ack, open=state == "open", sensor=_match(_SENSOR, _arg(args, 1, ""), "sensor", seq, ack)
            )
        if kind == "BATT":
            mv_text = _arg(args, 1, "")
            return Battery(
                seq=seq,
                ack=ack,
                pct=_int(_arg(args, 0), "pct", 0, 100, seq, ack),
                millivolts=_int(mv_text, "millivolts", 0, 65535, seq, ack) if mv_text else None,
            )
        if kind == "ACK":
            return Ack(seq=seq, ack=ack, acked=_int(_arg(args, 0), "acked", 0, SEQ_MAX, seq, ack))
        if kind == "NAK":
            return Nak(
                seq=seq,
                ack=ack,
                acked=_int(_arg(args, 0), "acked", 0, SEQ_MAX, seq, ack),
                reason=_match(re.compile(r"^[a-z_]{1,24}$"), _arg(args, 1), "reason", seq, ack),
            )
    except IndexError:
        raise FrameError("bad_frame", f"{kind} has too few fields", seq=seq, ack=ack) from None
    raise AssertionError(f"FRAME_TYPES and _build disagree on {kind}")  # pragma: no cover


# ---------------------------------------------------------------------------------------------
# Streaming


@dataclass(frozen=True)
class Rejected:
    """Something on the line that was not a valid frame; `seq`/`ack` are set when the header parsed."""

    reason: str
    detail: str = ""
    seq: int | None = None
    ack: bool = False


RejectReason = Literal[
    "bad_checksum",
    "bad_frame",
    "bad_field",
    "bad_value",
    "unknown_type",
    "unsupported_version",
    "overflow",
    "truncated",
    "timeout",
]


@dataclass
class LineDecoder:
    """Turns a byte stream, cut anywhere into chunks, into frames and rejections.

    Resynchronises on every '$': bytes outside a frame are counted as garbage (CR and LF between
    frames are not), a '$' inside a frame starts a new frame and drops the old one as "truncated",
    a line longer than MAX_LINE is dropped and everything up to the next '$' skipped.
    """

    partial_timeout_s: float = PARTIAL_FRAME_TIMEOUT_S
    garbage_bytes: int = 0
    _buf: bytearray = field(default_factory=bytearray)
    _in_frame: bool = False
    _skipping: bool = False  # after an overflow, until the next '$'
    _started_at: float = 0.0

    def feed(self, data: bytes, now: float = 0.0) -> list[Frame | Rejected]:
        out: list[Frame | Rejected] = []
        if self._in_frame and data and now - self._started_at > self.partial_timeout_s:
            out.append(Rejected("timeout", f"partial frame of {len(self._buf)} bytes went stale"))
            self._reset()
        for byte in data:
            if byte == 0x24:  # '$'
                if self._in_frame:
                    out.append(Rejected("truncated", f"new '$' after {len(self._buf)} bytes"))
                self._buf = bytearray(b"$")
                self._in_frame, self._skipping, self._started_at = True, False, now
                continue
            if not self._in_frame:
                if byte not in (0x0D, 0x0A) or self._skipping:
                    self.garbage_bytes += 1
                continue
            self._buf.append(byte)
            if byte == 0x0A:
                out.append(self._finish())
            elif len(self._buf) >= MAX_LINE:
                out.append(Rejected("overflow", f"no end of line within {MAX_LINE} bytes"))
                self._reset()
                self._skipping = True
        return out

    def expire(self, now: float) -> list[Rejected]:
        """Drop a partial frame that stopped arriving; called on read timeouts (a cable pulled mid-frame)."""
        if self._in_frame and now - self._started_at > self.partial_timeout_s:
            size = len(self._buf)
            self._reset()
            return [Rejected("timeout", f"partial frame of {size} bytes went stale")]
        return []

    def _finish(self) -> Frame | Rejected:
        line = bytes(self._buf)
        self._reset()
        try:
            return parse_line(line)
        except FrameError as exc:
            return Rejected(exc.reason, exc.detail, exc.seq, exc.ack)

    def _reset(self) -> None:
        self._buf = bytearray()
        self._in_frame = False
