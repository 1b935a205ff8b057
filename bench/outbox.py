"""Outbox benchmark: write cost per event, and drain rate of a 100,000-event backlog into a real Mosquitto
with the gateway (its own process) consuming and acknowledging.

    python bench/outbox.py [--events 100000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine, median, start_gateway, stop, table
from edge.courier import Courier
from edge.outbox import Outbox
from edge.uplink import DeviceIdentity, Uplink
from isowatch.broker import MosquittoBroker
from isowatch.contract import DoorEvent
from isowatch.stamper import Stamper


def write_cost(path: Path, count: int, batch: int) -> float:
    """Microseconds per event to make it durable, `batch` events per transaction."""
    outbox = Outbox(path, max_rows=10 * count)
    stamper = Stamper("bench-1")
    build = lambda seq: stamper.make(DoorEvent, seq, type="door", state="open")
    started = time.perf_counter()
    for _ in range(count // batch):
        outbox.add_many([build] * batch)
    elapsed = time.perf_counter() - started
    outbox.close()
    return elapsed / count * 1e6


def drain(root: Path, events: int) -> dict[str, float]:
    broker = MosquittoBroker(root / "broker").start()
    db = root / "gw.db"
    gateway = start_gateway(broker.url(), db)
    outbox = Outbox(root / "outbox.db", max_rows=events + 10)
    stamper = Stamper("bench-1")
    build = lambda seq: stamper.make(DoorEvent, seq, type="door", state="open")
    for _ in range(events // 1000):
        outbox.add_many([build] * 1000)
    uplink = Uplink(broker.add_user("bench-1"), DeviceIdentity("bench", "hh-1", "bench-1"), stamper=stamper)
    courier = Courier(outbox, uplink)
    try:
        uplink.start()
        started = time.perf_counter()
        courier.start()
        last_report = started
        while outbox.depth():
            time.sleep(0.05)
            if time.perf_counter() - last_report > 2:
                last_report = time.perf_counter()
                print(f"  draining: {events - outbox.depth()}/{events}", file=sys.stderr)
            if time.perf_counter() - started > 300:
                raise RuntimeError("drain took over 5 minutes")
        elapsed = time.perf_counter() - started
    finally:
        courier.stop(flush_timeout=0)
        uplink.stop()
        stop(gateway)
        broker.stop()
    import sqlite3

    stored = sqlite3.connect(db).execute("SELECT count(*) FROM events").fetchone()[0]
    if stored != events:
        raise RuntimeError(f"gateway stored {stored} of {events}")
    return {"seconds": elapsed, "rate": events / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, help="Also write the figures here as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        single = median([write_cost(Path(tmp) / f"w1-{n}.db", 2000, 1) for n in range(args.runs)])
        batched = median([write_cost(Path(tmp) / f"w100-{n}.db", 20000, 100) for n in range(args.runs)])
        runs = []
        for n in range(args.runs):
            run_dir = Path(tmp) / f"drain-{n}"
            run_dir.mkdir()
            runs.append(drain(run_dir, args.events))
            print(f"  run {n + 1}: {runs[-1]['rate']:.0f} events/s", file=sys.stderr)
    rate = median([r["rate"] for r in runs])
    rows = [
        ["outbox write, 1 event per transaction (fsync each)", f"{single:.0f} us/event"],
        ["outbox write, 100 events per transaction", f"{batched:.1f} us/event"],
        [f"drain {args.events:,} backlog -> Mosquitto -> gateway, acked", f"{rate:,.0f} events/s (target 5,000: x{rate / 5000:.2f})"],
    ]
    print(table(f"bench/outbox.py, median of {args.runs} runs, {machine()}", ["measure", "value"], rows))
    if args.json:
        args.json.write_text(json.dumps({"write_us_single": single, "write_us_batched": batched, "drain_rate": rate,
                                         "runs": runs, "machine": machine()}, indent=2))


if __name__ == "__main__":
    main()
