"""Site-local time on every page, filter, report, CSV and message, and more of what a night shift reads
on the same pages: the CSV BOM, one audit row per household page view, the "on no team" notice, the temperature
chart (body apart from room) and "just now".

The seeded world's clock stands at 2026-11-25 20:45 UTC, i.e. 04:45 the next morning in Shanghai: a time shown in
UTC would land on the previous day.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import sqlite3
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient

from dashboard import accounts
from dashboard.app import create_app
from gateway.inbox import LocalInbox
from gateway.policy import load_policy
from gateway.store import Accepted, Store
from isowatch.clock import ManualClock
from isowatch.contract import DoorEvent, TemperatureReading, Topic, encode, topic_for
from isowatch.ids import uuid7
from tests.dashboard.world import PASSWORD, Seeded, login, seed
from tests.fixtures.world import World

NOW = datetime(2026, 11, 25, 20, 45, tzinfo=timezone.utc)
LATE_EVENING = datetime(2026, 11, 25, 15, 30, tzinfo=timezone.utc)  # 23:30 on 25 November in Shanghai
AFTER_MIDNIGHT = datetime(2026, 11, 25, 16, 30, tzinfo=timezone.utc)  # 00:30 on 26 November in Shanghai


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Seeded, dict[str, str]]:
    """The seeded world at NOW, plus door events just before and after local midnight and room readings."""
    seeded = seed(tmp_path_factory.mktemp("times"), now=NOW)
    store = Store(seeded.db_path)
    ids: dict[str, str] = {}
    batch = []
    for name, at, seq in (("late", LATE_EVENING, 900), ("after", AFTER_MIDNIGHT, 901)):
        door = DoorEvent(id=uuid7(), device="cam-7101", seq=seq, device_time=at, type="door", state="open")
        ids[name] = door.id
        batch.append(Accepted(Topic.parse(topic_for("site-a", "hh-7-101", door)), door, at, encode(door)))
    for hours in range(1, 30, 2):  # a room sensor every two hours: 21-23 °C, never a fever, never "35 °C"
        at = NOW - timedelta(hours=hours)
        room = TemperatureReading(id=uuid7(), device="cam-3502", seq=1000 + hours, device_time=at, type="temperature",
                                  celsius=21.0 + hours % 3, subject="ambient", plausible=True)
        batch.append(Accepted(Topic.parse(topic_for("site-a", "hh-3-502", room)), room, at, encode(room)))
    store.write_batch(batch)
    store.close()
    conn = sqlite3.connect(seeded.db_path)
    accounts.create_user(conn, accounts.UserCreate(username="newbie", display_name="Newbie", role="social",
                                                   language="zh", password=PASSWORD), by="test", now=NOW)
    conn.close()
    return seeded, ids


@pytest.fixture
def fresh(world, tmp_path) -> Seeded:
    """A copy of the world per test, so one test's changes (and audit rows) stay its own."""
    seeded, _ = world
    target = tmp_path / "gw"
    shutil.copytree(seeded.db_path.parent, target)
    return replace(seeded, db_path=target / "gw.db", snapshot_dir=target / "snapshots")


@pytest.fixture
def client(fresh) -> TestClient:
    return TestClient(create_app(fresh.db_path, clock=ManualClock(NOW), snapshot_dir=fresh.snapshot_dir))


def visible(html: str) -> str:
    """The page's text without tags (a table cell writes "2026-11-25 23:30:00 UTC+08:00" in two elements)."""
    return re.sub(r"<[^>]+>", "", html)


def as_user(client: TestClient, username: str) -> TestClient:
    login(client, username)
    return client


def test_alert_page_and_board_show_the_alert_in_site_time_labelled(client, world):
    seeded, _ = world
    c = as_user(client, "wang")
    page = c.get(f"/alerts/{seeded.alert_own}").text  # opened at 20:42 UTC
    assert "2026-11-26 04:42 (UTC+08:00)" in page
    visible = re.sub(r'datetime="[^"]*"', "", page)  # <time datetime> keeps the instant for machines
    assert "20:42" not in visible and "2026-11-25" not in visible
    board = c.get("/").text
    assert "2026-11-26 04:42 (UTC+08:00)" in board


