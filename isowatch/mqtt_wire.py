"""MQTT 3.1.1 packets on the wire: the few the gateway and the simulator write or slice by hand.

paho encodes and decodes for us wherever its speed will do. Two places need bytes of their own:
the gateway's ingest reads the broker's stream in large chunks and slices every PUBLISH out of it in one
pass, and writes its PUBACKs and its devices' QoS 0 GatewayAcks as one pre-built write
(docs/benchmarks.md); the simulator publishes on a bare socket because a paho client per
device would be the benchmark's bottleneck. Both go through this module, and tests/test_mqtt_wire.py
checks it against paho's own encoder and decoder in both directions.

Input from the wire never raises anything but `MalformedFrame`. Arguments a caller gets wrong (a QoS
of 3, a packet id of 70,000) raise `ValueError`: that is a bug here, not a broker's fault.
Stdlib only: this is the ground layer.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from typing import NamedTuple

# First byte of each packet type (MQTT 3.1.1 section 2.2.1). PUBREL carries the flags 0b0010 the
# standard requires of it; the others here carry none.
CONNECT = 0x10
CONNACK = 0x20
PUBLISH = 0x30
PUBACK = 0x40
PUBREC = 0x50
PUBREL = 0x62
PUBCOMP = 0x70

MAX_REMAINING_LENGTH = 268_435_455  # 0xFF 0xFF 0xFF 0x7F: the largest four 7-bit digits can hold
MAX_PACKET_ID = 0xFFFF
MAX_STRING_BYTES = 0xFFFF  # a topic is a two-byte length and that many bytes

_ACK_TYPES = frozenset((PUBACK, PUBREC, PUBREL & 0xF0, PUBCOMP))
# Frame(...) and Publish(...) run a Python-level __new__; the tuple's own is a third of the cost, and
# the reader builds two per PUBLISH on the gateway's hot path.
_new_tuple = tuple.__new__


class MalformedFrame(ValueError):
    """Bytes from the wire that are no MQTT 3.1.1 packet we can read.

    The standard's answer is to close the connection ([MQTT-4.8.0-1]); the stream cannot be
    resynchronised, since nothing marks where the next packet starts."""


# -- remaining length ---------------------------------------------------------------------------------


def encode_remaining_length(length: int) -> bytes:
    """The fixed header's length of what follows: 7 bits a byte, least significant first, 1-4 bytes."""
    if not 0 <= length <= MAX_REMAINING_LENGTH:
        raise ValueError(f"remaining length {length} outside 0..{MAX_REMAINING_LENGTH}")
    if length < 0x80:  # nearly every packet the gateway writes
        return bytes((length,))
    out = bytearray()
    while True:
        digit, length = length & 0x7F, length >> 7
        out.append(digit | 0x80 if length else digit)
        if not length:
            return bytes(out)


def decode_remaining_length(data: bytes | bytearray, pos: int = 0) -> tuple[int, int] | None:
    """The remaining length starting at `data[pos]` and the index after it; None while it is cut short.

    A fourth byte with its continuation bit set is malformed as soon as it arrives: waiting for a fifth
    would let a broken peer hold the reader forever. Non-minimal encodings (0x80 0x00 for 0) are
    accepted, as MQTT 3.1.1 and paho accept them."""
    length, end = 0, len(data)
    for i in range(4):
        if pos + i >= end:
            return None
        digit = data[pos + i]
        length |= (digit & 0x7F) << (7 * i)
        if not digit & 0x80:
            return length, pos + i + 1
    raise MalformedFrame("remaining length longer than 4 bytes")


# -- encoders ---------------------------------------------------------------------------------------


def packet(first_byte: int, body: bytes) -> bytes:
    """One whole packet: the first byte (type and flags), the remaining length, the body."""
    if not 0 <= first_byte <= 0xFF:
        raise ValueError(f"first byte {first_byte} is not a byte")
    return b"".join((bytes((first_byte,)), encode_remaining_length(len(body)), body))


def encode_string(value: str | bytes) -> bytes:
    """An MQTT string: a two-byte big-endian length, then the UTF-8 bytes (bytes are taken as given)."""
    data = value.encode() if isinstance(value, str) else value
    if len(data) > MAX_STRING_BYTES:
        raise ValueError(f"string of {len(data)} bytes, more than {MAX_STRING_BYTES}")
    return struct.pack("!H", len(data)) + data


