"""Shared fixtures: a real Mosquitto per test, the repository root and ../shared/."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from isowatch.broker import MosquittoBroker

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared/ beside the repository: present here and in CI, absent in a user's clone."""
    path = REPO_ROOT.parent / "shared"
    if not path.is_dir():
        pytest.skip(f"{path} is absent (it sits beside the project only in the team's workspace and CI)")
    return path


@pytest.fixture
def mosquitto(tmp_path: Path):
    """A Mosquitto started from our production config on a free port; stopped after the test.

    `mosquitto.url()` is the gateway's URL; `mosquitto.add_user(device_id)` gives a device credentials.
    """
    if not MosquittoBroker.available():
        if os.environ.get("CI"):
            pytest.fail("mosquitto is not installed; scripts/test.sh installs it")
        pytest.skip("mosquitto is not installed (scripts/test.sh installs it)")
    broker = MosquittoBroker(tmp_path / "broker").start()
    yield broker
    broker.stop()
