"""End to end over a real Mosquitto: door event -> alert -> Apprise -> local receiver -> ack link over HTTP.

Also: devices registered through the registry get their own broker credentials, and the generated
password and ACL files confine each device to its own topics.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.uplink import DeviceIdentity, Uplink
from gateway.inbox import LocalInbox
from gateway.registry import Registry
from gateway.registry_import import apply, parse_yaml
from gateway.service import GatewayService
from isowatch.contract import DoorEvent
from isowatch_app.site import SiteService
from tests.fixtures.world import registry_yaml
from tests.support import query, scalar, wait_until

pytestmark = pytest.mark.broker


def seed_registry(db_path, inbox: LocalInbox, start_date=None) -> Registry:
    conn = sqlite3.connect(db_path, timeout=30)
    registry = Registry(conn)
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    text = registry_yaml(inbox).replace("2026-03-01", (start_date or today - timedelta(days=2)).isoformat())
    apply(parse_yaml(text, "registry.yaml"), registry, by="test")
    return registry


def started_gateway_and_camera(mosquitto, db, inbox: LocalInbox) -> tuple[SiteService, Uplink]:
    """The gateway (dashboard on) with the seeded registry, and household hh-3-502's registered camera."""
    service = SiteService(db, mosquitto.url(), http_port=0)
    registry = seed_registry(db, inbox)
    password = registry.register_device("cam-3502", "hh-3-502", by="test")
    service.start()
    return service, Uplink(mosquitto.add_user("cam-3502", password), DeviceIdentity("site-a", "hh-3-502", "cam-3502"))


def form_token(page: str) -> str:
    return re.search(r'name="form" value="([0-9a-f]+)"', page).group(1)


def test_door_event_pages_social_worker_once_and_only_the_links_page_form_acknowledges(mosquitto, tmp_path):
    """Chat apps fetch links for their previews: opening the link must change nothing; the person acts on
    the page it opens (a POST with the page's form token), first "I'm handling it", then an outcome."""
    db = tmp_path / "gw.db"
    with LocalInbox() as inbox:
        service, uplink = started_gateway_and_camera(mosquitto, db, inbox)
        try:
            uplink.start()
            uplink.send(uplink.stamp(DoorEvent, type="door", state="open", exit_suspected=True))
            (message,) = wait_until(inbox.received, timeout=20, what="the notification at the receiver")
            assert message.recipient == "chen-social"
            assert "隔离第 3 天（共 14 天）" in message.body and "幸福里3号楼 502" in message.body
            link = re.search(r"(http://127\.0\.0\.1:\d+/ack/\S+)", message.body).group(1)
            assert link.startswith(f"http://127.0.0.1:{service.http_port}/ack/")

            bot = {"User-Agent": "WhatsApp/2.23 (link preview)"}
            for _ in range(3):  # a preview bot, a second device, a reload: reading only
                seen = httpx.get(link, headers=bot, timeout=10)
                assert seen.status_code == 200 and "我来处理" in seen.text and "开门" in seen.text
                assert "door_opened" not in seen.text.replace("kind-door_opened", "")
            httpx.head(link, timeout=10)
            assert httpx.get(f"{link}/acknowledge", timeout=10).status_code == 405
            assert query(db, "SELECT state, acknowledged_by FROM alerts") == [("notified", None)]
            assert scalar(db, "SELECT count(*) FROM audit_log WHERE action LIKE 'alert.%'") == 0

            forged = httpx.post(f"{link}/acknowledge", data={"form": "0" * 32}, timeout=10)
            assert forged.status_code == 403
            wrong_link = httpx.get(link[:-3] + "xyz", timeout=10)
            assert wrong_link.status_code == 404
            assert query(db, "SELECT state, acknowledged_by FROM alerts") == [("notified", None)]

            page = httpx.get(link, timeout=10).text
            handled = httpx.post(f"{link}/acknowledge", data={"form": form_token(page), "lang": "zh"}, timeout=10,
                                 follow_redirects=True)
            assert handled.status_code == 200 and "你正在处理" in handled.text and "属实违规" in handled.text
            assert query(db, "SELECT state, acknowledged_by FROM alerts") == [("acknowledged", "chen-social")]
            unfit = httpx.post(f"{link}/resolve", data={"form": form_token(page), "verdict": "seen_by_medical"},
                               timeout=10)
            assert unfit.status_code == 422  # a medical outcome does not close a door alert
            resolved = httpx.post(f"{link}/resolve", data={"form": form_token(page), "verdict": "authorised_exit",
                                                           "note": "去医院复查", "lang": "zh"},
                                  timeout=10, follow_redirects=True)
            assert resolved.status_code == 200 and "获准外出" in resolved.text and "陈社工" in resolved.text
            assert query(db, "SELECT state, verdict, resolved_by, note FROM alerts") == [
                ("resolved", "authorised_exit", "chen-social", "去医院复查")]
            assert query(db, "SELECT who, action FROM audit_log WHERE action LIKE 'alert.%' ORDER BY id") == [
                ("chen-social", "alert.acknowledge"), ("chen-social", "alert.resolve")]
            service.ingest.wait_idle(quiet_s=1.0)
            assert len(inbox.received()) == 1
            assert scalar(db, "SELECT count(*) FROM notifications") == 1
            assert query(db, "SELECT ok FROM delivery_attempts") == [(1,)]
        finally:
            uplink.stop()
            service.stop()