def test_notification_and_page_agree_on_the_next_morning(tmp_path):
    """Through the real alert worker and Apprise: a door at 20:42 UTC is paged as 04:42 the next day, as the page says."""
    clock = ManualClock(datetime(2026, 3, 5, 20, 42, tzinfo=timezone.utc))
    with LocalInbox() as inbox:
        w = World(tmp_path, inbox, clock=clock)
        try:
            w.door()
            w.worker.settle()
            (message,) = inbox.received()
            assert "2026-03-06 04:42 (UTC+08:00)" in message.body
            assert "CST" not in message.body
            conn = sqlite3.connect(w.db_path)
            accounts.create_user(conn, accounts.UserCreate(username="chen", role="social", language="zh",
                                                           password=PASSWORD, staff="chen-social"), by="t", now=clock.now())
            conn.close()
            c = TestClient(create_app(w.db_path, clock=clock, snapshot_dir=w.store.snapshot_dir))
            login(c, "chen")
            assert "2026-03-06 04:42 (UTC+08:00)" in c.get("/alerts/1").text
        finally:
            w.close()


def test_household_timeline_devices_and_audit_show_site_time(client, world):
    c = as_user(client, "admin")
    household = c.get("/households/hh-7-101").text
    assert "2026-11-25 23:30 (UTC+08:00)" in household and "2026-11-26 00:30 (UTC+08:00)" in household
    devices = c.get("/devices").text
    assert "2026-11-26 04:45" in devices and "UTC+08:00" in devices  # the heartbeat at NOW
    audit = c.get("/audit").text
    assert "UTC+08:00" in audit and "(UTC)" not in audit


def test_event_log_shows_site_time_and_a_local_day_filter_takes_the_whole_local_day(client, world):
    _, ids = world
    c = as_user(client, "admin")
    page = c.get("/events", params={"since": "2026-11-25", "until": "2026-11-25", "household": "hh-7-101"})
    assert page.status_code == 200, page.text
    assert "2026-11-25 23:30:00 UTC+08:00" in visible(page.text)
    assert "2026-11-26 00:30" not in page.text  # the next local day is outside the filter
    # A local date and time (the datetime-local picker) is site time, not UTC.
    hour = c.get("/events", params={"since": "2026-11-25T23:00", "until": "2026-11-26T00:00",
                                    "household": "hh-7-101"}).text
    assert "2026-11-25 23:30:00 UTC+08:00" in visible(hour) and "00:30:00" not in hour
    assert 'value="2026-11-25"' in page.text  # the picker shows the local day picked


def test_event_csv_has_a_bom_and_local_time_with_offset(client, world):
    _, ids = world
    c = as_user(client, "admin")
    for url in ("/events.csv", "/api/v1/events/export.csv"):
        response = c.get(url, params={"household": "hh-7-101"})
        assert response.content.startswith(b"\xef\xbb\xbf"), url  # UTF-8 BOM: Excel on Chinese Windows reads UTF-8
        rows = {r["id"]: r for r in csv.DictReader(io.StringIO(response.content.decode("utf-8-sig")))}
        assert rows[ids["late"]]["local_time"] == "2026-11-25T23:30:00+08:00"
        assert rows[ids["after"]]["local_time"] == "2026-11-26T00:30:00+08:00"


def test_report_picker_is_a_local_day_and_its_csv_has_a_bom_and_local_bounds(client, world):
    c = as_user(client, "admin")
    page = c.get("/reports", params={"since": "2026-11-26", "until": "2026-11-26"}).text
    assert 'value="2026-11-26"' in page
    response = c.get("/reports/response.csv", params={"since": "2026-11-26", "until": "2026-11-26"})
    assert response.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert rows and rows[0]["since"] == "2026-11-26T00:00:00+08:00" and rows[0]["until"] == "2026-11-27T00:00:00+08:00"
    team = next(r for r in rows if r["key"] == "team-1")
    assert team["alerts"] == "1"  # the alert at 04:42 local on the 26th is inside that local day


