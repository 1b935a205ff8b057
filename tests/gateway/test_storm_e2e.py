"""A storm end to end: households' devices fall silent together over a real Mosquitto, the gateway
(ingest, rules, grouping, escalation, Apprise) pages a local receiver, and the group is acknowledged through
the real dashboard's POST. A door opening in the storm pages at once on its own; a gateway restarted
mid-storm keeps the group (no second page) and the devices silent since then join it.

The policy shortens `offline_after_s` to its minimum, 10 s, so a storm comes within seconds.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.inbox import LocalInbox
from gateway.policy import DEFAULT_POLICY, parse_policy
from gateway.registry import HouseholdIn, IsolationIn
from gateway.store import open_database
from isowatch.contract import DoorEvent, Heartbeat, encode, topic_for
from isowatch.stamper import Stamper
from isowatch_app.site import SiteService
from tests.gateway.test_alerts_e2e import form_token, seed_registry
from tests.support import query, scalar, wait_until

pytestmark = [pytest.mark.broker, pytest.mark.slow]

POLICY = parse_policy(DEFAULT_POLICY.read_text().replace("offline_after_s: 90", "offline_after_s: 10"))


class Street:
    """Households of team-1 on Xingfu Street, each with a registered device, and one publisher for them all
    (a test credential that may write every device's topics)."""

    def __init__(self, mosquitto, db, inbox: LocalInbox, count: int) -> None:
        open_database(db).close()
        registry = seed_registry(db, inbox)
        start = datetime.now(ZoneInfo("Asia/Shanghai")).date() - timedelta(days=2)
        self.devices: dict[str, Stamper] = {}
        for n in range(count):
            household = f"hh-s-{n:03d}"
            registry.upsert_household(HouseholdIn(household=household, site="site-a", address=f"幸福里{n + 10}号楼",
                                                  unit="101", team="team-1"))
            registry.start_isolation(IsolationIn(household=household, start_date=start), by="test")
            registry.register_device(f"dev-s-{n:03d}", household, by="test", password="unused")
            self.devices[household] = Stamper(f"dev-s-{n:03d}")
        registry.conn.close()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="storm-test")
        url = mosquitto.add_user("storm-test", full_access=True)
        self.client.username_pw_set(url.username, url.password)
        self.client.connect("127.0.0.1", mosquitto.port)
        self.client.loop_start()

    def heartbeat(self, households: list[str]) -> None:
        for household in households:
            beat = self.devices[household].stamp(Heartbeat, type="heartbeat", uptime_s=60.0)
            self.client.publish(topic_for("site-a", household, beat), encode(beat), qos=1).wait_for_publish(10)

    def door(self, household: str) -> DoorEvent:
        door = self.devices[household].stamp(DoorEvent, type="door", state="open")
        self.client.publish(topic_for("site-a", household, door), encode(door), qos=1).wait_for_publish(10)
        return door

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def offline_pages(inbox: LocalInbox) -> list:
    return [m for m in inbox.received() if "设备离线" in m.title or "Device offline" in m.title
            or "Devices offline" in m.title]


def group_pages(inbox: LocalInbox) -> list:
    return [m for m in offline_pages(inbox) if "/ack/group/" in m.body]


