"""Helpers for the attacks on the wire: a device on the real broker, the gateway, hostile payloads."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from isowatch.contract import TopicKind
from isowatch.ids import uuid7

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 60


def reading_fields(device: str, number: int, **changes) -> dict:
    fields = {"schema_version": 1, "id": uuid7(), "device": device, "seq": number,
              "device_time": datetime.now(timezone.utc).isoformat(), "type": "temperature", "celsius": 37.0,
              "subject": "body", "method": "oral", "plausible": True}
    fields.update(changes)
    return fields


def heartbeat_fields(device: str, number: int, **changes) -> dict:
    fields = {"schema_version": 1, "id": uuid7(), "device": device, "seq": number,
              "device_time": datetime.now(timezone.utc).isoformat(), "type": "heartbeat", "uptime_s": 10.0}
    fields.update(changes)
    return fields


def status_fields(device: str, **changes) -> dict:
    fields = {"schema_version": 1, "id": uuid7(), "device": device, "seq": 0,
              "device_time": datetime.now(timezone.utc).isoformat(), "type": "status", "state": "online"}
    fields.update(changes)
    return fields


def _json(fields: dict, **raw_tokens: str) -> bytes:
    """JSON with some values written as raw tokens (Infinity, NaN, 1e400: Python's json cannot make all)."""
    text = json.dumps(fields)
    for name, token in raw_tokens.items():
        text = text.replace(f'"{name}": "@@"', f'"{name}": {token}')
    return text.encode("utf-8", "surrogatepass")


def poison_messages(device: str, first_seq: int) -> list[tuple[TopicKind, bytes, str]]:
    """20 messages a device (broken or hostile) may send, each with the reason the gateway must record."""
    seq = iter(range(first_seq, first_seq + 100))
    r = lambda **c: reading_fields(device, next(seq), **c)
    h = lambda **c: heartbeat_fields(device, next(seq), **c)
    late, early = "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"
    return [
        (TopicKind.READING, _json(r(device_time=late)), "time_out_of_range"),
        (TopicKind.READING, _json(r(device_time=early)), "time_out_of_range"),
        (TopicKind.HEARTBEAT, _json(h(device_time=late)), "time_out_of_range"),
        (TopicKind.HEARTBEAT, _json(h(device_time=early)), "time_out_of_range"),
        (TopicKind.STATUS, _json(status_fields(device, device_time=late)), "time_out_of_range"),
        (TopicKind.READING, _json(r(celsius="39.5")), "schema"),
        (TopicKind.READING, _json(r(celsius="@@"), celsius="Infinity"), "not_finite"),
        (TopicKind.READING, _json(r(celsius="@@"), celsius="NaN"), "not_finite"),
        (TopicKind.READING, _json(r(celsius="@@"), celsius="1e400"), "not_finite"),
        (TopicKind.HEARTBEAT, _json(h(uptime_s="@@"), uptime_s="Infinity"), "not_finite"),
        (TopicKind.HEARTBEAT, _json(h(fps="@@"), fps="NaN"), "not_finite"),
        (TopicKind.HEARTBEAT, _json(h(outbox_depth=2**64)), "schema"),
        (TopicKind.READING, _json(r(seq=2**64)), "schema"),
        (TopicKind.READING, _json(r(seq="7")), "schema"),
        (TopicKind.READING, _json(r(plausible=1)), "schema"),
        (TopicKind.READING, _json(r(battery_pct=1e308)), "schema"),
        (TopicKind.READING, _json(r(sensor="\ud800")), "json"),
        (TopicKind.READING, _json(r(sensor="x")).replace(b'"x"', b'"\xff\xfe"'), "json"),
        (TopicKind.READING, b'{"type": "temperature", "celsius": 3', "json"),
        (TopicKind.READING, b"\x00" * 10, "json"),
    ]
