"""isowatch.mqtt_wire against paho's own encoder and decoder, in both directions, over a real socket.

paho is driven through its public API only (connect, publish, on_message), with the test playing the
broker (tests/mqtt_peer.py): what paho writes must read back through our FrameReader and decoder, and
re-encode to the same bytes; what we write paho must read as the same message and acknowledge with the
bytes our encoders write.
"""

from __future__ import annotations

import itertools
import queue
import string
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from isowatch import mqtt_wire
from isowatch.mqtt_wire import Frame, FrameReader, MalformedFrame, Publish
from tests.mqtt_peer import BrokerPeer

WAIT_S = 30.0  # for bytes that should come: a failure after this long, not a timing check

# Remaining lengths where the encoding grows a byte, from MQTT 3.1.1's table in section 2.2.3.
LENGTH_TABLE = [
    (0, b"\x00"),
    (127, b"\x7f"),
    (128, b"\x80\x01"),
    (16_383, b"\xff\x7f"),
    (16_384, b"\x80\x80\x01"),
    (2_097_151, b"\xff\xff\x7f"),
    (2_097_152, b"\x80\x80\x80\x01"),
    (268_435_455, b"\xff\xff\xff\x7f"),
]

# Topics paho will publish on: UTF-8 text of at least one character without wildcards (any language).
topic_texts = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="+#"), min_size=1, max_size=40)
payloads = st.binary(max_size=300)
qos_levels = st.sampled_from([0, 1, 2])
packet_ids = st.integers(1, mqtt_wire.MAX_PACKET_ID)


@st.composite
def publishes(draw: st.DrawFn) -> Publish:
    """Any PUBLISH our encoder may write: QoS 0 has no packet id and no DUP."""
    qos = draw(qos_levels)
    topic = draw(st.one_of(topic_texts.map(str.encode), st.binary(min_size=1, max_size=40)))
    return Publish(topic, draw(payloads), draw(packet_ids) if qos else 0, qos, draw(st.booleans()),
                   draw(st.booleans()) if qos else False)


def encode(message: Publish) -> bytes:
    return mqtt_wire.publish(message.topic, message.payload, qos=message.qos, retain=message.retain,
                             dup=message.dup, packet_id=message.packet_id)


def read_all(reader: FrameReader, chunks: list[bytes]) -> list[Frame]:
    return [frame for chunk in chunks for frame in reader.feed(chunk)]


def cut(data: bytes, cuts: list[int]) -> list[bytes]:
    """`data` in pieces, cut at the given offsets (as recv() might return it)."""
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


# -- remaining length -------------------------------------------------------------------------------


@pytest.mark.parametrize(("length", "encoded"), LENGTH_TABLE)
def test_remaining_length_matches_the_standards_table(length: int, encoded: bytes) -> None:
    assert mqtt_wire.encode_remaining_length(length) == encoded
    assert mqtt_wire.decode_remaining_length(encoded) == (length, len(encoded))
    assert mqtt_wire.decode_remaining_length(b"\x30" + encoded + b"rest", 1) == (length, 1 + len(encoded))


@given(st.integers(0, mqtt_wire.MAX_REMAINING_LENGTH))
def test_remaining_length_round_trips_in_1_to_4_bytes(length: int) -> None:
    encoded = mqtt_wire.encode_remaining_length(length)
    assert len(encoded) == 1 + (length >= 128) + (length >= 16_384) + (length >= 2_097_152)
    assert mqtt_wire.decode_remaining_length(encoded) == (length, len(encoded))
    for short in range(len(encoded)):  # cut short anywhere: not yet known, not an error
        assert mqtt_wire.decode_remaining_length(encoded[:short]) is None


@pytest.mark.parametrize("length", [-1, mqtt_wire.MAX_REMAINING_LENGTH + 1, 1 << 40])
def test_remaining_length_outside_the_standard_is_refused(length: int) -> None:
    with pytest.raises(ValueError, match="remaining length"):
        mqtt_wire.encode_remaining_length(length)


@pytest.mark.parametrize("encoded", [b"\x80\x80\x80\x80", b"\xff\xff\xff\xff\x7f", b"\x80\x80\x80\x80\x01"])
def test_a_fifth_length_byte_is_malformed_without_waiting_for_it(encoded: bytes) -> None:
    with pytest.raises(MalformedFrame, match="longer than 4 bytes"):
        mqtt_wire.decode_remaining_length(encoded)


def test_a_non_minimal_length_is_read_as_paho_and_the_standard_allow() -> None:
    assert mqtt_wire.decode_remaining_length(b"\x80\x00") == (0, 2)


