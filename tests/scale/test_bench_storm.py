"""bench/storm.py in its quick size (issue 18): 50 households' devices fall silent at once over a real Mosquitto
and gateway. Checks the report's shape and the grouping's promise, at most two pages per recipient; not how
fast anything is (no timed assertions: the first page's delay is a figure, not a test)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


@pytest.mark.broker
@pytest.mark.slow
def test_a_storm_of_50_households_pages_each_recipient_at_most_twice(tmp_path, mosquitto):  # mosquitto: skip if absent
    out = tmp_path / "storm.json"
    done = subprocess.run([sys.executable, "bench/storm.py", "--households", "50", "--json", str(out)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    last = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(last) == {"households", "pages", "max_pages_per_recipient", "first_page_after_s"}
    assert last["households"] == 50 and last["first_page_after_s"] is not None
    assert 1 <= last["max_pages_per_recipient"] <= 2
    figures = json.loads(out.read_text())
    assert figures["offline_alerts"] == 50 and figures["grouped_alerts"] == 50
    assert figures["recipients"] == 8 and figures["group_pages"] >= 8  # one team's social worker each
    assert all(n <= 2 for n in figures["pages_per_recipient"].values())
