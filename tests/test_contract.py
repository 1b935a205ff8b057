"""The wire contract: topics, payload validation, the schema firmware writers follow."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isowatch.contract import (
    ContractError,
    DoorEvent,
    GatewayAck,
    Heartbeat,
    TemperatureReading,
    Topic,
    TopicKind,
    decode,
    encode,
    encode_ack,
    json_schema,
    topic,
    topic_for,
)
from isowatch.ids import uuid7, uuid7_time_ms

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def door(**fields) -> DoorEvent:
    base = dict(type="door", id=uuid7(), device="cam-1", seq=1, device_time=NOW, state="open")
    return DoorEvent(**{**base, **fields})


def test_topic_round_trip():
    text = topic("site-a", "hh-3-502", "cam-1", TopicKind.EVENT)
    assert text == "isowatch/v1/site-a/hh-3-502/cam-1/event"
    assert str(Topic.parse(text)) == text


def test_snapshot_topic_carries_the_event_id():
    event_id = uuid7()
    parsed = Topic.parse(f"isowatch/v1/s/h/d/snapshot/{event_id}")
    assert parsed.kind is TopicKind.SNAPSHOT and parsed.event_id == event_id


@pytest.mark.parametrize(
    "text",
    [
        "isowatch/v2/s/h/d/event",
        "isowatch/v1/s/h/d",
        "isowatch/v1/s/h/d/event/extra",
        "isowatch/v1/s/h/d/weather",
        "isowatch/v1/s/h/d+/event",
        "isowatch/v1/s/h/d/snapshot",
        "isowatch/v1/s/h/d/snapshot/not-a-uuid",
        "isowatch/v1/s//d/event",
    ],
)
def test_bad_topics_are_rejected_with_reason_topic(text):
    with pytest.raises(ContractError) as info:
        Topic.parse(text)
    assert info.value.reason == "topic"


def test_decode_accepts_a_valid_door_event_and_normalises_time_to_utc():
    local = door(device_time=datetime(2026, 3, 1, 20, 0, tzinfo=timezone(timedelta(hours=8))))
    parsed, message = decode(topic_for("s", "h", local), encode(local))
    assert parsed.device == "cam-1"
    assert message == local
    assert message.device_time == NOW
    assert message.device_time.tzinfo == timezone.utc


def test_naive_device_time_is_refused():
    payload = json.loads(encode(door()))
    payload["device_time"] = "2026-03-01T12:00:00"
    with pytest.raises(ContractError) as info:
        decode("isowatch/v1/s/h/cam-1/event", json.dumps(payload).encode())
    assert info.value.reason == "schema" and "device_time" in info.value.detail


def test_topic_device_must_match_payload_device():
    with pytest.raises(ContractError) as info:
        decode("isowatch/v1/s/h/cam-2/event", encode(door()))
    assert info.value.reason == "spoofed_device"


def test_reading_on_event_topic_is_refused():
    reading = TemperatureReading(type="temperature", id=uuid7(), device="cam-1", seq=2, device_time=NOW,
                                 celsius=36.6, subject="body", method="oral")
    with pytest.raises(ContractError) as info:
        decode("isowatch/v1/s/h/cam-1/event", encode(reading))
    assert info.value.reason == "schema"


def test_unknown_fields_and_ids_that_are_not_uuid7_are_refused():
    payload = json.loads(encode(door()))
    with pytest.raises(ContractError):
        decode("isowatch/v1/s/h/cam-1/event", json.dumps({**payload, "colour": "red"}).encode())
    with pytest.raises(ContractError):
        decode("isowatch/v1/s/h/cam-1/event",
               json.dumps({**payload, "id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427"}).encode())


def test_oversized_payload_is_refused_before_parsing():
    with pytest.raises(ContractError) as info:
        decode("isowatch/v1/s/h/cam-1/event", b"{" + b" " * 70_000 + b"}")
    assert info.value.reason == "too_large"


def test_uuid7_is_time_ordered_and_unique():
    ids = [uuid7() for _ in range(5000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert abs(uuid7_time_ms(ids[0]) - datetime.now(timezone.utc).timestamp() * 1000) < 5000


def test_uuid7_stays_ordered_when_many_are_made_in_one_millisecond():
    ids = [uuid7(now_ms=1_700_000_000_000) for _ in range(5000)]
    assert ids == sorted(ids) and len(set(ids)) == 5000


def test_schema_covers_every_device_kind_and_the_ack():
    schema = json_schema()
    assert set(schema["properties"]) == {"event", "reading", "status", "heartbeat", "ack", "config"}
    assert {"DoorEvent", "TamperEvent", "TemperatureReading", "ContactReading", "SnapshotMeta"} <= set(schema["$defs"])


@settings(max_examples=300, deadline=None)
@given(payload=st.binary(max_size=300), kind=st.sampled_from(["event", "reading", "status", "heartbeat"]))
def test_arbitrary_bytes_either_decode_or_raise_contract_error(payload, kind):
    try:
        decode(f"isowatch/v1/s/h/cam-1/{kind}", payload)
    except ContractError as exc:
        assert exc.reason in {"json", "schema", "spoofed_device", "too_large"}


@settings(max_examples=200, deadline=None)
@given(
    seq=st.integers(min_value=0, max_value=2**63 - 1),
    uptime=st.floats(min_value=0, max_value=1e9, allow_nan=False),
    depth=st.integers(min_value=0, max_value=10**9),
)
def test_heartbeat_round_trips(seq, uptime, depth):
    beat = Heartbeat(type="heartbeat", id=uuid7(), device="edge-1", seq=seq, device_time=NOW, uptime_s=uptime,
                     outbox_depth=depth)
    assert decode(topic_for("s", "h", beat), encode(beat))[1] == beat


@settings(max_examples=200, deadline=None)
@given(
    ranges=st.lists(st.tuples(st.integers(0, 2**62), st.integers(0, 2**62)), max_size=5),
    snapshots=st.lists(st.text("0123456789abcdef", min_size=64, max_size=64), max_size=3),
    at=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(timezone.utc)),
)
def test_the_gateways_ack_encoding_is_the_models(ranges, snapshots, at):
    from isowatch.clock import iso

    fast = encode_ack("cam-1", ranges, snapshots, iso(at))
    model = GatewayAck(device="cam-1", ranges=ranges, snapshots=snapshots, gateway_time=at)
    assert fast == encode(model)
    assert GatewayAck.model_validate_json(fast) == model


def test_event_ids_are_canonical_uuid7_in_lower_case():
    upper = uuid7().upper()
    assert door(id=upper).id == upper.lower()
    for bad in (str(uuid.uuid4()), upper.replace("-", ""), "{" + upper + "}", upper + "\n"):
        with pytest.raises(ValueError):
            door(id=bad)


def test_identifiers_reject_a_trailing_newline():
    with pytest.raises(ValueError):
        door(device="cam-1\n")
    with pytest.raises(ContractError):
        Topic.parse("isowatch/v1/s/h\n/cam-1/event")
