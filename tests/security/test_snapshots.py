"""Attack 3: snapshots belong to an event of the same device and household, a device's uploads are capped per
hour, and uploads that never meet their event are purged and counted."""

from __future__ import annotations

import json
import os
import sqlite3
from datetime import timedelta

import pytest

from edge.uplink import DeviceIdentity, Uplink
from gateway import retention
from gateway.policy import load_policy
from gateway.service import GatewayService
from gateway.store import connect
from isowatch.clock import SystemClock
from isowatch.contract import MAX_SNAPSHOT_BYTES, DoorEvent, TopicKind
from isowatch.ids import uuid7
from tests.security.conftest import JPEG
from tests.support import query, scalar, wait_until

pytestmark = pytest.mark.broker

SITE = "site-a"


def _reasons(db) -> dict[str, int]:
    """Why snapshots were rejected (a device's status under a household not its own is rejected too)."""
    return dict(query(db, "SELECT reason, count(*) FROM rejects WHERE topic LIKE '%/snapshot/%' GROUP BY reason"))


def _jpeg(size: int = 200) -> bytes:
    return JPEG + os.urandom(size - len(JPEG))


@pytest.fixture
def gateway(mosquitto, tmp_path):
    service = GatewayService(tmp_path / "gw.db", mosquitto.url(), alerts=False).start()
    yield service
    service.stop()


def test_a_device_cannot_attach_a_picture_to_another_households_event(mosquitto, gateway, tmp_path):
    db = tmp_path / "gw.db"
    mine = Uplink(mosquitto.add_user("cam-a"), DeviceIdentity(SITE, "hh-a", "cam-a")).start()
    victim = Uplink(mosquitto.add_user("cam-b"), DeviceIdentity(SITE, "hh-b", "cam-b")).start()
    # The attacker's own credentials, publishing under the victim household's topic (the ACL allows any
    # site and household segment: the device segment is all it checks).
    forger = Uplink(mosquitto.url("cam-a"), DeviceIdentity(SITE, "hh-b", "cam-a"))
    try:
        mine.send(mine.stamp(DoorEvent, type="door", state="open")).wait_for_publish(10)
        their_event = victim.stamp(DoorEvent, type="door", state="open")
        victim.send(their_event).wait_for_publish(10)
        wait_until(lambda: scalar(db, "SELECT count(*) FROM events") == 2, what="both events stored")
        mine.stop()
        forger.start()
        forger.send_raw(TopicKind.SNAPSHOT, _jpeg(), their_event.id).wait_for_publish(10)
        forger.stop()
        # From its own household, naming the victim's event.
        mine = Uplink(mosquitto.url("cam-a"), DeviceIdentity(SITE, "hh-a", "cam-a")).start()
        mine.send_raw(TopicKind.SNAPSHOT, _jpeg(), their_event.id).wait_for_publish(10)
        wait_until(lambda: sum(_reasons(db).values()) >= 2, what="both forged pictures rejected")
        assert _reasons(db) == {"spoofed_household": 1, "snapshot_mismatch": 1}
        assert scalar(db, "SELECT count(*) FROM snapshots WHERE event_id = ?", (their_event.id,)) == 0
        assert scalar(db, "SELECT count(*) FROM pending_snapshots") == 0
    finally:
        mine.stop()
        victim.stop()


def test_a_picture_sent_before_its_event_waits_for_it_and_is_then_linked(mosquitto, gateway, tmp_path):
    db = tmp_path / "gw.db"
    device = Uplink(mosquitto.add_user("cam-a"), DeviceIdentity(SITE, "hh-a", "cam-a")).start()
    try:
        event = device.stamp(DoorEvent, type="door", state="open")
        device.send_raw(TopicKind.SNAPSHOT, _jpeg(), event.id).wait_for_publish(10)
        wait_until(lambda: gateway.ingest.counters["received"] >= 1, what="the picture at the gateway")
        assert gateway.ingest.wait_idle(quiet_s=0.3)
        assert scalar(db, "SELECT count(*) FROM snapshots") == 0  # on no timeline while its event is unknown
        device.send(event).wait_for_publish(10)
        wait_until(lambda: scalar(db, "SELECT count(*) FROM snapshots WHERE event_id = ?", (event.id,)) == 1,
                   what="the picture linked to its event")
        assert scalar(db, "SELECT count(*) FROM pending_snapshots") == 0
        assert scalar(db, "SELECT count(*) FROM rejects") == 0
    finally:
        device.stop()


