"""The live board's health: the stream ends with the session, resumes from a cursor with
the alerts missed meanwhile, refuses without a session in a way EventSource stops on, and an action sent
after the session ended comes back to its alert, pending, after the login."""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from fastapi.testclient import TestClient

from dashboard import accounts
from dashboard.app import create_app
from gateway import alerts
from tests.dashboard.live import LiveDashboard
from tests.dashboard.world import PASSWORD
from tests.support import query, wait_until


@pytest.fixture
def live(seeded):
    server = LiveDashboard(seeded.db_path, seeded.snapshot_dir).start()
    try:
        yield server
    finally:
        server.stop()


def logged_in(base: str, username: str = "chen") -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=httpx.Timeout(10.0, read=10.0))
    answer = client.post("/api/v1/session", json={"username": username, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    return client


def read_events(client: httpx.Client, url: str, until: str, found: list[tuple[str, str, str]],
                headers: dict[str, str] | None = None) -> None:
    """Collects (event, id, data) until the named event arrives or the server ends the stream."""
    try:
        with client.stream("GET", url, headers=headers or {}) as answer:
            assert answer.status_code == 200
            name, event_id, data = "message", "", []
            for line in answer.iter_lines():
                if line == "":
                    if data or name != "message":
                        found.append((name, event_id, "\n".join(data)))
                        if name == until:
                            return
                    name, event_id, data = "message", "", []
                elif line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("id: "):
                    event_id = line[4:]
                elif line.startswith("data: "):
                    data.append(line[6:])
    except httpx.RemoteProtocolError:  # the server stopped under the stream (the test's teardown)
        return


def write(db_path, sql: str) -> None:
    conn = sqlite3.connect(db_path, timeout=30)
    with conn:
        conn.execute(sql)
    conn.close()


def open_alert(db_path, household: str = "hh-3-502", kind: str = "fever") -> int:
    conn = sqlite3.connect(db_path, timeout=30)
    now = datetime.now(timezone.utc)
    with conn:
        alert_id = alerts.open_or_attach(conn, site="site-a", household=household, kind=kind, at=now,
                                         ref=f"test-{kind}-{now.timestamp()}", now=now, isolation_id=1).alert_id
    conn.close()
    return alert_id


def test_the_stream_ends_soon_after_a_logout_elsewhere(live, seeded):
    client = logged_in(live.base)
    found: list = []
    reader = threading.Thread(target=read_events, args=(client, "/alerts/stream", "session_end", found), daemon=True)
    reader.start()
    wait_until(lambda: any(name == "alerts" for name, _, _ in found), what="the first rows")
    conn = sqlite3.connect(seeded.db_path, timeout=30)
    accounts.logout(conn, client.cookies["isowatch_session"], now=datetime.now(timezone.utc))
    conn.close()
    reader.join(30)  # the stream was allowed up to 10 minutes before: a join that times out fails below
    assert not reader.is_alive(), "the board stream outlived the session"
    assert found[-1][0] == "session_end"


def test_an_expired_session_ends_the_stream(live, seeded):
    client = logged_in(live.base)
    found: list = []
    reader = threading.Thread(target=read_events, args=(client, "/alerts/stream", "session_end", found), daemon=True)
    reader.start()
    wait_until(lambda: any(name == "alerts" for name, _, _ in found), what="the first rows")
    write(seeded.db_path, "UPDATE sessions SET expires_at = '2000-01-01T00:00:00.000Z'")
    reader.join(30)
    assert not reader.is_alive(), "the board stream outlived the session's expiry"
    assert found[-1][0] == "session_end"


def test_a_resumed_stream_lists_the_alerts_missed_meanwhile_resolved_ones_too(live, seeded):
    client = logged_in(live.base)
    found: list = []
    read_events(client, "/alerts/stream", "alerts", found)
    cursor = found[-1][1]
    assert cursor.isdigit()
    fever = open_alert(seeded.db_path, kind="fever")
    gone = open_alert(seeded.db_path, kind="missed_reading")
    conn = sqlite3.connect(seeded.db_path, timeout=30)
    alerts.resolve(conn, gone, staff="chen-social", verdict="reading_taken", note="", now=datetime.now(timezone.utc))
    conn.close()
    other_team = open_alert(seeded.db_path, household="hh-9-301", kind="door_opened")
    for headers, url in (({"Last-Event-ID": cursor}, "/alerts/stream"), ({}, f"/alerts/stream?since={cursor}")):
        found = []
        read_events(client, url, "alerts", found, headers=headers)
        assert found[0][0] == "missed"
        missed = json.loads(found[0][2])
        assert [(m["id"], m["kind"], m["resolved"]) for m in missed] == [(fever, "发热", False), (gone, "漏测体温", True)]
        assert other_team not in [m["id"] for m in missed]
        assert f'data-alert="{fever}"' in found[1][2]


def test_a_stream_without_a_session_is_refused_not_redirected(seeded):
    with TestClient(create_app(seeded.db_path)) as client:
        answer = client.get("/alerts/stream", follow_redirects=False)
    assert answer.status_code == 401  # a redirect to the login form would look like a stream that failed


@pytest.mark.parametrize("action, form, pending", [
    ("acknowledge", {}, {"pending": ["acknowledge"]}),
    ("resolve", {"verdict": "false_alarm", "note": "x"}, {"pending": ["resolve"], "verdict": ["false_alarm"]}),
])
def test_an_action_sent_after_the_session_ended_waits_on_its_alert_after_the_login(seeded, action, form, pending):
    alert_id = seeded.alert_own
    with TestClient(create_app(seeded.db_path)) as client:
        answer = client.post(f"/alerts/{alert_id}/{action}", data={"csrf": "stale", **form}, follow_redirects=False)
        assert answer.status_code == 303
        login_url = urlparse(answer.headers["location"])
        assert login_url.path == "/login"
        target = parse_qs(login_url.query)["next"][0]
        assert target.startswith(f"/alerts/{alert_id}?")
        assert parse_qs(urlparse(target).query) == pending
        page = client.get(answer.headers["location"])
        assert "登录后将回到该告警" in page.text
        token = client.cookies.get("isowatch_login_csrf")
        answer = client.post("/login", data={"username": "chen", "password": PASSWORD, "csrf": token,
                                             "next": target}, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"] == target
        page = client.get(target)
        assert 'id="pending"' in page.text
        assert "尚未" in page.text
        if action == "resolve":
            assert 'value="false_alarm" required checked' in page.text
    # Shown, not done: the person confirms with one tap.
    assert query(seeded.db_path, "SELECT acknowledged_by, resolved_at FROM alerts WHERE id = ?",
                 (alert_id,)) == [(None, None)]


def test_a_failed_login_keeps_the_pending_target(seeded):
    target = f"/alerts/{seeded.alert_own}?pending=resolve&verdict=false_alarm#act"
    with TestClient(create_app(seeded.db_path)) as client:
        client.get("/login")
        answer = client.post("/login", data={"username": "chen", "password": "wrong-password-1",
                                             "csrf": client.cookies.get("isowatch_login_csrf"), "next": target},
                             follow_redirects=False)
    assert parse_qs(urlparse(answer.headers["location"]).query)["next"] == [target]