def connect(port: int, username: str | None, password: str | None) -> str:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{username}-{time.monotonic_ns()}")
    if username:
        client.username_pw_set(username, password)
    results: list = []
    client.on_connect = lambda c, u, f, reason, p: results.append(str(reason))
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        wait_until(lambda: results, timeout=10, what="CONNACK")
    finally:
        client.disconnect()
        client.loop_stop()
    return results[0]


def test_registered_devices_are_confined_by_the_generated_password_and_acl_files(mosquitto, tmp_path):
    db = tmp_path / "gw.db"
    with LocalInbox() as inbox:
        service = GatewayService(db, mosquitto.url(), alerts=False)
        registry = seed_registry(db, inbox)
        own = registry.register_device("cam-3502", "hh-3-502", by="admin")
        other = registry.register_device("cam-7101", "hh-7-101", by="admin")
        # Replace the fixture's files with the registry's (the gateway keeps its password) and reload.
        count = registry.write_broker_files(mosquitto.password_file, mosquitto.acl_file,
                                            gateway_password=mosquitto.users["gateway"])
        assert count == 2
        mosquitto.process.send_signal(signal.SIGHUP)
        time.sleep(0.3)
        assert "cam-3502:$7$" in mosquitto.password_file.read_text()
        assert own not in mosquitto.password_file.read_text()  # hashes only
        service.start()
        thief = Uplink(mosquitto.url("gateway").with_user("cam-3502", own),
                       DeviceIdentity("site-a", "hh-7-101", "cam-7101"))
        honest = Uplink(mosquitto.url("gateway").with_user("cam-7101", other),
                        DeviceIdentity("site-a", "hh-7-101", "cam-7101"))
        try:
            # One after the other, so the thief's publish is settled before the honest event is awaited.
            thief.start()
            thief.send(thief.stamp(DoorEvent, type="door", state="open")).wait_for_publish(10)
            thief.stop()
            honest.start()
            honest.send(honest.stamp(DoorEvent, type="door", state="open"))
            wait_until(lambda: scalar(db, "SELECT count(*) FROM events") >= 1, what="the honest event")
            service.ingest.wait_idle(quiet_s=1.0)
            assert query(db, "SELECT device FROM events") == [("cam-7101",)]
        finally:
            thief.stop()
            honest.stop()
            service.stop()
        assert connect(mosquitto.port, None, None) != "Success"
        assert connect(mosquitto.port, "cam-3502", "wrong") != "Success"
        assert connect(mosquitto.port, "cam-3502", own) == "Success"
        audit = query(db, "SELECT who, action, object FROM audit_log WHERE action = 'device.register' ORDER BY id")
        assert audit == [("admin", "device.register", "cam-3502"), ("admin", "device.register", "cam-7101")]


def test_an_alert_worker_that_dies_is_started_again_and_pages_what_arrived_meanwhile(mosquitto, tmp_path, inbox):
    service, uplink = started_gateway_and_camera(mosquitto, tmp_path / "gw.db", inbox)
    try:
        first_worker = service.alerts._process.pid
        os.kill(first_worker, signal.SIGKILL)
        uplink.start()
        uplink.send(uplink.stamp(DoorEvent, type="door", state="open"))
        (message,) = wait_until(inbox.received, timeout=30, what="the page from the restarted worker")
        assert message.recipient == "chen-social"
        assert service.alerts.restarts == 1 and service.alerts._process.pid != first_worker
    finally:
        uplink.stop()
        service.stop()
    assert not service.alerts._process.is_alive()


def test_a_store_process_that_dies_is_started_again_and_stores_what_arrived_meanwhile(mosquitto, tmp_path, inbox):
    db = tmp_path / "gw.db"
    service, uplink = started_gateway_and_camera(mosquitto, db, inbox)
    try:
        store_process = service.ingest.store_pool.processes[0]  # the first to get the next batch
        first = store_process._child.process.pid
        os.kill(first, signal.SIGKILL)
        uplink.start()
        door = uplink.stamp(DoorEvent, type="door", state="open")
        uplink.send(door)
        (message,) = wait_until(inbox.received, timeout=30, what="the page for the door stored by the new process")
        assert message.recipient == "chen-social"
        assert store_process.restarts == 1 and store_process._child.process.pid != first
        assert query(db, "SELECT id FROM events") == [(door.id,)]
    finally:
        uplink.stop()
        service.stop()


def test_the_gateways_child_processes_leave_when_the_gateway_process_is_killed(mosquitto, tmp_path):
    gateway = subprocess.Popen([sys.executable, "-m", "isowatch_app.cli", "gateway", "run", "--broker",
                                str(mosquitto.url()), "--db", str(tmp_path / "gw.db")],
                               stderr=subprocess.PIPE, text=True)
    try:
        assert "gateway running" in gateway.stderr.readline()
        children = Path(f"/proc/{gateway.pid}/task/{gateway.pid}/children").read_text().split()
        spawned = [int(pid) for pid in children
                   if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")]
        assert len(spawned) == 3, "the alert worker and two store processes"
        gateway.kill()
        gateway.wait(10)
        gone = lambda pid: (not Path(f"/proc/{pid}").exists()  # gone, or a zombie nobody reaps
                            or "Z" in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0])
        wait_until(lambda: all(gone(pid) for pid in spawned), timeout=10, what="the orphaned children to exit")
    finally:
        if gateway.poll() is None:
            gateway.kill()
