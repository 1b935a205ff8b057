"""Files at rest: the database, its WAL, the link-signing secret and snapshots are readable by the
gateway's user only (0600), and the directories the gateway creates for them are 0700, whatever the umask."""

from __future__ import annotations

import os
import stat
from datetime import datetime, timezone
from pathlib import Path

import pytest

from gateway.ack_links import load_or_create_secret
from gateway.store import SnapshotUpload, Store
from isowatch.contract import Topic
from isowatch.ids import uuid7
from tests.dashboard.world import TINY_JPEG


@pytest.fixture
def loose_umask():
    previous = os.umask(0o022)  # the usual default: files 0644, directories 0755
    yield
    os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_database_secret_and_snapshots_are_private(tmp_path, loose_umask):
    db_path = tmp_path / "gw.db"
    store = Store(db_path)
    store.write_batch([], [], [SnapshotUpload(Topic.parse(f"isowatch/v1/site-a/hh-1/cam-1/snapshot/{uuid7()}"), TINY_JPEG,
                                              datetime.now(timezone.utc))])
    load_or_create_secret(db_path.with_name(db_path.name + ".secret"))
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"gw.db", "gw.db-wal", "gw.db.secret"}
    assert any(p.suffix == ".jpg" for p in files)
    for path in files:
        assert _mode(path) == 0o600, (path, oct(_mode(path)))
    for path in (p for p in tmp_path.rglob("*") if p.is_dir()):
        assert _mode(path) == 0o700, (path, oct(_mode(path)))
    store.close()


def test_an_existing_database_left_world_readable_is_tightened_on_open(tmp_path, loose_umask):
    db_path = tmp_path / "gw.db"
    Store(db_path).close()
    os.chmod(db_path, 0o644)
    Store(db_path).close()
    assert _mode(db_path) == 0o600
