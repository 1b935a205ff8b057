"""The gateway's SQLite store (sqlite-utils, WAL): device messages stored once by id, rejects kept for forensics."""

from __future__ import annotations

import fcntl
import functools
import hashlib
import logging
import os
import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from gateway.integrity import DatabaseDamaged, in_use, remedy
from gateway.migrations import migrate
from isowatch.clock import iso
from isowatch.contract import (
    MAX_JSON_BYTES,
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
SNAPSHOT_QUOTA_BYTES = 24 * 1024 * 1024  # per device per hour: gateway/policy.py `snapshots`, docs/protocol.md
_SNAPSHOT_COLUMNS = "sha256, event_id, site, household, device, bytes, path, received_at"
REJECT_ROWS_KEEP = 100_000  # the rejects table is pruned to this many newest rows
JPEG_MAGIC = b"\xff\xd8\xff"


@dataclass(frozen=True, slots=True)
class Accepted:
    """A message that passed the contract check, with the JSON it came as: stored as the device sent it
    (it validated, so it reads back as the same message), not serialised again."""

    topic: Topic
    message: DeviceMessage
    received_at: datetime
    payload: bytes
    retained: bool = False  # a device status replayed from the broker's retained store


@dataclass(frozen=True, slots=True)
class Rejected:
    topic: str
    reason: str
    detail: str
    payload: bytes
    received_at: datetime
    retained: bool = False  # replayed from the broker's retained store: recorded once, however often replayed


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
    replayed: list[Rejected] = field(default_factory=list)  # retained rejects recorded at an earlier replay

    def merge(self, other: "BatchOutcome") -> "BatchOutcome":
        """Both parts of a batch stored in two transactions, as one outcome."""
        return BatchOutcome(
            stored=self.stored + other.stored, duplicates=self.duplicates + other.duplicates,
            updates=self.updates + other.updates, rejected=self.rejected + other.rejected,
            snapshots=self.snapshots + other.snapshots, new_snapshots=self.new_snapshots + other.new_snapshots,
            replayed=self.replayed + other.replayed)

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
    if isinstance(msg, TemperatureReading):  # celsius, subject, method, plausible, open
        return (msg.id, topic.site, topic.household, topic.device, msg.seq, msg.type, iso(msg.device_time),
                _received_iso(item.received_at), msg.celsius, msg.subject, msg.method, int(msg.plausible), None,
                item.payload.decode())
    if isinstance(msg, ContactReading):
        return (msg.id, topic.site, topic.household, topic.device, msg.seq, msg.type, iso(msg.device_time),
                _received_iso(item.received_at), None, None, None, None, int(msg.open), item.payload.decode())
    if isinstance(msg, Status):
        return (msg.state, _received_iso(item.received_at), iso(msg.device_time), msg.firmware, msg.config_version,
                msg.config_error, msg.camera, topic.device)
    if isinstance(msg, Heartbeat):
        return (_received_iso(item.received_at), iso(msg.device_time), item.payload.decode(), topic.device)
    raise TypeError(f"unhandled message type {type(msg).__name__}")  # pragma: no cover - the union is closed


def clock_skew(item: Accepted) -> float | None:
    """How far the device's clock is ahead of the gateway's (negative: behind), in seconds, as one message
    shows it; None for a status, which is retained: a Last Will is made at connect and delivered at loss, and
    a birth is handed out again to every new subscriber. A message that waited in the outbox looks behind by
    its wait: a batch keeps its freshest message's figure (`Store._apply_all`)."""
    msg = item.message
    if isinstance(msg, Status):
        return None
    return round((msg.device_time - item.received_at).total_seconds(), 3)


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


def _make_private(path: Path) -> None:
    """The database holds personal data: 0600, created so and tightened if found looser. SQLite gives its
    -wal and -shm files the database's mode when it creates them; ones left from before are tightened too."""
    if str(path) == ":memory:":
        return
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if file.exists() and file.stat().st_mode & 0o077:
            os.chmod(file, 0o600)


def open_database(path: Path | str) -> Database:
    """Open (and migrate) the gateway database with the pragmas every connection needs.

    The first process to open a database replays its write-ahead log and silently cuts it at a damaged
    frame; so when nobody has it open, the log is checked first and a damaged one refused (DatabaseDamaged).
    """
    if not in_use(Path(path)):
        wal = check_wal(path)
        if wal.problem:
            raise DatabaseDamaged(f"the write-ahead log of {path} is damaged: {wal.problem}. " + remedy(Path(path)))
    _make_private(Path(path))
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

    def __init__(self, path: Path | str, snapshot_dir: Path | str | None = None, *,
                 snapshot_quota_bytes: int = SNAPSHOT_QUOTA_BYTES) -> None:
        self.path = Path(path)
        self.snapshot_quota_bytes = snapshot_quota_bytes
        self.db = open_database(self.path)
        self.snapshot_dir = Path(snapshot_dir) if snapshot_dir else self.path.parent / "snapshots"
        self._bindings: dict[str, tuple[str, str]] = {
            row["device"]: (row["site"], row["household"])
            for row in self.db.query("SELECT device, site, household FROM devices")
        }
        self._rejects_since_prune = 0
        self._new_files: list[Path] = []  # snapshot files the open transaction wrote

    def close(self) -> None:
        self.db.close()

    # -- writing ---------------------------------------------------------------------------------

    def write_batch(
        self,
        accepted: list[Accepted],
        rejected: Sequence[Rejected] = (),
        snapshots: Sequence[SnapshotUpload] = (),
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
                                     item.received_at, item.retained)
                        )
                    else:
                        valid.append((item, row))
                self._apply_all(conn, valid, outcome)
                self._link_pending_snapshots(conn, outcome.stored)
                quota_used: dict[str, int] = {}
                for upload in snapshots:
                    self._take_snapshot(conn, upload, quota_used, outcome)
                replays = [r for r in outcome.rejected if r.retained and self._recorded_before(conn, r)]
                if replays:
                    outcome.rejected = [r for r in outcome.rejected if r not in replays]
                    outcome.replayed += replays
                for reject in outcome.rejected:
                    self._insert_reject(conn, reject)
                conn.commit()
            except BaseException:
                conn.rollback()
                for path in self._new_files:  # written for rows that are not there now: nothing would purge them
                    path.unlink(missing_ok=True)
                raise
            finally:
                self._new_files = []
            self._bindings.update(new_bindings)
            if outcome.rejected:
                self._maybe_prune_rejects(len(outcome.rejected))
        return outcome

    def _check_binding(self, topic: Topic, new: dict[str, tuple[str, str]]) -> str | None:
        """A registered device belongs where the registry put it; an unregistered one stays where it was first
        seen. Unregistered devices are stored, not rejected (the broker already authenticated them, and a box
        installed before its paperwork must not lose data); the rules alert only on registered ones.
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
        load the per-message statements were the store's main cost (docs/benchmarks.md).

        Inside the BEGIN IMMEDIATE transaction nobody else writes, so ids found absent here are the ones
        the INSERTs store; a second copy of an id within the batch is a duplicate, like one stored before.
        """
        devices: dict[str, tuple[str, str, str, str, int, float | None]] = {}
        events: list[tuple[Accepted, tuple[Any, ...]]] = []
        readings: list[tuple[Accepted, tuple[Any, ...]]] = []
        statuses: list[tuple[Any, ...]] = []
        heartbeats: list[tuple[Any, ...]] = []
        for item, row in items:
            msg, topic = item.message, item.topic
            seen = devices.get(topic.device)
            seq = msg.seq if seen is None else max(seen[4], msg.seq)
            skew = clock_skew(item)
            if seen is not None and seen[5] is not None:
                skew = seen[5] if skew is None else max(seen[5], skew)
            devices[topic.device] = (topic.device, topic.site, topic.household, _received_iso(item.received_at), seq,
                                     skew)
            if isinstance(msg, (DoorEvent, TamperEvent)):
                events.append((item, row))
            elif isinstance(msg, (TemperatureReading, ContactReading)):
                readings.append((item, row))
            elif isinstance(msg, Status):
                statuses.append(row)
            else:
                heartbeats.append(row)
        # One row per device per batch: first_seen only when new; last_seen, max_seq and the clock skew move
        # forward (store processes may commit batches out of receive order).
        newer_skew = "excluded.clock_skew_s IS NOT NULL AND excluded.last_seen >= coalesce(clock_skew_at, '')"
        conn.executemany(
            "INSERT INTO devices (device, site, household, first_seen, last_seen, max_seq, clock_skew_s, "  # noqa: S608
            "clock_skew_at) VALUES (?, ?, ?, ?4, ?4, ?5, ?6, CASE WHEN ?6 IS NOT NULL THEN ?4 END) "
            "ON CONFLICT(device) DO UPDATE SET last_seen = max(coalesce(last_seen, ''), excluded.last_seen), "
            "max_seq = max(coalesce(max_seq, 0), excluded.max_seq), "
            f"clock_skew_s = CASE WHEN {newer_skew} THEN excluded.clock_skew_s ELSE clock_skew_s END, "
            f"clock_skew_at = CASE WHEN {newer_skew} THEN excluded.last_seen ELSE clock_skew_at END",
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
        # In arrival order; the guards on the gateway's receive time keep the newest when batches commit out of
        # order. Never the device's time: a Will is built at connect and delivered at loss, after the birth it
        # must overrule, and one message dated 2099 would freeze the row.
        conn.executemany(
            "UPDATE devices SET status = ?1, status_time = ?2, status_device_time = ?3, firmware = ?4, "
            "config_version = ?5, config_error = ?6, camera = ?7 "
            "WHERE device = ?8 AND (status_time IS NULL OR status_time <= ?2)", statuses)
        conn.executemany(
            "UPDATE devices SET last_heartbeat = ?1, heartbeat_device_time = ?2, heartbeat = ?3 "
            "WHERE device = ?4 AND (last_heartbeat IS NULL OR last_heartbeat <= ?1)", heartbeats)

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

    def _take_snapshot(self, conn: sqlite3.Connection, upload: SnapshotUpload, quota_used: dict[str, int],
                       outcome: BatchOutcome) -> None:
        """Store a picture with its event, or let it wait for the event, or reject it.

        It must come from where its device belongs and name an event of the same device and household (a
        device's credentials let it publish under any site and household segment, and event ids are on
        every timeline). Its event may still be on the way (outboxes drain in any order), so an unknown
        event id waits in `pending_snapshots`, shown nowhere, until the event is stored or retention
        purges it. New pictures count against the device's hourly byte quota.
        """
        topic, digest = upload.topic, hashlib.sha256(upload.jpeg).hexdigest()

        def reject(reason: str, detail: str) -> None:
            outcome.rejected.append(Rejected(str(topic), reason, detail, upload.jpeg, upload.received_at))

        # Checked against known bindings only: a device's first picture must not decide where it belongs.
        binding_error = self._check_binding(topic, {})
        if binding_error:
            return reject("spoofed_household", binding_error)
        event = conn.execute("SELECT device, site, household FROM events WHERE id = ?", (topic.event_id,)).fetchone()
        if event is not None and tuple(event) != (topic.device, topic.site, topic.household):
            return reject("snapshot_mismatch", f"event {topic.event_id} is not an event of {topic.device} in "
                                               f"{topic.site}/{topic.household}")
        table = "snapshots" if event is not None else "pending_snapshots"
        if conn.execute(f"SELECT 1 FROM {table} WHERE event_id = ? AND sha256 = ?",  # noqa: S608
                        (topic.event_id, digest)).fetchone() is not None:
            outcome.snapshots.append((topic, digest))  # stored before: the device may forget it
            return
        used = quota_used.get(topic.device)
        if used is None:
            used = self._snapshot_bytes_last_hour(conn, topic.device, upload.received_at)
        if used + len(upload.jpeg) > self.snapshot_quota_bytes:
            return reject("snapshot_quota", f"{topic.device} stored {used} snapshot bytes in the last hour; "
                                            f"quota {self.snapshot_quota_bytes}")
        quota_used[topic.device] = used + len(upload.jpeg)
        relative = self._write_snapshot_file(digest, upload.jpeg)
        conn.execute(f"INSERT INTO {table} ({_SNAPSHOT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
                     (digest, topic.event_id, topic.site, topic.household, topic.device, len(upload.jpeg),
                      str(relative), iso(upload.received_at)))
        outcome.snapshots.append((topic, digest))
        outcome.new_snapshots += 1

    def _write_snapshot_file(self, digest: str, jpeg: bytes) -> Path:
        relative = Path(digest[:2]) / f"{digest}.jpg"
        target = self.snapshot_dir / relative
        if not target.exists():  # content-addressed: the same picture is written once
            # Pictures of people at their door: only the gateway's user may read them (0700/0600).
            self.snapshot_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            target.parent.mkdir(mode=0o700, exist_ok=True)
            tmp = target.with_suffix(".part")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(jpeg)
            os.replace(tmp, target)
            self._new_files.append(target)
        return relative

    @staticmethod
    def _snapshot_bytes_last_hour(conn: sqlite3.Connection, device: str, now: datetime) -> int:
        since = iso(now - timedelta(hours=1))
        return sum(conn.execute(f"SELECT coalesce(sum(bytes), 0) FROM {table} "  # noqa: S608
                                "WHERE device = ? AND received_at > ?", (device, since)).fetchone()[0]
                   for table in ("snapshots", "pending_snapshots"))

    @staticmethod
    def _link_pending_snapshots(conn: sqlite3.Connection, stored: list[Accepted]) -> None:
        """Pictures that arrived before their event move to `snapshots` once it is stored, if it is an event
        of the same device and household (a picture that named someone else's event stays an orphan)."""
        event_ids = [item.message.id for item in stored if isinstance(item.message, (DoorEvent, TamperEvent))]
        if not event_ids or conn.execute("SELECT 1 FROM pending_snapshots LIMIT 1").fetchone() is None:
            return
        for start in range(0, len(event_ids), 500):
            chunk = event_ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            match = (f"FROM pending_snapshots p JOIN events e ON e.id = p.event_id AND e.device = p.device "
                     f"AND e.site = p.site AND e.household = p.household WHERE p.event_id IN ({marks})")
            conn.execute(f"INSERT OR IGNORE INTO snapshots ({_SNAPSHOT_COLUMNS}) "
                         f"SELECT p.sha256, p.event_id, p.site, p.household, p.device, p.bytes, p.path, "
                         f"p.received_at {match}", chunk)
            conn.execute(f"DELETE FROM pending_snapshots WHERE rowid IN (SELECT p.rowid {match})", chunk)  # noqa: S608

    def _insert_reject(self, conn: sqlite3.Connection, reject: Rejected) -> None:
        # A message that passed the contract but could not be written is kept whole: it can be stored
        # once whatever refused it is fixed.
        keep = MAX_JSON_BYTES if reject.reason == "unstorable" else REJECT_PAYLOAD_KEEP
        conn.execute(
            "INSERT INTO rejects (received_at, topic, reason, detail, payload_size, payload) VALUES (?, ?, ?, ?, ?, ?)",
            (iso(reject.received_at), reject.topic[:512], reject.reason, reject.detail[:1000], len(reject.payload),
             reject.payload[:keep]),
        )

    @staticmethod
    def _recorded_before(conn: sqlite3.Connection, reject: Rejected) -> bool:
        """The broker replays a retained message to every new subscription: until the gateway's clear
        reaches it (or where the gateway may not clear it) it is the same reject again, not a new one."""
        keep = MAX_JSON_BYTES if reject.reason == "unstorable" else REJECT_PAYLOAD_KEEP
        return conn.execute(
            "SELECT 1 FROM rejects WHERE topic = ? AND reason = ? AND payload_size = ? AND payload = ? LIMIT 1",
            (reject.topic[:512], reject.reason, len(reject.payload), reject.payload[:keep])).fetchone() is not None

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

