"""The gateway's SQLite store (sqlite-utils, WAL): device messages stored once by id, rejects kept for forensics."""

from __future__ import annotations

import fcntl
import functools
import hashlib
import logging
import os
import sqlite3
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from gateway.integrity import DatabaseDamaged, in_use, remedy
from gateway.migrations import migrate
from gateway.registry import iso
from isowatch.contract import (
    ContactReading,
    DeviceMessage,
    DoorEvent,
    Heartbeat,
    Status,
    TamperEvent,
    TemperatureReading,
    Topic,
)
from isowatch.sqlite_files import check_wal

log = logging.getLogger(__name__)

REJECT_PAYLOAD_KEEP = 4096  # bytes of a rejected payload kept for forensics
REJECT_ROWS_KEEP = 100_000  # the rejects table is pruned to this many newest rows
JPEG_MAGIC = b"\xff\xd8\xff"


@dataclass(frozen=True, slots=True)
class Accepted:
    """A message that passed the contract check, with the JSON it came as: stored as the device sent it
    (it validated, so it reads back as the same message), not serialised again (issue 8)."""

    topic: Topic
    message: DeviceMessage
    received_at: datetime
    payload: bytes


@dataclass(frozen=True, slots=True)
class Rejected:
    topic: str
    reason: str
    detail: str
    payload: bytes
    received_at: datetime


@dataclass(frozen=True, slots=True)
class SnapshotUpload:
    topic: Topic
    jpeg: bytes
    received_at: datetime


@dataclass
class BatchOutcome:
    stored: list[Accepted] = field(default_factory=list)  # new events and readings
    duplicates: list[Accepted] = field(default_factory=list)  # ids already stored
    updates: list[Accepted] = field(default_factory=list)  # status and heartbeat
    rejected: list[Rejected] = field(default_factory=list)
    snapshots: list[tuple[Topic, str]] = field(default_factory=list)  # (topic, sha256) stored or already there
    new_snapshots: int = 0

    def handled(self) -> list[Accepted]:
        """Everything the device may now forget: stored now, stored before, or applied."""
        return [*self.stored, *self.duplicates, *self.updates]


# A batch's messages share one receive time: format it once, not once per row and again per device.
_received_iso = functools.lru_cache(maxsize=4)(iso)


def _row(item: Accepted) -> tuple[Any, ...]:
    """What one message writes, as the parameters of its table's statement in `Store._apply_all`. Built
    before the write transaction: it needs no database, and other writers wait while a transaction runs."""
    msg, topic = item.message, item.topic
    if isinstance(msg, (DoorEvent, TamperEvent)):
        return (msg.id, topic.site, topic.household, topic.device, msg.seq, msg.type, iso(msg.device_time),
                _received_iso(item.received_at), msg.state, item.payload.decode())
    if isinstance(msg, (TemperatureReading, ContactReading)):
        is_temp = isinstance(msg, TemperatureReading)
        return (msg.id, topic.site, topic.household, topic.device, msg.seq, msg.type, iso(msg.device_time),
                _received_iso(item.received_at),
                msg.celsius if is_temp else None,
                msg.subject if is_temp else None,
                msg.method if is_temp else None,
                int(msg.plausible) if is_temp else None,
                None if is_temp else int(msg.open),
                item.payload.decode())
    if isinstance(msg, Status):
        return (msg.state, iso(msg.device_time), msg.firmware, msg.config_version, msg.config_error, msg.camera,
                topic.device)
    if isinstance(msg, Heartbeat):
        return (iso(msg.device_time), item.payload.decode(), topic.device)
    raise TypeError(f"unhandled message type {type(msg).__name__}")  # pragma: no cover - the union is closed