def test_one_audit_row_per_household_page_view_listing_its_snapshots(client, fresh):
    seeded = fresh
    c = as_user(client, "wang")
    conn = sqlite3.connect(seeded.db_path)
    before = conn.execute("SELECT max(id) FROM audit_log").fetchone()[0]
    page = c.get("/households/hh-3-502").text
    images = re.findall(r'src="(/snapshots/[^"]+)"', page)
    assert len(images) >= 2  # the event's thumbnail and the alert's
    for src in images:
        assert c.get(src.replace("&amp;", "&")).status_code == 200
    rows = conn.execute("SELECT action, object, detail FROM audit_log WHERE id > ? AND who = 'wang-leader'",
                        (before,)).fetchall()
    assert len(rows) == 1, rows
    action, obj, detail = rows[0]
    assert action == "household.view" and obj == "household:hh-3-502" and seeded.snapshot_sha in detail
    # A snapshot fetched on its own (not the page's) is still audited, one row per fetch.
    assert c.get(f"/snapshots/{seeded.snapshot_sha}").status_code == 200
    assert conn.execute("SELECT count(*) FROM audit_log WHERE id > ? AND action = 'snapshot.view'",
                        (before,)).fetchone()[0] == 1
    # Someone else's page view covers nothing: another user replaying the thumbnail address is audited.
    c.cookies.clear()
    login(c, "chen")
    assert c.get(images[0].replace("&amp;", "&")).status_code == 200
    assert conn.execute("SELECT count(*) FROM audit_log WHERE id > ? AND action = 'snapshot.view' AND who = ?",
                        (before, "chen-social")).fetchone()[0] == 1
    conn.close()


def test_audit_page_names_objects_and_reads_without_json(client, world):
    c = as_user(client, "wang")
    c.get("/households/hh-3-502")
    c.cookies.clear()
    admin = as_user(client, "admin")
    page = admin.get("/audit").text
    table = page.split('<table id="audit">', 1)[1]
    assert "幸福里3号楼 502" in table  # the household, not hh-3-502 or a hash
    assert "王队长" in table  # the staff member's name, not wang-leader
    assert "{&#34;" not in table and '{"' not in table  # no raw JSON


def test_user_on_no_team_is_told_so_instead_of_an_all_clear(client):
    c = as_user(client, "newbie")
    board = c.get("/").text
    assert "你不在任何小组" in board
    assert "没有未关闭的告警" not in board
    for url in ("/households", "/events", "/devices"):
        assert "你不在任何小组" in c.get(url).text, url


def test_just_now_instead_of_zero_minutes(client, fresh):
    seeded = fresh
    conn = sqlite3.connect(seeded.db_path)
    conn.execute("UPDATE alerts SET opened_at = ? WHERE id = ?", ("2026-11-25T20:44:40Z", seeded.alert_own))
    conn.commit()
    conn.close()
    c = as_user(client, "chen")
    board = c.get("/").text
    assert "刚刚" in board and "0 分钟前" not in board


def test_chart_plots_body_temperature_by_the_hour_and_room_temperature_apart(client):
    c = as_user(client, "chen")
    page = c.get("/households/hh-3-502").text
    body = page.split('class="chart body"', 1)[1].split("</svg>", 1)[0]
    plotted = [float(v) for v in re.findall(r"\) (\d+\.\d) °C</title>", body)]
    assert plotted and min(plotted) > 35  # body temperatures only: no 21-23 °C room reading among them
    assert re.search(r">\d\d:00<", body)  # hours on the x axis, local time
    fever = load_policy().rules.fever_celsius
    assert f"{fever:.1f}" in body
    room = page.split('class="chart room"', 1)[1].split("</svg>", 1)[0]
    room_values = [float(v) for v in re.findall(r"\) (\d+\.\d) °C</title>", room)]
    assert room_values and max(room_values) < 25  # the room sensor on its own scale
    timeline = page.split('class="timeline"', 1)[1]
    assert "<strong>体温</strong> 36." in timeline and "<strong>室温</strong> 2" in timeline
