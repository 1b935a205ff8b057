"""The camera-to-phone benchmark runs end to end: real edge agents watching generated door clips,
a real Mosquitto, the gateway and Apprise to a local receiver, with background load.

A smoke run with a few openings: every opening pages, and the summary has its promised shape. No timed
assertions: the figures are the benchmark's business (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

STAGES = {"detector_ms", "outbox_ms", "broker_ingest_ms", "rules_ms", "send_ms"}


@pytest.mark.broker
@pytest.mark.slow
def test_every_opening_pages_and_the_summary_has_its_shape(tmp_path, mosquitto):  # mosquitto: skip when absent
    out = tmp_path / "camera_to_phone.json"
    done = subprocess.run([sys.executable, "bench/camera_to_phone.py", "--samples", "3", "--interval", "0.5",
                           "--json", str(out)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    last = json.loads(done.stdout.strip().splitlines()[-1])
    assert last == json.loads(out.read_text())
    assert last["samples"] == 3 and last["arrived"] == 3 and last["missing"] == 0
    assert {"p50_ms", "p90_ms", "p99_ms"} <= last.keys()
    assert STAGES <= last["stages"].keys()
    assert all(set(last["stages"][name]) == {"p50", "p90", "p99"} for name in STAGES)
    assert last["p99_samples"] and all(STAGES <= sample.keys() for sample in last["p99_samples"])
    assert last["background_rate"] > 0
