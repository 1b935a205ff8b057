"""A device's raised health flags (docs/operations.md) and its drop count reach the people who must act."""

from __future__ import annotations

import json
import sqlite3

from fastapi.testclient import TestClient

from dashboard.app import create_app
from tests.dashboard.world import login


def test_disk_full_flag_and_drops_show_on_the_devices_page_and_api(seeded):
    conn = sqlite3.connect(seeded.db_path)
    device, raw = conn.execute("SELECT device, heartbeat FROM devices WHERE heartbeat IS NOT NULL LIMIT 1").fetchone()
    beat = {**json.loads(raw), "outbox_dropped": 31, "flags": {"disk_full": 31}}
    with conn:
        conn.execute("UPDATE devices SET heartbeat = ? WHERE device = ?", (json.dumps(beat), device))
    conn.close()
    client = TestClient(create_app(seeded.db_path, snapshot_dir=seeded.snapshot_dir))
    login(client, "admin")
    answer = client.get(f"/api/v1/devices/{device}").json()
    assert answer["flags"] == {"disk_full": 31} and answer["outbox_dropped"] == 31
    page = client.get("/devices").text
    assert "Disk full" in page and "31" in page
