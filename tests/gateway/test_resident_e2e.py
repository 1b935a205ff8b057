"""The resident link end to end: the real gateway (ingest, store, alert process, HTTP) over a real Mosquitto,
its camera publishing, Apprise delivering to a local receiver, and the household acting over HTTP.

An announced opening pages nobody and an unannounced one pages; a self-reported 38.9 pages the medical
worker; a help request for supplies pages the social worker, and the household sees its status follow
the acknowledgement; the link from `isowatch admin resident-link` stops working once revoked.
"""

from __future__ import annotations

import re

import httpx
import pytest
from click.testing import CliRunner

from gateway.inbox import LocalInbox
from isowatch.contract import DoorEvent
from isowatch_app.cli import cli
from tests.gateway.test_alerts_e2e import form_token, started_gateway_and_camera
from tests.support import query, scalar, wait_until

pytestmark = pytest.mark.broker


def outcome(db, event_id: str) -> str | None:
    rows = query(db, "SELECT outcome FROM rule_log WHERE ref = ?", (event_id,))
    return rows[0][0] if rows else None


def resident_link(db, service, *extra: str) -> str:
    result = CliRunner().invoke(cli, ["admin", "resident-link", "hh-3-502", "--db", str(db),
                                      "--public-url", service.public_url, *extra])
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[-1]


def test_an_announced_opening_pages_nobody_and_an_unannounced_one_pages(mosquitto, tmp_path):
    db = tmp_path / "gw.db"
    with LocalInbox() as inbox:
        service, uplink = started_gateway_and_camera(mosquitto, db, inbox)
        try:
            uplink.start()
            link = resident_link(db, service)
            announced = httpx.post(f"{link}/announce", json={"minutes": 10, "reason": "rubbish"}, timeout=10)
            assert announced.status_code == 201 and announced.json()["approval"] is None
            inside = uplink.stamp(DoorEvent, type="door", state="open")
            uplink.send(inside)
            assert wait_until(lambda: outcome(db, inside.id), timeout=20, what="the rules' verdict") == "expected"
            # The exit rule: the household announced rubbish, the camera saw someone leave: pages as usual.
            leaving = uplink.stamp(DoorEvent, type="door", state="open", exit_suspected=True)
            uplink.send(leaving)
            (message,) = wait_until(inbox.received, timeout=20, what="the page for the exit")
            assert message.recipient == "chen-social" and outcome(db, leaving.id) == "alert"
            assert query(db, "SELECT kind FROM alerts") == [("door_opened",)]
            assert query(db, "SELECT source, reason, created_by FROM visits") == [
                ("resident", "rubbish", "resident:hh-3-502")]
            assert scalar(db, "SELECT count(*) FROM audit_log WHERE action = 'resident.announce'") == 1
        finally:
            uplink.stop()
            service.stop()


def test_an_opening_without_an_announcement_pages(mosquitto, tmp_path):
    db = tmp_path / "gw.db"
    with LocalInbox() as inbox:
        service, uplink = started_gateway_and_camera(mosquitto, db, inbox)
        try:
            uplink.start()
            resident_link(db, service)  # a link, but nothing announced through it
            event = uplink.stamp(DoorEvent, type="door", state="open")
            uplink.send(event)
            (message,) = wait_until(inbox.received, timeout=20, what="the page")
            assert message.recipient == "chen-social" and outcome(db, event.id) == "alert"
        finally:
            uplink.stop()
            service.stop()


