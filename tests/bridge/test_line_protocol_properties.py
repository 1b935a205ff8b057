"""Property-based tests of the line decoder: garbage never raises and never hides a valid frame."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_bridge import line_protocol as lp

sensors = st.from_regex(r"[A-Za-z0-9_-]{0,16}", fullmatch=True)
seqs = st.integers(0, lp.SEQ_MAX)
centis = st.integers(lp.CENTI_C_MIN, lp.CENTI_C_MAX)

frames = st.one_of(
    st.builds(
        lp.Hello,
        seq=seqs,
        ack=st.booleans(),
        device_id=st.from_regex(r"[A-Za-z0-9_-]{1,32}", fullmatch=True),
        firmware=st.from_regex(r"[A-Za-z0-9._+-]{1,24}", fullmatch=True),
        protocol=st.from_regex(r"1\.[0-9]{1,3}", fullmatch=True),
    ),
    st.builds(lp.BodyTemperature, seq=seqs, ack=st.booleans(), centi_c=centis, method=st.sampled_from(lp.METHODS), sensor=sensors),
    st.builds(lp.AmbientTemperature, seq=seqs, ack=st.booleans(), centi_c=centis, sensor=sensors),
    st.builds(lp.DoorContact, seq=seqs, ack=st.booleans(), open=st.booleans(), sensor=sensors),
    st.builds(lp.Battery, seq=seqs, ack=st.booleans(), pct=st.integers(0, 100), millivolts=st.none() | st.integers(0, 65535)),
)

# Garbage biased towards the bytes that matter to the framing, plus anything at all.
garbage = st.one_of(
    st.binary(max_size=300),
    st.lists(st.sampled_from([b"$", b"*", b"\r", b"\n", b",", b"IW1", b"$IW1,1,A,", b"FFFF", b"\x00", b"\xff"]), max_size=40).map(b"".join),
)


def is_subsequence(wanted: list[lp.Frame], got: list[lp.Frame]) -> bool:
    it = iter(got)
    return all(any(g == w for g in it) for w in wanted)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pieces=st.lists(st.tuples(garbage, frames), max_size=12),
    tail=garbage,
    cuts=st.lists(st.integers(1, 64), max_size=80),
)
def test_garbage_between_valid_frames_never_raises_and_every_frame_is_decoded(
    pieces: list[tuple[bytes, lp.Frame]], tail: bytes, cuts: list[int]
) -> None:
    stream = bytearray()
    for junk, frame in pieces:
        # A frame on a real line starts after whatever came before; the firmware sends CRLF after each.
        stream += junk + lp.encode(frame)
    stream += tail
    decoder = lp.LineDecoder()
    events: list[lp.Frame | lp.Rejected] = []
    data, pos = bytes(stream), 0
    for size in cuts:  # arbitrary read sizes, as the serial driver hands them over
        events += decoder.feed(data[pos : pos + size])
        pos += size
    events += decoder.feed(data[pos:])
    decoded = [e for e in events if isinstance(e, lp.Frame)]
    assert is_subsequence([frame for _, frame in pieces], decoded)
    assert all(isinstance(e, (lp.Frame, lp.Rejected)) for e in events)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_at_all_never_raise(data: bytes) -> None:
    decoder = lp.LineDecoder()
    for event in decoder.feed(data) + decoder.expire(now=1e9):
        if isinstance(event, lp.Rejected):
            assert event.reason in lp.RejectReason.__args__  # type: ignore[attr-defined]


@settings(max_examples=300, deadline=None)
@given(frames)
def test_encode_then_parse_is_identity_and_fits_the_line_limit(frame: lp.Frame) -> None:
    wire = lp.encode(frame)
    assert len(wire) <= lp.MAX_LINE
    assert lp.parse_line(wire) == frame


@settings(max_examples=300, deadline=None)
@given(frames, st.data())
def test_any_corrupted_byte_in_a_frame_is_never_decoded_as_that_frame(frame: lp.Frame, data: st.DataObject) -> None:
    wire = bytearray(lp.encode(frame))
    index = data.draw(st.integers(1, len(wire) - 3))  # inside '$' .. checksum
    original = wire[index]
    # In the checksum, 'a' and 'A' are the same digit (both cases are accepted), so that is no corruption.
    same = {original, ord(chr(original).swapcase())} if index > wire.index(b"*") else {original}
    replacement = data.draw(st.integers(0, 255).filter(lambda b: b not in same))
    wire[index] = replacement
    events = lp.LineDecoder().feed(bytes(wire))
    assert frame not in events