def test_a_flood_of_big_pictures_under_made_up_events_is_capped_and_purged_as_orphans(mosquitto, gateway,
                                                                                          tmp_path):
    db = tmp_path / "gw.db"
    policy = load_policy()
    quota = int(policy.snapshots.quota_mib_per_hour * 1024 * 1024)
    uploads = 20
    assert uploads * MAX_SNAPSHOT_BYTES > quota, "the flood must exceed the default quota"
    device = Uplink(mosquitto.add_user("cam-a"), DeviceIdentity(SITE, "hh-a", "cam-a")).start()
    elsewhere = Uplink(mosquitto.url("cam-a"), DeviceIdentity("made-up", "nowhere", "cam-a"))
    try:
        device.send(device.stamp(DoorEvent, type="door", state="open")).wait_for_publish(10)
        wait_until(lambda: scalar(db, "SELECT count(*) FROM events") == 1, what="the device's own event")
        infos = [device.send_raw(TopicKind.SNAPSHOT, _jpeg(MAX_SNAPSHOT_BYTES), uuid7()) for _ in range(uploads)]
        for info in infos:
            info.wait_for_publish(30)
        device.stop()
        elsewhere.start()
        elsewhere.send_raw(TopicKind.SNAPSHOT, _jpeg(), uuid7()).wait_for_publish(10)
        elsewhere.stop()
        wait_until(lambda: gateway.ingest.counters["received"] >= 1 + uploads + 1, what="every upload seen")
        assert gateway.ingest.wait_idle(quiet_s=0.5)

        within = quota // MAX_SNAPSHOT_BYTES
        assert scalar(db, "SELECT count(*) FROM pending_snapshots") == within
        assert scalar(db, "SELECT coalesce(sum(bytes), 0) FROM pending_snapshots") <= quota
        assert scalar(db, "SELECT count(*) FROM snapshots") == 0  # linked to nothing, shown nowhere
        assert _reasons(db) == {"snapshot_quota": uploads - within, "spoofed_household": 1}
        files = [p for p in (tmp_path / "snapshots").rglob("*.jpg")]
        assert len(files) == within

        # Retention: not yet while they may still meet their event, then every orphan and its file.
        conn = connect(db)
        conn.row_factory = sqlite3.Row
        try:
            now = SystemClock().now()
            retention.purge(conn, policy, now, tmp_path / "snapshots")
            assert scalar(db, "SELECT count(*) FROM pending_snapshots") == within
            later = now + timedelta(minutes=policy.snapshots.match_wait_minutes + 1)
            retention.purge(conn, policy, later, tmp_path / "snapshots")
        finally:
            conn.close()
        assert scalar(db, "SELECT count(*) FROM pending_snapshots") == 0
        assert not [p for p in (tmp_path / "snapshots").rglob("*.jpg")]
        (detail,) = [json.loads(d) for (d,) in query(
            db, "SELECT detail FROM audit_log WHERE action = 'retention.orphan_snapshots'")]
        assert detail["snapshots"] == within and detail["bytes"] == within * MAX_SNAPSHOT_BYTES
    finally:
        device.stop()


def test_a_picture_from_a_device_not_seen_before_does_not_decide_where_it_belongs(tmp_path):
    """Only messages bind an unregistered device to a household: a picture under a made-up one must not
    make the device's real messages look spoofed."""
    from datetime import datetime, timezone

    from gateway.store import Accepted, SnapshotUpload, Store
    from isowatch.contract import Topic, encode, topic_for

    store = Store(tmp_path / "gw.db")
    now = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
    upload = SnapshotUpload(Topic.parse(f"isowatch/v1/made-up/nowhere/cam-new/snapshot/{uuid7()}"), _jpeg(), now)
    store.write_batch([], [], [upload])
    event = DoorEvent(type="door", id=uuid7(), device="cam-new", seq=1, device_time=now, state="open")
    outcome = store.write_batch([Accepted(Topic.parse(topic_for(SITE, "hh-a", event)), event, now, encode(event))])
    assert len(outcome.stored) == 1 and not outcome.rejected
    store.close()