# -- encoders: arguments a caller gets wrong ----------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"qos": 3, "packet_id": 1}, "QoS 3"),
        ({"qos": -1}, "QoS -1"),
        ({"qos": 0, "packet_id": 7}, "no packet id"),
        ({"qos": 0, "dup": True}, "no DUP"),
        ({"qos": 1}, "packet id 0"),
        ({"qos": 2, "packet_id": 65_536}, "packet id 65536"),
    ],
)
def test_publish_refuses_flags_the_standard_forbids(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        mqtt_wire.publish("a/b", b"x", **kwargs)


def test_publish_refuses_an_empty_or_oversized_topic() -> None:
    with pytest.raises(ValueError, match="topic"):
        mqtt_wire.publish("", b"x")
    with pytest.raises(ValueError, match="65536 bytes"):
        mqtt_wire.publish("t" * 65_536, b"x")


@pytest.mark.parametrize("encoder", [mqtt_wire.puback, mqtt_wire.pubrec, mqtt_wire.pubrel, mqtt_wire.pubcomp])
@pytest.mark.parametrize("packet_id", [0, -1, 65_536])
def test_acks_refuse_a_packet_id_outside_1_to_65535(encoder, packet_id: int) -> None:
    with pytest.raises(ValueError, match="packet id"):
        encoder(packet_id)


def test_pubacks_are_the_single_acks_back_to_back() -> None:
    ids = [1, 2, 255, 256, 65_535]
    assert mqtt_wire.pubacks(ids) == b"".join(mqtt_wire.puback(i) for i in ids)
    assert mqtt_wire.pubacks([]) == b""
    with pytest.raises(ValueError, match="packet id"):
        mqtt_wire.pubacks([1, 0])


def test_ack_packets_carry_the_first_bytes_the_standard_requires() -> None:
    assert mqtt_wire.puback(0x1234) == b"\x40\x02\x12\x34"
    assert mqtt_wire.pubrec(0x1234) == b"\x50\x02\x12\x34"
    assert mqtt_wire.pubrel(0x1234) == b"\x62\x02\x12\x34"
    assert mqtt_wire.pubcomp(0x1234) == b"\x70\x02\x12\x34"


# -- reading: split reads, our own round trip --------------------------------------------------------


@given(st.lists(publishes(), min_size=1, max_size=8), st.lists(st.integers(0, 1 << 16), max_size=12))
def test_publishes_read_back_whatever_the_read_boundaries(messages: list[Publish], cuts: list[int]) -> None:
    stream = b"".join(encode(m) for m in messages)
    reader = FrameReader()
    frames = read_all(reader, cut(stream, cuts))
    assert [mqtt_wire.decode_publish(*frame) for frame in frames] == messages
    assert reader.pending == 0


def test_a_stream_fed_one_byte_at_a_time_yields_each_frame_when_its_last_byte_arrives() -> None:
    packets = [mqtt_wire.publish("a", b"p" * 200, qos=1, packet_id=9), mqtt_wire.puback(3), b"\xd0\x00"]
    stream = b"".join(packets)
    last_bytes = {len(b"".join(packets[:k + 1])) - 1 for k in range(len(packets))}
    reader = FrameReader()
    got = []
    for i in range(len(stream)):
        new = list(reader.feed(stream[i:i + 1]))
        assert len(new) == (i in last_bytes)
        got += new
    assert got == list(FrameReader().feed(stream))
    assert mqtt_wire.decode_publish(*got[0]).payload == b"p" * 200
    assert mqtt_wire.decode_ack(*got[1]) == 3
    assert got[2] == Frame(0xD0, b"")  # PINGRESP: a packet with no body at all


def test_a_reader_stopped_early_keeps_the_rest_for_the_next_feed() -> None:
    reader = FrameReader()
    frames = reader.feed(mqtt_wire.puback(1) + mqtt_wire.puback(2) + mqtt_wire.puback(3)[:3])
    assert mqtt_wire.decode_ack(*next(frames)) == 1
    del frames
    assert [mqtt_wire.decode_ack(*f) for f in reader.feed(b"\x03")] == [2, 3]


def test_fed_bytes_are_kept_even_if_their_packets_are_not_read_yet() -> None:
    reader = FrameReader()
    reader.feed(mqtt_wire.puback(1)[:3])
    reader.feed(mqtt_wire.puback(1)[3:] + mqtt_wire.puback(2))  # the first feed's iterator never ran
    assert [mqtt_wire.decode_ack(*f) for f in reader.feed(b"")] == [1, 2]


def test_reset_forgets_a_tail_from_the_last_connection() -> None:
    reader = FrameReader()
    assert list(reader.feed(mqtt_wire.publish("a", b"payload")[:4])) == []
    assert reader.pending == 4
    reader.reset()
    assert list(reader.feed(mqtt_wire.puback(5))) == [Frame(mqtt_wire.PUBACK, b"\x00\x05")]


@pytest.mark.parametrize(("remaining", "length_bytes"), [(127, 1), (128, 2), (16_383, 2), (16_384, 3),
                                                         (2_097_151, 3), (2_097_152, 4)])
def test_payload_sizes_at_each_length_boundary_round_trip(remaining: int, length_bytes: int) -> None:
    overhead = 2 + 1 + 2  # topic length, topic "t", packet id
    message = Publish(b"t", (bytes(range(256)) * (remaining // 256 + 1))[: remaining - overhead], 77, 1, False, False)
    data = encode(message)
    assert len(data) == 1 + length_bytes + remaining
    assert data[1:1 + length_bytes] == mqtt_wire.encode_remaining_length(remaining)
    [frame] = read_all(FrameReader(), cut(data, [1, 2, 3, 4, 5, remaining // 2]))
    assert mqtt_wire.decode_publish(*frame) == message


def test_unicode_topics_are_utf8_on_the_wire() -> None:
    data = mqtt_wire.publish("居家/门/🚪", b"{}")
    assert data[2:4] == len("居家/门/🚪".encode()).to_bytes(2, "big")
    [frame] = FrameReader().feed(data)
    assert mqtt_wire.decode_publish(*frame).topic_text == "居家/门/🚪"


def test_a_topic_that_is_not_utf8_is_still_a_publish_for_the_contract_to_reject() -> None:
    [frame] = FrameReader().feed(mqtt_wire.publish(b"\xff\xfe", b"x"))
    message = mqtt_wire.decode_publish(*frame)
    assert message.topic == b"\xff\xfe"
    with pytest.raises(UnicodeDecodeError):
        _ = message.topic_text


# -- malformed input ----------------------------------------------------------------------------------

MALFORMED = {
    "length over 4 bytes": b"\x30\xff\xff\xff\xff\x01",
    "no room for the topic length": b"\x30\x01\x00",
    "empty body": b"\x30\x00",
    "topic runs past the body": b"\x30\x04\x00\x05ab",
    "QoS 1 without a packet id": b"\x32\x03\x00\x01a",
    "QoS 1 with half a packet id": b"\x32\x04\x00\x01a\x00",
    "QoS 1 with packet id 0": b"\x32\x05\x00\x01a\x00\x00",
    "QoS 2 with packet id 0": b"\x34\x05\x00\x01a\x00\x00",
    "QoS 3": b"\x36\x05\x00\x01a\x00\x01",
    "QoS 3 with DUP and retain": b"\x3f\x05\x00\x01a\x00\x01",
    "PUBACK of 3 bytes": b"\x40\x03\x00\x01\x00",
    "PUBACK of 1 byte": b"\x40\x01\x01",
    "PUBACK of packet id 0": b"\x40\x02\x00\x00",
    "PUBCOMP of packet id 0": b"\x70\x02\x00\x00",
}


def decode(frame: Frame) -> object:
    """What our decoders make of one frame, as the gateway would read it; raises only MalformedFrame."""
    if frame.packet_type == mqtt_wire.PUBLISH:
        return mqtt_wire.decode_publish(*frame)
    if frame.first_byte in (mqtt_wire.PUBACK, mqtt_wire.PUBREC, mqtt_wire.PUBREL, mqtt_wire.PUBCOMP):
        return mqtt_wire.decode_ack(*frame)
    return frame


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_each_malformed_frame_raises_malformed_frame(data: bytes) -> None:
    with pytest.raises(MalformedFrame):
        [decode(frame) for frame in FrameReader().feed(data)]


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_frames_before_a_malformed_one_are_handed_out_first(data: bytes) -> None:
    seen = []
    with pytest.raises(MalformedFrame):
        for frame in FrameReader().feed(mqtt_wire.publish("a/b", b"1", qos=1, packet_id=1) + data):
            seen.append(decode(frame))
    assert seen == [Publish(b"a/b", b"1", 1, 1, False, False)]


def test_a_stream_with_a_bad_length_stays_malformed_until_reset() -> None:
    reader = FrameReader()
    with pytest.raises(MalformedFrame):
        list(reader.feed(MALFORMED["length over 4 bytes"]))
    with pytest.raises(MalformedFrame):  # nothing marks where the next packet would start
        list(reader.feed(mqtt_wire.puback(1)))
    reader.reset()
    assert list(reader.feed(mqtt_wire.puback(1))) == [Frame(mqtt_wire.PUBACK, b"\x00\x01")]


def test_the_wrong_decoder_for_a_packet_type_is_malformed_not_a_crash() -> None:
    with pytest.raises(MalformedFrame, match="not a PUBLISH"):
        mqtt_wire.decode_publish(mqtt_wire.PUBACK, b"\x00\x01")
    with pytest.raises(MalformedFrame, match="no PUBACK"):
        mqtt_wire.decode_ack(mqtt_wire.PUBLISH, b"\x00\x01")


@settings(max_examples=500)
@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=6))
@example(b"\x36\x05\x00\x01a\x00\x01", [])
@example(b"\x32\x80\x80\x80\x80", [2])
def test_any_bytes_are_read_cleanly_or_raise_malformed_frame(data: bytes, cuts: list[int]) -> None:
    reader = FrameReader()
    try:
        for chunk in cut(data, cuts):
            for frame in reader.feed(chunk):
                decode(frame)
    except MalformedFrame:
        return


@given(st.binary(max_size=300))
def test_any_publish_that_decodes_re_encodes_to_the_same_packet(body: bytes) -> None:
    for first_byte in range(0x30, 0x40):
        try:
            message = mqtt_wire.decode_publish(first_byte, body)
        except MalformedFrame:
            continue
        if message.topic and not (message.dup and message.qos == 0):  # what our encoder refuses to write
            assert encode(message) == mqtt_wire.packet(first_byte, body)


# -- against paho, over a socket ----------------------------------------------------------------------


class PahoLink:
    """A real paho client connected to a BrokerPeer; messages paho receives land in `inbox`."""

    def __init__(self, peer: BrokerPeer, *, client_id: str = "wire-test", clean_session: bool = True) -> None:
        self.peer = peer
        self.inbox: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session,
                                  protocol=mqtt.MQTTv311)
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.client.on_message = lambda _client, _userdata, message: self.inbox.put(message)
        self.client.connect("127.0.0.1", peer.port, keepalive=0)
        peer.accept()
        self.client.loop_start()

    def close(self) -> None:
        # paho's loop thread ends only once nothing is left to send, so acknowledge everything first.
        self.client.disconnect()
        self.client.loop_stop()
        self.peer.close()

    def publish_from_paho(self, topic: str, payload: bytes, qos: int, retain: bool) -> tuple[Frame, bytes, int]:
        """paho publishes; the peer reads the PUBLISH and completes the QoS flow with our ack encoders."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        frame, raw = self.peer.next_frame()
        self.acknowledge(info, qos)
        return frame, raw, info.mid

    def acknowledge(self, info: mqtt.MQTTMessageInfo, qos: int) -> None:
        """Complete paho's QoS flow for one of its publishes with our ack encoders."""
        if qos == 1:
            self.peer.send(mqtt_wire.puback(info.mid))
        elif qos == 2:
            self.peer.send(mqtt_wire.pubrec(info.mid))
            pubrel, pubrel_raw = self.peer.next_frame()
            assert pubrel_raw == mqtt_wire.pubrel(info.mid)  # paho's PUBREL is byte for byte ours
            assert mqtt_wire.decode_ack(*pubrel) == info.mid
            self.peer.send(mqtt_wire.pubcomp(info.mid))
        info.wait_for_publish(WAIT_S)  # paho took our PUBACK / PUBREC+PUBCOMP as the end of the flow
        assert info.is_published()

    def publish_to_paho(self, message: Publish) -> mqtt.MQTTMessage:
        """The peer writes our encoding; paho decodes it and acknowledges with its own encoder."""
        self.peer.send(encode(message))
        if message.qos == 1:
            assert self.peer.next_frame()[1] == mqtt_wire.puback(message.packet_id)
        elif message.qos == 2:
            assert self.peer.next_frame()[1] == mqtt_wire.pubrec(message.packet_id)
            self.peer.send(mqtt_wire.pubrel(message.packet_id))  # paho hands the message over on PUBREL
            assert self.peer.next_frame()[1] == mqtt_wire.pubcomp(message.packet_id)
        return self.inbox.get(timeout=WAIT_S)


@pytest.fixture(scope="module")
def paho_link() -> Iterator[PahoLink]:
    link = PahoLink(BrokerPeer())
    yield link
    link.close()


paho_settings = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@paho_settings
@given(topic=topic_texts, payload=payloads, qos=qos_levels, retain=st.booleans())
@example(topic="居家隔离/户/门", payload=b"\x00" * 127, qos=1, retain=False)
@example(topic="a", payload=b"", qos=0, retain=True)
def test_what_paho_publishes_we_read_and_encode_byte_for_byte(paho_link: PahoLink, topic: str, payload: bytes,
                                                              qos: int, retain: bool) -> None:
    frame, raw, mid = paho_link.publish_from_paho(topic, payload, qos, retain)
    message = mqtt_wire.decode_publish(*frame)
    assert message == Publish(topic.encode(), payload, mid if qos else 0, qos, retain, False)
    assert message.topic_text == topic
    assert mqtt_wire.publish(topic, payload, qos=qos, retain=retain, packet_id=message.packet_id) == raw


@paho_settings
@given(messages=st.lists(st.tuples(topic_texts, payloads, qos_levels, st.booleans()), min_size=1, max_size=5),
       cuts=st.lists(st.integers(0, 2000), max_size=10))
def test_a_stream_paho_wrote_reads_back_at_any_split(paho_link: PahoLink, messages: list, cuts: list[int]) -> None:
    sent = [paho_link.publish_from_paho(*m) for m in messages]
    stream = b"".join(raw for _frame, raw, _mid in sent)
    frames = read_all(FrameReader(), cut(stream, cuts))
    assert frames == [frame for frame, _raw, _mid in sent]
    assert [mqtt_wire.decode_publish(*f)[:5] for f in frames] == [
        (topic.encode(), payload, mid if qos else 0, qos, retain)
        for (topic, payload, qos, retain), (_f, _r, mid) in zip(messages, sent)]


@paho_settings
@given(topic=topic_texts, payload=payloads, qos=qos_levels, retain=st.booleans(), dup=st.booleans(),
       packet_id=packet_ids)
def test_what_we_publish_paho_reads_as_the_same_message(paho_link: PahoLink, topic: str, payload: bytes, qos: int,
                                                        retain: bool, dup: bool, packet_id: int) -> None:
    message = Publish(topic.encode(), payload, packet_id if qos else 0, qos, retain, dup and qos > 0)
    received = paho_link.publish_to_paho(message)
    assert (received.topic, received.payload, received.qos, received.retain, received.dup) == (
        topic, payload, qos, retain, message.dup)
    if qos:
        assert received.mid == packet_id


@pytest.mark.parametrize("remaining", [127, 128, 16_383, 16_384, 2_097_151, 2_097_152])
def test_payloads_at_each_length_boundary_cross_paho_both_ways(paho_link: PahoLink, remaining: int) -> None:
    overhead = 2 + 1 + 2  # topic length, topic "t", packet id (QoS 1)
    payload = (string.ascii_letters.encode() * (remaining // 52 + 1))[: remaining - overhead]
    frame, raw, mid = paho_link.publish_from_paho("t", payload, 1, False)
    assert len(raw) == 1 + len(mqtt_wire.encode_remaining_length(remaining)) + remaining
    assert mqtt_wire.decode_publish(*frame) == Publish(b"t", payload, mid, 1, False, False)
    assert mqtt_wire.publish("t", payload, qos=1, packet_id=mid) == raw
    received = paho_link.publish_to_paho(Publish(b"t", payload, 4242, 1, False, False))
    assert received.payload == payload and received.mid == 4242


@pytest.mark.parametrize("qos", [1, 2])
def test_paho_resends_unacknowledged_publishes_with_dup_and_we_read_the_flag(qos: int) -> None:
    peer = BrokerPeer()
    link = PahoLink(peer, client_id=f"wire-dup-{qos}", clean_session=False)
    try:
        info = link.client.publish("door/1", b"opened", qos=qos)
        first, _raw = peer.next_frame()
        assert mqtt_wire.decode_publish(*first).dup is False
        peer.drop()  # no acknowledgement: paho must send it again on the next connection
        peer.accept(session_present=True)
        again, raw = peer.next_frame()
        message = mqtt_wire.decode_publish(*again)
        assert message == Publish(b"door/1", b"opened", info.mid, qos, False, True)
        assert mqtt_wire.publish("door/1", b"opened", qos=qos, dup=True, packet_id=info.mid) == raw
        link.acknowledge(info, qos)
    finally:
        link.close()
