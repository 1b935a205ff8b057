"""Dashboard fixtures: one seeded database per session, copied for each test (seeding hashes seven passwords)."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from tests.dashboard.world import Seeded, seed


@pytest.fixture(scope="session")
def seeded_template(tmp_path_factory) -> Seeded:
    return seed(tmp_path_factory.mktemp("seeded"))


@pytest.fixture
def seeded(seeded_template: Seeded, tmp_path: Path) -> Seeded:
    root = seeded_template.db_path.parent
    target = tmp_path / "gw"
    shutil.copytree(root, target)
    return replace(seeded_template, db_path=target / "gw.db", snapshot_dir=target / "snapshots")
