"""Hostile payloads against every device model: `decode` refuses with ContractError and nothing else, and
what it accepts is something the store can write (finite floats, 64-bit integers, UTC times, UTF-8)."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from isowatch.contract import (
    ContactReading,
    ContractError,
    DoorEvent,
    Heartbeat,
    Status,
    TamperEvent,
    TemperatureReading,
    TopicKind,
    decode,
    topic,
)
from isowatch.ids import uuid7

DEVICE = "cam-1"


def _base() -> dict:
    return {"schema_version": 1, "id": uuid7(), "device": DEVICE, "seq": 1, "device_time": "2026-03-01T12:00:00Z"}


VALID = {
    DoorEvent: (TopicKind.EVENT, {"type": "door", "state": "closed", "opening_id": uuid7(), "duration_s": 3.5,
                                  "exit_suspected": False, "snapshots": [
                                      {"role": "opened", "sha256": "a" * 64, "bytes": 10, "width": 64,
                                       "height": 48, "taken_at": "2026-03-01T12:00:00Z"}]}),
    TamperEvent: (TopicKind.EVENT, {"type": "tamper", "reason": "covered", "state": "end", "tamper_id": uuid7()}),
    TemperatureReading: (TopicKind.READING, {"type": "temperature", "celsius": 37.1, "subject": "body",
                                             "method": "oral", "plausible": True, "sensor": "t1",
                                             "battery_pct": 80.0}),
    ContactReading: (TopicKind.READING, {"type": "contact", "open": True, "sensor": "c1", "battery_pct": 50}),
    Status: (TopicKind.STATUS, {"type": "status", "state": "online", "firmware": "1.0", "config_version": "v1",
                                "config_error": None, "camera": "ok"}),
    Heartbeat: (TopicKind.HEARTBEAT, {"type": "heartbeat", "uptime_s": 12.5, "outbox_depth": 0,
                                      "outbox_dropped": 0, "config_version": "v1", "fps": 5.0,
                                      "cpu_temp_c": 48.0}),
}

EXTREME_TIMES = [
    "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59.999999-23:59",
    "0001-01-01T00:00:00+23:59", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "1970-01-01T00:00:00Z",
    "2026-02-30T00:00:00Z", "2026-03-01T24:00:00Z", "2026-03-01T12:00:00", "2026-03-01T12:00:00+24:00",
    "10000-01-01T00:00:00Z", "-0001-01-01T00:00:00Z", "2026-03-01", "now", "", "2026-03-01T12:00:00.9999999999Z",
]
# Raw JSON number texts: Python's json cannot write some of these, so they go in as tokens.
NUMBER_TOKENS = ["Infinity", "-Infinity", "NaN", "1e400", "-1e400", "1e308", "-0.0", "0.0", "5e-324",
                 str(2**63), str(2**63 - 1), str(-(2**63)), str(2**64), "1" + "0" * 400, "-" + "9" * 5000,
                 "1.5", "0", "-1"]
ODD_TEXT = ["\\ud800", "\\udfff", "\\u0000", "\u202eevil", "\U0001f6aa", "\ufeff", "a" * 70, "é", "\\n", "𝕏" * 65]


class Raw(str):
    """A JSON token written as it is."""


def _dump(value) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{_dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_dump(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


hostile_value = st.one_of(
    st.sampled_from(EXTREME_TIMES),
    st.sampled_from(NUMBER_TOKENS).map(Raw),
    st.sampled_from(NUMBER_TOKENS),  # numbers as strings: no coercion on the wire
    st.sampled_from(ODD_TEXT).map(lambda t: Raw('"' + t + '"')),
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda f: Raw(repr(f) if math.isfinite(f) else "NaN")),
    st.text(max_size=20), st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


@st.composite
def hostile_payload(draw):
    model = draw(st.sampled_from(sorted(VALID, key=lambda m: m.__name__)))
    kind, fields = VALID[model]
    data = {**_base(), **fields}
    keys = sorted(data)
    for key in draw(st.lists(st.sampled_from(keys + ["extra", "snapshots"]), min_size=1, max_size=3)):
        if key == "snapshots" and model is DoorEvent:
            snapshot = dict(data["snapshots"][0])
            snapshot[draw(st.sampled_from(sorted(snapshot)))] = draw(hostile_value)
            data["snapshots"] = [snapshot]
        else:
            data[key] = draw(hostile_value)
    text = _dump(data).encode("utf-8", "surrogatepass")
    if draw(st.booleans()):  # sometimes bytes that are not UTF-8 at all, inside a string
        text = text.replace(b'"cam-1"', b'"cam-\xff\xfe"', 1)
    return model, kind, text


def _assert_storable(message) -> None:
    """What passed the contract is writable: SQLite takes 64-bit integers and UTF-8 text, the rules finite floats."""
    for name, value in message:
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, float):
            assert math.isfinite(value), name
        elif isinstance(value, int):
            assert -(2**63) <= value < 2**63, name
        elif isinstance(value, str):
            value.encode("utf-8")
        elif isinstance(value, datetime):
            assert value.utcoffset() is not None and not value.utcoffset(), name
    message.model_dump_json()


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_payload())
def test_decode_raises_nothing_but_contract_error(case):
    model, kind, payload = case
    try:
        _topic, message = decode(topic("s", "h", DEVICE, kind), payload)
    except ContractError as exc:
        assert exc.reason and exc.reason != "", payload
        return
    assert isinstance(message, model)
    _assert_storable(message)


@pytest.mark.parametrize("model", sorted(VALID, key=lambda m: m.__name__), ids=lambda m: m.__name__)
@pytest.mark.parametrize("moment, reason", [("9999-12-31T23:59:59-01:00", "time_out_of_range"),
                                            ("0001-01-01T00:00:00+01:00", "time_out_of_range")])
def test_times_past_the_ends_of_the_calendar_are_rejected_with_a_reason(model, moment, reason):
    kind, fields = VALID[model]
    payload = json.dumps({**_base(), **fields, "device_time": moment}).encode()
    with pytest.raises(ContractError) as caught:
        decode(topic("s", "h", DEVICE, kind), payload)
    assert caught.value.reason == reason


@pytest.mark.parametrize("field, token, reason", [
    ("uptime_s", "Infinity", "not_finite"), ("uptime_s", "NaN", "not_finite"), ("fps", "-Infinity", "not_finite"),
    ("cpu_temp_c", "1e400", "not_finite"), ("uptime_s", '"12.5"', "schema"), ("outbox_depth", str(2**64), "schema"),
])
def test_heartbeat_numbers_are_finite_and_typed(field, token, reason):
    data = {**_base(), **VALID[Heartbeat][1]}
    data[field] = Raw(token)
    with pytest.raises(ContractError) as caught:
        decode(topic("s", "h", DEVICE, TopicKind.HEARTBEAT), _dump(data).encode())
    assert caught.value.reason == reason


@pytest.mark.parametrize("field, value", [("celsius", "39.5"), ("plausible", 1), ("seq", "7"), ("seq", 7.0),
                                          ("battery_pct", "80")])
def test_no_coercion_from_strings_or_between_types(field, value):
    data = {**_base(), **VALID[TemperatureReading][1], field: value}
    with pytest.raises(ContractError) as caught:
        decode(topic("s", "h", DEVICE, TopicKind.READING), json.dumps(data).encode())
    assert caught.value.reason == "schema"


def test_plain_json_types_still_pass_strict_validation():
    """Strict on the wire, yet datetimes arrive as strings and whole numbers may fill float fields."""
    data = {**_base(), **VALID[TemperatureReading][1], "celsius": 37, "device_time": "2026-03-01T20:00:00+08:00"}
    _topic, message = decode(topic("s", "h", DEVICE, TopicKind.READING), json.dumps(data).encode())
    assert message.celsius == 37.0
    assert message.device_time == datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(["isowatch", "v1", "s", "h", "cam-1", "event", "snapshot", "status",
                                           uuid7(), "+", "#", "", "\u202e", "\x00", "a" * 65]),
                          st.text(max_size=8)), max_size=9),
       st.binary(max_size=64))
def test_any_topic_and_payload_give_a_message_or_a_contract_error(segments, payload):
    try:
        decode("/".join(segments), payload)
    except ContractError:
        pass
