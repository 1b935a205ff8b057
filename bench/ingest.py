"""Ingest throughput: simulated devices publish as fast as a real Mosquitto takes their messages; one gateway
process (`isowatch gateway run`, as deployed) stores them while a bare subscriber (mosquitto_sub, or a paho
client that discards) receives the same stream in the same run.

Two streams:
- easy (the default): door events and normal temperatures, half and half, from 1,000 registered
  households with nobody in isolation: the rules look at every event and let it pass.
- `--realistic`: the 1,000 households are in isolation, so the rules fire and page (to a local receiver),
  and the stream is what `isowatch simulate` sends for them, in its proportions (`isowatch_app.simulate.Profile`
  defaults: a heartbeat per device every 30 s, two readings a day, door openings at 1/s across the fleet in
  bursts of 20, 1 % of devices going offline and back) with one reading in ten a fever; a fleet's hours on a
  virtual clock, published without their pauses.

Figures per run: messages stored per second (first publish -> last message committed), gateway CPU
seconds per 1,000 messages, and the ratio of the gateway's rate to the bare subscriber's; realistic
runs also count the alerts raised and pages sent meanwhile, and how long after the last commit the
rules had looked at the last door event.

    python bench/ingest.py [--events 100000] [--runs 3] [--realistic] [--json out.json]
"""

from __future__ import annotations

import argparse
import heapq
import json
import multiprocessing
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import cpu_seconds, machine, median, start_gateway, stop, table
from gateway.inbox import LocalInbox
from isowatch.broker import BrokerUrl, MosquittoBroker
from isowatch.contract import DEVICE_PUBLISHES, TopicKind, subscription
from isowatch_app.simulate import Fleet, Profile, WirePublisher, flood, register_fleet

DEVICES = 1000  # round-robin: a batch of 500 holds 500 devices, each owed its own GatewayAck
TARGET_RATE = 10_000
TARGET_RATIO = 0.5
# `isowatch simulate`'s household, plus fevers: its own default has none, and then that rule would never fire.
REALISTIC = Profile(fever_share=0.1)
PAGE_HOSTS = 8  # the fleet's teams page receivers on hosts of their own: Apprise's rate limits are per host
EASY_FILTERS = (subscription("+", TopicKind.EVENT), subscription("+", TopicKind.READING))
ALL_FILTERS = tuple(subscription("+", kind) for kind in sorted(DEVICE_PUBLISHES))


def realistic_stream(fleet: Fleet, count: int, profile: Profile = REALISTIC, seed: int = 1) -> list[tuple[bytes, bytes]]:
    """`count` messages as `isowatch_app.simulate.run_fleet` sends them for `fleet` and `profile` (heartbeats spread
    over their period, readings and door bursts as Poisson processes, devices going offline with their Last
    Will, silent, then back online), on a virtual clock: their proportions, without their pauses."""
    rng = random.Random(seed)
    n = fleet.households
    readings_rate = n * profile.readings_per_day / 86400
    burst_rate = profile.door_rate / profile.door_burst
    duration = count / (n / profile.heartbeat_s + readings_rate + profile.door_rate)  # virtual seconds
    offline_rate = n * profile.offline_share / duration
    due = [(rng.uniform(0, profile.heartbeat_s), d) for d in range(n)]
    heapq.heapify(due)
    next_reading, next_burst = rng.expovariate(readings_rate), rng.expovariate(burst_rate)
    next_offline = rng.expovariate(offline_rate) if offline_rate else float("inf")
    offline_until: dict[int, float] = {}
    out: list[tuple[bytes, bytes]] = []
    while len(out) < count:
        now = min(due[0][0], next_reading, next_burst, next_offline)
        if now == due[0][0]:
            _, d = heapq.heappushpop(due, (now + profile.heartbeat_s, due[0][1]))
            if d in offline_until:
                if now < offline_until[d]:
                    continue  # silent while offline
                del offline_until[d]
                out.append(fleet.status(d, "online"))
            out.append(fleet.heartbeat(d, now + d % 86400))
        elif now == next_reading:
            fever = rng.random() < profile.fever_share
            out.append(fleet.temperature(rng.randrange(n), 38.5 if fever else 36.6))
            next_reading += rng.expovariate(readings_rate)
        elif now == next_burst:
            out += [fleet.door(d) for d in rng.sample(range(n), min(profile.door_burst, n))]
            next_burst += rng.expovariate(burst_rate)
        else:
            d = rng.randrange(n)
            offline_until[d] = now + profile.offline_s
            out.append(fleet.status(d, "offline"))
            next_offline += rng.expovariate(offline_rate)
    return out[:count]


def _publish(broker: str, events: int, realistic: bool, go: multiprocessing.Event,
             started: multiprocessing.Value) -> None:
    if not realistic:
        go.wait()
        started.value = time.time()
        flood(BrokerUrl.parse(broker), Fleet(DEVICES), events)
        return
    stream = realistic_stream(Fleet(DEVICES), events)  # built before the clock starts
    publisher = WirePublisher(BrokerUrl.parse(broker), "isowatch-sim-flood")
    go.wait()
    started.value = time.time()
    for topic, payload in stream:
        publisher.publish(topic, payload)
    publisher.close()