def publish(topic: str | bytes, payload: bytes = b"", *, qos: int = 0, retain: bool = False, dup: bool = False,
            packet_id: int = 0) -> bytes:
    """A PUBLISH packet. `topic` as text (UTF-8 encoded here) or as the bytes to send.

    A retained PUBLISH with an empty payload clears the topic's retained message. The topic's content
    (wildcards, levels) is the contract's business, not the wire's; only its framing is checked here.
    QoS 0 takes no packet id and no DUP flag ([MQTT-2.3.1-5], [MQTT-3.3.1-2]); QoS 1 and 2 need a
    non-zero one ([MQTT-2.3.1-1])."""
    if qos not in (0, 1, 2):
        raise ValueError(f"QoS {qos} is not 0, 1 or 2")
    if qos == 0 and (packet_id or dup):
        raise ValueError("a QoS 0 PUBLISH has no packet id and no DUP flag")
    if qos and not 0 < packet_id <= MAX_PACKET_ID:
        raise ValueError(f"packet id {packet_id} outside 1..{MAX_PACKET_ID}")
    name = topic.encode() if isinstance(topic, str) else topic
    if not name:
        raise ValueError("a PUBLISH needs a topic of at least one byte")
    first_byte = PUBLISH | dup << 3 | qos << 1 | retain
    variable = encode_string(name) + (struct.pack("!H", packet_id) if qos else b"")
    return b"".join((bytes((first_byte,)), encode_remaining_length(len(variable) + len(payload)), variable, payload))


def _ack(first_byte: int, packet_id: int) -> bytes:
    if not 0 < packet_id <= MAX_PACKET_ID:
        raise ValueError(f"packet id {packet_id} outside 1..{MAX_PACKET_ID}")
    return struct.pack("!BBH", first_byte, 2, packet_id)


def puback(packet_id: int) -> bytes:
    """QoS 1, receiver to sender: the message is ours now (the gateway sends it only after the commit)."""
    return _ack(PUBACK, packet_id)


def pubrec(packet_id: int) -> bytes:
    """QoS 2, step 1 of 3, receiver to sender: received."""
    return _ack(PUBREC, packet_id)


def pubrel(packet_id: int) -> bytes:
    """QoS 2, step 2 of 3, sender to receiver: release it (first byte 0x62, flags required)."""
    return _ack(PUBREL, packet_id)


def pubcomp(packet_id: int) -> bytes:
    """QoS 2, step 3 of 3, receiver to sender: complete."""
    return _ack(PUBCOMP, packet_id)


def pubacks(packet_ids: Iterable[int]) -> bytes:
    """PUBACKs back to back in one call: a committed batch of 2,000 is acknowledged as one write."""
    ids = list(packet_ids)
    if ids and (min(ids) < 1 or max(ids) > MAX_PACKET_ID):
        raise ValueError(f"a packet id outside 1..{MAX_PACKET_ID} in {ids[:20]}")
    # PUBACK is 0x40 0x02 and the id: one 32-bit word each, packed in one call.
    return struct.pack(f"!{len(ids)}I", *[0x4002_0000 | packet_id for packet_id in ids])


# -- decoders ---------------------------------------------------------------------------------------


class Frame(NamedTuple):
    """One whole packet as sliced from the stream: its first byte and its body (after the length)."""

    first_byte: int
    body: bytes

    @property
    def packet_type(self) -> int:
        return self.first_byte & 0xF0


class Publish(NamedTuple):
    """A decoded PUBLISH. The topic stays bytes: a topic that is not UTF-8 is a message to reject and
    count (gateway.store_process.classify), not a reason to drop the broker connection."""

    topic: bytes
    payload: bytes
    packet_id: int  # 0 at QoS 0
    qos: int
    retain: bool
    dup: bool

    @property
    def topic_text(self) -> str:
        """The topic as text; raises UnicodeDecodeError if it is not UTF-8."""
        return self.topic.decode("utf-8")


