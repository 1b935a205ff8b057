"""Storm: N households' devices go silent at once; how many pages each recipient gets, and how soon the first.

A real Mosquitto, the gateway in its own process (ingest, rules, grouping, escalation, Apprise) and a local
receiver standing in for the staff's phones. N registered, isolated households in 8 teams, one device each,
report heartbeats (spread over `--heartbeat` seconds, as devices booted at different times do) for a
warm-up; then every device falls silent at the same moment (`--mode silent`: a building's power cut), or
the broker stops for `offline_after_s` + 10 s and every device reconnects and reports at once when it is
back (`--mode broker_restart`). Counted: every page the receiver got, per recipient, and the time from the
silence to the first page. Target: at most 2 pages per recipient, the first within
`offline_after_s` + 30 s.

The bench policy is the default one with `rules.offline_after_s` shortened from 90 s to 20 s, so a run
takes about a minute: the offline rule's wait is a setting, not what is measured. `--no-grouping` runs the
same storm with `grouping.kinds: []`, each alert paging alone (for comparison).

    python bench/storm.py [--households 500] [--mode silent|broker_restart] [--no-grouping] [--json out.json]

The last line is JSON: {"households": N, "pages": .., "max_pages_per_recipient": .., "first_page_after_s": ..}.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine, start_gateway, stop, table
from gateway.inbox import LocalInbox
from gateway.policy import DEFAULT_POLICY
from isowatch.broker import BrokerUrl, MosquittoBroker, free_port
from isowatch_app.simulate import Fleet, WirePublisher, register_fleet

TEAMS = 8
OFFLINE_AFTER_S = 20
SCAN_EVERY_S = 5.0  # the alert worker's silence scans (gateway/alert_worker.py)
TARGET_PAGES = 2
SITE_NAME = "Xingfu Street"


def seed(db: Path, fleet: Fleet, inbox: LocalInbox) -> None:
    """The fleet registered and isolated (register_fleet), each staff member paging the receiver by name."""
    register_fleet(db, fleet, teams=TEAMS)
    conn = sqlite3.connect(db, timeout=30)
    with conn:
        staff = [s for (s,) in conn.execute("SELECT staff FROM staff")]
        conn.executemany("UPDATE staff SET contacts = ? WHERE staff = ?",
                         [(json.dumps([inbox.url(s)]), s) for s in staff])
        conn.execute("UPDATE sites SET name = ?", (SITE_NAME,))
    conn.close()


def bench_policy(path: Path, grouping: bool) -> Path:
    text = DEFAULT_POLICY.read_text().replace("offline_after_s: 90", f"offline_after_s: {OFFLINE_AFTER_S}")
    if not grouping:
        text = text.replace("kinds: [device_offline, camera_tampered, missed_reading]", "kinds: []")
    path.write_text(text)
    return path


def report(broker: BrokerUrl, fleet: Fleet, period: float, seconds: float, client_id: str) -> None:
    """Every device's heartbeat every `period` seconds, the devices' phases spread evenly over it."""
    publisher = WirePublisher(broker, client_id)
    started, sent = time.monotonic(), 0
    total = max(fleet.households, int(seconds / period * fleet.households))
    while sent < total:
        due = min(total, int((time.monotonic() - started) / period * fleet.households) + 1)
        while sent < due:
            n = sent % fleet.households
            publisher.publish(*fleet.heartbeat(n, uptime_s=60.0 + sent / fleet.households * period))
            sent += 1
        publisher.flush()
        time.sleep(0.02)
    publisher.close()


def all_at_once(broker: BrokerUrl, fleet: Fleet, client_id: str) -> None:
    publisher = WirePublisher(broker, client_id)
    for n in range(fleet.households):
        publisher.publish(*fleet.heartbeat(n, uptime_s=1.0))
    publisher.close()


def offline_alerts(db: Path) -> tuple[int, int]:
    """(device_offline alerts, of them in a group)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute("SELECT count(*), count(group_id) FROM alerts WHERE kind = 'device_offline'").fetchone()
    finally:
        conn.close()


