"""Attack 1: one message must not stop ingest, neither live nor when the broker redelivers it after a restart."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from edge.uplink import DeviceIdentity, Uplink
from gateway.service import GatewayService
from isowatch.contract import TopicKind
from tests.security.conftest import poison_messages, reading_fields
from tests.support import query, scalar, wait_until

pytestmark = pytest.mark.broker

SITE = "site-a"


def _publish_all(uplink: Uplink, items: list[tuple[TopicKind, bytes]]) -> None:
    infos = [uplink.send_raw(kind, payload) for kind, payload in items]
    for info in infos:
        info.wait_for_publish(30)  # the broker holds each one (PUBACK to the device)


def _reasons(db) -> dict[str, int]:
    return dict(query(db, "SELECT reason, count(*) FROM rejects GROUP BY reason"))


def test_a_reading_dated_past_the_calendar_does_not_stop_other_devices(mosquitto, tmp_path):
    db = tmp_path / "gw.db"
    service = GatewayService(db, mosquitto.url(), alerts=False).start()
    attacker = Uplink(mosquitto.add_user("cam-bad"), DeviceIdentity(SITE, "hh-1", "cam-bad")).start()
    honest = Uplink(mosquitto.add_user("cam-ok"), DeviceIdentity(SITE, "hh-2", "cam-ok")).start()
    try:
        poison = json.dumps(reading_fields("cam-bad", 1, device_time="9999-12-31T23:59:59-01:00")).encode()
        _publish_all(attacker, [(TopicKind.READING, poison)])
        _publish_all(honest, [(TopicKind.READING, json.dumps(reading_fields("cam-ok", n)).encode())
                              for n in range(1, 6)])
        wait_until(lambda: scalar(db, "SELECT count(*) FROM readings") == 5, what="the honest readings stored")
        wait_until(lambda: _reasons(db).get("time_out_of_range") == 1, what="the poison rejected with its reason")
        assert service.ingest.stats()["reject_reasons"] == {"time_out_of_range": 1}
        assert service.ingest.counters["batch_errors"] == 0
    finally:
        attacker.stop()
        honest.stop()
        service.stop()


def test_1000_readings_with_20_poison_then_a_restart_with_poison_queued(mosquitto, tmp_path):
    rng = random.Random(13)
    db = tmp_path / "gw.db"
    devices = [f"cam-{n}" for n in range(4)]
    uplinks = {d: Uplink(mosquitto.add_user(d), DeviceIdentity(SITE, f"hh-{d}", d)).start() for d in devices}
    seqs = {d: 1 for d in devices}
    poison = poison_messages("cam-0", 1_000_000)
    assert len(poison) == 20

    def mixed(readings: int, bad: list[tuple[TopicKind, bytes, str]]) -> list[tuple[str, TopicKind, bytes]]:
        items: list[tuple[str, TopicKind, bytes]] = []
        for _ in range(readings):
            device = rng.choice(devices)
            items.append((device, TopicKind.READING, json.dumps(reading_fields(device, seqs[device])).encode()))
            seqs[device] += 1
        for kind, payload, _reason in bad:
            items.insert(rng.randrange(len(items) + 1), ("cam-0", kind, payload))
        return items

    def send(items: list[tuple[str, TopicKind, bytes]]) -> None:
        infos = [uplinks[device].send_raw(kind, payload) for device, kind, payload in items]
        for info in infos:
            info.wait_for_publish(30)  # the broker holds it

    try:
        # 500 readings and 10 poison while the gateway runs...
        service = GatewayService(db, mosquitto.url()).start()
        try:
            send(mixed(500, poison[:10]))
            wait_until(lambda: scalar(db, "SELECT count(*) FROM readings") == 500, timeout=60,
                       what="the first 500 readings stored past the poison")
            wait_until(lambda: scalar(db, "SELECT count(*) FROM rejects") == 10, what="10 rejects")
        finally:
            service.stop()
        # ...then 500 more and the other 10 poison queue in the broker for the stopped gateway.
        send(mixed(500, poison[10:]))
        service = GatewayService(db, mosquitto.url()).start()
        try:
            wait_until(lambda: scalar(db, "SELECT count(*) FROM readings") == 1000, timeout=60,
                       what="1,000 readings stored after the restart")
            wait_until(lambda: scalar(db, "SELECT count(*) FROM rejects") == 20, what="20 rejects")
            assert service.ingest.wait_idle(quiet_s=1.0)
            assert scalar(db, "SELECT count(*) FROM readings") == 1000
            assert scalar(db, "SELECT count(*) FROM rejects") == 20
            assert _reasons(db) == dict(Counter(reason for _kind, _payload, reason in poison))
            assert all(detail for (detail,) in query(db, "SELECT detail FROM rejects"))
            assert service.ingest.counters["batch_errors"] == 0
        finally:
            service.stop()
    finally:
        for uplink in uplinks.values():
            uplink.stop()
