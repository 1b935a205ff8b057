"""A seeded gateway database for dashboard tests: two teams, users of every role, events, readings, alerts."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from fastapi.testclient import TestClient

from dashboard import accounts
from gateway import alerts
from gateway.registry import Registry
from gateway.registry_import import apply, parse_yaml
from gateway.store import Accepted, SnapshotUpload, Store
from isowatch.contract import DoorEvent, Heartbeat, Status, TemperatureReading, Topic, encode, topic_for
from isowatch.ids import uuid7

HERE = Path(__file__).parent
PASSWORD = "correct-horse-battery"
DEVICES = {"hh-3-502": "cam-3502", "hh-7-101": "cam-7101", "hh-9-301": "cam-9301"}
# username -> (role, staff id); "sun" and "zheng" are team-2, the rest of the staff team-1.
USERS = {
    "admin": ("admin", None),
    "auditor": ("auditor", None),
    "wang": ("leader", "wang-leader"),
    "li": ("medical", "li-medical"),
    "zhao": ("police", "zhao-police"),
    "chen": ("social", "chen-social"),
    "zheng": ("social", "zheng-social"),
}
TINY_JPEG = bytes.fromhex(
    "ffd8ffe000104a46494600010100000100010000ffdb004300080606070605080707070909080a0c140d0c0b0b0c1912130f141d1a1f1e"
    "1d1a1c1c20242e2720222c231c1c2837292c30313434341f27393d38323c2e333432ffc0000b080001000101011100ffc4001f0000010501"
    "010101010100000000000000000102030405060708090a0bffc400b5100002010303020403050504040000017d010203000411051221"
    "31410613516107227114328191a1082342b1c11552d1f02433627282090a161718191a25262728292a3435363738393a434445464748"
    "494a535455565758595a636465666768696a737475767778797a838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3"
    "b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9faffda0008010100003f00"
    "fbd3ffd9")


@dataclass
class Seeded:
    db_path: Path
    snapshot_dir: Path
    alert_own: int  # an open door alert on hh-3-502 (team-1)
    alert_other: int  # an open door alert on hh-9-301 (team-2)
    event_own: str
    snapshot_sha: str


def seed(root: Path, *, inbox_url: str = "json://127.0.0.1:9/inbox", now: datetime | None = None,
         history: bool = True) -> Seeded:
    """Registry, users of every role, and a little history: door events, readings, a snapshot, two open alerts."""
    now = now or datetime.now(timezone.utc)
    db_path = root / "gw.db"
    store = Store(db_path)
    conn = sqlite3.connect(db_path, timeout=30)
    registry = Registry(conn)
    start = (now.astimezone(ZoneInfo("Asia/Shanghai")).date() - timedelta(days=5)).isoformat()
    text = (HERE / "registry.yaml").read_text().replace("{inbox}", inbox_url).replace("{start}", start)
    apply(parse_yaml(text, "registry.yaml"), registry, by="test")
    for household, device in DEVICES.items():
        registry.register_device(device, household, by="test")
    for username, (role, staff) in USERS.items():
        accounts.create_user(conn, accounts.UserCreate(username=username, display_name=username.title(), role=role,
                                                       language="zh" if username == "chen" else "en",
                                                       password=PASSWORD, staff=staff),
                             by="test", now=now)
    if not history:  # a clean slate for end-to-end tests: the alert worker sees only what they publish
        conn.close()
        store.close()
        return Seeded(db_path, store.snapshot_dir, 0, 0, "", "")
    seq = 0
    firsts: dict[str, str] = {}
    for household, device in DEVICES.items():
        batch = []
        for hours in range(48, 0, -6):
            seq += 1
            at = now - timedelta(hours=hours)
            door = DoorEvent(id=uuid7(), device=device, seq=seq, device_time=at, type="door",
                             state="open" if hours % 12 else "closed")
            seq += 1
            temp = TemperatureReading(id=uuid7(), device=device, seq=seq, device_time=at, type="temperature",
                                      celsius=36.4 + (hours % 5) / 10, subject="body", method="axillary",
                                      plausible=True)
            for msg in (door, temp):
                batch.append(Accepted(Topic.parse(topic_for("site-a", household, msg)), msg, at, encode(msg)))
            firsts.setdefault(household, door.id)
        seq += 1
        beat = Heartbeat(id=uuid7(), device=device, seq=seq, device_time=now, type="heartbeat", uptime_s=100,
                         outbox_depth=3)
        seq += 1
        status = Status(id=uuid7(), device=device, seq=seq, device_time=now, type="status", state="online",
                        firmware="1.0", config_version="v1", camera="ok")
        for msg in (beat, status):
            batch.append(Accepted(Topic.parse(topic_for("site-a", household, msg)), msg, now, encode(msg)))
        store.write_batch(batch)
    event_own = firsts["hh-3-502"]
    store.write_batch([], [], [SnapshotUpload(Topic.parse(f"isowatch/v1/site-a/hh-3-502/cam-3502/snapshot/{event_own}"),
                                              TINY_JPEG, now)])
    sha = conn.execute("SELECT sha256 FROM snapshots").fetchone()[0]
    with conn:
        own = alerts.open_or_attach(conn, site="site-a", household="hh-3-502", kind="door_opened",
                                    at=now - timedelta(minutes=3), ref=event_own, now=now - timedelta(minutes=3),
                                    isolation_id=1, snapshot=sha).alert_id
        other = alerts.open_or_attach(conn, site="site-a", household="hh-9-301", kind="door_opened",
                                      at=now - timedelta(minutes=2), ref=firsts["hh-9-301"],
                                      now=now - timedelta(minutes=2), isolation_id=3).alert_id
        conn.execute("UPDATE alerts SET state = 'notified', step = 1, notified_at = opened_at")
        conn.execute("INSERT INTO notifications (alert_id, step, round, staff, role, language, title, body, urls, "
                     "url_index, state, attempts, created_at, sent_at) VALUES (?, 1, 0, 'chen-social', 'social', 'zh', "
                     "'t', 'b', '[]', 0, 'sent', 1, ?, ?)", (own, alerts.iso(now), alerts.iso(now)))
    conn.close()
    store.close()
    return Seeded(db_path, store.snapshot_dir, own, other, event_own, sha)


def login(client: TestClient, username: str, password: str = PASSWORD) -> str:
    """Log in through the API; returns the CSRF token (the client keeps the cookie)."""
    response = client.post("/api/v1/session", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return response.json()["csrf"]
