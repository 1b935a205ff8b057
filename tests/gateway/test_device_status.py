"""Device status follows the gateway's receive order: a SIGKILLed edge agent shows
offline. Real agent process, real Mosquitto, real gateway.

The broker publishes the agent's Last Will when its connection drops. A Will built once at start carried
a time older than every later birth ("online", made at each connect), and a gateway that ordered status
by device time kept the box "online" for good.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from datetime import datetime, timezone

import pytest

from dashboard.household_view import device_online
from gateway.policy import load_policy
from gateway.service import GatewayService
from isowatch.clock import iso
from tests.support import query, wait_until

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def sensors_only_config(tmp_path, broker_url) -> list[str]:
    """A box without camera or sensors: only its birth, heartbeats and Last Will go out."""
    (tmp_path / "device.secret").write_text(broker_url.password + "\n")
    path = tmp_path / "edge.toml"
    path.write_text(f"""
[device]
site = "site-a"
household = "hh-1"
id = "{broker_url.username}"

[uplink]
broker = "mqtt://{broker_url.host}:{broker_url.port}"
password_file = "device.secret"
reconnect_max_s = 1

[outbox]
path = "outbox.db"

[heartbeat]
interval_s = 5
""")
    return [sys.executable, "-m", "isowatch_app.cli", "edge", "run", "--config", str(path)]


def test_a_sigkilled_edge_agent_shows_offline_within_offline_after_s(mosquitto, tmp_path):
    db = tmp_path / "gw.db"
    gateway = GatewayService(db, mosquitto.url(), alerts=False).start()
    status = lambda: query(db, "SELECT status, status_time FROM devices WHERE device = 'box-1'")
    edge = subprocess.Popen(sensors_only_config(tmp_path, mosquitto.add_user("box-1")),
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: status() and status()[0][0] == "online", timeout=30, what="the box online")
        # The broker restarts: the agent connects again, and its Will must be that connection's.
        mosquitto.stop()
        reconnected_after = datetime.now(timezone.utc)
        mosquitto.start()
        wait_until(lambda: status()[0][0] == "online" and status()[0][1] >= iso(reconnected_after), timeout=30,
                   what="the birth of the new connection")

        killed = datetime.now(timezone.utc)
        edge.send_signal(signal.SIGKILL)
        edge.wait(10)
        wait_until(lambda: status()[0][0] == "offline", timeout=load_policy().rules.offline_after_s,
                   what="the box offline within offline_after_s")
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        conn.row_factory = sqlite3.Row
        row = conn.execute("SELECT * FROM devices WHERE device = 'box-1'").fetchone()
        conn.close()
        assert row["status_device_time"] >= iso(reconnected_after), "the Will was made at the last connect"
        assert row["status_time"] >= iso(killed)  # ordered by when the gateway received the Will
        assert not device_online(row, datetime.now(timezone.utc))
    finally:
        if edge.poll() is None:
            edge.kill()
        gateway.stop()
