"""`isowatch demo` runs everything on one machine and ends with a JSON summary line."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading

import httpx
import pytest

from isowatch.broker import MosquittoBroker
from tests.support import wait_until

pytestmark = pytest.mark.slow


def run_demo(*args: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "isowatch_app.cli", "demo", "--households", "3", "--port", "0", *args],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "dashboard: http://127.0.0.1:" in result.stderr
    assert "delivered notifications: http://127.0.0.1:" in result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not MosquittoBroker.available(), reason="mosquitto is not installed")
def test_demo_with_mosquitto_stores_events_and_prints_summary():
    summary = run_demo("--for", "8", "--broker", "mosquitto")
    assert set(summary) == {"events_stored", "rejected", "alerts", "notifications_sent"}
    assert summary["events_stored"] > 0
    assert summary["rejected"] == 0
    # The simulated door openings and fevers page the demo team through Apprise.
    assert summary["alerts"] > 0
    assert summary["notifications_sent"] > 0


def test_demo_without_mosquitto_falls_back_to_the_python_broker():
    summary = run_demo("--for", "6", "--broker", "amqtt")
    assert summary["events_stored"] > 0


def log_in(base: str, username: str, password: str) -> httpx.Client:
    """The login form as a browser submits it: its CSRF field and cookie, then the session cookie."""
    client = httpx.Client(base_url=base, timeout=10, follow_redirects=True)
    form = client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    client.post("/login", data={"username": username, "password": password, "csrf": csrf, "next": "/"})
    return client


@pytest.mark.skipif(not MosquittoBroker.available(), reason="mosquitto is not installed")
def test_a_newcomer_logs_in_with_the_printed_demo_logins(tmp_path):
    """The README's promise: the demo prints its database and logins, and the admin login reaches the board."""
    process = subprocess.Popen(
        [sys.executable, "-m", "isowatch_app.cli", "demo", "--households", "2", "--port", "0", "--for", "60",
         "--broker", "mosquitto"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stderr.readline, "")), daemon=True)
    reader.start()
    try:
        wait_until(lambda: sum(line.startswith("login: ") for line in lines) == 5 or process.poll() is not None,
                   timeout=60, what="the demo's login lines")
        printed = "".join(lines)
        logins = re.findall(r"^login: (\S+) / (\S+)$", printed, re.M)
        assert [user for user, _ in logins] == ["demo-admin", "demo-leader", "demo-medical", "demo-police",
                                                "demo-social"], printed
        assert all(len(password) >= 10 for _, password in logins)
        database = re.search(r"^database: (\S+) \(temporary", printed, re.M).group(1)
        assert database.endswith("isowatch.db") and os.path.exists(database)
        base = re.search(r"^dashboard: (http://127\.0\.0\.1:\d+)/$", printed, re.M).group(1)

        admin = log_in(base, *logins[0])
        board = admin.get("/")
        assert board.status_code == 200 and str(board.url) == f"{base}/", board.url
        assert 'id="board"' in board.text
        assert admin.get("/api/v1/me").json()["user"]["role"] == "admin"
        social = log_in(base, *logins[4])
        assert social.get("/").status_code == 200 and str(social.get("/").url) == f"{base}/"
        me = social.get("/api/v1/me").json()["user"]
        assert (me["role"], me["staff"], me["teams"]) == ("social", "demo-social", ["demo-team"])
        households = [h["household"] for h in social.get("/api/v1/households").json()]
        assert households == ["hh-0001", "hh-0002"]  # the demo team's, through the staff link
        wrong = log_in(base, "demo-admin", "not-the-password")
        assert "/login" in str(wrong.get("/").url)
        wait_until(lambda: any("watching their doors" in line for line in lines), timeout=60,
                   what="the demo to finish starting")  # SIGTERM stops it cleanly from here on
    finally:
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=60)
    assert process.returncode == 0, "".join(lines)[-2000:]
    assert set(json.loads(out.strip().splitlines()[-1])) == {"events_stored", "rejected", "alerts",
                                                             "notifications_sent"}