class BareSubscriber:
    """Receives the same subscriptions as the gateway at QoS 1 and discards; timestamps the last message."""

    def __init__(self, broker: BrokerUrl, expected: int, filters: tuple[str, ...] = EASY_FILTERS) -> None:
        self.kind = "mosquitto_sub" if shutil.which("mosquitto_sub") else "paho"
        self.filters = filters
        self.expected = expected
        self.done_at: float | None = None
        if self.kind == "mosquitto_sub":
            args = ["mosquitto_sub", "-h", broker.host, "-p", str(broker.port), "-u", broker.username or "",
                    "-P", broker.password or "", "-q", "1", "-i", "bench-bare", "-C", str(expected), "-F", "x"]
            for pattern in self.filters:
                args += ["-t", pattern]
            # -C: exit after `expected` messages; its exit time is the last message's arrival.
            self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL)
            threading.Thread(target=self._wait_exit, daemon=True).start()
        else:
            self._start_paho(broker)
        time.sleep(0.5)  # subscribed before the first publish

    def _wait_exit(self) -> None:
        self.process.wait()
        self.done_at = time.time()

    def _start_paho(self, broker: BrokerUrl) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        count = [0]
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-bare", protocol=mqtt.MQTTv311)
        client.username_pw_set(broker.username, broker.password)

        def on_message(*_: object) -> None:
            count[0] += 1
            if count[0] == self.expected:
                self.done_at = time.time()

        client.on_message = on_message
        client.on_connect = lambda c, *_: c.subscribe([(f, 1) for f in self.filters])
        client.connect(broker.host, broker.port)
        client.loop_start()
        self.client = client

    def close(self) -> None:
        if self.kind == "mosquitto_sub":
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        else:
            self.client.disconnect()
            self.client.loop_stop()


def stored(db: Path) -> int:
    conn = sqlite3.connect(db, timeout=30)
    try:
        return sum(conn.execute(f"SELECT coalesce(max(rowid), 0) FROM {t}").fetchone()[0] for t in ("events", "readings"))
    finally:
        conn.close()


def fleet_seqs(db: Path) -> int:
    """The sum of the fleet's devices' highest stored sequence numbers: heartbeats leave no row of their own."""
    conn = sqlite3.connect(db, timeout=30)
    try:
        return conn.execute("SELECT coalesce(sum(max_seq), 0) FROM devices WHERE device LIKE 'dev-%'").fetchone()[0]
    finally:
        conn.close()


def expected_totals(events: int) -> tuple[int, int]:
    """What a realistic stream leaves behind once stored: its event and reading rows, and the sum of each
    device's last sequence number, which is its count of numbered messages (all but status)."""
    topics = [topic for topic, _ in realistic_stream(Fleet(DEVICES), events)]
    rows = sum(1 for topic in topics if topic.endswith((b"/event", b"/reading")))
    return rows, sum(1 for topic in topics if not topic.endswith(b"/status"))


def rules_caught_up(db: Path, timeout: float = 120.0) -> float | None:
    """Seconds until the alert worker's cursor over door events has reached the last one (None: not in time)."""
    started = time.monotonic()
    conn = sqlite3.connect(db, timeout=30)
    try:
        (last,) = conn.execute("SELECT coalesce(max(rowid), 0) FROM events").fetchone()
        while time.monotonic() - started < timeout:
            row = conn.execute("SELECT position FROM worker_cursors WHERE name = 'events'").fetchone()
            if row and row[0] >= last:
                return time.monotonic() - started
            time.sleep(0.05)
    finally:
        conn.close()
    return None


