"""Pages under provider faults, through a real gateway process, real Apprise and a local HTTP receiver.

A receiver down for minutes still gets the page once it is back (and the page is shown as not
delivered meanwhile, while the escalation moves on on time); a receiver slower than Apprise's default
timeout gets each page once; a gateway SIGKILLed mid-send leaves at most one copy at a receiver that
dedupes on the idempotency key.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import yaml

from dashboard import accounts
from edge.uplink import DeviceIdentity, Uplink
from gateway.inbox import LocalInbox
from gateway.policy import DEFAULT_POLICY
from gateway.store import Store
from isowatch.broker import free_port
from isowatch.clock import parse_iso
from isowatch.contract import DoorEvent, TamperEvent
from tests.gateway.test_alerts_e2e import seed_registry
from tests.support import query, scalar, stop_process, wait_until

pytestmark = [pytest.mark.broker, pytest.mark.slow]

PASSWORD = "correct-horse-battery"
DOOR = "隔离期间开门"


def write_policy(path: Path, *, door_wait_minutes: float | None = None, delivery: dict | None = None) -> Path:
    data = yaml.safe_load(DEFAULT_POLICY.read_text())
    if door_wait_minutes is not None:
        data["kinds"]["door_opened"]["steps"][0]["wait_minutes"] = door_wait_minutes
    if delivery:
        data["delivery"] = delivery
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


class Gateway:
    """`isowatch gateway run` as a child process, its log in a file the test reads."""

    def __init__(self, broker_url: str, db: Path, policy: Path, log: Path) -> None:
        self.args = [sys.executable, "-m", "isowatch_app.cli", "gateway", "run", "--broker", broker_url, "--db", str(db),
                     "--policy", str(policy), "--http-port", str(free_port())]
        self.http = f"http://127.0.0.1:{self.args[-1]}"
        self.log = log
        self.process: subprocess.Popen | None = None

    def start(self) -> "Gateway":
        mark = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(self.args, stdout=out, stderr=out,
                                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        wait_until(lambda: "gateway running" in self.log.read_text(errors="replace")[mark:], timeout=60,
                   what="gateway start")
        return self

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            stop_process(self.process)

    def lines(self, level: str, words: str) -> list[str]:
        return [line for line in self.log.read_text(errors="replace").splitlines()
                if f" {level} " in line and words in line]


def household_with_camera(mosquitto, db: Path, inbox_at) -> Uplink:
    Store(db).close()  # the schema, as the gateway would make it
    registry = seed_registry(db, inbox_at)
    password = registry.register_device("cam-3502", "hh-3-502", by="test")
    conn = sqlite3.connect(db, timeout=30)
    for username, role, staff, language in (("wang", "leader", "wang-leader", "en"),
                                            ("chen", "social", "chen-social", "zh")):
        accounts.create_user(conn, accounts.UserCreate(username=username, display_name=username, role=role,
                                                       language=language, password=PASSWORD, staff=staff),
                             by="test", now=datetime.now(timezone.utc))
    conn.close()
    return Uplink(mosquitto.add_user("cam-3502", password), DeviceIdentity("site-a", "hh-3-502", "cam-3502")).start()


def door_pages(inbox: LocalInbox | None, recipient: str | None = None) -> list:
    return [m for m in (inbox.received(recipient) if inbox else []) if DOOR in m.title]


@contextmanager
def logged_in(base: str, username: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base, timeout=10) as client:
        assert client.post("/api/v1/session", json={"username": username, "password": PASSWORD}).status_code == 200
        yield client


def test_receiver_down_three_minutes_gets_the_page_once_after_it_is_back_and_the_outage_is_shown(
        mosquitto, tmp_path):
    db, port = tmp_path / "gw.db", free_port()
    down_until = time.monotonic() + 180.0  # nothing listens on `port` for three minutes: connection refused
    policy = write_policy(tmp_path / "policy.yaml", door_wait_minutes=2.5,
                          delivery={"backoff_max_s": 15, "undelivered_after_s": 120})
    uplink = household_with_camera(mosquitto, db, SimpleNamespace(host="127.0.0.1", port=port))
    gateway = Gateway(str(mosquitto.url()), db, policy, tmp_path / "gateway.log").start()
    inbox = None
    try:
        uplink.send(uplink.stamp(DoorEvent, type="door", state="open"))
        # Only the door alert's pages count here: the silence scans (missed reading, welfare) page too.
        door_note = ("SELECT n.id, n.created_at FROM notifications n JOIN alerts a ON a.id = n.alert_id "
                     "WHERE a.kind = 'door_opened' AND n.staff = ?")
        wait_until(lambda: query(db, door_note, ("chen-social",)), timeout=30, what="the social worker's page")
        (alert_id, deadline_text), = query(db, "SELECT id, next_step_at FROM alerts WHERE kind = 'door_opened'")

        # Two minutes undelivered: said once, loudly: an ERROR line, an audit row, the board and the alert page.
        wait_until(lambda: scalar(db, "SELECT count(*) FROM audit_log WHERE action = 'alert.page_undelivered' "
                                      "AND object = ?", (f"alert:{alert_id}",)),
                   timeout=200, interval=1, what="the page reported as not delivered")
        with logged_in(gateway.http, "wang") as wang:
            (shown,) = [a for a in wang.get("/api/v1/alerts").json() if a["id"] == alert_id]
            assert [n["staff"] for n in shown["notified"] if n["undelivered"]] == ["chen-social"]
            assert "Page not delivered" in wang.get("/").text
        with logged_in(gateway.http, "chen") as chen:
            assert "通知未送达" in chen.get(f"/alerts/{alert_id}").text

        # The escalation does not wait for delivery: the leader's page is created at the deadline.
        leader = wait_until(lambda: query(db, door_note, ("wang-leader",)), timeout=120, interval=0.5,
                            what="the escalation to the leader")
        created, deadline = parse_iso(leader[0][1]), parse_iso(deadline_text)
        assert deadline <= created <= deadline + timedelta(seconds=5), f"step 2 at {created}, due {deadline}"

        time.sleep(max(0.0, down_until - time.monotonic()))
        inbox = LocalInbox(port=port).start()  # the provider is back
        wait_until(lambda: door_pages(inbox, "chen-social") and door_pages(inbox, "wang-leader"), timeout=90,
                   interval=0.5, what="both pages after the receiver came back")
        wait_until(lambda: scalar(db, "SELECT count(*) FROM notifications n JOIN alerts a ON a.id = n.alert_id "
                                      "WHERE a.kind = 'door_opened' AND n.state = 'sent'") == 2,
                   timeout=60, what="both pages recorded as sent")
        time.sleep(3.0)  # a second copy would arrive now
        assert len(door_pages(inbox, "chen-social")) == 1 and len(door_pages(inbox, "wang-leader")) == 1
        assert len({m.key for m in door_pages(inbox)} - {""}) == 2
        (note,) = query(db, door_note, ("chen-social",))
        assert len(gateway.lines("ERROR", f"page not delivered notification={note[0]} ")) == 1
        assert scalar(db, "SELECT count(*) FROM audit_log WHERE action = 'alert.page_delivered_late' "
                          "AND object = ?", (f"alert:{alert_id}",)) == 1  # the leader's page was not late
        with logged_in(gateway.http, "wang") as wang:
            (shown,) = [a for a in wang.get("/api/v1/alerts").json() if a["id"] == alert_id]
            assert not any(n["undelivered"] for n in shown["notified"])
    finally:
        uplink.stop()
        gateway.stop()
        if inbox:
            inbox.stop()


def test_a_receiver_that_answers_after_20_s_gets_each_page_once(mosquitto, tmp_path):
    db = tmp_path / "gw.db"
    with LocalInbox(delay_s=20.0) as inbox:
        uplink = household_with_camera(mosquitto, db, inbox)
        gateway = Gateway(str(mosquitto.url()), db, write_policy(tmp_path / "policy.yaml"),
                          tmp_path / "gateway.log").start()
        try:
            uplink.send(uplink.stamp(DoorEvent, type="door", state="open"))
            uplink.send(uplink.stamp(TamperEvent, type="tamper", reason="covered", state="start"))
            sql = ("SELECT count(*) FROM notifications n JOIN alerts a ON a.id = n.alert_id "
                   "WHERE a.kind IN ('door_opened', 'camera_tampered') AND n.state IN ('sent', 'failed')")
            wait_until(lambda: scalar(db, sql) == 2, timeout=150, interval=0.5, what="both pages settled")
            time.sleep(25.0)  # copies sent meanwhile are still being answered
            pages = [m for m in inbox.received("chen-social") if DOOR in m.title or "摄像头" in m.title]
            assert len(pages) == 2, [(m.title, m.key) for m in pages]
            assert query(db, "SELECT DISTINCT n.state FROM notifications n JOIN alerts a ON a.id = n.alert_id "
                             "WHERE a.kind IN ('door_opened', 'camera_tampered')") == [("sent",)]
        finally:
            uplink.stop()
            gateway.stop()


def test_sigkill_mid_send_leaves_at_most_one_copy_at_an_idempotent_receiver(mosquitto, tmp_path):
    db = tmp_path / "gw.db"
    with LocalInbox(delay_s=15.0) as inbox:
        uplink = household_with_camera(mosquitto, db, inbox)
        gateway = Gateway(str(mosquitto.url()), db, write_policy(tmp_path / "policy.yaml"),
                          tmp_path / "gateway.log").start()
        try:
            uplink.send(uplink.stamp(DoorEvent, type="door", state="open"))
            wait_until(lambda: door_pages(inbox), timeout=30, what="the page at the receiver")
            door_page = ("SELECT n.state FROM notifications n JOIN alerts a ON a.id = n.alert_id "
                         "WHERE a.kind = 'door_opened'")
            assert query(db, door_page) == [("sending",)]  # taken, not yet answered
            gateway.kill()
            inbox.delay_s = 0.0
            gateway.start()
            wait_until(lambda: query(db, door_page) == [("sent",)], timeout=150, interval=0.5,
                       what="the page recorded as sent after the restart")
            time.sleep(3.0)
            copies = door_pages(inbox)
            assert copies[0].key, "the page carries no idempotency key"
            assert {m.key for m in copies} == {copies[0].key}
            assert len([m for m in inbox.unique("chen-social") if DOOR in m.title]) == 1
        finally:
            uplink.stop()
            gateway.stop()
