"""End to end over a real Mosquitto: a device publishes, the gateway validates, dedupes and stores."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.uplink import DeviceIdentity, Uplink
from gateway.service import GatewayService
from isowatch.contract import (
    ContactReading,
    DoorEvent,
    TamperEvent,
    TemperatureReading,
    TopicKind,
    encode,
)
from isowatch.ids import uuid7
from tests.support import query, scalar, wait_until

pytestmark = pytest.mark.broker

SITE, HOUSEHOLD, DEVICE = "site-a", "hh-3-502", "cam-3502"


def distinct_messages(uplink: Uplink, count: int, rng: random.Random) -> list:
    start = datetime(2026, 3, 1, 8, 0, tzinfo=timezone.utc)
    messages = []
    for n in range(count):
        at = start + timedelta(seconds=10 * n)
        pick = n % 4
        if pick == 0:
            messages.append(uplink.stamp(DoorEvent, type="door", state=rng.choice(["open", "closed"]), at=at))
        elif pick == 1:
            messages.append(uplink.stamp(TemperatureReading, type="temperature", at=at,
                                         celsius=round(rng.uniform(35.5, 39.5), 1), subject="body", method="oral"))
        elif pick == 2:
            messages.append(uplink.stamp(ContactReading, type="contact", open=rng.random() < 0.5, at=at))
        else:
            messages.append(uplink.stamp(TamperEvent, type="tamper", reason="covered",
                                         state=rng.choice(["start", "end"]), at=at))
    return messages


def bad_messages(valid: DoorEvent) -> list[tuple[TopicKind, bytes, str]]:
    """50 messages that must be rejected, with the reason the gateway should record."""
    good = json.loads(encode(valid))
    bad: list[tuple[TopicKind, bytes, str]] = []
    for n in range(15):
        bad.append((TopicKind.EVENT, b'{"type": "door", "state": ' + str(n).encode(), "json"))
    for n in range(10):
        broken = dict(good, id=uuid7(), seq=10_000 + n)
        del broken["device_time"]
        bad.append((TopicKind.EVENT, json.dumps(broken).encode(), "schema"))
    for _ in range(10):
        bad.append((TopicKind.EVENT, json.dumps(dict(good, id=uuid7(), state="ajar")).encode(), "schema"))
    for _ in range(10):
        spoofed = dict(good, id=uuid7(), device="cam-other")
        bad.append((TopicKind.EVENT, json.dumps(spoofed).encode(), "spoofed_device"))
    for _ in range(5):  # a door event on the reading topic
        bad.append((TopicKind.READING, json.dumps(dict(good, id=uuid7())).encode(), "schema"))
    return bad


def test_1000_events_with_duplicates_and_bad_ones_store_900_and_reject_50(mosquitto, tmp_path):
    rng = random.Random(7)
    service = GatewayService(tmp_path / "gw.db", mosquitto.url()).start()
    uplink = Uplink(mosquitto.add_user(DEVICE), DeviceIdentity(SITE, HOUSEHOLD, DEVICE)).start()
    try:
        valid = distinct_messages(uplink, 900, rng)
        resent = rng.sample(valid, 100)
        stream = valid + resent
        rng.shuffle(stream)
        for message in stream:
            uplink.send(message)
        bad = bad_messages(valid[0])
        for kind, payload, _ in bad:
            uplink.send_raw(kind, payload)

        db = tmp_path / "gw.db"
        wait_until(lambda: service.ingest.counters["received"] >= 1000 + 50, what="1,050 messages at the gateway")
        assert service.ingest.wait_idle(quiet_s=0.5)
        stored = scalar(db, "SELECT count(*) FROM events") + scalar(db, "SELECT count(*) FROM readings")
        assert stored == 900
        stored_ids = {r for (r,) in query(db, "SELECT id FROM events UNION ALL SELECT id FROM readings")}
        assert stored_ids == {m.id for m in valid}
        assert service.ingest.counters["duplicates"] == 100
        assert scalar(db, "SELECT count(*) FROM rejects") == 50
        expected_reasons: dict[str, int] = {}
        for _, _, reason in bad:
            expected_reasons[reason] = expected_reasons.get(reason, 0) + 1
        assert dict(query(db, "SELECT reason, count(*) FROM rejects GROUP BY reason")) == expected_reasons
        assert all(detail for (detail,) in query(db, "SELECT detail FROM rejects"))
    finally:
        uplink.stop()
        service.stop()


def test_device_moving_to_another_household_is_rejected_as_spoofed(mosquitto, tmp_path):
    service = GatewayService(tmp_path / "gw.db", mosquitto.url()).start()
    url = mosquitto.add_user(DEVICE)
    home = Uplink(url, DeviceIdentity(SITE, HOUSEHOLD, DEVICE)).start()
    try:
        home.send(home.stamp(DoorEvent, type="door", state="open"))
        wait_until(lambda: service.ingest.counters["stored"] == 1, what="first event stored")
        home.stop()
        # Same credentials, publishing as if it were in another household.
        elsewhere = Uplink(url, DeviceIdentity(SITE, "hh-9-999", DEVICE)).start()
        elsewhere.send(elsewhere.stamp(DoorEvent, type="door", state="open"))
        wait_until(lambda: service.ingest.reject_reasons["spoofed_household"] >= 1, what="spoof rejected")
        elsewhere.stop()
        assert scalar(tmp_path / "gw.db", "SELECT count(*) FROM events") == 1
    finally:
        service.stop()


def test_device_cannot_publish_under_another_devices_topic(mosquitto, tmp_path):
    """The generated ACL confines a device to its own device segment; the broker drops the rest."""
    service = GatewayService(tmp_path / "gw.db", mosquitto.url()).start()
    mosquitto.add_user("cam-victim")
    thief = Uplink(mosquitto.add_user("cam-thief"), DeviceIdentity(SITE, "hh-1", "cam-victim")).start(wait=10)
    honest = Uplink(mosquitto.url("cam-thief"), DeviceIdentity(SITE, "hh-2", "cam-thief")).start()
    try:
        thief.send(thief.stamp(DoorEvent, type="door", state="open"))
        honest.send(honest.stamp(DoorEvent, type="door", state="open"))
        wait_until(lambda: service.ingest.counters["stored"] >= 1, what="the honest event")
        service.ingest.wait_idle(quiet_s=1.0)
        devices = [d for (d,) in query(tmp_path / "gw.db", "SELECT device FROM events")]
        assert devices == ["cam-thief"]
    finally:
        thief.stop()
        honest.stop()
        service.stop()


def test_anonymous_client_cannot_connect(mosquitto):
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="anon")
    results = []
    client.on_connect = lambda c, u, f, reason, p: results.append(reason)
    client.connect("127.0.0.1", mosquitto.port)
    client.loop_start()
    try:
        wait_until(lambda: results, timeout=10, what="CONNACK")
    finally:
        client.loop_stop()
    assert results[0].is_failure
