"""Unit tests of the serial line protocol: CRC, frame codec, framing edge cases."""

from __future__ import annotations

import pytest

from firmware_bridge import line_protocol as lp
from firmware_bridge.errors import FrameError


def line(body: str, crc: int | None = None, end: bytes = b"\r\n") -> bytes:
    raw = body.encode()
    value = lp.crc16_ccitt_false(raw) if crc is None else crc
    return b"$" + raw + b"*" + f"{value:04X}".encode() + end


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"123456789", 0x29B1),  # the catalogue check value of CRC-16/CCITT-FALSE
        (b"", 0xFFFF),
        (b"A", 0xB915),
    ],
)
def test_crc16_ccitt_false_matches_the_catalogue(data: bytes, expected: int) -> None:
    assert lp.crc16_ccitt_false(data) == expected


def test_crc16_detects_every_single_bit_flip_in_a_frame_body() -> None:
    body = b"IW1,7,A,BODY,3712,axillary,s1"
    good = lp.crc16_ccitt_false(body)
    for i in range(len(body)):
        for bit in range(8):
            flipped = bytearray(body)
            flipped[i] ^= 1 << bit
            assert lp.crc16_ccitt_false(bytes(flipped)) != good


@pytest.mark.parametrize(
    "frame",
    [
        lp.Hello(seq=0, ack=True, device_id="esp32-door-01", firmware="1.4.2"),
        lp.BodyTemperature(seq=1, ack=True, centi_c=3712, method="axillary", sensor="probe1"),
        lp.BodyTemperature(seq=2, centi_c=-4000, method="unknown"),
        lp.AmbientTemperature(seq=lp.SEQ_MAX, centi_c=-125),
        lp.DoorContact(seq=3, ack=True, open=True, sensor="front"),
        lp.DoorContact(seq=4, open=False),
        lp.Battery(seq=5, pct=87, millivolts=3712),
        lp.Battery(seq=6, pct=0),
        lp.Ack(seq=9, acked=5),
        lp.Nak(seq=10, acked=6, reason="bad_value"),
    ],
)
def test_every_frame_type_round_trips(frame: lp.Frame) -> None:
    wire = lp.encode(frame)
    assert wire.startswith(b"$IW1,") and wire.endswith(b"\r\n")
    assert len(wire) <= lp.MAX_LINE
    assert lp.parse_line(wire) == frame


def test_bare_lf_and_no_terminator_are_accepted_by_the_line_parser() -> None:
    frame = lp.AmbientTemperature(seq=3, centi_c=2150)
    wire = lp.encode(frame)
    assert lp.parse_line(wire.replace(b"\r\n", b"\n")) == frame
    assert lp.parse_line(wire.rstrip()) == frame


def test_lowercase_checksum_hex_is_accepted() -> None:
    wire = lp.encode(lp.AmbientTemperature(seq=3, centi_c=2150))
    star = wire.index(b"*")
    lowered = wire[: star + 1] + wire[star + 1 :].lower()
    assert lp.parse_line(lowered).seq == 3


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (line("IW1,1,N,AMB,2150", crc=0x1234), "bad_checksum"),
        (b"$IW1,1,N,AMB,2150\r\n", "bad_frame"),  # no checksum at all
        (b"$IW1,1,N,AMB,2150*12G4\r\n", "bad_frame"),
        (line("IW1,1,N,AMB,21.50"), "bad_field"),  # decimal point: the protocol sends integers
        (line("IW1,1,N,AMB,+2150"), "bad_field"),
        (line("IW1,1,N,AMB,02150"), "bad_field"),  # leading zero: printf never makes one
        (line("IW1,1,N,AMB,"), "bad_field"),
        (line("IW1,01,N,AMB,2150"), "bad_field"),
        (line("IW1,4294967296,N,AMB,2150"), "bad_value"),  # seq beyond uint32
        (line("IW1,1,N,AMB,12501"), "bad_value"),
        (line("IW1,1,N,BODY,-4001,oral"), "bad_value"),
        (line("IW1,1,N,BODY,3650,armpit"), "bad_field"),
        (line("IW1,1,N,BODY,3650"), "bad_frame"),  # method is required
        (line("IW1,1,N,DOOR,ajar"), "bad_field"),
        (line("IW1,1,N,BATT,101"), "bad_value"),
        (line("IW1,1,N,BATT,50,70000"), "bad_value"),
        (line("IW1,1,X,AMB,2150"), "bad_field"),
        (line("IW1,1,N,RAIN,3"), "unknown_type"),
        (line("IW2,1,N,AMB,2150"), "unsupported_version"),
        (line("IW1,0,A,HELLO,dev1,1.0.0,2.0"), "unsupported_version"),
        (line("IW1,0,A,HELLO,dev 1,1.0.0,1.0"), "bad_field"),
        (line("XX1,1,N,AMB,2150"), "bad_frame"),
        (line("IW1,1,N"), "bad_frame"),
        (line("IW1,1,N,AMB,2150,sens\x01"), "bad_frame"),
    ],
)
def test_bad_lines_are_rejected_with_a_stable_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(FrameError) as caught:
        lp.parse_line(raw)
    assert caught.value.reason == reason


