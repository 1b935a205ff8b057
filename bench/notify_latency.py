"""Notification latency: a door event's publish at the edge -> the notification's HTTP request at the receiver.

A real Mosquitto, the gateway in its own process (ingest, rules, escalation, Apprise), and a local
receiver standing in for the phone services. Meanwhile another process publishes `--load` other
messages per second (normal body temperatures from isolated households, which the rules evaluate
and let pass). Each sample is a door opening in a fresh isolated household, so each pages once.

    python bench/notify_latency.py [--samples 200] [--load 1000] [--interval 0.25]
"""

from __future__ import annotations

import argparse
import multiprocessing
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.common import door_pages, machine, start_gateway, stop, table
from gateway.inbox import LocalInbox
from gateway.registry import HouseholdIn, IsolationIn, Registry, StaffIn, TeamIn
from gateway.store import open_database
from isowatch.broker import BrokerUrl, MosquittoBroker, free_port
from isowatch.contract import DoorEvent, TemperatureReading, encode, topic_for
from isowatch.stamper import Stamper

SITE = "bench"
TEAMS = 8  # each team's social worker on its own loopback host: the per-service rate limit is per host
LOAD_DEVICES = 50


def seed(db: Path, samples: int, inboxes: list[LocalInbox], other: LocalInbox) -> None:
    open_database(db).close()
    registry = Registry(sqlite3.connect(db, timeout=30))
    started = (datetime.now(ZoneInfo("Asia/Shanghai")) - timedelta(days=2)).date()
    for t in range(TEAMS):
        members = {}
        for role in ("leader", "medical", "police", "social"):
            ident = f"{role}-{t}"
            url = inboxes[t].url(ident) if role == "social" else other.url(ident)
            registry.upsert_staff(StaffIn(staff=ident, name=ident, role=role, language="en", contacts=[url]))
            members[role] = ident
        registry.upsert_team(TeamIn(team=f"team-{t}", **members))
    households = [(f"hh-door-{n:04d}", f"door-{n:04d}") for n in range(samples)]
    households += [(f"hh-load-{n:04d}", f"load-{n:04d}") for n in range(LOAD_DEVICES)]
    for n, (household, device) in enumerate(households):
        registry.upsert_household(HouseholdIn(household=household, site=SITE, team=f"team-{n % TEAMS}"))
        registry.start_isolation(IsolationIn(household=household, start_date=started), by="bench")
        registry.register_device(device, household, by="bench", password="unused")
    registry.conn.close()


def load_process(broker: str, rate: int, stop_at: float, counter) -> None:  # counter: a multiprocessing.Value("q")
    """Normal temperatures from the load households, `rate` per second, paced in 10 ms slices."""
    url = BrokerUrl.parse(broker)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-load", protocol=mqtt.MQTTv311)
    client.username_pw_set(url.username, url.password)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect(url.host, url.port)
    client.loop_start()
    stampers = [Stamper(f"load-{n:04d}") for n in range(LOAD_DEVICES)]
    sent, start = 0, time.monotonic()
    while time.monotonic() < stop_at:
        due = int((time.monotonic() - start) * rate)
        while sent < due:
            n = sent % LOAD_DEVICES
            reading = stampers[n].stamp(TemperatureReading, type="temperature", celsius=36.6, subject="body",
                                        method="axillary")
            client.publish(topic_for(SITE, f"hh-load-{n:04d}", reading), encode(reading), qos=1)
            sent += 1
        time.sleep(0.01)
    counter.value = sent
    client.disconnect()
    client.loop_stop()


