"""Retained messages: only a device's status may be retained. Anything else a device retains is replayed by
the broker to the gateway at every reconnect (and would come back after retention purged it): the gateway
rejects it once, clears it at the broker, and does not count it again."""

from __future__ import annotations

import json
import threading

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.uplink import DeviceIdentity, Uplink
from gateway.service import GatewayService
from isowatch.broker import BrokerUrl
from isowatch.contract import TopicKind, topic
from isowatch.ids import uuid7
from tests.security.conftest import JPEG, reading_fields
from tests.support import scalar, wait_until

pytestmark = pytest.mark.broker

SITE, HOUSEHOLD, DEVICE = "site-a", "hh-1", "cam-1"


def retained_at_broker(url: BrokerUrl, prefix: str) -> dict[str, bytes]:
    """What the broker would replay to a new subscriber under `prefix`/#: the retained messages, read up to a
    marker published after subscribing (the broker sends a subscription's retained messages first)."""
    marker = f"{prefix}/ack"
    seen: dict[str, bytes] = {}
    done = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{uuid7()[:8]}", protocol=mqtt.MQTTv311)
    client.username_pw_set(url.username, url.password)

    def on_message(_c, _u, msg):
        if msg.topic == marker and not msg.retain:
            done.set()
        elif msg.retain:
            seen[msg.topic] = msg.payload

    client.on_message = on_message
    client.on_subscribe = lambda c, *_: c.publish(marker, b"probe", qos=1)
    client.on_connect = lambda c, *_: c.subscribe(f"{prefix}/#", 1)
    client.connect(url.host, url.port)
    client.loop_start()
    try:
        assert done.wait(15), "the marker never came back"
    finally:
        client.disconnect()
        client.loop_stop()
    return seen


def _retained_rejects(db) -> int:
    return scalar(db, "SELECT count(*) FROM rejects WHERE reason = 'retained'")


def test_retained_messages_off_the_status_topic_are_rejected_once_and_cleared(mosquitto, tmp_path):
    db = tmp_path / "gw.db"
    # The test looks at the broker's retained store as a user of its own: the broker names connections by
    # user, so connecting as the gateway would take over (and, clean, wipe) the gateway's session.
    probe_url = mosquitto.add_user("retained-probe", full_access=True)
    device = Uplink(mosquitto.add_user(DEVICE), DeviceIdentity(SITE, HOUSEHOLD, DEVICE)).start()
    prefix = f"isowatch/v1/{SITE}/{HOUSEHOLD}/{DEVICE}"
    reading = json.dumps(reading_fields(DEVICE, 1)).encode()
    service = GatewayService(db, mosquitto.url(), alerts=False).start()
    try:
        device.client.publish(topic(SITE, HOUSEHOLD, DEVICE, TopicKind.READING), reading, qos=1,
                              retain=True).wait_for_publish(10)
        device.client.publish(topic(SITE, HOUSEHOLD, DEVICE, TopicKind.SNAPSHOT, uuid7()), JPEG, qos=1,
                              retain=True).wait_for_publish(10)
        # MQTT 3.1.1 delivers a live message without its retain flag: the reading is stored as sent...
        wait_until(lambda: scalar(db, "SELECT count(*) FROM readings") == 1, what="the live reading stored")
        retained = retained_at_broker(probe_url, prefix)
        assert f"{prefix}/reading" in retained and f"{prefix}/status" in retained
    finally:
        service.stop()
    expected = 2
    for restart in range(3):  # ...and every reconnect replays it from the broker's retained store
        service = GatewayService(db, mosquitto.url(), alerts=False).start()
        try:
            wait_until(lambda: _retained_rejects(db) == expected, what="the retained messages rejected")
            wait_until(lambda: set(retained_at_broker(probe_url, prefix)) == {f"{prefix}/status"},
                       what="the retained messages cleared at the broker (the status stays)")
            assert service.ingest.wait_idle(quiet_s=0.5)
            assert _retained_rejects(db) == expected, f"counted again after restart {restart}"
            # The gateway's own clears come back to it as empty messages: not a device's, not rejects.
            assert scalar(db, "SELECT count(*) FROM rejects") == expected
        finally:
            service.stop()
        if restart == 0:  # the device retains again (twice, while the gateway is down): one more reject
            reading = json.dumps(reading_fields(DEVICE, 2)).encode()
            for _ in range(2):
                device.client.publish(topic(SITE, HOUSEHOLD, DEVICE, TopicKind.READING), reading, qos=1,
                                      retain=True).wait_for_publish(10)
            expected = 3
    assert scalar(db, "SELECT count(*) FROM readings") == 2  # the live copies, stored once each
    device.stop()


def test_a_replayed_retained_reject_the_gateway_could_not_clear_is_not_counted_again(tmp_path):
    """Where the clear does not reach the broker (a crash before it, an ACL without write access), the
    replay is recognised: the same topic and payload, rejected as retained before."""
    from datetime import datetime, timezone

    from gateway.store import Store
    from gateway.store_process import AckBook, store_batch

    store = Store(tmp_path / "gw.db")
    now = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
    raw_topic = topic(SITE, HOUSEHOLD, DEVICE, TopicKind.HEARTBEAT).encode()
    payload = json.dumps({"type": "heartbeat", "uptime_s": 1}).encode()
    first = store_batch(store, [(raw_topic, payload, 1, 1, True)], now, AckBook())
    again = store_batch(store, [(raw_topic, payload, 2, 1, True)], now, AckBook())
    assert [r[0] for r in first.rejected] == ["retained"] and first.clear_retained == [raw_topic.decode()]
    assert again.rejected == [] and again.replayed == 1 and again.clear_retained == [raw_topic.decode()]
    assert store.db.execute("SELECT count(*) FROM rejects").fetchone()[0] == 1
    store.close()