def test_a_rejection_after_a_good_header_carries_seq_and_ack_so_the_host_can_nak() -> None:
    with pytest.raises(FrameError) as caught:
        lp.parse_line(line("IW1,42,A,BODY,13000,oral"))
    assert (caught.value.reason, caught.value.seq, caught.value.ack) == ("bad_value", 42, True)


def test_unknown_trailing_fields_are_ignored_for_forward_compatibility() -> None:
    frame = lp.parse_line(line("IW1,5,N,AMB,2150,room,humidity=40"))
    assert frame == lp.AmbientTemperature(seq=5, centi_c=2150, sensor="room")


def test_a_body_reading_outside_34_43_is_still_a_valid_frame() -> None:
    # Plausibility is the bridge's call (readings.py), not a framing error: nothing is dropped.
    frame = lp.parse_line(line("IW1,5,A,BODY,2210,forehead"))
    assert isinstance(frame, lp.BodyTemperature) and frame.celsius == 22.1


# -- streaming decoder ---------------------------------------------------------------------


def test_a_frame_split_across_reads_at_every_position_is_decoded() -> None:
    wire = lp.encode(lp.DoorContact(seq=8, ack=True, open=True))
    for cut in range(1, len(wire)):
        decoder = lp.LineDecoder()
        events = decoder.feed(wire[:cut]) + decoder.feed(wire[cut:])
        assert events == [lp.DoorContact(seq=8, ack=True, open=True)], cut


def test_garbage_is_skipped_and_counted_but_crlf_between_frames_is_not_garbage() -> None:
    decoder = lp.LineDecoder()
    a, b = lp.encode(lp.Battery(seq=1, pct=50)), lp.encode(lp.Battery(seq=2, pct=49))
    events = decoder.feed(b"\x00\xffnoise" + a + b"\r\n\r\n" + b)
    assert events == [lp.Battery(seq=1, pct=50), lp.Battery(seq=2, pct=49)]
    assert decoder.garbage_bytes == 7


def test_over_long_line_is_dropped_and_the_next_frame_still_decodes() -> None:
    decoder = lp.LineDecoder()
    good = lp.encode(lp.AmbientTemperature(seq=2, centi_c=2000))
    events = decoder.feed(b"$IW1," + b"9" * 300 + b"*0000\r\n" + good)
    assert [type(e) for e in events] == [lp.Rejected, lp.AmbientTemperature]
    assert events[0].reason == "overflow"  # type: ignore[union-attr]
    assert decoder.garbage_bytes > 0  # the rest of the long line was skipped, not parsed


def test_a_line_of_exactly_max_length_is_accepted_and_one_more_byte_overflows() -> None:
    def padded(total: int) -> bytes:
        # Trailing fields are ignored, so padding one is a legal way to reach any length.
        head = "IW1,1,N,AMB,2150,s,"
        pad = "x" * (total - len(head) - 8)  # '$' + '*' + 4 hex + CRLF = 8 bytes
        return line(head + pad)

    assert len(padded(lp.MAX_LINE)) == lp.MAX_LINE
    assert isinstance(lp.LineDecoder().feed(padded(lp.MAX_LINE))[0], lp.AmbientTemperature)
    events = lp.LineDecoder().feed(padded(lp.MAX_LINE + 1))
    assert [getattr(e, "reason", None) for e in events] == ["overflow"]


def test_a_missing_cr_is_fine_but_a_missing_newline_truncates_at_the_next_dollar() -> None:
    decoder = lp.LineDecoder()
    first = lp.encode(lp.Battery(seq=1, pct=50))
    second = lp.encode(lp.Battery(seq=2, pct=50))
    events = decoder.feed(first.replace(b"\r\n", b"\n") + first[:-2] + second)
    assert events[0] == lp.Battery(seq=1, pct=50)
    assert events[1] == lp.Rejected("truncated", events[1].detail)  # type: ignore[union-attr]
    assert events[2] == lp.Battery(seq=2, pct=50)


def test_a_partial_frame_expires_after_the_timeout() -> None:
    decoder = lp.LineDecoder()
    wire = lp.encode(lp.Battery(seq=1, pct=50))
    assert decoder.feed(wire[:10], now=100.0) == []
    assert decoder.expire(now=100.5) == []
    expired = decoder.expire(now=100.0 + lp.PARTIAL_FRAME_TIMEOUT_S + 0.1)
    assert [e.reason for e in expired] == ["timeout"]
    # The tail that arrives later is not glued onto it: it is garbage, and the next frame is fine.
    assert decoder.feed(wire[10:] + wire, now=200.0) == [lp.Battery(seq=1, pct=50)]


def test_stale_partial_frame_is_dropped_when_new_bytes_arrive_late() -> None:
    decoder = lp.LineDecoder()
    wire = lp.encode(lp.Battery(seq=1, pct=50))
    decoder.feed(wire[:10], now=0.0)
    events = decoder.feed(wire, now=5.0)
    assert [getattr(e, "reason", None) for e in events] == ["timeout", None]


def test_encode_refuses_a_frame_that_would_overflow() -> None:
    with pytest.raises(FrameError):
        lp.encode(lp.Hello(seq=1, device_id="d" * 200, firmware="1"))