def breakdown(db: Path, sent_wall: dict[str, float]) -> dict[str, list[float]]:
    """Publish -> stored by ingest -> page created by the worker -> Apprise request done."""
    conn = sqlite3.connect(db)
    rows = conn.execute(
        "SELECT e.household, e.received_at, n.created_at, d.elapsed_ms FROM events e "
        "JOIN alerts a ON a.first_event_id = e.id AND a.kind = 'door_opened' "
        "JOIN notifications n ON n.alert_id = a.id JOIN delivery_attempts d ON d.notification_id = n.id"
    ).fetchall()
    conn.close()
    ts = lambda text: datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    stages: dict[str, list[float]] = {"publish -> ingest batch": [], "ingest -> page created": [],
                                      "Apprise send (request + response)": []}
    for household, received, created, elapsed in rows:
        if household in sent_wall:
            stages["publish -> ingest batch"].append((ts(received) - sent_wall[household]) * 1000)
            stages["ingest -> page created"].append((ts(created) - ts(received)) * 1000)
            stages["Apprise send (request + response)"].append(elapsed)
    return stages


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--load", type=int, default=1000, help="Other messages per second meanwhile.")
    parser.add_argument("--interval", type=float, default=0.25, help="Seconds between door events.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="isowatch-bench-") as tmp:
        root = Path(tmp)
        inboxes = [LocalInbox(host=f"127.0.{t + 1}.1").start() for t in range(TEAMS)]
        other = LocalInbox().start()
        broker = MosquittoBroker(root / "broker").start()
        db = root / "gw.db"
        seed(db, args.samples, inboxes, other)
        gateway = start_gateway(broker.url(), db, "--http-port", str(free_port()))
        publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-door", protocol=mqtt.MQTTv311)
        # Users of their own (may publish as any device): the broker names each connection by its user.
        door = broker.add_user("bench-door", full_access=True)
        load = broker.add_user("bench-load", full_access=True)
        publisher.username_pw_set(door.username, door.password)
        publisher.connect("127.0.0.1", broker.port)
        publisher.loop_start()
        duration = args.samples * args.interval + 3
        counter = multiprocessing.Value("q", 0)
        loader = multiprocessing.Process(target=load_process,
                                         args=(str(load), args.load, time.monotonic() + duration + 2, counter))
        sent_at: dict[str, float] = {}
        sent_wall: dict[str, float] = {}
        try:
            loader.start()
            time.sleep(2.0)  # the load is flowing before the first sample
            for n in range(args.samples):
                household, device = f"hh-door-{n:04d}", f"door-{n:04d}"
                event = Stamper(device).stamp(DoorEvent, type="door", state="open")
                sent_wall[household] = time.time()
                sent_at[household] = time.perf_counter()
                publisher.publish(topic_for(SITE, household, event), encode(event), qos=1)
                time.sleep(args.interval)
            arrived = door_pages(inboxes, r"\((hh-door-\d+)\)", args.samples, timeout=30)
            loader.join(duration + 30)
            stages = breakdown(db, sent_wall)
        finally:
            publisher.disconnect()
            publisher.loop_stop()
            stop(gateway)
            broker.stop()
            for box in [*inboxes, other]:
                box.stop()
        latencies = [(arrived[h] - sent_at[h]) * 1000 for h in sent_at if h in arrived]
        load_rate = counter.value / (duration + 2)
        print(f"machine: {machine()}")
        print(table(
            "door event publish -> notification request at the receiver (ms)",
            ["samples", "delivered", "load msg/s", "p50", "p90", "p99", "max"],
            [[args.samples, len(latencies), f"{load_rate:.0f}",
              f"{statistics.median(latencies):.1f}", f"{percentile(latencies, 90):.1f}",
              f"{percentile(latencies, 99):.1f}", f"{max(latencies):.1f}"]],
        ))
        print(table("where the time goes (ms; wall clock, p50 / p99)", ["stage", "p50", "p99"],
                    [[name, f"{statistics.median(v):.1f}", f"{percentile(v, 99):.1f}"] for name, v in stages.items() if v]))
        if len(latencies) < args.samples:
            print(f"MISSING: {args.samples - len(latencies)} notifications did not arrive within 30 s")


if __name__ == "__main__":
    main()
