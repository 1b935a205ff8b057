"""Who and what next: names instead of ids, a "mine" view, severity order, each person
paged listed once, the steps of the alert's kind on its page, and the resident's phone on the household page."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone

from fastapi.testclient import TestClient

from dashboard.app import create_app
from gateway import alerts
from gateway.vocabulary import TODO
from tests.dashboard.world import login


def open_alert(db_path, kind: str, minutes_ago: float, household: str = "hh-3-502", paged: tuple = ()) -> int:
    now = datetime.now(timezone.utc)
    at = now - timedelta(minutes=minutes_ago)
    conn = sqlite3.connect(db_path, timeout=30)
    with conn:
        alert_id = alerts.open_or_attach(conn, site="site-a", household=household, kind=kind, at=at,
                                         ref=f"who-{kind}", now=at, isolation_id=1).alert_id
        for n, (staff, role) in enumerate(paged):
            conn.execute("INSERT INTO notifications (alert_id, step, round, staff, role, language, title, body, urls, "
                         "url_index, state, attempts, created_at, sent_at) VALUES (?, ?, 0, ?, ?, 'zh', 't', 'b', "
                         "'[]', 0, 'sent', 1, ?, ?)", (alert_id, n + 1, staff, role, alerts.iso(now), alerts.iso(now)))
    conn.close()
    return alert_id


def client_for(seeded, username: str) -> TestClient:
    client = TestClient(create_app(seeded.db_path, snapshot_dir=seeded.snapshot_dir))
    login(client, username)
    return client


def test_the_board_puts_door_fever_and_welfare_before_offline_and_missed_readings(seeded):
    offline = open_alert(seeded.db_path, "device_offline", 0.5)  # the newest
    missed = open_alert(seeded.db_path, "missed_reading", 1)
    fever = open_alert(seeded.db_path, "fever", 30)  # the oldest
    client = client_for(seeded, "chen")
    listed = [(a["id"], a["severity"]) for a in client.get("/api/v1/alerts").json()]
    assert listed == [(seeded.alert_own, 1), (fever, 1), (offline, 3), (missed, 3)]
    board = client.get("/").text
    assert board.index(f'data-alert="{fever}"') < board.index(f'data-alert="{offline}"')


def test_mine_lists_the_alerts_paged_to_me_or_my_role(seeded):
    medical = open_alert(seeded.db_path, "fever", 1, paged=(("li-medical", "medical"),))
    role_only = open_alert(seeded.db_path, "welfare_check", 2, household="hh-7-101", paged=(("other-social", "social"),))
    silent = open_alert(seeded.db_path, "device_offline", 3)
    chen = client_for(seeded, "chen")
    assert [a["id"] for a in chen.get("/api/v1/alerts?mine=true").json()] == [role_only, seeded.alert_own]
    assert {a["id"] for a in chen.get("/api/v1/alerts").json()} == {seeded.alert_own, medical, role_only, silent}
    page = chen.get("/?mine=1").text
    assert f'data-alert="{medical}"' not in page and f'data-alert="{role_only}"' in page
    assert 'aria-current="page">发给我或我的角色' in page
    li = client_for(seeded, "li")
    assert [a["id"] for a in li.get("/api/v1/alerts?mine=true").json()] == [medical]


def test_people_are_named_and_listed_once(seeded):
    repeated = open_alert(seeded.db_path, "fever", 1, paged=(("chen-social", "social"), ("chen-social", "social"),
                                                             ("li-medical", "medical"), ("chen-social", "social")))
    conn = sqlite3.connect(seeded.db_path, timeout=30)
    with conn:
        alerts.acknowledge(conn, repeated, "li-medical", datetime.now(timezone.utc), via="dashboard")
    conn.close()
    client = client_for(seeded, "chen")
    item = client.get(f"/api/v1/alerts/{repeated}").json()
    assert [(n["name"], n["pages"]) for n in item["notified"]] == [("陈社工", 3), ("Li Na", 1)]
    assert (item["acknowledged_by"], item["acknowledged_by_name"]) == ("li-medical", "Li Na")
    board = client.get("/").text
    card = board[board.index(f'data-alert="{repeated}"'):]
    for page in (card[:card.index("</li>")], client.get(f"/alerts/{repeated}").text):
        assert page.count("陈社工 (社工") == 1 and "×3" in page
        assert "确认人 Li Na" in page or "<dd>Li Na ·" in page
        assert "li-medical" not in page
    household = client.get("/households/hh-3-502").text
    assert "幸福里一组" in household and "team-1" not in household
    assert "li-medical" not in household and "Li Na" in household


def test_the_alert_page_says_what_to_do_for_its_kind(seeded):
    fever = open_alert(seeded.db_path, "fever", 1)
    page = client_for(seeded, "chen").get(f"/alerts/{fever}").text
    assert "该怎么做" in page and all(step in page for step in TODO["zh"]["fever"])
    door = client_for(seeded, "wang").get(f"/alerts/{seeded.alert_own}").text  # wang reads English
    assert "What to do" in door and TODO["en"]["door_opened"][0] in door.replace("&#39;", "'")


def test_the_household_page_offers_the_residents_phone(seeded):
    client = client_for(seeded, "chen")
    page = client.get("/households/hh-3-502").text
    assert 'href="tel:+8613900000502"' in page and "住户电话" in page
    assert "未登记电话" in client.get("/households/hh-7-101").text


def test_the_event_log_filters_are_picked_by_name_within_the_teams(seeded):
    client = client_for(seeded, "chen")
    page = client.get("/events").text
    assert '<select name="household">' in page and '<select name="site">' in page
    assert '<option value="hh-3-502" >幸福里3号楼 502 · hh-3-502</option>' in page
    assert "hh-9-301" not in page  # team-2's household is not offered
    assert '<option value="site-a" >Xingfu Street</option>' in page
    picked = client.get("/events?household=hh-3-502").text
    assert '<option value="hh-3-502" selected>' in picked