def test_a_storm_groups_a_door_in_it_pages_at_once_and_the_group_page_acknowledges_every_member(mosquitto, tmp_path):
    db = tmp_path / "gw.db"
    with LocalInbox() as inbox:
        street = Street(mosquitto, db, inbox, 24)
        service = SiteService(db, mosquitto.url(), http_port=0, policy=POLICY).start()
        try:
            street.heartbeat(list(street.devices))  # every device heard from; then all fall silent at once
            wait_until(lambda: group_pages(inbox), timeout=60, what="the storm's group page")
            door = street.door("hh-s-005")  # a door opens in the middle of the storm
            (door_page,) = wait_until(lambda: [m for m in inbox.received() if "隔离期间开门" in m.title], timeout=30,
                                      what="the door's own page")
            assert door_page.recipient == "chen-social" and "幸福里15号楼 101" in door_page.title
            assert query(db, "SELECT a.group_id, n.group_id FROM alerts a JOIN notifications n ON n.alert_id = a.id "
                             "WHERE a.first_event_id = ?", (door.id,)) == [(None, None)]
            wait_until(lambda: scalar(db, "SELECT count(*) FROM alerts WHERE kind = 'device_offline' "
                                          "AND group_id IS NOT NULL") == 24, timeout=60,
                       what="every device in the group")
            service.alerts.settle()

            pages = Counter(m.recipient for m in offline_pages(inbox))
            assert pages and max(pages.values()) <= 2, pages
            (group_page,) = group_pages(inbox)
            assert group_page.recipient == "chen-social" and re.search(r"Xingfu Street \d+ 户设备离线（\d\d:\d\d 起）",
                                                                       group_page.title)
            assert query(db, "SELECT count(*), count(DISTINCT group_id) FROM alerts WHERE kind = 'device_offline'") == [
                (24, 1)]

            link = re.search(r"(http://127\.0\.0\.1:\d+/ack/group/\S+)", group_page.body).group(1)
            for _ in range(2):  # a preview bot, a second look: reading only
                seen = httpx.get(link, headers={"User-Agent": "WhatsApp/2.23 (link preview)"}, timeout=10)
                assert seen.status_code == 200 and "我来处理（全组）" in seen.text
                assert seen.text.count('data-alert="') == 24
            assert httpx.get(f"{link}/acknowledge", timeout=10).status_code == 405
            assert httpx.post(f"{link}/acknowledge", data={"form": "0" * 32}, timeout=10).status_code == 403
            assert scalar(db, "SELECT count(*) FROM alerts WHERE acknowledged_at IS NOT NULL") == 0

            taken = httpx.post(f"{link}/acknowledge", data={"form": form_token(seen.text), "lang": "zh"}, timeout=10,
                               follow_redirects=True)
            assert taken.status_code == 200 and "你正在处理" in taken.text and "设备已恢复在线" in taken.text
            assert query(db, "SELECT DISTINCT acknowledged_by FROM alerts WHERE kind = 'device_offline'") == [
                ("chen-social",)]
            assert query(db, "SELECT acknowledged_by FROM alerts WHERE kind = 'door_opened'") == [(None,)]
            assert scalar(db, "SELECT count(*) FROM audit_log WHERE action = 'alert.acknowledge' "
                              "AND detail LIKE '%\"group\"%' AND who = 'chen-social'") == 24
            (group,) = query(db, "SELECT DISTINCT group_id FROM alerts WHERE kind = 'device_offline'")[0]
            assert query(db, "SELECT who, action FROM audit_log WHERE object = ? ORDER BY id", (f"group:{group}",)) == [
                ("gateway", "group.open"), ("chen-social", "group.acknowledge")]
        finally:
            street.close()
            service.stop()


def test_a_gateway_restarted_mid_storm_keeps_the_group_and_later_devices_join_it(mosquitto, tmp_path):
    db = tmp_path / "gw.db"
    with LocalInbox() as inbox:
        street = Street(mosquitto, db, inbox, 14)
        first, later = list(street.devices)[:8], list(street.devices)[8:]
        service = SiteService(db, mosquitto.url(), http_port=0, policy=POLICY).start()
        silent = threading.Event()

        def keep_later_alive() -> None:
            while not silent.is_set():
                street.heartbeat(later)
                silent.wait(2.0)

        beating = threading.Thread(target=keep_later_alive, daemon=True)
        try:
            street.heartbeat(first)
            beating.start()
            wait_until(lambda: group_pages(inbox), timeout=60, what="the first devices' group page")
            service.alerts.settle()
            before = len(offline_pages(inbox))
            (group,) = query(db, "SELECT id FROM alert_groups WHERE kind = 'device_offline'")
            silent.set()  # the rest of the street falls silent while the gateway restarts
            beating.join(10)
            service.stop()
            grouped_before = scalar(db, "SELECT count(*) FROM alerts WHERE group_id = ?", group)
            service = SiteService(db, mosquitto.url(), http_port=0, policy=POLICY).start()
            wait_until(lambda: scalar(db, "SELECT count(*) FROM alerts WHERE kind = 'device_offline'") == 14,
                       timeout=60, what="the later devices found offline after the restart")
            service.alerts.settle()
            assert query(db, "SELECT DISTINCT group_id FROM alerts WHERE kind = 'device_offline'") == [group]
            assert grouped_before < 14  # some (usually all six) were found silent by the restarted gateway
            assert query(db, "SELECT id FROM alert_groups WHERE kind = 'device_offline'") == [group]
            assert len(offline_pages(inbox)) == before, [m.title for m in offline_pages(inbox)]
            assert scalar(db, "SELECT count(*) FROM notifications WHERE group_id = ?", group) == 1
        finally:
            silent.set()
            street.close()
            service.stop()
