"""The store: migrations, dedupe by id, device binding, snapshots, rejects; and message classification."""

from __future__ import annotations

import fcntl
import os
import threading
from datetime import datetime, timezone

from gateway.migrations import MIGRATIONS, migrate
from gateway.store import Accepted, Rejected, SnapshotUpload, Store, WriteTurn, connect
from gateway.store_process import WalCheckpointer, classify, seq_ranges
from isowatch.contract import DoorEvent, Heartbeat, Status, TemperatureReading, Topic, encode, topic_for
from isowatch.ids import uuid7
from tests.support import wait_until

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 100


def accepted(message, site="s", household="h") -> Accepted:
    return Accepted(Topic.parse(topic_for(site, household, message)), message, NOW, encode(message))


def door(seq: int, device: str = "cam-1") -> DoorEvent:
    return DoorEvent(type="door", id=uuid7(), device=device, seq=seq, device_time=NOW, state="open")


def test_database_is_wal_and_migrations_are_idempotent(tmp_path):
    store = Store(tmp_path / "gw.db")
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert migrate(store.db) == len(MIGRATIONS)
    versions = store.db.execute("SELECT version FROM schema_migrations").fetchall()
    assert [v for (v,) in versions] == list(range(1, len(MIGRATIONS) + 1))
    store.close()
    Store(tmp_path / "gw.db").close()  # reopening applies nothing twice


def test_the_checkpointer_copies_the_log_into_the_database_the_writer_never_checkpoints(tmp_path):
    db = tmp_path / "gw.db"
    store = Store(db)
    store.db.execute("PRAGMA wal_autocheckpoint=0")  # as in the store process
    for batch in range(20):
        store.write_batch([accepted(door(batch * 200 + n)) for n in range(200)])
    written = db.stat().st_size
    assert store.db.execute("SELECT count(*) FROM events").fetchone()[0] == 4000
    checkpointer = WalCheckpointer(str(db), every_s=0.05).start()
    try:
        wait_until(lambda: db.stat().st_size > written, timeout=10, what="the log copied into the database")
    finally:
        checkpointer.stop()
        store.close()


def test_a_writer_waits_for_the_write_turn_and_gives_it_back_after_nested_transactions(tmp_path):
    db = tmp_path / "gw.db"
    Store(db).close()
    store_process = WriteTurn(str(db))
    conn = connect(db, check_same_thread=False)
    wrote = threading.Event()

    def write() -> None:
        with conn:
            with conn:  # a helper's transaction inside the caller's
                conn.execute("INSERT INTO rule_log (ref, household, outcome) VALUES ('r1', 'h', 'logged')")
            conn.execute("INSERT INTO rule_log (ref, household, outcome) VALUES ('r2', 'h', 'logged')")
        wrote.set()

    with store_process:
        writer = threading.Thread(target=write)
        writer.start()
        assert not wrote.wait(0.3), "the writer must wait while the store holds the turn"
    assert wrote.wait(10)
    writer.join()
    probe = os.open(f"{db}.write-turn", os.O_RDWR)
    try:
        fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if the writer still held the turn
    finally:
        os.close(probe)
    assert conn.execute("SELECT count(*) FROM rule_log").fetchone()[0] == 2
    conn.close()
    store_process.close()


def test_same_id_twice_is_stored_once_and_reported_as_duplicate(tmp_path):
    store = Store(tmp_path / "gw.db")
    event = door(1)
    first = store.write_batch([accepted(event)])
    again = store.write_batch([accepted(event), accepted(event)])
    assert len(first.stored) == 1 and not first.duplicates
    assert not again.stored and len(again.duplicates) == 2
    assert store.counts()["events"] == 1


def test_the_payload_is_stored_as_the_device_sent_it_and_the_columns_are_normalised(tmp_path):
    store = Store(tmp_path / "gw.db")
    event = door(1)
    sent = encode(event).replace(b'"2026-03-01T12:00:00Z"', b'"2026-03-01T20:00:00+08:00"')
    assert sent != encode(event)
    store.write_batch([classify(topic_for("s", "h", event).encode(), sent, NOW)])
    payload, device_time = store.db.execute("SELECT payload, device_time FROM events").fetchone()
    assert payload.encode() == sent
    assert device_time == "2026-03-01T12:00:00Z"


