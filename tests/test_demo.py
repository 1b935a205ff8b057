"""`isowatch demo` runs everything on one machine and ends with a JSON summary line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from isowatch.broker import MosquittoBroker

pytestmark = pytest.mark.slow


def run_demo(*args: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "isowatch.cli", "demo", "--households", "3", "--port", "0", *args],
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
    # Issue 6: the simulated door openings and fevers page the demo team through Apprise.
    assert summary["alerts"] > 0
    assert summary["notifications_sent"] > 0


def test_demo_without_mosquitto_falls_back_to_the_python_broker():
    summary = run_demo("--for", "6", "--broker", "amqtt")
    assert summary["events_stored"] > 0
