"""Silence scans: one pass of every scan in gateway.rules.SCANS over a registered fleet, timed.

The alert worker runs the scans every 5 s on the thread that dispatches pages, so a pass at 50,000
households must stay well under 100 ms. Measured here without a broker: the fleet is registered with
`register_fleet` and given realistic rows (devices mostly heard from in the last 30 s and a few silent,
two days of body temperatures with a few missing, door contacts and door events, vulnerable residents
of whom some have been quiet), then a pass runs as `AlertWorker._scan` does (findings, rule_marks
writes, one transaction), without opening alerts. Three situations: "deadline", the passes just after a
reading deadline has passed, with every silence still to find (rolled back after each run, so every run
sees the same state; a scan may spread the work over several passes, the slowest counts); "steady", a
pass when nothing has changed since the last; "1 change", a pass after staff put one more household in
isolation.

    python bench/scans.py [--households 50000] [--runs 5] [--rules /tmp/old_rules.py]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import sqlite3
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import ModuleType

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine, median, table
from gateway.policy import load_policy
from gateway.registry import Registry
from gateway.rules import reading_deadline
from isowatch.clock import iso
from isowatch.ids import uuid7
from isowatch_app.simulate import Fleet, register_fleet

HEARTBEAT = json.dumps({"schema_version": 1, "id": "0" * 36, "device": "dev-000000", "seq": 1234,
                        "device_time": "2026-03-05T02:00:00.000000Z", "type": "heartbeat", "uptime_s": 86400.0,
                        "outbox_depth": 0, "outbox_dropped": 0, "config_version": None, "fps": 5.0,
                        "cpu_temp_c": 48.5})


def load_rules(path: str | None) -> ModuleType:
    """gateway.rules, or another version of it from a file (to compare with an older rules.py)."""
    if path is None:
        import gateway.rules
        return gateway.rules
    spec = importlib.util.spec_from_file_location("rules_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def populate(db: Path, households: int, now: datetime, *, seed: int = 1) -> dict[str, int]:
    """The fleet plus the rows a running fleet has; returns how many households should alert, per kind."""
    fleet = Fleet(households, sites=4)
    register_fleet(db, fleet)
    rng = random.Random(seed)
    rules = load_policy(None).rules
    conn = sqlite3.connect(db)
    n_all = range(households)
    # Disjoint groups, so that each planted silence is the only reason for its household's finding.
    shuffled = rng.sample(n_all, households)
    cut = iter(range(0, households, max(1, households // 200)))
    groups = [shuffled[a:b] for a, b in zip(cut, list(range(0, households, max(1, households // 200)))[1:])]
    stale = set(groups[0])  # 0.5% of devices silent for minutes
    missed = set(groups[1] + groups[2])  # 1% skipped the last reading
    quiet = set(groups[3][: max(1, len(groups[3]) // 2)])  # 0.25% elderly living alone, quiet for 13 h
    vulnerable = quiet | set(groups[4] + groups[5] + groups[6] + groups[7] + groups[8])  # 2.75% in all
    doors = groups[9][: max(1, len(groups[9]) // 5)]  # 0.1% opened the door in the last minutes
    contacts = set(doors) | set(rng.sample(n_all, households // 10))  # 10% with a door contact
    def text(at: datetime) -> str:
        return at.isoformat().replace("+00:00", "Z")

    def reading(n: int, at: datetime, **cols: object) -> tuple:
        row = dict(type="temperature", celsius=36.6, subject="body", method="axillary", plausible=1, open=None)
        row.update(cols)
        return (uuid7(), fleet.site(n), fleet.household(n), fleet.device(n), 0, row["type"], text(at), text(at),
                row["celsius"], row["subject"], row["method"], row["plausible"], row["open"], "{}")

    slot = reading_deadline(now, rules.readings_expected_at, rules.reading_grace_minutes, "Asia/Shanghai")
    assert slot is not None
    readings, events = [], []
    for n in n_all:
        # Two days of readings before the last due one (which register_fleet stored), ten minutes early.
        for k in range(1, 5):
            readings.append(reading(n, slot[1] - timedelta(hours=12 * k, minutes=10)))
        if n in contacts:
            for _ in range(4):
                at = now - timedelta(hours=rng.uniform(1, 20))
                readings.append(reading(n, at, type="contact", celsius=None, subject=None, method=None,
                                        plausible=None, open=1))
                readings.append(reading(n, at + timedelta(seconds=20), type="contact", celsius=None, subject=None,
                                        method=None, plausible=None, open=0))
        if n in vulnerable and n not in quiet:  # a sign of life today: the door closing after a delivery
            at = now - timedelta(hours=rng.uniform(0.5, 6))
            payload = json.dumps({"type": "door", "state": "closed", "source": "camera", "snapshots": []})
            events.append((uuid7(), fleet.site(n), fleet.household(n), fleet.device(n), 0, "door", text(at),
                           text(at), "closed", payload))
        if rng.random() < 0.5:  # yesterday's door events (staff deliveries, announced visits)
            at = now - timedelta(hours=rng.uniform(1, 30))
            for state in ("open", "closed"):
                payload = json.dumps({"type": "door", "state": state, "source": "camera", "snapshots": []})
                events.append((uuid7(), fleet.site(n), fleet.household(n), fleet.device(n), 0, "door", text(at),
                               text(at), state, payload))
                at += timedelta(seconds=15)
    for i, n in enumerate(doors):  # camera and contact see an opening; every other time the contact misses it
        at = now - timedelta(minutes=rng.uniform(2, 20))
        payload = json.dumps({"type": "door", "state": "open", "source": "camera", "snapshots": []})
        events.append((uuid7(), fleet.site(n), fleet.household(n), fleet.device(n), 0, "door", text(at), text(at),
                       "open", payload))
        if i % 2 == 0:
            readings.append(reading(n, at + timedelta(seconds=2), type="contact", celsius=None, subject=None,
                                    method=None, plausible=None, open=1))
    with conn:
        conn.executemany(
            "INSERT INTO readings (id, site, household, device, seq, type, device_time, received_at, celsius, "
            "subject, method, plausible, open, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", readings)
        conn.executemany(
            "INSERT INTO events (id, site, household, device, seq, type, device_time, received_at, state, payload) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", events)
        conn.executemany(
            "UPDATE devices SET first_seen = ?1, last_seen = ?2, last_heartbeat = ?2, heartbeat = ?3, "
            "status = 'online', status_time = ?1, max_seq = 1234 WHERE device = ?4",
            ((text(now - timedelta(days=2)),
              text(now - timedelta(seconds=rng.uniform(120, 3600) if n in stale else rng.uniform(0, 30))),
              HEARTBEAT, fleet.device(n)) for n in n_all))
        conn.executemany("UPDATE households SET elderly_alone = 1 WHERE household = ?",
                         ((fleet.household(n),) for n in vulnerable))
        conn.executemany("DELETE FROM readings WHERE household = ? AND type = 'temperature' AND received_at > ?",
                         ((fleet.household(n), iso(slot[0])) for n in missed))
        quiet_since = iso(now - timedelta(hours=rules.welfare_quiet_hours + 1))
        for table_name in ("readings", "events"):
            conn.executemany(f"DELETE FROM {table_name} WHERE household = ? AND received_at > ?",
                             ((fleet.household(n), quiet_since) for n in quiet))
    conn.execute("ANALYZE")
    conn.close()
    return {"device_offline": len(stale), "missed_reading": len(missed | quiet), "welfare_check": len(quiet),
            "sensor_disagree": len(doors[1::2])}


def one_pass(conn: sqlite3.Connection, registry: Registry, rules: ModuleType, now: datetime
             ) -> tuple[dict[str, float], dict[str, int], int]:
    """All scans as the alert worker runs them (findings and their marks, one transaction left open): ms and
    findings per scan, and the number of SQL statements run (an executemany counts once per row)."""
    policy = load_policy(None)
    statements = 0

    def count(_sql: str) -> None:
        nonlocal statements
        statements += 1

    conn.set_trace_callback(count)
    ms: dict[str, float] = {}
    found: dict[str, int] = {}
    try:
        for scan in rules.SCANS:
            started = time.perf_counter()
            findings = scan(conn, registry, policy, now)
            for finding in findings:
                if finding.mark:
                    conn.execute("INSERT OR REPLACE INTO rule_marks (household, rule, mark) VALUES (?, ?, ?)",
                                 (finding.household, *finding.mark))
            ms[scan.__name__] = (time.perf_counter() - started) * 1000
            found[scan.__name__] = len(findings)
    finally:
        conn.set_trace_callback(None)
    return ms, found, statements


def catch_up(conn: sqlite3.Connection, registry: Registry, rules: ModuleType, now: datetime
             ) -> list[tuple[dict[str, float], dict[str, int], int]]:
    """Passes until the scans have looked at every household for the current deadline (one pass, unless a
    scan spreads that over several: a missed-reading state with a household to go on after)."""
    passes = []
    for _ in range(100):
        passes.append(one_pass(conn, registry, rules, now))
        states = conn.execute("SELECT state FROM scan_state").fetchall() if _has_table(conn, "scan_state") else []
        if not any(json.loads(state).get("after") is not None for (state,) in states):
            break
    return passes


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


def registry_change(conn: sqlite3.Connection, n: int, now: datetime) -> None:
    """A household put in isolation today, as staff do every few seconds at this scale."""
    household = f"hh-new-{n}"
    with conn:
        conn.execute("INSERT INTO households (household, site, address, unit, residents, elderly_alone, disabled, "
                     "language, team, created_at) VALUES (?, 'site-0', '', '', 1, 0, 0, 'en', 'team-0', ?)",
                     (household, iso(now)))
        conn.execute("INSERT INTO isolation_periods (household, start_date, days, created_by, created_at) "
                     "VALUES (?, ?, 14, 'bench', ?)", (household, now.date().isoformat(), iso(now)))


def timed_commit(conn: sqlite3.Connection) -> float:
    started = time.perf_counter()
    conn.commit()
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--households", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=5, help="repeats per figure (median)")
    parser.add_argument("--rules", default=None, help="a rules.py to time instead of gateway.rules (e.g. an old copy)")
    args = parser.parse_args()
    rules = load_rules(args.rules)
    names = [scan.__name__ for scan in rules.SCANS]
    now = datetime.now(timezone.utc)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "gw.db"
        started = time.perf_counter()
        planted = populate(db, args.households, now)
        print(f"populated {args.households} households in {time.perf_counter() - started:.1f} s; "
              f"rules from {args.rules or 'gateway.rules'}; {machine()}")
        conn = sqlite3.connect(db, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        registry = Registry(conn)
        deadline = []
        for _ in range(args.runs):  # the state just after a deadline, every run (rolled back)
            deadline.append(catch_up(conn, registry, rules, now))
            conn.rollback()
        catch_up(conn, registry, rules, now)
        conn.commit()
        steady, steady_commit = [], []
        for _ in range(args.runs):
            steady.append(one_pass(conn, registry, rules, now))
            steady_commit.append(timed_commit(conn))
        changed, changed_commit = [], []
        for n in range(args.runs):
            registry_change(conn, n, now)
            changed.append(one_pass(conn, registry, rules, now))
            changed_commit.append(timed_commit(conn))
        conn.close()

    def worst(run: list, name: str) -> float:
        return max(p[0][name] for p in run)

    def ms(values: list[float]) -> str:
        return f"{median(values):.1f}"

    kinds = dict(zip(names, planted.values()))
    rows = [[name, ms([worst(run, name) for run in deadline]), sum(p[1][name] for p in deadline[0]),
             kinds.get(name, ""), ms([p[0][name] for p in steady]), sum(p[1][name] for p in steady),
             ms([p[0][name] for p in changed])] for name in names]
    rows.append(["commit", "", "", "", ms(steady_commit), "", ms(changed_commit)])
    rows.append(["whole pass", ms([max(sum(p[0].values()) for p in run) for run in deadline]),
                 sum(sum(p[1].values()) for p in deadline[0]), sum(planted.values()),
                 ms([sum(p[0].values()) + c for p, c in zip(steady, steady_commit)]), "",
                 ms([sum(p[0].values()) + c for p, c in zip(changed, changed_commit)])])
    rows.append(["SQL statements per pass", max(p[2] for p in deadline[0]), "", "", steady[0][2], "", changed[0][2]])
    print(table(f"Scan passes at {args.households} households, ms (median of {args.runs}); after a deadline the "
                f"scans took {len(deadline[0])} pass(es), ms is the slowest",
                ["scan", "deadline ms", "findings", "planted", "steady ms", "findings", "1 change ms"], rows))


if __name__ == "__main__":
    main()