def test_readings_keep_their_values_in_columns(tmp_path):
    store = Store(tmp_path / "gw.db")
    reading = TemperatureReading(type="temperature", id=uuid7(), device="cam-1", seq=3, device_time=NOW,
                                 celsius=38.2, subject="body", method="tympanic")
    store.write_batch([accepted(reading)])
    row = store.db.execute("SELECT celsius, subject, method, plausible FROM readings").fetchone()
    assert row == (38.2, "body", "tympanic", 1)


def test_status_and_heartbeat_update_the_device_and_older_ones_do_not_win(tmp_path):
    store = Store(tmp_path / "gw.db")
    later = Status(type="status", id=uuid7(), device="cam-1", seq=5, device_time=NOW, state="offline")
    earlier = Status(type="status", id=uuid7(), device="cam-1", seq=4,
                     device_time=NOW.replace(hour=11), state="online")
    beat = Heartbeat(type="heartbeat", id=uuid7(), device="cam-1", seq=6, device_time=NOW, uptime_s=5,
                     outbox_depth=3)
    outcome = store.write_batch([accepted(later), accepted(earlier), accepted(beat)])
    assert len(outcome.updates) == 3 and not outcome.stored
    status, max_seq, heartbeat = store.db.execute("SELECT status, max_seq, heartbeat FROM devices").fetchone()
    assert status == "offline" and max_seq == 6 and '"outbox_depth":3' in heartbeat


def test_a_device_bound_to_one_household_cannot_speak_for_another(tmp_path):
    store = Store(tmp_path / "gw.db")
    store.write_batch([accepted(door(1), household="h1")])
    outcome = store.write_batch([accepted(door(2), household="h2")])
    assert [r.reason for r in outcome.rejected] == ["spoofed_household"]
    assert store.counts() == {"events": 1, "readings": 0, "rejects": 1, "devices": 1, "snapshots": 0}


def test_rejects_keep_a_capped_copy_of_the_payload(tmp_path):
    store = Store(tmp_path / "gw.db")
    big = b"x" * 100_000
    store.write_batch([], [Rejected("isowatch/v1/s/h/d/event", "json", "bad", big, NOW)])
    size, kept = store.db.execute("SELECT payload_size, length(payload) FROM rejects").fetchone()
    assert size == 100_000 and kept == 4096


def test_snapshots_are_files_named_by_content_hash_and_linked_to_their_event(tmp_path):
    store = Store(tmp_path / "gw.db", snapshot_dir=tmp_path / "snaps")
    event = door(1)
    event_id = event.id
    upload = SnapshotUpload(Topic.parse(f"isowatch/v1/s/h/cam-1/snapshot/{event_id}"), JPEG, NOW)
    outcome = store.write_batch([accepted(event)], [], [upload, upload])
    assert outcome.new_snapshots == 1 and len(outcome.snapshots) == 2
    (path,) = store.db.execute("SELECT path FROM snapshots WHERE event_id = ?", [event_id]).fetchone()
    assert (tmp_path / "snaps" / path).read_bytes() == JPEG


def test_classify_never_raises_and_names_the_reason():
    event = door(1)
    good = classify(topic_for("s", "h", event).encode(), encode(event), NOW)
    assert isinstance(good, Accepted)
    assert classify(b"isowatch/v1/s/h/\xff\xfe/event", b"{}", NOW).reason == "topic"
    assert classify(b"isowatch/v1/s/h/cam-1/event", b"\x00\x01", NOW).reason == "json"
    snapshot_topic = f"isowatch/v1/s/h/cam-1/snapshot/{uuid7()}".encode()
    assert classify(snapshot_topic, b"GIF89a", NOW).reason == "snapshot"
    assert classify(snapshot_topic, JPEG + b"\x00" * 3_000_000, NOW).reason == "too_large"
    assert isinstance(classify(snapshot_topic, JPEG, NOW), SnapshotUpload)
    assert classify(b"isowatch/v1/s/h/cam-1/config", b"{}", NOW).reason == "kind"


def test_seq_ranges_compress_runs():
    assert seq_ranges([9, 1, 2, 3, 7, 10, 2]) == [(1, 3), (7, 7), (9, 10)]
    assert seq_ranges([]) == []
