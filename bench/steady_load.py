"""Steady load: 50,000 registered households in isolation, each device with a heartbeat every 30 s and
readings twice a day, plus bursts of door events, on a real Mosquitto; one gateway process (ingest, rules,
escalation, Apprise) carries it. Measured during the load: the gateway's CPU share, its RSS, and the
latency from a probe door event's publish to its notification arriving at a local receiver.

    python bench/steady_load.py [--households 50000] [--seconds 40] [--runs 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import cpu_seconds, door_pages, machine, median, rss_mb, start_gateway, stop, table
from gateway.inbox import LocalInbox
from isowatch.broker import BrokerUrl, MosquittoBroker
from isowatch_app.simulate import Fleet, Profile, WirePublisher, register_fleet, run_fleet

PROBE_TEAMS = 8  # each probe team's social worker on its own loopback host: Apprise limits are per host
PROBE_INTERVAL_S = 0.4
WARMUP_S = 8.0
TARGETS = {"cpu_share": 0.5, "rss_mb": 500.0, "p99_ms": 250.0}
PROFILE = Profile(door_rate=0.5, door_burst=10, offline_share=0.01)  # background doors page the fleet's teams


def _load(broker: str, households: int, seconds: float, counts: multiprocessing.Array) -> None:
    stats = run_fleet(BrokerUrl.parse(broker), Fleet(households), PROFILE, seconds, client_id="bench-fleet")
    counts[:] = [stats.heartbeats, stats.readings, stats.doors, stats.status]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def one_run(root: Path, households: int, seconds: float) -> dict[str, float]:
    probes = Fleet(int(seconds / PROBE_INTERVAL_S), prefix="probe-")
    db = root / "gw.db"
    other = LocalInbox().start()  # the fleet's own pages (background door bursts) land here
    register_fleet(db, Fleet(households), contacts=(other.url("fleet"),))
    inboxes = [LocalInbox(host=f"127.0.{t + 1}.1").start() for t in range(PROBE_TEAMS)]
    # Probe households: a fresh one per door event, so each pages exactly once and no repeat rule applies.
    register_fleet(db, probes, teams=PROBE_TEAMS, contacts=tuple(box.url(f"probe-{t}") for t, box in enumerate(inboxes)))
    broker = MosquittoBroker(root / "broker").start()
    gateway = start_gateway(broker.url(), db)
    counts = multiprocessing.Array("q", 4)
    # Users of their own (may publish as any device): the broker names each connection by its user.
    load, probe_user = broker.add_user("bench-fleet", full_access=True), broker.add_user("bench-probe", full_access=True)
    loader = multiprocessing.Process(target=_load, args=(str(load), households, WARMUP_S + seconds + 2, counts))
    sent_at: dict[str, float] = {}
    rss: list[float] = []
    try:
        loader.start()
        time.sleep(WARMUP_S)  # the heartbeats are spread over their period from the first second
        probe = WirePublisher(probe_user, "bench-probe")
        cpu_before, started = cpu_seconds(gateway.pid), time.monotonic()
        for n in range(probes.households):
            topic, payload = probes.door(n)
            sent_at[probes.household(n)] = time.perf_counter()
            probe.publish(topic, payload)
            probe.flush()
            if n % 3 == 0:
                rss.append(rss_mb(gateway.pid))
            time.sleep(max(0.0, started + (n + 1) * PROBE_INTERVAL_S - time.monotonic()))
        cpu_share = (cpu_seconds(gateway.pid) - cpu_before) / (time.monotonic() - started)
        rss.append(rss_mb(gateway.pid))
        probe.close()
        arrived = door_pages(inboxes, r"\((probe-hh-\d+)\)", probes.households, timeout=20)
        loader.join(60)
    finally:
        if loader.is_alive():
            loader.kill()
        stop(gateway)
        broker.stop()
        for box in [*inboxes, other]:
            box.stop()
    # A probe not paged within 20 s of the end counts as infinitely late: p99 says so when over 1 % miss.
    latencies = [(arrived[h] - sent_at[h]) * 1000 if h in arrived else float("inf") for h in sent_at]
    heartbeats, readings, doors, status = counts[:]
    load_s = WARMUP_S + seconds + 2
    return {"cpu_share": cpu_share, "rss_mb": max(rss), "p50_ms": statistics.median(latencies),
            "p99_ms": percentile(latencies, 99), "probes": probes.households, "delivered": len(arrived),
            "msg_per_s": (heartbeats + readings + doors + status) / load_s, "heartbeats": heartbeats,
            "readings": readings, "doors": doors, "status": status}


def run(households: int, seconds: float, runs: int) -> dict:
    results = []
    with tempfile.TemporaryDirectory(prefix="isowatch-bench-steady-") as tmp:
        for n in range(runs):
            run_dir = Path(tmp) / f"run-{n}"
            run_dir.mkdir()
            results.append(one_run(run_dir, households, seconds))
            r = results[-1]
            print(f"  run {n + 1}: CPU {r['cpu_share']:.2f} core, RSS {r['rss_mb']:.0f} MB, p99 {r['p99_ms']:.0f} ms, "
                  f"{r['delivered']}/{r['probes']} probes, {r['msg_per_s']:,.0f} msg/s", file=sys.stderr)
    summary = {key: median([r[key] for r in results]) for key in ("cpu_share", "rss_mb", "p50_ms", "p99_ms", "msg_per_s")}
    lost = sum(r["probes"] - r["delivered"] for r in results)
    return {"households": households, "seconds": seconds, "runs": results, "median": summary, "machine": machine(),
            "targets": TARGETS, "probes_missing": lost,
            "met": lost == 0 and all(summary[key] < limit for key, limit in TARGETS.items())}


def report(result: dict) -> str:
    m = result["median"]
    rows = [
        ["device messages/s (heartbeats, readings, doors, status)", f"{m['msg_per_s']:,.0f}", ""],
        ["gateway CPU share (cores)", f"{m['cpu_share']:.2f}", f"< {TARGETS['cpu_share']}"],
        ["gateway RSS (MB, max during load)", f"{m['rss_mb']:.0f}", f"< {TARGETS['rss_mb']:.0f}"],
        ["door publish -> notification p50 (ms)", f"{m['p50_ms']:.0f}", ""],
        ["door publish -> notification p99 (ms)", f"{m['p99_ms']:.0f}", f"< {TARGETS['p99_ms']:.0f}"],
        ["probe notifications missing", str(result["probes_missing"]), "0"],
    ]
    return table(f"bench/steady_load.py: {result['households']:,} households, {result['seconds']:.0f} s measured, "
                 f"median of {len(result['runs'])} runs, {result['machine']}", ["measure", "value", "target"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--households", type=int, default=50_000)
    parser.add_argument("--seconds", type=float, default=40.0, help="Measured seconds per run, after a warm-up.")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, help="Also write the figures here as JSON")
    args = parser.parse_args()
    result = run(args.households, args.seconds, args.runs)
    print(report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
