"""The store: migrations, dedupe by id, device binding, snapshots, rejects; and message classification."""

from __future__ import annotations

import fcntl
import os
import threading
from datetime import datetime, timedelta, timezone

from gateway.migrations import MIGRATIONS, migrate
from gateway.store import Accepted, Rejected, SnapshotUpload, Store, WriteTurn, connect
from gateway.store_process import WalCheckpointer, classify, seq_ranges
from isowatch.clock import iso
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


def test_status_and_heartbeat_go_by_receive_time_whatever_the_device_clock_says(tmp_path):
    store = Store(tmp_path / "gw.db")
    birth = Status(type="status", id=uuid7(), device="cam-1", seq=0, device_time=NOW, state="online")
    # A Last Will made at connect (its time is older than the birth's) and delivered at loss, after it.
    will = Status(type="status", id=uuid7(), device="cam-1", seq=0, device_time=NOW.replace(hour=11), state="offline")
    beat = Heartbeat(type="heartbeat", id=uuid7(), device="cam-1", seq=6, device_time=NOW.replace(year=2099),
                     uptime_s=5, outbox_depth=3)
    outcome = store.write_batch([accepted(birth), accepted(will), accepted(beat)])
    assert len(outcome.updates) == 3 and not outcome.stored
    row = store.db.execute("SELECT status, status_time, status_device_time, max_seq, heartbeat, last_heartbeat, "
                           "heartbeat_device_time FROM devices").fetchone()
    assert row[0] == "offline" and row[1] == iso(NOW) and row[2] == iso(NOW.replace(hour=11)) and row[3] == 6
    assert '"outbox_depth":3' in row[4] and row[5] == iso(NOW) and row[6].startswith("2099")

    # A batch received earlier that commits later (another store process) does not win; a later one does,
    # although the 2099 heartbeat came before it.
    stale = Status(type="status", id=uuid7(), device="cam-1", seq=0, device_time=NOW.replace(year=2099), state="online")
    store.write_batch([Accepted(Topic.parse(topic_for("s", "h", stale)), stale, NOW - timedelta(seconds=5),
                                encode(stale))])
    assert store.db.execute("SELECT status FROM devices").fetchone()[0] == "offline"
    later = NOW + timedelta(seconds=30)
    fresh = Heartbeat(type="heartbeat", id=uuid7(), device="cam-1", seq=7, device_time=later, uptime_s=35)
    store.write_batch([Accepted(Topic.parse(topic_for("s", "h", fresh)), fresh, later, encode(fresh))])
    assert store.db.execute("SELECT last_heartbeat, heartbeat_device_time FROM devices").fetchone() == (
        iso(later), iso(later))


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


def test_the_clock_skew_is_the_freshest_message_of_a_batch_and_statuses_do_not_count(tmp_path):
    store = Store(tmp_path / "gw.db")
    skew = lambda: store.db.execute("SELECT clock_skew_s, clock_skew_at FROM devices").fetchone()
    waited = Heartbeat(type="heartbeat", id=uuid7(), device="cam-1", seq=1, device_time=NOW - timedelta(minutes=10),
                       uptime_s=1)  # ten minutes in the outbox
    fresh = DoorEvent(type="door", id=uuid7(), device="cam-1", seq=2, device_time=NOW - timedelta(seconds=1),
                      state="open")
    store.write_batch([accepted(waited), accepted(fresh)])
    assert skew() == (-1.0, iso(NOW))
    will = Status(type="status", id=uuid7(), device="cam-1", seq=0, device_time=NOW - timedelta(days=3),
                  state="offline")
    store.write_batch([Accepted(Topic.parse(topic_for("s", "h", will)), will, NOW + timedelta(seconds=5),
                                encode(will))])
    assert skew() == (-1.0, iso(NOW))
    ahead = TemperatureReading(type="temperature", id=uuid7(), device="cam-1", seq=3,
                               device_time=NOW.replace(year=2099), celsius=36.6, subject="body")
    later = NOW + timedelta(seconds=10)
    store.write_batch([Accepted(Topic.parse(topic_for("s", "h", ahead)), ahead, later, encode(ahead))])
    assert skew()[0] > 70 * 365 * 86400 and skew()[1] == iso(later)