def test_a_self_reported_fever_pages_the_medical_worker(mosquitto, tmp_path):
    db = tmp_path / "gw.db"
    with LocalInbox() as inbox:
        service, uplink = started_gateway_and_camera(mosquitto, db, inbox)
        try:
            link = resident_link(db, service)
            implausible = httpx.post(f"{link}/temperature", json={"celsius": 45.2}, timeout=10)
            assert implausible.status_code == 422 and implausible.json()["error"] == "implausible"
            page = httpx.post(f"{link}/temperature", data={"celsius": "45.2", "form": form_token(httpx.get(link).text),
                                                           "lang": "zh"}, timeout=10)
            assert page.status_code == 422 and "这个体温不太可能" in page.text and "45.2" in page.text
            assert scalar(db, "SELECT count(*) FROM readings") == 0
            reported = httpx.post(f"{link}/temperature", json={"celsius": 38.9, "method": "axillary"}, timeout=10)
            assert reported.status_code == 201 and reported.json()["fever"] is True
            (message,) = wait_until(inbox.received, timeout=20, what="the fever page")
            assert message.recipient == "li-medical" and "38.9" in message.body
            assert query(db, "SELECT kind FROM alerts") == [("fever",)]
            assert query(db, "SELECT device, method FROM readings") == [("household:hh-3-502", "self_report")]
        finally:
            service.stop()


def test_a_help_request_for_supplies_pages_the_social_worker_and_its_status_follows_the_acknowledgement(
        mosquitto, tmp_path):
    db = tmp_path / "gw.db"
    with LocalInbox() as inbox:
        service, uplink = started_gateway_and_camera(mosquitto, db, inbox)
        try:
            link = resident_link(db, service)
            asked = httpx.post(f"{link}/help", json={"kind": "supplies", "text": "需要大米和蔬菜"}, timeout=10)
            assert asked.status_code == 201 and asked.json()["status"] == "received"
            (message,) = wait_until(inbox.received, timeout=20, what="the help request's page")
            assert message.recipient == "chen-social" and "详情: 生活物资: 需要大米和蔬菜" in message.body
            assert "住户求助" in message.title
            assert "已收到" in httpx.get(link, timeout=10).text

            ack = re.search(r"(http://127\.0\.0\.1:\d+/ack/\S+)", message.body).group(1)
            staff_page = httpx.get(ack, timeout=10).text
            assert httpx.post(f"{ack}/acknowledge", data={"form": form_token(staff_page)},
                              timeout=10).status_code == 303
            mine = httpx.get(link, timeout=10).text
            assert "工作人员正在处理" in mine and "需要大米和蔬菜" in mine
            assert httpx.get(f"{link}/status", timeout=10).json()["requests"][0]["status"] == "on_it"
            httpx.post(f"{ack}/resolve", data={"form": form_token(staff_page), "verdict": "help_given"}, timeout=10)
            assert "已处理完毕" in httpx.get(link, timeout=10).text
            # Privacy: nothing of the alert's staff-side detail, the other household, or the event log.
            assert "hh-7-101" not in mine and "幸福里7号楼" not in mine
        finally:
            service.stop()


def test_a_revoked_link_gets_404_and_a_wrong_one_too(mosquitto, tmp_path):
    db = tmp_path / "gw.db"
    with LocalInbox() as inbox:
        service, uplink = started_gateway_and_camera(mosquitto, db, inbox)
        try:
            qr = tmp_path / "notice.png"
            link = resident_link(db, service, "--qr", str(qr))
            assert qr.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
            assert resident_link(db, service) == link  # a reprint is the same link
            page = httpx.get(link, timeout=10)
            assert page.status_code == 200 and "隔离第 3 天（共 14 天）" in page.text
            assert httpx.get(link[:-4] + "AAAA", timeout=10).status_code == 404
            revoked = CliRunner().invoke(cli, ["admin", "resident-link", "hh-3-502", "--db", str(db),
                                               "--public-url", service.public_url, "--revoke"])
            assert revoked.exit_code == 0 and "revoked" in revoked.output
            assert httpx.get(link, timeout=10).status_code == 404
            for action, body in (("announce", {"minutes": 5, "reason": "rubbish"}), ("temperature", {"celsius": 39}),
                                 ("help", {"kind": "supplies"})):
                assert httpx.post(f"{link}/{action}", json=body, timeout=10).status_code == 404
            assert scalar(db, "SELECT count(*) FROM visits") + scalar(db, "SELECT count(*) FROM readings") == 0
            assert query(db, "SELECT action FROM audit_log WHERE action LIKE 'resident.link%' ORDER BY id") == [
                ("resident.link_issue",), ("resident.link_revoke",)]
            assert resident_link(db, service) != link
        finally:
            service.stop()
