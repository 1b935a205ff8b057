"""Fixtures for edge agent tests: generated door clips and config files."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.scenes import generate_clip


@pytest.fixture(scope="session")
def cycles_clip(tmp_path_factory) -> tuple[Path, dict]:
    """A small clip with three door openings (320x240, 10 fps, 30 s)."""
    path = tmp_path_factory.mktemp("clips") / "cycles.mp4"
    labels = generate_clip(path, "cycles", seed=11, width=320, height=240, fps=10, seconds=30)
    return path, labels


def write_edge_config(path: Path, broker_url, clip: Path, roi, *, loop: bool = False, outbox: str = "outbox.db",
                      heartbeat_s: float = 30, resend_after_s: float = 20) -> Path:
    x, y, w, h = roi
    path.write_text(f"""
[device]
site = "site-a"
household = "hh-1"
id = "{broker_url.username}"

[uplink]
broker = "mqtt://{broker_url.host}:{broker_url.port}"
password_file = "device.secret"
resend_after_s = {resend_after_s}
reconnect_max_s = 2

[outbox]
path = "{outbox}"

[camera]
roi = [{x}, {y}, {w}, {h}]

[capture]
source = "{clip}"
loop = {str(loop).lower()}
realtime = false

[heartbeat]
interval_s = {heartbeat_s}
""")
    (path.parent / "device.secret").write_text(broker_url.password + "\n")
    return path
