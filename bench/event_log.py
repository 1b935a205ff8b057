"""Event log benchmark: filtered queries over 1,000,000 stored events through the real dashboard.

Generates the events straight into a fresh, migrated gateway database (5,000 households on 20 sites over
30 days, 1 % of them attached to alerts with verdicts), serves the dashboard with uvicorn and times each
filtered query over HTTP (httpx, logged in), repeated; prints median and p95 per query. Target: < 200 ms.

    python bench/event_log.py [--events 1000000] [--runs 30] [--db PATH (reuse a generated database)]
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import uvicorn

from bench.common import machine, table
from dashboard import accounts
from dashboard.app import create_app
from gateway.store import open_database
from isowatch.ids import uuid7

SITES = 20
HOUSEHOLDS = 5000
DAYS = 30
PASSWORD = "bench-password-1"
END = datetime(2026, 3, 31, tzinfo=timezone.utc)
KINDS = ("door_opened", "repeated_door", "camera_tampered")
VERDICTS = ("confirmed_violation", "false_alarm", "authorised_exit")


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def generate(path: Path, events: int) -> None:
    db = open_database(path)
    conn = db.conn
    rng = random.Random(7)
    start = END - timedelta(days=DAYS)
    span = DAYS * 86400
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO sites (site, name, timezone) VALUES (?, ?, 'Asia/Shanghai')",
                     [(f"site-{s:02d}", f"Street {s}") for s in range(SITES)])
    for t in range(HOUSEHOLDS // 10):
        staff = [f"t{t}-{role}" for role in ("leader", "medical", "police", "social")]
        conn.executemany("INSERT INTO staff (staff, name, role, language, contacts, active) VALUES (?, ?, ?, 'zh', '[]', 1)",
                         [(s, s, s.split("-")[1]) for s in staff])
        conn.execute("INSERT INTO teams (team, name, leader, medical, police, social) VALUES (?, ?, ?, ?, ?, ?)",
                     (f"team-{t}", f"Team {t}", *staff))
    conn.executemany(
        "INSERT INTO households (household, site, address, unit, residents, elderly_alone, disabled, language, team, "
        "created_at) VALUES (?, ?, '', '', 1, 0, 0, 'zh', ?, ?)",
        [(f"hh-{h:05d}", f"site-{h % SITES:02d}", f"team-{h // 10}", iso(start)) for h in range(HOUSEHOLDS)])
    rows = []
    alert_rows, link_rows = [], []
    for n in range(events):
        h = rng.randrange(HOUSEHOLDS)
        at = start + timedelta(seconds=rng.random() * span)
        kind = "door" if rng.random() < 0.9 else "tamper"
        event_id = uuid7()
        rows.append((event_id, f"site-{h % SITES:02d}", f"hh-{h:05d}", f"cam-{h:05d}", n, kind, iso(at), iso(at),
                     "open" if kind == "door" else "start", "{}"))
        if rng.random() < 0.01:
            alert_id = len(alert_rows) + 1
            verdict = rng.choice(VERDICTS)
            alert_rows.append((alert_id, f"site-{h % SITES:02d}", f"hh-{h:05d}", rng.choice(KINDS), "resolved",
                               iso(at), event_id, iso(at), 1, 1, 0, iso(at + timedelta(minutes=3)),
                               f"t{h // 100}-social", iso(at + timedelta(minutes=20)), f"t{h // 100}-social", verdict))
            link_rows.append((alert_id, event_id, iso(at)))
        if len(rows) >= 50_000:
            _flush(conn, rows)
    _flush(conn, rows)
    conn.executemany(
        "INSERT INTO alerts (id, site, household, kind, state, opened_at, first_event_id, last_event_at, count, step, "
        "renotified, acknowledged_at, acknowledged_by, resolved_at, resolved_by, verdict) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", alert_rows)
    conn.executemany("INSERT INTO alert_events (alert_id, ref, at) VALUES (?, ?, ?)", link_rows)
    conn.commit()
    now = datetime.now(timezone.utc)
    accounts.create_user(conn, accounts.UserCreate(username="admin", role="admin", password=PASSWORD), by="bench", now=now)
    accounts.create_user(conn, accounts.UserCreate(username="social", role="social", password=PASSWORD,
                                                   staff="t3-social"), by="bench", now=now)
    conn.execute("ANALYZE")
    db.close()


def _flush(conn: sqlite3.Connection, rows: list[tuple]) -> None:
    conn.executemany("INSERT INTO events (id, site, household, device, seq, type, device_time, received_at, state, "
                     "payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    rows.clear()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(db: Path) -> tuple[uvicorn.Server, str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(db), host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}"


def client(base: str, username: str) -> httpx.Client:
    c = httpx.Client(base_url=base, timeout=30)
    c.post("/api/v1/session", json={"username": username, "password": PASSWORD}).raise_for_status()
    return c


def timed(c: httpx.Client, path: str, params: dict, runs: int) -> tuple[list[float], int]:
    c.get(path, params=params).raise_for_status()  # warm the page cache once
    times, count = [], 0
    for _ in range(runs):
        started = time.perf_counter()
        response = c.get(path, params=params)
        times.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
        count = len(response.json()["entries"]) if path.startswith("/api/") else response.text.count("<tr class=")
    return times, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--db", type=Path, default=None, help="Reuse (or create) the database at this path")
    args = parser.parse_args()
    tmp = tempfile.TemporaryDirectory()
    db = args.db or Path(tmp.name) / "events.db"
    if not db.exists():
        started = time.perf_counter()
        generate(db, args.events)
        print(f"generated {args.events:,} events in {time.perf_counter() - started:.0f} s "
              f"({db.stat().st_size / 1e6:.0f} MB)", file=sys.stderr)
    server, base = serve(db)
    admin, social = client(base, "admin"), client(base, "social")
    # A cursor 20 pages deep: keyset paging must cost what the first page costs.
    cursor = None
    for _ in range(20):
        cursor = admin.get("/api/v1/events", params={"type": "door", **({"before": cursor} if cursor else {})}).json()["next_cursor"]
    week = {"since": iso(END - timedelta(days=7)), "until": iso(END)}
    day = {"since": iso(END - timedelta(days=15)), "until": iso(END - timedelta(days=14))}
    queries = [
        ("newest, no filter (API)", admin, "/api/v1/events", {}),
        ("one household", admin, "/api/v1/events", {"household": "hh-01234"}),
        ("site + door + last 7 days", admin, "/api/v1/events", {"site": "site-07", "type": "door", **week}),
        ("one day, 15 days ago", admin, "/api/v1/events", day),
        ("verdict = false_alarm", admin, "/api/v1/events", {"verdict": "false_alarm"}),
        ("alert kind + site", admin, "/api/v1/events", {"alert_kind": "door_opened", "site": "site-03"}),
        ("door, page 21 (keyset)", admin, "/api/v1/events", {"type": "door", "before": cursor}),
        ("social worker's 10 households", social, "/api/v1/events", {}),
        ("event log page, site + door + 7 days", admin, "/events", {"site": "site-07", "type": "door",
                                                                    "since": week["since"][:16],
                                                                    "until": week["until"][:16]}),
    ]
    rows, figures = [], {}
    for name, c, path, params in queries:
        times, count = timed(c, path, params, args.runs)
        p95 = statistics.quantiles(times, n=20)[-1]
        figures[name] = {"median_ms": round(statistics.median(times), 1), "p95_ms": round(p95, 1)}
        rows.append([name, count, f"{statistics.median(times):.1f}", f"{p95:.1f}", "yes" if p95 < 200 else "NO"])
    server.should_exit = True
    print(machine())
    print(table(f"Event log over {args.events:,} events, {args.runs} runs each, HTTP through uvicorn (ms)",
                ["query", "rows", "median", "p95", "p95 < 200 ms"], rows))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
