"""Ingest throughput: simulated devices publish door events and readings as fast as a real Mosquitto takes
them; one gateway process (`isowatch gateway run`, as deployed) stores them while a bare subscriber
(mosquitto_sub, or a paho client that discards) receives the same stream in the same run.

Figures per run: events persisted per second (first publish -> last row committed), gateway CPU seconds
per 1,000 events, and the ratio of the gateway's rate to the bare subscriber's.

    python bench/ingest.py [--events 100000] [--runs 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
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
from isowatch.broker import BrokerUrl, MosquittoBroker
from isowatch.contract import TopicKind, subscription
from isowatch_app.simulate import Fleet, flood, register_fleet

DEVICES = 1000  # round-robin: a batch of 500 holds 500 devices, each owed its own GatewayAck
TARGET_RATE = 10_000
TARGET_RATIO = 0.5


def _publish(broker: str, events: int, go: multiprocessing.Event, started: multiprocessing.Value) -> None:
    go.wait()
    started.value = time.time()
    flood(BrokerUrl.parse(broker), Fleet(DEVICES), events)


class BareSubscriber:
    """Receives the same subscriptions as the gateway at QoS 1 and discards; timestamps the last message."""

    FILTERS = [subscription("+", TopicKind.EVENT), subscription("+", TopicKind.READING)]

    def __init__(self, broker: BrokerUrl, expected: int) -> None:
        self.kind = "mosquitto_sub" if shutil.which("mosquitto_sub") else "paho"
        self.expected = expected
        self.done_at: float | None = None
        if self.kind == "mosquitto_sub":
            args = ["mosquitto_sub", "-h", broker.host, "-p", str(broker.port), "-u", broker.username or "",
                    "-P", broker.password or "", "-q", "1", "-i", "bench-bare", "-C", str(expected), "-F", "x"]
            for pattern in self.FILTERS:
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
        client.on_connect = lambda c, *_: c.subscribe([(f, 1) for f in self.FILTERS])
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


def one_run(root: Path, events: int) -> dict[str, float | str]:
    broker = MosquittoBroker(root / "broker").start()
    db = root / "gw.db"
    register_fleet(db, Fleet(DEVICES), isolated=False)  # registered households; rules evaluate, nobody paged
    gateway = start_gateway(broker.url(), db)
    # Users of their own: the broker names each connection by its user (use_username_as_clientid).
    bare = BareSubscriber(broker.add_user("bench-bare", full_access=True), events)
    go, started = multiprocessing.Event(), multiprocessing.Value("d", 0.0)
    load = broker.add_user("bench-load", full_access=True)
    publisher = multiprocessing.Process(target=_publish, args=(str(load), events, go, started))
    try:
        publisher.start()
        cpu_before = cpu_seconds(gateway.pid)
        go.set()
        deadline = time.monotonic() + 300
        while (count := stored(db)) < events:
            if time.monotonic() > deadline:
                raise RuntimeError(f"gateway stored {count} of {events} in 5 minutes")
            time.sleep(0.02)
        gateway_done = time.time()
        cpu = cpu_seconds(gateway.pid) - cpu_before
        publisher.join(60)
        while bare.done_at is None and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        bare.close()
        if publisher.is_alive():
            publisher.kill()
        stop(gateway)
        broker.stop()
    if bare.done_at is None:
        raise RuntimeError("the bare subscriber did not receive every message")
    gateway_rate = events / (gateway_done - started.value)
    bare_rate = events / (bare.done_at - started.value)
    return {"gateway_rate": gateway_rate, "bare_rate": bare_rate, "ratio": gateway_rate / bare_rate,
            "cpu_s_per_1000": cpu / events * 1000, "bare": bare.kind}


def run(events: int, runs: int) -> dict:
    results = []
    with tempfile.TemporaryDirectory(prefix="isowatch-bench-ingest-") as tmp:
        for n in range(runs):
            run_dir = Path(tmp) / f"run-{n}"
            run_dir.mkdir()
            results.append(one_run(run_dir, events))
            r = results[-1]
            print(f"  run {n + 1}: gateway {r['gateway_rate']:,.0f}/s, bare {r['bare_rate']:,.0f}/s, "
                  f"ratio {r['ratio']:.2f}, {r['cpu_s_per_1000']:.3f} CPU s/1000", file=sys.stderr)
    summary = {key: median([r[key] for r in results]) for key in ("gateway_rate", "bare_rate", "ratio", "cpu_s_per_1000")}
    return {"events": events, "runs": results, "median": summary, "bare": results[0]["bare"], "machine": machine(),
            "targets": {"gateway_rate": TARGET_RATE, "ratio": TARGET_RATIO},
            "met": summary["gateway_rate"] >= TARGET_RATE and summary["ratio"] >= TARGET_RATIO}


def report(result: dict) -> str:
    m = result["median"]
    rows = [
        ["events persisted/s, one gateway process", f"{m['gateway_rate']:,.0f}",
         f">= {TARGET_RATE:,} (x{m['gateway_rate'] / TARGET_RATE:.2f})"],
        [f"messages/s received by a bare subscriber ({result['bare']})", f"{m['bare_rate']:,.0f}", ""],
        ["ratio gateway / bare subscriber", f"{m['ratio']:.2f}", f">= {TARGET_RATIO}"],
        ["gateway CPU seconds per 1,000 events", f"{m['cpu_s_per_1000']:.3f}", ""],
    ]
    return table(f"bench/ingest.py: {result['events']:,} events+readings from {DEVICES:,} devices, "
                 f"median of {len(result['runs'])} runs, {result['machine']}", ["measure", "value", "target"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, help="Also write the figures here as JSON")
    args = parser.parse_args()
    result = run(args.events, args.runs)
    print(report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
