"""The edge outbox: every message is on disk before it is published, and leaves only when the gateway
says it has stored it (a GatewayAck), not on the broker's PUBACK.

One SQLite file in WAL mode. Rows keep insertion order (pos), which is the order they are sent in.
JSON messages carry the device's sequence number, allocated here, so numbering survives restarts;
snapshots are matched by their hash. Every number is used once: a message the outbox cannot keep
(dropped to make room, or a write that failed because the disk is full) keeps its number, so the
gateway sees the gap, and is counted in `dropped`, which the heartbeat reports.

Numbers never go back, even when the outbox file is lost or damaged: a high-water mark beside it
(edge/seq_mark.py) outlives it, and a damaged outbox is salvaged into a new one at start
(edge/outbox_salvage.py). Both are described for operators in docs/operations.md.
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

from edge import outbox_salvage
from edge.seq_mark import LEASE, Mark, SeqMark
from isowatch.contract import KIND_OF_TYPE, DeviceMessage, TopicKind, encode
from isowatch.log_limit import RateLimitedLog

log = logging.getLogger(__name__)
_limited = RateLimitedLog(log, every_s=60.0)

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
        self._lock = threading.RLock()  # add_many holds it from numbering to commit, across _transaction
        self.flags: dict[str, int] = {}  # raised health flags with their counts, sent in the heartbeat
        self.mark = SeqMark(self.path.with_name(self.path.name + ".seq"))
        had_file = self.path.exists()
        if not had_file:
            outbox_salvage.move_aside(self.path)  # a log left without its database would be replayed into a new one
        problem = outbox_salvage.problem(self.path)
        salvage = outbox_salvage.salvage(self.path, problem) if problem else None
        self._conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        # A power blip must not lose a door event that was already "recorded".
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(SCHEMA)
        if salvage is not None:
            self._restore(salvage)
        self._recount()
        self._next_seq, self._dropped = self._resume_numbering(had_file and salvage is None, salvage)
        self.on_add: Callable[[], None] = lambda: None  # the courier wakes on it

    def _restore(self, salvage: outbox_salvage.Salvage) -> None:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.executemany(
                "INSERT OR IGNORE INTO outbox (pos, seq, kind, type, priority, event_id, sha256, payload, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", salvage.rows)
            self._conn.execute("COMMIT")
        self.flags["outbox_salvaged"] = len(salvage.rows)
        if salvage.unreadable:
            self.flags["outbox_unreadable"] = salvage.unreadable
        seqs = [row[1] for row in salvage.rows if row[1] is not None]
        log.error(
            "outbox %s was damaged (%s): moved to %s; salvaged %d rows (%d messages, seq %s, %d snapshots); "
            "%d pages or rows unreadable and lost; notes: %s",
            self.path, salvage.reason, salvage.moved_to, len(salvage.rows), len(seqs),
            f"{min(seqs)}-{max(seqs)}" if seqs else "none", len(salvage.rows) - len(seqs), salvage.unreadable,
            "; ".join(salvage.scan.notes) or "none")

    def _resume_numbering(self, intact: bool, salvage: outbox_salvage.Salvage | None) -> tuple[int, int]:
        """The next sequence number and the drop count, never below any number used before.

        An intact outbox knows its counter; the mark adds numbers used up while the disk was full. A lost
        or damaged outbox does not: then the mark's lease (above every number handed out) is the floor.
        With the mark lost too, numbers continue from the clock in microseconds since 1970 (about 1.8e15),
        above anything a device numbering one by one reaches, provided its clock is not behind (docs).
        """
        with self._lock:
            counters = dict(self._conn.execute("SELECT name, value FROM counters").fetchall())
            (max_seq,) = self._conn.execute("SELECT coalesce(max(seq), 0) FROM outbox").fetchone()
        mark = self.mark.mark
        next_seq = max(counters["next_seq"], max_seq + 1, mark.consumed)
        dropped = max(counters["dropped"], mark.dropped)
        if not intact:
            found = salvage.counters if salvage else {}
            next_seq = max(next_seq, mark.lease, found.get("next_seq", 0), (salvage.max_seq() + 1) if salvage else 0)
            dropped = max(dropped, found.get("dropped", 0))
            previous_life = self.mark.found or salvage is not None or outbox_salvage.damaged_copies(self.path)
            if previous_life and not self.mark.found:
                next_seq = max(next_seq, time.time_ns() // 1000)
                log.error("outbox %s: no high-water mark; numbering continues from the clock at seq=%d",
                          self.path, next_seq)
            elif salvage is None and self.mark.found:
                self.flags["outbox_lost"] = 1
                log.error("outbox %s was missing: whatever it held is lost; numbering continues at seq=%d "
                          "from the high-water mark", self.path, next_seq)
        try:
            with self._lock:
                self._conn.execute("UPDATE counters SET value = ? WHERE name = 'next_seq'", (next_seq,))
                self._conn.execute("UPDATE counters SET value = ? WHERE name = 'dropped'", (dropped,))
        except sqlite3.Error as exc:  # a full disk at start: the next write that succeeds stores them
            log.warning("outbox %s: counters not saved at start: %s", self.path, exc)
        self.mark.write(Mark(lease=next_seq + LEASE, consumed=mark.consumed, dropped=dropped))
        return next_seq, dropped

    def close(self) -> None:
        with self._lock:
            self._conn.close()
            self.mark.close()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One write transaction under the lock; on failure the in-memory counts are reread from disk."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield
                self._conn.execute("COMMIT")  # on a full disk it is the COMMIT that fails
            except BaseException:
                if self._conn.in_transaction:  # a failed COMMIT has rolled back already
                    self._conn.execute("ROLLBACK")
                self._recount()
                raise

    # -- adding -----------------------------------------------------------------------------------

    def add(self, build: Callable[[int], M]) -> M:
        """Allocate the next sequence number, build the message with it, and store it durably."""
        return self.add_many([build])[0]

    def add_many(self, builders: Iterable[Callable[[int], M]]) -> list[M]:
        """Several messages in one transaction (one fsync).

        The numbers are taken before the write: if the write fails (a full disk, an I/O error), the
        messages keep them and count as dropped, so the gateway sees the gap. Only a message that cannot
        be built takes no number.
        """
        builders = list(builders)
        with self._lock:  # numbering and writing in one hold: rows leave in the order they were numbered
            first = self._next_seq
            made = [build(first + n) for n, build in enumerate(builders)]
            self._next_seq = first + len(made)
            if self._next_seq > self.mark.mark.lease:
                self.mark.write(Mark(lease=self._next_seq + LEASE))
            dropped_before = self._dropped
            try:
                with self._transaction():
                    for message in made:
                        payload = encode(message)
                        if not self._make_room(len(payload), PRIORITY[message.type]):
                            continue  # numbered but dropped: the gap tells the gateway something was lost
                        self._conn.execute(
                            "INSERT INTO outbox (seq, kind, type, priority, payload, created_at) "
                            "VALUES (?, ?, ?, ?, ?, ?)",
                            (message.seq, KIND_OF_TYPE[message.type].value, message.type, PRIORITY[message.type],
                             payload, time.time()),
                        )
                        self._rows += 1
                        self._bytes += len(payload)
                    self._save_counters()
            except sqlite3.Error as exc:
                self._dropped = dropped_before
                self._write_failed(exc, len(made), f"seq {first}-{self._next_seq - 1}")
                return made
            self._writable()
        self.on_add()
        return made

    def add_snapshot(self, event_id: str, jpeg: bytes) -> str:
        digest = hashlib.sha256(jpeg).hexdigest()
        with self._lock:
            dropped_before = self._dropped
            try:
                with self._transaction():
                    if self._make_room(len(jpeg), PRIORITY["snapshot"]):
                        self._conn.execute(
                            "INSERT INTO outbox (kind, type, priority, event_id, sha256, payload, created_at) "
                            "VALUES ('snapshot', 'snapshot', ?, ?, ?, ?, ?)",
                            (PRIORITY["snapshot"], event_id, digest, jpeg, time.time()),
                        )
                        self._rows += 1
                        self._bytes += len(jpeg)
                    self._save_counters()
            except sqlite3.Error as exc:
                self._dropped = dropped_before
                self._write_failed(exc, 1, f"snapshot of event {event_id}")
                return digest
            self._writable()
        self.on_add()
        return digest

    def _save_counters(self) -> None:
        self._conn.execute("UPDATE counters SET value = CASE name WHEN 'next_seq' THEN ? ELSE ? END "
                           "WHERE name IN ('next_seq', 'dropped')", (self._next_seq, self._dropped))

    def _write_failed(self, exc: sqlite3.Error, lost: int, what: str) -> None:
        """A write that did not happen (lock held): its messages are dropped, counted, the flag goes up.

        The counters cannot go into the database now, so they go into the mark, which is written in
        place and needs no new disk space; the next successful write puts them in the database too.
        """
        full = getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_FULL
        flag = "disk_full" if full else "outbox_write_failed"
        self._dropped += lost
        self.flags[flag] = self.flags.get(flag, 0) + lost
        self.mark.write(Mark(consumed=self._next_seq, dropped=self._dropped))
        _limited.log(logging.ERROR, f"outbox write failed ({exc}): messages dropped and counted, their sequence "
                                    "numbers left as a gap; the agent keeps running")
        log.warning("outbox dropped %d message(s) %s: %s; dropped=%d", lost, what, exc, self._dropped)

    def _writable(self) -> None:
        """After a successful write (lock held): a raised write-failure flag comes down."""
        for flag in ("disk_full", "outbox_write_failed"):
            if flag in self.flags:
                lost = self.flags.pop(flag)
                _limited.clear()
                log.warning("outbox writable again after %s; %d message(s) were dropped meanwhile", flag, lost)

    def health_flags(self) -> dict[str, int]:
        """A copy of the raised flags, for the heartbeat (other threads change them)."""
        with self._lock:
            return dict(self.flags)

    @property
    def write_failing(self) -> bool:
        """The last write failed: what goes into the outbox now is lost (the heartbeat goes out live)."""
        return "disk_full" in self.flags or "outbox_write_failed" in self.flags

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
        self._dropped += 1

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

    def acknowledge(self, ranges: Iterable[tuple[int, int]], snapshots: Iterable[str] = ()) -> int | None:
        """Forget what the gateway has stored; returns how many rows left, None when the delete failed.

        On a full disk even a delete may not be written: the rows stay and go out again later, which the
        gateway, storing each id once, answers with another ack.
        """
        sizes: list[tuple[int]] = []
        try:
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
        except sqlite3.Error as exc:
            _limited.log(logging.WARNING, f"outbox could not forget acknowledged rows ({exc}); they will be resent")
            return None
        return len(sizes)

    # -- reporting --------------------------------------------------------------------------------

    def depth(self) -> int:
        return self._rows

    def dropped(self) -> int:
        return self._dropped

    def next_seq(self) -> int:
        return self._next_seq
