"""The benchmark suite runs end to end: `python -m bench --quick` runs every benchmark and writes JSON.

A smoke run with tiny sizes: it checks that every benchmark still starts its broker, runs and reports
in its promised shape, and the promises that are not about speed (every opening pages; a storm pages each
recipient at most twice), not how fast anything is (benchmarks are not tests; no timed assertions here).
One run of the suite checks them all: each benchmark run alone again would double the suite's cost in CI.
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
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (run_dir,) = out.iterdir()
    suite = json.loads((run_dir / "suite.json").read_text())
    results = {r["name"]: r for r in suite["results"]}
    assert {"ingest", "ingest_realistic", "steady_load", "outbox", "notify_latency", "camera_to_phone",
            "storm"} <= results.keys()
    assert all(r["status"] in ("ok", "absent") for r in results.values())
    for name in ("ingest", "ingest_realistic"):
        ingest = results[name]["figures"]
        assert ingest["median"]["gateway_rate"] > 0 and ingest["median"]["bare_rate"] > 0
    assert results["ingest_realistic"]["figures"]["runs"][0]["alerts"] > 0  # the rules fired while it was measured
    check_camera_to_phone(results["camera_to_phone"])
    check_storm(results["storm"])
    steady = results["steady_load"]["figures"]
    assert steady["median"]["rss_mb"] > 0
    assert "bench suite (quick)" in done.stdout


CAMERA_STAGES = {"detector_ms", "outbox_ms", "broker_ingest_ms", "rules_ms", "send_ms"}


def last_line(result: dict) -> dict:
    return json.loads(result["output"].strip().splitlines()[-1])


def check_camera_to_phone(result: dict) -> None:
    """Every opening of a real edge agent's clip pages, and the summary has its promised shape."""
    last = last_line(result)
    assert last == result["figures"]
    assert last["samples"] >= 3 and last["arrived"] == last["samples"] and last["missing"] == 0
    assert {"p50_ms", "p90_ms", "p99_ms"} <= last.keys()
    assert CAMERA_STAGES <= last["stages"].keys()
    assert all(set(last["stages"][name]) == {"p50", "p90", "p99"} for name in CAMERA_STAGES)
    assert last["p99_samples"] and all(CAMERA_STAGES <= sample.keys() for sample in last["p99_samples"])
    assert last["background_rate"] > 0


def check_storm(result: dict) -> None:
    """50 households' devices fall silent at once: the grouping's promise, at most two pages per recipient."""
    last = last_line(result)
    assert set(last) == {"households", "pages", "max_pages_per_recipient", "first_page_after_s"}
    assert last["households"] == 50 and last["first_page_after_s"] is not None
    assert last["first_page_after_s"] > 0, "a page before the devices fell silent: the bench measured something else"
    assert 1 <= last["max_pages_per_recipient"] <= 2
    figures = result["figures"]
    assert figures["offline_alerts"] == 50 and figures["grouped_alerts"] == 50
    assert figures["recipients"] == 8 and figures["group_pages"] >= 8  # one team's social worker each
    assert all(n <= 2 for n in figures["pages_per_recipient"].values())