def paging(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(db, timeout=30)
    try:
        alerts = conn.execute("SELECT count(*) FROM alerts").fetchone()[0]
        kinds = dict(conn.execute("SELECT kind, count(*) FROM alerts GROUP BY kind").fetchall())
        pages = conn.execute("SELECT count(*) FROM notifications").fetchone()[0]
        sent = conn.execute("SELECT count(*) FROM notifications WHERE state = 'sent'").fetchone()[0]
        verdicts = conn.execute("SELECT count(*) FROM rule_log").fetchone()[0]
    finally:
        conn.close()
    return {"alerts": alerts, "alert_kinds": kinds, "pages": pages, "pages_sent": sent, "rule_verdicts": verdicts}


def one_run(root: Path, events: int, realistic: bool = False) -> dict[str, float | str]:
    broker = MosquittoBroker(root / "broker").start()
    db = root / "gw.db"
    inboxes: list[LocalInbox] = []
    if realistic:  # households in isolation: door openings and fevers page their teams
        inboxes = [LocalInbox(host=f"127.0.{t + 1}.1").start() for t in range(PAGE_HOSTS)]
        register_fleet(db, Fleet(DEVICES), isolated=True, contacts=tuple(box.url("fleet") for box in inboxes))
        rows, seqs = expected_totals(events)
    else:
        register_fleet(db, Fleet(DEVICES), isolated=False)  # registered households; rules evaluate, nobody paged
        rows, seqs = events, 0
    gateway = start_gateway(broker.url(), db)
    # Users of their own: the broker names each connection by its user (use_username_as_clientid).
    bare = BareSubscriber(broker.add_user("bench-bare", full_access=True), events,
                          ALL_FILTERS if realistic else EASY_FILTERS)
    go, started = multiprocessing.Event(), multiprocessing.Value("d", 0.0)
    load = broker.add_user("bench-load", full_access=True)
    publisher = multiprocessing.Process(target=_publish, args=(str(load), events, realistic, go, started))
    try:
        publisher.start()
        time.sleep(2.0 if realistic else 0.0)  # the publisher builds its stream before the clock starts
        cpu_before = cpu_seconds(gateway.pid)
        go.set()
        deadline = time.monotonic() + 300
        while (count := stored(db)) < rows or (seqs and fleet_seqs(db) < seqs):
            if time.monotonic() > deadline:
                raise RuntimeError(f"gateway stored {count} of {rows} rows in 5 minutes")
            time.sleep(0.02)
        gateway_done = time.time()
        cpu = cpu_seconds(gateway.pid) - cpu_before
        lag = rules_caught_up(db) if realistic else None
        publisher.join(60)
        while bare.done_at is None and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        bare.close()
        if publisher.is_alive():
            publisher.kill()
        stop(gateway)
        broker.stop()
        for box in inboxes:
            box.stop()
    if bare.done_at is None:
        raise RuntimeError("the bare subscriber did not receive every message")
    gateway_rate = events / (gateway_done - started.value)
    bare_rate = events / (bare.done_at - started.value)
    result = {"gateway_rate": gateway_rate, "bare_rate": bare_rate, "ratio": gateway_rate / bare_rate,
              "cpu_s_per_1000": cpu / events * 1000, "bare": bare.kind}
    if realistic:
        result |= {"rows": rows, "rules_caught_up_s": lag, **paging(db)}
    return result


def run(events: int, runs: int, realistic: bool = False) -> dict:
    results = []
    with tempfile.TemporaryDirectory(prefix="isowatch-bench-ingest-") as tmp:
        for n in range(runs):
            run_dir = Path(tmp) / f"run-{n}"
            run_dir.mkdir()
            results.append(one_run(run_dir, events, realistic))
            r = results[-1]
            rules = (f", {r['alerts']} alerts, {r['pages']} pages ({r['pages_sent']} sent), rules caught up "
                     f"{_seconds(r['rules_caught_up_s'])} after" if realistic else "")
            print(f"  run {n + 1}: gateway {r['gateway_rate']:,.0f}/s, bare {r['bare_rate']:,.0f}/s, "
                  f"ratio {r['ratio']:.2f}, {r['cpu_s_per_1000']:.3f} CPU s/1000{rules}", file=sys.stderr)
    summary = {key: median([r[key] for r in results]) for key in ("gateway_rate", "bare_rate", "ratio", "cpu_s_per_1000")}
    return {"events": events, "stream": "realistic" if realistic else "easy", "runs": results, "median": summary,
            "bare": results[0]["bare"], "machine": machine(),
            "targets": {"gateway_rate": TARGET_RATE, "ratio": TARGET_RATIO},
            "met": summary["gateway_rate"] >= TARGET_RATE and summary["ratio"] >= TARGET_RATIO}


def _seconds(value: float | None) -> str:
    return "not within 120 s" if value is None else f"{value:.1f} s"


def report(result: dict) -> str:
    m = result["median"]
    rows = [
        ["messages stored/s, one gateway process", f"{m['gateway_rate']:,.0f}",
         f">= {TARGET_RATE:,} (x{m['gateway_rate'] / TARGET_RATE:.2f})"],
        [f"messages/s received by a bare subscriber ({result['bare']})", f"{m['bare_rate']:,.0f}", ""],
        ["ratio gateway / bare subscriber", f"{m['ratio']:.2f}", f">= {TARGET_RATIO}"],
        ["gateway CPU seconds per 1,000 messages", f"{m['cpu_s_per_1000']:.3f}", ""],
    ]
    if result["stream"] == "realistic":
        last = result["runs"][-1]
        rows += [["alerts raised / pages created / pages sent (last run)",
                  f"{last['alerts']:,} / {last['pages']:,} / {last['pages_sent']:,}", ""],
                 ["rules caught up with the last door event, after the last commit (last run)",
                  _seconds(last["rules_caught_up_s"]), ""]]
        what = (f"{result['events']:,} messages as `isowatch simulate` sends them (heartbeats, door bursts, readings "
                f"with fevers, offline/online) from {DEVICES:,} households in isolation")
    else:
        what = f"{result['events']:,} events+readings from {DEVICES:,} devices"
    return table(f"bench/ingest.py: {what}, median of {len(result['runs'])} runs, {result['machine']}",
                 ["measure", "value", "target"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--realistic", action="store_true",
                        help="Households in isolation and the message mix of `isowatch simulate` (see above).")
    parser.add_argument("--json", type=Path, help="Also write the figures here as JSON")
    args = parser.parse_args()
    result = run(args.events, args.runs, args.realistic)
    print(report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
