"""The edge outbox: every message is on disk before it is published, and leaves only when the gateway
says it has stored it (a GatewayAck), not on the broker's PUBACK.

One SQLite file in WAL mode. Rows keep insertion order (pos), which is the order they are sent in.
JSON messages carry the device's sequence number, allocated here in the same transaction that stores
the message, so numbering survives restarts and has no gaps; snapshots are matched by their hash.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from isowatch.contract import KIND_OF_TYPE, DeviceMessage, TopicKind, encode

log = logging.getLogger(__name__)

M = TypeVar("M", bound=DeviceMessage)

# What goes first when the outbox is full: heartbeats, then routine readings; door and tamper events
# (and their snapshots) only when nothing else is left.
PRIORITY = {"heartbeat": 0, "status": 0, "temperature": 1, "contact": 1, "door": 2, "tamper": 2, "snapshot": 2}

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    pos INTEGER PRIMARY KEY AUTOINCREMENT,
    seq INTEGER UNIQUE,          -- NULL for snapshots
    kind TEXT NOT NULL,          -- topic kind: event, reading, heartbeat, snapshot
    type TEXT NOT NULL,          -- payload type, or 'snapshot'
    priority INTEGER NOT NULL,
    event_id TEXT,               -- snapshots: the event they belong to
    sha256 TEXT,                 -- snapshots: the gateway acknowledges them by hash
    payload BLOB NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_priority ON outbox (priority, pos);
CREATE INDEX IF NOT EXISTS outbox_sha ON outbox (sha256) WHERE sha256 IS NOT NULL;
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO counters VALUES ('next_seq', 1), ('dropped', 0);
"""


@dataclass(frozen=True, slots=True)
class Pending:
    pos: int
    seq: int | None
    kind: TopicKind
    event_id: str | None
    sha256: str | None
    payload: bytes


class Outbox:
    """Durable FIFO of outgoing messages with a size bound and a drop policy by priority."""

    def __init__(self, path: Path | str, max_rows: int = 100_000, max_bytes: int = 256 * 1024 * 1024) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        # A power blip must not lose a door event that was already "recorded".
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(SCHEMA)
        self._rows, self._bytes = self._conn.execute(
            "SELECT count(*), coalesce(sum(length(payload)), 0) FROM outbox"
        ).fetchone()
        self.on_add: Callable[[], None] = lambda: None  # the courier wakes on it

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One write transaction under the lock; on failure the in-memory counts are reread from disk."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._conn.execute("ROLLBACK")
                self._recount()
                raise
            self._conn.execute("COMMIT")

    # -- adding -----------------------------------------------------------------------------------

    def add(self, build: Callable[[int], M]) -> M:
        """Allocate the next sequence number, build the message with it, and store it durably."""
        return self.add_many([build])[0]

    def add_many(self, builders: Iterable[Callable[[int], M]]) -> list[M]:
        """Several messages in one transaction (one fsync)."""
        made: list[M] = []
        with self._transaction():
            (next_seq,) = self._conn.execute("SELECT value FROM counters WHERE name = 'next_seq'").fetchone()
            for build in builders:
                message = build(next_seq)
                payload = encode(message)
                made.append(message)
                next_seq += 1
                if not self._make_room(len(payload), PRIORITY[message.type]):
                    continue  # numbered but dropped: the gap tells the gateway something was lost
                self._conn.execute(
                    "INSERT INTO outbox (seq, kind, type, priority, payload, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (message.seq, KIND_OF_TYPE[message.type].value, message.type, PRIORITY[message.type],
                     payload, time.time()),
                )
                self._rows += 1
                self._bytes += len(payload)
            self._conn.execute("UPDATE counters SET value = ? WHERE name = 'next_seq'", (next_seq,))
        self.on_add()
        return made

    def add_snapshot(self, event_id: str, jpeg: bytes) -> str:
        digest = hashlib.sha256(jpeg).hexdigest()
        with self._transaction():
            if self._make_room(len(jpeg), PRIORITY["snapshot"]):
                self._conn.execute(
                    "INSERT INTO outbox (kind, type, priority, event_id, sha256, payload, created_at) "
                    "VALUES ('snapshot', 'snapshot', ?, ?, ?, ?, ?)",
                    (PRIORITY["snapshot"], event_id, digest, jpeg, time.time()),
                )
                self._rows += 1
                self._bytes += len(jpeg)
        self.on_add()
        return digest

    def _make_room(self, size: int, priority: int) -> bool:
        """Drop the oldest rows of the lowest priority, never above the new row's, until it fits.

        Returns False when only more important rows are left: then the new row is the one dropped.
        """
        while self._rows + 1 > self.max_rows or self._bytes + size > self.max_bytes:
            victim = self._conn.execute(
                "SELECT pos, length(payload), type FROM outbox WHERE priority <= ? ORDER BY priority, pos LIMIT 1",
                (priority,),
            ).fetchone()
            self._count_drop()
            if victim is None:
                log.warning("outbox full: dropped the new row priority=%d rows=%d", priority, self._rows)
                return False
            self._conn.execute("DELETE FROM outbox WHERE pos = ?", (victim[0],))
            self._rows -= 1
            self._bytes -= victim[1]
            log.warning("outbox full: dropped type=%s rows=%d bytes=%d", victim[2], self._rows, self._bytes)
        return True

    def _count_drop(self) -> None:
        self._conn.execute("UPDATE counters SET value = value + 1 WHERE name = 'dropped'")

    def _recount(self) -> None:
        self._rows, self._bytes = self._conn.execute(
            "SELECT count(*), coalesce(sum(length(payload)), 0) FROM outbox"
        ).fetchone()

    # -- draining ---------------------------------------------------------------------------------

    def pending(self, after_pos: int = 0, limit: int = 500) -> list[Pending]:
        """The next rows to publish, in the order they were added."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT pos, seq, kind, event_id, sha256, payload FROM outbox WHERE pos > ? ORDER BY pos LIMIT ?",
                (after_pos, limit),
            ).fetchall()
        return [Pending(r[0], r[1], TopicKind(r[2]), r[3], r[4], bytes(r[5])) for r in rows]

    def acknowledge(self, ranges: Iterable[tuple[int, int]], snapshots: Iterable[str] = ()) -> int:
        """Forget what the gateway has stored; returns how many rows left."""
        sizes: list[tuple[int]] = []
        with self._transaction():
            for first, last in ranges:
                sizes += self._conn.execute(
                    "DELETE FROM outbox WHERE seq BETWEEN ? AND ? RETURNING length(payload)", (first, last)
                ).fetchall()
            for digest in snapshots:
                sizes += self._conn.execute(
                    "DELETE FROM outbox WHERE sha256 = ? RETURNING length(payload)", (digest,)
                ).fetchall()
            self._rows -= len(sizes)
            self._bytes -= sum(size for (size,) in sizes)
        return len(sizes)

    # -- reporting --------------------------------------------------------------------------------

    def depth(self) -> int:
        return self._rows

    def size_bytes(self) -> int:
        return self._bytes

    def dropped(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT value FROM counters WHERE name = 'dropped'").fetchone()[0]

    def next_seq(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT value FROM counters WHERE name = 'next_seq'").fetchone()[0]
