"""Run every benchmark, print their tables and a summary, and write JSON results to bench/results/.

    python -m bench            # the full suite (under 10 minutes on a 2-core machine)
    python -m bench --quick    # a smoke run of every benchmark with small sizes (about a minute)
    python -m bench --only ingest --only steady_load

Each benchmark is its own script (runnable alone, `python bench/NAME.py --help`) and runs here as a
subprocess, so one that crashes or hangs does not take the others with it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine, table

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"


@dataclass(frozen=True)
class Benchmark:
    name: str
    full: tuple[str, ...]
    quick: tuple[str, ...]
    writes_json: bool  # takes --json PATH; otherwise its printed output is kept
    timeout_s: float = 300
    script: str = ""  # bench/<script>.py when one script runs in several modes; default the name


SUITE = (
    Benchmark("ingest", ("--events", "100000", "--runs", "3"), ("--events", "10000", "--runs", "1"), True),
    Benchmark("ingest_realistic", ("--realistic", "--events", "100000", "--runs", "3"),
              ("--realistic", "--events", "10000", "--runs", "1"), True, script="ingest"),
    Benchmark("steady_load", ("--households", "50000", "--seconds", "40", "--runs", "3"),
              ("--households", "5000", "--seconds", "6", "--runs", "1"), True, timeout_s=420),
    Benchmark("scans", ("--households", "50000", "--runs", "3"), ("--households", "2000", "--runs", "1"), False),
    Benchmark("outbox", ("--events", "100000", "--runs", "3"), ("--events", "3000", "--runs", "1"), True),
    Benchmark("notify_latency", ("--samples", "200"), ("--samples", "10", "--interval", "0.1"), False),
    Benchmark("camera_to_phone", ("--samples", "100"), ("--samples", "5", "--interval", "0.5"), True, timeout_s=420),
    Benchmark("detect", (), ("--repeats", "1", "--seconds", "4"), False),
    Benchmark("event_log", ("--events", "200000", "--runs", "20"), ("--events", "5000", "--runs", "3"), False),
    Benchmark("storm", ("--households", "500"), ("--households", "50"), True),
)


def run_one(bench: Benchmark, quick: bool, out_dir: Path) -> dict:
    script = BENCH_DIR / f"{bench.script or bench.name}.py"
    if not script.exists():  # another team's benchmark not written yet
        return {"name": bench.name, "status": "absent", "seconds": 0.0, "output": ""}
    args = [sys.executable, str(script), *(bench.quick if quick else bench.full)]
    json_path = out_dir / f"{bench.name}.json"
    if bench.writes_json:
        args += ["--json", str(json_path)]
    print(f"== {bench.name}: {' '.join(args[1:])}", file=sys.stderr, flush=True)
    started = time.monotonic()
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=bench.timeout_s)
        status = "ok" if done.returncode == 0 else f"exit {done.returncode}"
        output, errors = done.stdout, done.stderr
    except subprocess.TimeoutExpired as exc:
        status = f"timeout {bench.timeout_s:.0f} s"
        output = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        errors = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
    seconds = time.monotonic() - started
    result = {"name": bench.name, "status": status, "seconds": seconds, "args": args[1:], "output": output}
    if status != "ok":
        result["stderr_tail"] = errors[-2000:]
    if bench.writes_json and json_path.exists():
        result["figures"] = json.loads(json_path.read_text())
    return result


def headline(result: dict) -> str:
    figures = result.get("figures", {})
    median = figures.get("median", {})
    if result["name"] in ("ingest", "ingest_realistic") and median:
        return (f"{median['gateway_rate']:,.0f} msg/s, ratio {median['ratio']:.2f}, "
                f"{median['cpu_s_per_1000']:.3f} CPU s/1000; targets {'met' if figures['met'] else 'MISSED'}")
    if result["name"] == "steady_load" and median:
        return (f"CPU {median['cpu_share']:.2f} core, RSS {median['rss_mb']:.0f} MB, p99 {median['p99_ms']:.0f} ms; "
                f"targets {'met' if figures['met'] else 'MISSED'}")
    if result["name"] == "camera_to_phone" and figures.get("arrived"):
        detector = figures["stages"]["detector_ms"]["p50"]
        return (f"p50 {figures['p50_ms']:.0f} ms, p99 {figures['p99_ms']:.0f} ms (detector p50 {detector:.0f}), "
                f"{figures['arrived']}/{figures['samples']} paged; target {'met' if figures['met'] else 'MISSED'}")
    if result["name"] == "storm" and figures:
        return (f"{figures['households']} households silent: {figures['pages']} pages, at most "
                f"{figures['max_pages_per_recipient']} per recipient, first after {figures['first_page_after_s']} s; "
                f"targets {'met' if figures['met'] else 'MISSED'}")
    if result["name"] == "outbox" and figures:
        return f"drain {figures['drain_rate']:,.0f} events/s"
    return "see its table"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Small sizes, one run each: checks the suite works.")
    parser.add_argument("--only", action="append", choices=[b.name for b in SUITE], help="Run only these (repeatable).")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="Directory for the JSON results.")
    args = parser.parse_args()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out_dir = args.out / (stamp + ("-quick" if args.quick else ""))
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    results = []
    for bench in SUITE:
        if args.only and bench.name not in args.only:
            continue
        results.append(run_one(bench, args.quick, out_dir))
        if results[-1]["output"]:
            print(results[-1]["output"].rstrip() + "\n", flush=True)
        if results[-1]["status"] not in ("ok", "absent"):
            print(f"{bench.name} failed ({results[-1]['status']}):\n{results[-1].get('stderr_tail', '')}", flush=True)
    total = time.monotonic() - started
    print(table(f"bench suite{' (quick)' if args.quick else ''}: {total:.0f} s, {machine()}",
                ["benchmark", "status", "seconds", "headline"],
                [[r["name"], r["status"], f"{r['seconds']:.0f}", headline(r) if r["status"] == "ok" else ""]
                 for r in results]))
    summary = {"started": stamp, "quick": args.quick, "machine": machine(), "seconds": total, "results": results}
    (out_dir / "suite.json").write_text(json.dumps(summary, indent=2))
    print(f"results: {out_dir}")
    sys.exit(0 if all(r["status"] in ("ok", "absent") for r in results) else 1)


if __name__ == "__main__":
    main()
