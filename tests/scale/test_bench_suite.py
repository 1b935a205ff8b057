"""The benchmark suite runs end to end: `python -m bench --quick` runs every benchmark and writes JSON.

A smoke run with tiny sizes: it checks that every benchmark still starts its broker, runs and reports,
not how fast anything is (benchmarks are not tests; no timed assertions here).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


@pytest.mark.broker
@pytest.mark.slow
def test_quick_suite_runs_every_benchmark_and_writes_results(tmp_path, mosquitto):  # mosquitto: skip when absent
    out = tmp_path / "results"
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(out)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (run_dir,) = out.iterdir()
    suite = json.loads((run_dir / "suite.json").read_text())
    results = {r["name"]: r for r in suite["results"]}
    assert {"ingest", "ingest_realistic", "steady_load", "outbox", "notify_latency", "camera_to_phone"} <= results.keys()
    assert all(r["status"] in ("ok", "absent") for r in results.values())
    for name in ("ingest", "ingest_realistic"):
        ingest = results[name]["figures"]
        assert ingest["median"]["gateway_rate"] > 0 and ingest["median"]["bare_rate"] > 0
    assert results["ingest_realistic"]["figures"]["runs"][0]["alerts"] > 0  # the rules fired while it was measured
    camera = results["camera_to_phone"]["figures"]
    assert camera["arrived"] == camera["samples"] and "detector_ms" in camera["stages"]
    steady = results["steady_load"]["figures"]
    assert steady["median"]["rss_mb"] > 0
    assert "bench suite (quick)" in done.stdout
