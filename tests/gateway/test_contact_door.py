"""Door contacts page like cameras: through the real broker and gateway, to an Apprise receiver.

A box with a magnet and no camera reports `ContactReading`s; its openings must page the social worker as
a camera's do. A box with both reports one opening twice, in either order: it pages once.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone

import pytest

from dashboard.deps import Scope
from dashboard.household_view import summaries
from edge.uplink import DeviceIdentity, Uplink
from gateway.policy import load_policy
from gateway.service import GatewayService
from isowatch.contract import ContactReading, DoorEvent
from tests.gateway.test_alerts_e2e import seed_registry
from tests.support import query, scalar, wait_until

pytestmark = pytest.mark.broker

DEVICES = {"hh-3-502": "cam-3502", "hh-7-101": "cam-7101"}


@pytest.fixture
def street(mosquitto, tmp_path, inbox):
    """A running gateway (scans every half second, sensors must agree within 2 s) and a connected device for
    each household; yields (database, {household: uplink})."""
    db = tmp_path / "gw.db"
    base = load_policy()
    policy = base.model_copy(update={"rules": base.rules.model_copy(update={"disagree_window_s": 2})})
    service = GatewayService(db, mosquitto.url(), policy=policy, worker_options={"scan_every_s": 0.5})
    registry = seed_registry(db, inbox)
    uplinks = {household: Uplink(mosquitto.add_user(device, registry.register_device(device, household, by="test")),
                                 DeviceIdentity("site-a", household, device))
               for household, device in DEVICES.items()}
    registry.conn.close()
    service.start()
    try:
        for uplink in uplinks.values():
            uplink.start()
        yield db, uplinks
    finally:
        for uplink in uplinks.values():
            uplink.stop()
        service.stop()


def door_pages(db) -> list[tuple]:
    return query(db, "SELECT a.household, a.detail, n.staff, n.state FROM notifications n "
                     "JOIN alerts a ON a.id = n.alert_id WHERE a.kind = 'door_opened' ORDER BY a.household")


def disagreement_scan_passed(db, ref: str) -> bool:
    """The disagreement scan has looked past this opening (plus its window)."""
    row = query(db, "SELECT json_extract(state, '$.until') FROM scan_state WHERE scan = 'disagree'")
    at = query(db, "SELECT received_at FROM readings WHERE id = ? UNION SELECT received_at FROM events WHERE id = ?",
               (ref, ref))
    return bool(row and at and row[0][0] > at[0][0])


def test_a_contact_opening_from_a_box_without_camera_pages_like_a_camera_opening(street, inbox):
    db, uplinks = street
    magnet, camera = uplinks["hh-3-502"], uplinks["hh-7-101"]  # hh-3-502's box has a magnet and no camera
    opened = magnet.stamp(ContactReading, type="contact", open=True)
    magnet.send(opened)
    magnet.send(magnet.stamp(ContactReading, type="contact", open=False))
    seen = camera.stamp(DoorEvent, type="door", state="open")
    camera.send(seen)

    pages = wait_until(lambda: len(door_pages(db)) == 2 and all(p[3] == "sent" for p in door_pages(db))
                       and door_pages(db), timeout=30, what="both door pages sent")
    assert pages == [("hh-3-502", "contact", "chen-social", "sent"), ("hh-7-101", "camera", "chen-social", "sent")]
    doors = [m for m in inbox.received() if "隔离期间开门" in m.title]
    (contact_page,) = [m for m in doors if m.title.endswith("幸福里3号楼 502")]
    (camera_page,) = [m for m in doors if m.title.endswith("幸福里7号楼 101")]
    assert contact_page.recipient == camera_page.recipient == "chen-social"
    for page in (contact_page, camera_page):
        assert "隔离第 3 天（共 14 天）" in page.body and "/ack/" in page.body
    # The same escalation: the leader is next unless someone acknowledges.
    steps = query(db, "SELECT household, step, next_step_at IS NOT NULL FROM alerts WHERE kind = 'door_opened' "
                      "ORDER BY household")
    assert steps == [("hh-3-502", 1, 1), ("hh-7-101", 1, 1)]
    assert query(db, "SELECT outcome, kind FROM rule_log WHERE ref = ?", (opened.id,)) == [("alert", "door_opened")]
    # A box without a camera has nothing to disagree with: no sensor_disagree page 60 s later.
    wait_until(lambda: disagreement_scan_passed(db, opened.id), timeout=30, what="the disagreement scan")
    assert scalar(db, "SELECT count(*) FROM alerts WHERE kind = 'sensor_disagree'") == 0
    # The household page shows the door as the magnet last reported it.
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    doors = {s.household: s.door for s in summaries(conn, Scope(None, None), datetime.now(timezone.utc))}
    conn.close()
    assert doors == {"hh-3-502": "closed", "hh-7-101": "open"}


def test_camera_and_contact_reporting_one_opening_page_once_whichever_arrives_first(street, inbox):
    db, uplinks = street
    contact_first, camera_first = uplinks["hh-3-502"], uplinks["hh-7-101"]  # each box: a camera and a magnet
    contact = contact_first.stamp(ContactReading, type="contact", open=True)
    contact_first.send(contact).wait_for_publish(10)
    wait_until(lambda: query(db, "SELECT 1 FROM rule_log WHERE ref = ?", (contact.id,)), what="the contact evaluated")
    contact_first.send(contact_first.stamp(DoorEvent, type="door", state="open", source="camera"))

    camera = camera_first.stamp(DoorEvent, type="door", state="open", exit_suspected=True)
    camera_first.send(camera).wait_for_publish(10)
    wait_until(lambda: query(db, "SELECT 1 FROM rule_log WHERE ref = ?", (camera.id,)), what="the camera evaluated")
    camera_first.send(camera_first.stamp(ContactReading, type="contact", open=True))

    wait_until(lambda: scalar(db, "SELECT count(*) FROM rule_log") == 4, timeout=30, what="all four reports evaluated")
    wait_until(lambda: len(door_pages(db)) == 2 and all(p[3] == "sent" for p in door_pages(db)), timeout=30,
               what="the pages sent")
    outcomes = sorted(query(db, "SELECT household, outcome FROM rule_log"))
    assert outcomes == [("hh-3-502", "alert"), ("hh-3-502", "merged"), ("hh-7-101", "alert"), ("hh-7-101", "merged")]
    assert query(db, "SELECT household, count FROM alerts WHERE kind LIKE '%door%' ORDER BY household") == [
        ("hh-3-502", 1), ("hh-7-101", 1)]
    # Both reports are the alert's evidence; both sensors saw the opening, so they do not disagree.
    assert scalar(db, "SELECT count(*) FROM alert_events e JOIN alerts a ON a.id = e.alert_id "
                      "WHERE a.kind = 'door_opened'") == 4
    wait_until(lambda: disagreement_scan_passed(db, camera.id), timeout=30, what="the disagreement scan")
    assert scalar(db, "SELECT count(*) FROM alerts WHERE kind = 'sensor_disagree'") == 0
    assert sorted(m.recipient for m in inbox.received() if "隔离期间开门" in m.title) == ["chen-social", "chen-social"]
    assert len(door_pages(db)) == 2
