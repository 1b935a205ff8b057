"""A message the store cannot write becomes a reject; a database that cannot write keeps the batch for a retry."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone

import pytest

from gateway.store import Store
from gateway.store_process import AckBook, classify, store_batch
from isowatch.contract import TopicKind, topic
from isowatch.ids import uuid7
from tests.security.conftest import reading_fields

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def inbound(device: str, seq: int, **changes) -> tuple[bytes, bytes, int, int, bool]:
    payload = json.dumps(reading_fields(device, seq, **changes)).encode()
    return topic("s", f"hh-{device}", device, TopicKind.READING).encode(), payload, seq, 1, False


def _poison_rows_with_celsius(store: Store, celsius: float) -> None:
    """A row SQLite refuses for its content: stands in for any message-specific failure while storing."""
    store.db.execute(f"CREATE TRIGGER poison BEFORE INSERT ON readings WHEN NEW.celsius = {celsius} "
                     "BEGIN SELECT RAISE(ABORT, 'this row cannot be stored'); END")


@pytest.mark.parametrize("batch_size", [1, 2, 7, 64])
def test_a_message_that_cannot_be_stored_is_rejected_and_the_rest_of_its_batch_stored(tmp_path, batch_size):
    store = Store(tmp_path / "gw.db")
    _poison_rows_with_celsius(store, 41.5)
    batch = [inbound(f"cam-{n % 3}", n + 1) for n in range(batch_size)]
    batch[batch_size // 2] = inbound("cam-9", 999, celsius=41.5)
    summary = store_batch(store, batch, NOW, AckBook())
    assert summary.stored == batch_size - 1
    assert [(reason, size) for reason, _t, size, _d in summary.rejected] == [("unstorable", len(batch[batch_size // 2][1]))]
    (payload, detail), = store.db.execute("SELECT payload, detail FROM rejects").fetchall()
    assert payload == batch[batch_size // 2][1]  # kept whole: it was valid, it may be stored after a fix
    assert "cannot be stored" in detail
    assert 999 not in summary.acked.get("cam-9", [])
    store.close()


def test_a_full_disk_is_not_a_reject_the_batch_is_retried(tmp_path):
    store = Store(tmp_path / "gw.db")
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.db.execute(f"PRAGMA max_page_count = {pages + 2}")  # SQLITE_FULL, as on a full disk
    batch = [inbound(f"cam-{n % 50}", n + 1, sensor=f"s{n}") for n in range(400)]
    with pytest.raises(sqlite3.OperationalError, match="full"):
        store_batch(store, batch, NOW, AckBook())
    assert store.db.execute("SELECT count(*) FROM rejects").fetchone()[0] == 0
    store.db.execute("PRAGMA max_page_count = 1073741823")  # space again: the retry stores everything
    assert store_batch(store, batch, NOW, AckBook()).stored == 400
    store.close()


def test_classify_turns_any_failure_into_a_reject():
    raw_topic = topic("s", "h", "cam-1", TopicKind.READING).encode()
    huge = b'{"seq": ' + b"9" * 60_000 + b"}"  # Python's int-to-text limit, met inside validation
    result = classify(raw_topic, huge, NOW)
    assert result.reason in {"schema", "json", "invalid"}


def test_a_failing_wake_up_check_does_not_fail_a_stored_batch(tmp_path):
    store = Store(tmp_path / "gw.db")

    def broken_urgent(outcome):
        raise ValueError("rules bug")

    summary = store_batch(store, [inbound("cam-1", 1)], NOW, AckBook(), broken_urgent)
    assert summary.stored == 1 and summary.urgent  # wake the worker: it reads what is stored itself
    store.close()


def test_a_snapshot_file_written_for_a_batch_that_failed_is_removed(tmp_path):
    """The picture is written before the commit; if the batch's transaction fails, no row names the file
    and retention would never find it."""
    from gateway.store import SnapshotUpload
    from isowatch.contract import Topic
    from tests.security.conftest import JPEG

    store = Store(tmp_path / "gw.db", snapshot_dir=tmp_path / "snaps")
    store.db.execute("CREATE TRIGGER refuse BEFORE INSERT ON pending_snapshots "
                     "BEGIN SELECT RAISE(ABORT, 'refused'); END")
    upload = SnapshotUpload(Topic.parse(f"isowatch/v1/s/h/cam-1/snapshot/{uuid7()}"), JPEG, NOW)
    with pytest.raises(sqlite3.IntegrityError):
        store.write_batch([], [], [upload])
    assert not list((tmp_path / "snaps").rglob("*.jpg"))
    store.close()