class WriteTurn:
    """Whose turn it is to write the database: the store processes, their checkpointer, everyone else.

    SQLite lets one transaction write at a time anyway; waiting here instead of in SQLite's busy handler
    (which sleeps in steps of up to 100 ms) hands the turn over the moment it is free. Under full load the
    store processes pass it between them without a gap, so every other writer must queue here too
    (`TurnTakingConnection`) or SQLite's handler would find the database busy until the load ends. An
    flock on a file beside the database: the kernel releases it when its holder dies, so a killed process
    cannot leave the others waiting. Each holder opens the file itself (flock belongs to an open file).
    """

    def __init__(self, db_path: str) -> None:
        self._fd = os.open(f"{db_path}.write-turn", os.O_RDWR | os.O_CREAT, 0o600)

    def __enter__(self) -> "WriteTurn":
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self._fd)


class TurnTakingConnection(sqlite3.Connection):
    """A connection whose `with conn:` transactions wait for the database's `WriteTurn` first."""

    def __init__(self, database: str | Path, *args: Any, **kwargs: Any) -> None:
        super().__init__(database, *args, **kwargs)
        self._turn = WriteTurn(str(database))
        self._depth = 0  # `with conn:` nests (a helper's transaction inside the caller's)

    def __enter__(self) -> "TurnTakingConnection":
        if self._depth == 0:
            self._turn.__enter__()
        self._depth += 1
        return super().__enter__()

    def __exit__(self, *exc: Any) -> Any:
        try:
            return super().__exit__(*exc)
        finally:
            self._depth -= 1
            if self._depth == 0:
                self._turn.__exit__()

    def close(self) -> None:
        super().close()
        self._turn.close()


def connect(path: Path | str, **kwargs: Any) -> TurnTakingConnection:
    """A connection for code that writes the gateway database outside the store (rules, alerts, the
    dashboard, the registry): its `with conn:` transactions queue for the `WriteTurn`."""
    return sqlite3.connect(str(path), factory=TurnTakingConnection, **{"timeout": 30, **kwargs})


def open_database(path: Path | str) -> Database:
    """Open (and migrate) the gateway database with the pragmas every connection needs.

    The first process to open a database replays its write-ahead log and silently cuts it at a damaged
    frame; so when nobody has it open, the log is checked first and a damaged one refused (DatabaseDamaged).
    """
    if not in_use(Path(path)):
        wal = check_wal(path)
        if wal.problem:
            raise DatabaseDamaged(f"the write-ahead log of {path} is damaged: {wal.problem}. " + remedy(Path(path)))
    conn = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
    db = Database(conn)
    db.execute("PRAGMA journal_mode=WAL")
    # FULL: a PUBACK goes out only after the commit, so the commit must survive a power cut too.
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA foreign_keys=ON")
    migrate(db)
    return db