def run(households: int, mode: str, heartbeat_s: float, grouping: bool) -> dict:
    fleet = Fleet(households)
    with tempfile.TemporaryDirectory(prefix="isowatch-bench-storm-") as tmp:
        root = Path(tmp)
        inbox = LocalInbox().start()
        broker = MosquittoBroker(root / "broker").start()
        db = root / "gw.db"
        seed(db, fleet, inbox)
        policy = bench_policy(root / "policy.yaml", grouping)
        gateway = start_gateway(broker.url(), db, "--policy", str(policy), "--http-port", str(free_port()))
        devices = broker.add_user("bench-storm", full_access=True)
        try:
            report(devices, fleet, heartbeat_s, 2 * heartbeat_s, "bench-storm")  # warm-up: every device heard from
            silence = time.perf_counter()  # the storm starts: nothing more from any device
            if mode == "broker_restart":
                broker.stop()
                time.sleep(OFFLINE_AFTER_S + 10)
                broker.start()
                all_at_once(devices, fleet, "bench-storm-back")  # every device reconnects and reports at once
            deadline = time.monotonic() + OFFLINE_AFTER_S + heartbeat_s + 90
            while time.monotonic() < deadline and offline_alerts(db)[0] < households:
                time.sleep(0.5)
            quiet_since, seen = time.monotonic(), len(inbox.received())
            while time.monotonic() - quiet_since < 5.0 and time.monotonic() < deadline + 30:
                time.sleep(0.5)  # pages in flight land; a storm that pages on keeps this loop going
                if len(inbox.received()) != seen:
                    quiet_since, seen = time.monotonic(), len(inbox.received())
            alerts, grouped = offline_alerts(db)
        finally:
            stop(gateway)
            broker.stop()
            inbox.stop()
    pages = inbox.received()
    per_recipient = Counter(m.recipient for m in pages)
    first = min((m.arrived for m in pages), default=None)
    return {
        "households": households, "pages": len(pages),
        "max_pages_per_recipient": max(per_recipient.values(), default=0),
        "first_page_after_s": round(first - silence, 1) if first is not None else None,
        "mode": mode, "grouping": grouping, "offline_after_s": OFFLINE_AFTER_S, "heartbeat_s": heartbeat_s,
        "offline_alerts": alerts, "grouped_alerts": grouped, "recipients": len(per_recipient),
        "pages_per_recipient": dict(sorted(per_recipient.items())),
        "group_pages": sum("/ack/group/" in m.body for m in pages), "machine": machine(),
        "targets": {"max_pages_per_recipient": TARGET_PAGES, "first_page_after_s": OFFLINE_AFTER_S + 30},
    }


def met(result: dict) -> bool:
    first = result["first_page_after_s"]
    return (result["max_pages_per_recipient"] <= TARGET_PAGES and first is not None
            and first <= result["targets"]["first_page_after_s"] and result["offline_alerts"] == result["households"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--households", type=int, default=500)
    parser.add_argument("--mode", choices=("silent", "broker_restart"), default="silent",
                        help="Devices fall silent, or the broker stops and every device reconnects at once.")
    parser.add_argument("--heartbeat", type=float, default=5.0, help="Seconds between a device's heartbeats.")
    parser.add_argument("--no-grouping", action="store_true", help="grouping.kinds: [] (each alert pages alone).")
    parser.add_argument("--json", type=Path, help="Also write the figures here as JSON")
    args = parser.parse_args()
    result = run(args.households, args.mode, args.heartbeat, not args.no_grouping)
    result["met"] = met(result)
    rows = [
        ["offline alerts (grouped)", f"{result['offline_alerts']} ({result['grouped_alerts']})", str(args.households)],
        ["pages (group pages)", f"{result['pages']} ({result['group_pages']})", ""],
        ["recipients paged", str(result["recipients"]), ""],
        ["max pages per recipient", str(result["max_pages_per_recipient"]), f"<= {TARGET_PAGES}"],
        ["first page after the silence (s)", str(result["first_page_after_s"]),
         f"<= {result['targets']['first_page_after_s']}"],
    ]
    print(table(f"bench/storm.py: {args.households} households, mode {args.mode}, grouping "
                f"{'on' if result['grouping'] else 'off'}, offline_after_s {OFFLINE_AFTER_S} (bench policy), "
                f"{machine()}", ["measure", "value", "target"], rows))
    print(f"targets {'met' if result['met'] else 'MISSED'}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    print(json.dumps({key: result[key] for key in ("households", "pages", "max_pages_per_recipient",
                                                   "first_page_after_s")}))


if __name__ == "__main__":
    main()