def decode_publish(first_byte: int, body: bytes) -> Publish:
    """Read a PUBLISH's body (everything after the remaining length).

    Malformed: QoS 3 ([MQTT-3.3.1-4]: the receiver must close the connection), a topic length running
    past the body, a QoS 1/2 PUBLISH without its packet id or with id 0 (it could never be acknowledged
    apart from the others). Accepted as the broker sends it: an empty topic, a topic that is not UTF-8,
    DUP on QoS 0; the contract rejects and counts what it cannot use."""
    if first_byte & 0xF0 != PUBLISH:
        raise MalformedFrame(f"first byte 0x{first_byte:02x} is not a PUBLISH")
    qos = (first_byte >> 1) & 3
    if qos == 3:
        raise MalformedFrame("PUBLISH with QoS 3")
    size = len(body)
    if size < 2:
        raise MalformedFrame("PUBLISH too short for its topic length")
    topic_end = 2 + (body[0] << 8 | body[1])
    payload_start = topic_end + 2 if qos else topic_end
    if payload_start > size:
        raise MalformedFrame("PUBLISH cut short inside its topic" if topic_end > size else
                             "PUBLISH cut short before its packet id")
    packet_id = body[topic_end] << 8 | body[topic_end + 1] if qos else 0
    if qos and not packet_id:
        raise MalformedFrame(f"QoS {qos} PUBLISH with packet id 0")
    return _new_tuple(Publish, (body[2:topic_end], body[payload_start:], packet_id, qos, bool(first_byte & 1),
                                bool(first_byte & 8)))


def decode_ack(first_byte: int, body: bytes) -> int:
    """The packet id of a PUBACK, PUBREC, PUBREL or PUBCOMP (MQTT 3.1.1: exactly two bytes, not 0)."""
    if first_byte & 0xF0 not in _ACK_TYPES:
        raise MalformedFrame(f"first byte 0x{first_byte:02x} is no PUBACK, PUBREC, PUBREL or PUBCOMP")
    if len(body) != 2:
        raise MalformedFrame(f"acknowledgement of {len(body)} bytes, not 2")
    packet_id = body[0] << 8 | body[1]
    if not packet_id:
        raise MalformedFrame("acknowledgement of packet id 0")
    return packet_id


class FrameReader:
    """Slices a byte stream into whole packets, whatever the boundaries of the reads that bring it.

    A read may end anywhere, inside the length, the topic or the payload; what is incomplete waits for
    the next `feed`. The reader does not judge packet types or flags (the decoders do): it only needs
    each packet's length to find the next. One reader per connection: `reset` on a new one, since a
    tail from the old stream would be read as the start of the new one.
    """

    def __init__(self) -> None:
        self._data = b""
        self._pos = 0

    @property
    def pending(self) -> int:
        """Bytes received but not yet handed out as a whole packet."""
        return len(self._data) - self._pos

    def reset(self) -> None:
        self._data, self._pos = b"", 0

    def feed(self, data: bytes) -> Iterator[Frame]:
        """Add `data`; an iterator over every whole packet now buffered, in order.

        A malformed length raises `MalformedFrame` where it stands, after the packets before it were
        yielded, and again on every later feed until `reset`. A caller that stops iterating early
        leaves the rest buffered for the next feed; read one feed's packets before feeding again.
        `data` is buffered at once, even if the packets are never read (a generator would not)."""
        if self._pos < len(self._data):
            self._data = self._data[self._pos:] + data
        else:
            self._data = bytes(data)
        self._pos = 0
        return self._frames()

    def _frames(self) -> Iterator[Frame]:
        buffered = self._data
        end_of_data = len(buffered)
        pos = 0
        # The gateway's hot path, once per PUBLISH at 10,000 a second: lengths of one and two bytes (up
        # to 16 KiB, every message but a snapshot) are read inline, without a call.
        while end_of_data - pos >= 2:
            length = buffered[pos + 1]
            if length < 0x80:
                start = pos + 2
            elif end_of_data - pos >= 3 and buffered[pos + 2] < 0x80:
                length = (length & 0x7F) | buffered[pos + 2] << 7
                start = pos + 3
            else:
                decoded = decode_remaining_length(buffered, pos + 1)
                if decoded is None:
                    return
                length, start = decoded
            end = start + length
            if end > end_of_data:
                return
            self._pos = end  # before the yield: a caller that stops here finds the rest on its next feed
            yield _new_tuple(Frame, (buffered[pos], buffered[start:end]))
            pos = end