class Store:
    """Writes batches of validated messages in one transaction each; read helpers for the dashboard."""

    def __init__(self, path: Path | str, snapshot_dir: Path | str | None = None) -> None:
        self.path = Path(path)
        self.db = open_database(self.path)
        self.snapshot_dir = Path(snapshot_dir) if snapshot_dir else self.path.parent / "snapshots"
        self._bindings: dict[str, tuple[str, str]] = {
            row["device"]: (row["site"], row["household"])
            for row in self.db.query("SELECT device, site, household FROM devices")
        }
        self._rejects_since_prune = 0

    def close(self) -> None:
        self.db.close()

    # -- writing ---------------------------------------------------------------------------------

    def write_batch(
        self,
        accepted: list[Accepted],
        rejected: list[Rejected] = (),  # type: ignore[assignment]
        snapshots: list[SnapshotUpload] = (),  # type: ignore[assignment]
        *,
        turn: AbstractContextManager = nullcontext(),
    ) -> BatchOutcome:
        """Store a batch in one transaction, begun once `turn` is ours (the store processes' `WriteTurn`)."""
        outcome = BatchOutcome(rejected=list(rejected))
        rows = [_row(item) for item in accepted]
        conn = self.db.conn
        new_bindings: dict[str, tuple[str, str]] = {}
        with turn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                valid = []
                for item, row in zip(accepted, rows):
                    binding_error = self._check_binding(item.topic, new_bindings)
                    if binding_error:
                        outcome.rejected.append(
                            Rejected(str(item.topic), "spoofed_household", binding_error, item.payload,
                                     item.received_at)
                        )
                    else:
                        valid.append((item, row))
                self._apply_all(conn, valid, outcome)
                for upload in snapshots:
                    digest, is_new = self._save_snapshot(conn, upload)
                    outcome.snapshots.append((upload.topic, digest))
                    outcome.new_snapshots += is_new
                for reject in outcome.rejected:
                    self._insert_reject(conn, reject)
            except BaseException:
                conn.rollback()
                raise
            conn.commit()
            self._bindings.update(new_bindings)
            if outcome.rejected:
                self._maybe_prune_rejects(len(outcome.rejected))
        return outcome

    def _check_binding(self, topic: Topic, new: dict[str, tuple[str, str]]) -> str | None:
        """A registered device belongs where the registry put it; an unregistered one stays where it was first
        seen. Unregistered devices are stored, not rejected (the broker already authenticated them, and a box
        installed before its paperwork must not lose data); the rules alert only on registered ones (issue 6).
        """
        where = (topic.site, topic.household)
        known = self._bindings.get(topic.device) or new.get(topic.device)
        if known != where:
            # The registry writes from other connections (admin CLI, REST API): the table is the authority.
            row = self.db.conn.execute("SELECT site, household FROM devices WHERE device = ?",
                                       (topic.device,)).fetchone()
            if row is not None:
                known = self._bindings[topic.device] = (row[0], row[1])
        if known is None:
            new[topic.device] = where
            return None
        if known != where:
            return f"device {topic.device} belongs to {known[0]}/{known[1]}, not {where[0]}/{where[1]}"
        return None

    def _apply_all(self, conn: sqlite3.Connection, items: list[tuple[Accepted, tuple[Any, ...]]],
                   outcome: BatchOutcome) -> None:
        """Store a batch with one statement per table (executemany) instead of one per message: at full
        load the per-message statements were the store's main cost (issue 8, docs/benchmarks.md).

        Inside the BEGIN IMMEDIATE transaction nobody else writes, so ids found absent here are the ones
        the INSERTs store; a second copy of an id within the batch is a duplicate, like one stored before.
        """
        devices: dict[str, tuple[str, str, str, str, int]] = {}
        events: list[tuple[Accepted, tuple[Any, ...]]] = []
        readings: list[tuple[Accepted, tuple[Any, ...]]] = []
        statuses: list[tuple[Any, ...]] = []
        heartbeats: list[tuple[Any, ...]] = []
        for item, row in items:
            msg, topic = item.message, item.topic
            seen = devices.get(topic.device)
            seq = msg.seq if seen is None else max(seen[4], msg.seq)
            devices[topic.device] = (topic.device, topic.site, topic.household, _received_iso(item.received_at), seq)
            if isinstance(msg, (DoorEvent, TamperEvent)):
                events.append((item, row))
            elif isinstance(msg, (TemperatureReading, ContactReading)):
                readings.append((item, row))
            elif isinstance(msg, Status):
                statuses.append(row)
            else:
                heartbeats.append(row)
        # One row per device per batch: first_seen only when new, last_seen and max_seq move forward.
        conn.executemany(
            "INSERT INTO devices (device, site, household, first_seen, last_seen, max_seq) VALUES (?, ?, ?, ?4, ?4, ?5) "
            "ON CONFLICT(device) DO UPDATE SET last_seen = excluded.last_seen, "
            "max_seq = max(coalesce(max_seq, 0), excluded.max_seq)",
            devices.values(),
        )
        new_ids = self._absent_ids(conn, "events", events) | self._absent_ids(conn, "readings", readings)
        conn.executemany(
            "INSERT OR IGNORE INTO events (id, site, household, device, seq, type, device_time, received_at, "
            "state, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [row for item, row in events if item.message.id in new_ids],
        )
        conn.executemany(
            "INSERT OR IGNORE INTO readings (id, site, household, device, seq, type, device_time, received_at, "
            "celsius, subject, method, plausible, open, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [row for item, row in readings if item.message.id in new_ids],
        )
        for item, _ in items:
            if isinstance(item.message, (Status, Heartbeat)):
                outcome.updates.append(item)
            else:
                (outcome.stored if item.message.id in new_ids else outcome.duplicates).append(item)
                new_ids.discard(item.message.id)  # a second copy in this batch is a duplicate
        # In arrival order; the time guards keep the newest when a device's messages arrive out of order.
        conn.executemany(
            "UPDATE devices SET status = ?1, status_time = ?2, firmware = ?3, config_version = ?4, config_error = ?5, "
            "camera = ?6 WHERE device = ?7 AND (status_time IS NULL OR status_time <= ?2)", statuses)
        conn.executemany(
            "UPDATE devices SET last_heartbeat = ?1, heartbeat = ?2 "
            "WHERE device = ?3 AND (last_heartbeat IS NULL OR last_heartbeat <= ?1)", heartbeats)

    @staticmethod
    def _absent_ids(conn: sqlite3.Connection, table: str, items: list[tuple[Accepted, Any]]) -> set[str]:
        wanted = {item.message.id for item, _row in items}
        present: set[str] = set()
        ids = list(wanted)
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            present.update(row[0] for row in conn.execute(
                f"SELECT id FROM {table} WHERE id IN ({','.join('?' * len(chunk))})", chunk))  # noqa: S608
        return wanted - present

    def _save_snapshot(self, conn: sqlite3.Connection, upload: SnapshotUpload) -> tuple[str, bool]:
        digest = hashlib.sha256(upload.jpeg).hexdigest()
        relative = Path(digest[:2]) / f"{digest}.jpg"
        target = self.snapshot_dir / relative
        if not target.exists():  # content-addressed: the same picture is written once
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(".part")
            tmp.write_bytes(upload.jpeg)
            os.replace(tmp, target)
        cursor = conn.execute(
            "INSERT OR IGNORE INTO snapshots (sha256, event_id, site, household, device, bytes, path, received_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (digest, upload.topic.event_id, upload.topic.site, upload.topic.household, upload.topic.device,
             len(upload.jpeg), str(relative), iso(upload.received_at)),
        )
        return digest, cursor.rowcount == 1

    def _insert_reject(self, conn: sqlite3.Connection, reject: Rejected) -> None:
        conn.execute(
            "INSERT INTO rejects (received_at, topic, reason, detail, payload_size, payload) VALUES (?, ?, ?, ?, ?, ?)",
            (iso(reject.received_at), reject.topic[:512], reject.reason, reject.detail[:1000], len(reject.payload),
             reject.payload[:REJECT_PAYLOAD_KEEP]),
        )

    def _maybe_prune_rejects(self, added: int) -> None:
        self._rejects_since_prune += added
        if self._rejects_since_prune < 1000:
            return
        self._rejects_since_prune = 0
        with self.db.conn:
            self.db.execute(
                "DELETE FROM rejects WHERE id <= (SELECT max(id) FROM rejects) - ?", [REJECT_ROWS_KEEP]
            )

    # -- reading ---------------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        return {
            "events": self.db["events"].count,
            "readings": self.db["readings"].count,
            "rejects": self.db["rejects"].count,
            "devices": self.db["devices"].count,
            "snapshots": self.db["snapshots"].count,
        }

    def reject_reasons(self) -> dict[str, int]:
        return {row["reason"]: row["n"] for row in self.db.query("SELECT reason, count(*) AS n FROM rejects GROUP BY reason")}

