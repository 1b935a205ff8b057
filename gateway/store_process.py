"""The ingest's validation and SQLite writes in processes of their own.

In one process, the gateway's MQTT side and its store shared one GIL: at full load the network thread and
the writer took turns and the gateway topped out near one core, 9,000-10,000 messages a second, with the
second core partly idle (docs/benchmarks.md). Here the MQTT process slices frames, acknowledges
and counts; store processes validate batches against the contract, store each in one transaction,
encode the GatewayAcks, and hand back a small `BatchSummary`.

Each child is spawned and answers its batches in order over a pipe (`gateway.child_process`). When the
parent dies the pipe reaches end-of-file and the child leaves at once. A child that dies is started again
by the next batch; the batches it held are retried, and dedupe by id makes a batch stored twice harmless.
"""

from __future__ import annotations

import logging
import sqlite3
import time
import traceback
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway.child_process import START_TIMEOUT_S, Child, ChildGone, ChildStartError, ChildSupervisor
from gateway.store import (
    JPEG_MAGIC,
    SNAPSHOT_QUOTA_BYTES,
    Accepted,
    BatchOutcome,
    Rejected,
    SnapshotUpload,
    Store,
    WriteTurn,
)
from isowatch import mqtt_wire
from isowatch.clock import iso
from isowatch.contract import MAX_SNAPSHOT_BYTES, ContractError, Topic, TopicKind, decode, encode_ack, topic
from isowatch.log_limit import RateLimitedLog
from isowatch.periodic import Periodic

log = logging.getLogger(__name__)


# One inbound PUBLISH as the MQTT process slices it out: (topic bytes, payload, packet id, QoS, retain flag).
Inbound = tuple[bytes, bytes, int, int, bool]

# Whether a stored batch holds something to act on at once (the alert process's wake-up rule).
UrgentCheck = Callable[[BatchOutcome], bool]


@dataclass(frozen=True, slots=True)
class BatchSummary:
    """What the store made of one batch: counts, why rejects were rejected, the GatewayAck packets to send."""

    received: int
    stored: int
    duplicates: int
    updates: int
    new_snapshots: int
    rejected: list[tuple[str, str, int, str]]  # (reason, topic, payload size, detail)
    acked: dict[str, list[tuple[int, int]]]  # device -> seq ranges the device may now forget
    ack_packets: bytes
    urgent: bool
    clear_retained: list[str] = field(default_factory=list)  # topics whose retained message to clear
    replayed: int = 0  # retained rejects the broker replayed, already recorded: not counted again


class StoreError(RuntimeError):
    """The store process could not store a batch (database locked, disk full, the child died); retry it."""


def classify(raw_topic: bytes, payload: bytes, received_at: Any,
             retained: bool = False) -> Accepted | Rejected | SnapshotUpload:
    """Decide what one MQTT message is, without touching the database. Never raises on input.

    `retained`: the broker sent it from its retained store (MQTT 3.1.1 clears the flag on live delivery,
    so these are replays to a new subscription). Only a device's status may be retained: anything else
    would be replayed to the gateway on every reconnect (and come back after retention purged it)."""
    try:
        topic_text = raw_topic.decode("utf-8")
    except UnicodeDecodeError:
        return Rejected(raw_topic.decode("utf-8", "replace"), "topic", "topic is not UTF-8", payload, received_at,
                        retained)
    try:
        parsed = Topic.parse(topic_text)
        if retained and parsed.kind is not TopicKind.STATUS:
            raise ContractError("retained", f"a retained message on a {parsed.kind.value} topic")
        if parsed.kind is TopicKind.SNAPSHOT:
            if len(payload) > MAX_SNAPSHOT_BYTES:
                raise ContractError("too_large", f"snapshot of {len(payload)} bytes > {MAX_SNAPSHOT_BYTES}")
            if not payload.startswith(JPEG_MAGIC):
                raise ContractError("snapshot", "not a JPEG")
            return SnapshotUpload(parsed, payload, received_at)
        parsed, message = decode(parsed, payload)
    except ContractError as exc:
        return Rejected(topic_text, exc.reason, exc.detail, payload, received_at, retained)
    except Exception as exc:  # whatever a message does, it is rejected, not handed to the batch
        log.exception("classifying a message failed topic=%s", topic_text[:200])
        return Rejected(topic_text, "invalid", f"{type(exc).__name__}: {exc}"[:300], payload, received_at, retained)
    return Accepted(parsed, message, received_at, payload, retained)


def seq_ranges(seqs: Sequence[int]) -> list[tuple[int, int]]:
    """[1, 2, 3, 7, 9, 10] -> [(1, 3), (7, 7), (9, 10)]"""
    if len(seqs) == 1:  # the usual case under load: one message per device per batch
        return [(seqs[0], seqs[0])]
    ranges: list[tuple[int, int]] = []
    for seq in sorted(set(seqs)):
        if ranges and seq == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], seq)
        else:
            ranges.append((seq, seq))
    return ranges


def store_batch(store: Store, batch: list[Inbound], now: datetime, acks: "AckBook",
                urgent: UrgentCheck | None = None, *, caught_up: bool = True,
                write_turn: AbstractContextManager = nullcontext()) -> BatchSummary:
    """Validate and store one batch in one transaction; summarise it for the MQTT side. `caught_up`: nothing
    else is waiting at the gateway, so the devices' acks go out now rather than gathering (see `AckBook`).
    Validation needs no database: only the transaction waits for `write_turn`."""
    accepted: list[Accepted] = []
    rejected: list[Rejected] = []
    snapshots: list[SnapshotUpload] = []
    for raw_topic, payload, _mid, _qos, retained in batch:
        result = classify(raw_topic, payload, now, retained)
        if isinstance(result, Accepted):
            accepted.append(result)
        elif isinstance(result, SnapshotUpload):
            snapshots.append(result)
        else:
            rejected.append(result)
    outcome = _write_isolating(store, accepted, rejected, snapshots, write_turn)
    acks.add(outcome)
    acked, packets = acks.take(now) if caught_up or acks.waited_s() >= acks.gather_s else ({}, b"")
    return BatchSummary(
        received=len(batch), stored=len(outcome.stored), duplicates=len(outcome.duplicates),
        updates=len(outcome.updates), new_snapshots=outcome.new_snapshots,
        rejected=[(r.reason, r.topic[:200], len(r.payload), r.detail[:200]) for r in outcome.rejected],
        acked=acked, ack_packets=packets, urgent=_is_urgent(urgent, outcome),
        # A retained message we reject would be replayed at every reconnect: clear it at the broker.
        clear_retained=[r.topic for r in (*outcome.rejected, *outcome.replayed) if r.retained],
        replayed=len(outcome.replayed),
    )


def _is_urgent(urgent: UrgentCheck | None, outcome: BatchOutcome) -> bool:
    """The batch is committed: a failing check must not send it back for a retry (it would fail again for
    ever). Wake the worker instead; it reads what is stored and decides for itself."""
    if urgent is None:
        return False
    try:
        return bool(urgent(outcome))
    except Exception:
        log.exception("the wake-up check failed on a stored batch; waking the alert worker")
        return True


def _environmental(exc: BaseException) -> bool:
    """Whether a failed write is the database's or the machine's fault (locked, disk full, I/O error, a
    corrupt file), not one message's: such a batch is retried whole, never turned into rejects."""
    return (isinstance(exc, (sqlite3.OperationalError, OSError, MemoryError))
            or type(exc) in (sqlite3.DatabaseError, sqlite3.InternalError))


def _write_isolating(store: Store, accepted: list[Accepted], rejected: list[Rejected],
                     snapshots: list[SnapshotUpload], write_turn: AbstractContextManager) -> BatchOutcome:
    """`_write_in_turn`; when the batch fails for a reason other than the database's, write it in halves until
    the message at fault stands alone, and reject that one as `unstorable`. One bad message costs a few
    transactions; it never holds the others, as the whole batch would be retried with it for ever."""
    try:
        return _write_in_turn(store, accepted, rejected, snapshots, write_turn)
    except Exception as exc:
        if _environmental(exc):
            raise
        if len(accepted) + len(snapshots) <= 1:
            item = (accepted or snapshots)[0] if accepted or snapshots else None
            if item is None:  # only rejects, and they could not be written: a database problem after all
                raise
            log.exception("message cannot be stored; rejecting it topic=%s", item.topic)
            payload = item.payload if isinstance(item, Accepted) else item.jpeg
            unstorable = Rejected(str(item.topic), "unstorable", f"{type(exc).__name__}: {exc}", payload,
                                  item.received_at)
            return _write_in_turn(store, [], [*rejected, unstorable], [], write_turn)
        log.warning("batch of %d failed (%s: %s); storing it in halves to find the message at fault",
                    len(accepted) + len(snapshots), type(exc).__name__, exc)
    half_a, half_s = len(accepted) // 2, len(snapshots) // 2
    if half_a == 0 and half_s == 0:  # one message of each kind: split between them
        half_a = len(accepted)
    first = _write_isolating(store, accepted[:half_a], rejected, snapshots[:half_s], write_turn)
    second = _write_isolating(store, accepted[half_a:], [], snapshots[half_s:], write_turn)
    return first.merge(second)


STORE_BUSY_TIMEOUT_MS = 100
LOCKED_RETRY_S = 0.01
LOCKED_GIVE_UP_S = 30.0


def _write_in_turn(store: Store, accepted: list[Accepted], rejected: list[Rejected], snapshots: list[SnapshotUpload],
                   write_turn: AbstractContextManager) -> BatchOutcome:
    """`write_batch`, its transaction in our write turn. A connection can hold SQLite's write lock without the
    turn (an implicit transaction left open, the sqlite3 shell) and then queue for the turn: holding the
    turn while SQLite's busy handler waits for that lock would stall both for the whole busy timeout,
    and the door pages behind them. So SQLite waits briefly (busy_timeout in
    `_serve`), and on "database is locked" we give the turn back and try again."""
    waited = 0.0
    while True:
        try:
            return store.write_batch(accepted, rejected, snapshots, turn=write_turn)
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or waited >= LOCKED_GIVE_UP_S:
                raise
        time.sleep(LOCKED_RETRY_S)
        waited += LOCKED_RETRY_S + STORE_BUSY_TIMEOUT_MS / 1000


class AckBook:
    """The GatewayAcks owed to devices: which sequence numbers and snapshots of each are stored.

    While the gateway works through a backlog, a device's acks gather over batches for up to `gather_s`
    and go out as one: a draining outbox sends several messages per batch to the same gateway, and one
    ack per device per batch was a third of the MQTT traffic and a tenth of the store's work. Once the
    gateway has caught up they go out with every batch. A device resends only after its own timeout
    (20 s by default), so a second's wait costs nothing; a store process that dies owes nothing the
    devices will not resend, and dedupe by id stores each once.

    QoS 0: a lost ack costs one resend from the device's outbox, which the gateway stores once and acks
    again; at QoS 1 the broker would queue acks for every offline device and paho would track each.
    """

    def __init__(self, gather_s: float = 1.0) -> None:
        self.gather_s = gather_s
        self._seqs: dict[tuple[str, str, str], list[int]] = defaultdict(list)
        self._hashes: dict[tuple[str, str, str], list[str]] = defaultdict(list)
        self._since: float | None = None

    def add(self, outcome: BatchOutcome) -> None:
        for item in outcome.handled():
            self._seqs[(item.topic.site, item.topic.household, item.topic.device)].append(item.message.seq)
        for snapshot_topic, digest in outcome.snapshots:
            self._hashes[(snapshot_topic.site, snapshot_topic.household, snapshot_topic.device)].append(digest)
        if self._since is None and (self._seqs or self._hashes):
            self._since = time.monotonic()

    def waited_s(self) -> float:
        return 0.0 if self._since is None else time.monotonic() - self._since

    def take(self, now: datetime) -> tuple[dict[str, list[tuple[int, int]]], bytes]:
        """Everything owed, as (device -> seq ranges, the MQTT packets); the book is empty afterwards."""
        at = iso(now)
        acked: dict[str, list[tuple[int, int]]] = {}
        packets = []
        for site, household, device in self._seqs.keys() | self._hashes.keys():
            key = (site, household, device)
            ranges = acked[device] = seq_ranges(self._seqs.get(key, ()))
            payload = encode_ack(device, ranges, self._hashes.get(key, []), at)
            packets.append(mqtt_wire.publish(topic(site, household, device, TopicKind.ACK), payload))
        self._seqs.clear()
        self._hashes.clear()
        self._since = None
        return acked, b"".join(packets)


class WalCheckpointer(Periodic):
    """Copies the write-ahead log into the database file from a thread of its own.

    SQLite checkpoints inside whichever commit takes the log past 1,000 pages: under load that was the
    ingest writer's commit every batch or two, a quarter of the store process's time, spent while every
    batch behind it waited. Here the writer's connection never checkpoints; this thread runs a
    PASSIVE checkpoint (it never blocks the writer or readers) every `every_s` on its own connection,
    and SQLite copies pages with the GIL released, so the writer goes on validating and inserting.

    Under steady writes a passive checkpoint never quite catches up, and SQLite only starts the log
    over once everything in it is copied and no reader still needs it: the log grew by 10-16 MB a
    second. So once it holds `catch_up_pages`, the writers wait (`WriteTurn`) while a RESTART
    checkpoint copies the last frames and waits (up to `reader_wait_s`) for readers to move on; the
    next transaction starts the log again from the top. The wait is short on purpose: everyone who
    writes waits with it, and the rules read all the time. Waiting 2 s stalled ingest under the steady
    load, every half second; a catch-up that readers foil is tried again at the next round.
    """

    def __init__(self, db_path: str, every_s: float = 0.5, catch_up_pages: int = 8192,
                 reader_wait_s: float = 0.05) -> None:
        super().__init__("wal-checkpoint", every_s, log)
        self.catch_up_pages = catch_up_pages
        self._writer_turn = WriteTurn(db_path)
        self._conn = sqlite3.connect(db_path, check_same_thread=False, timeout=reader_wait_s)
        self._conn.execute("PRAGMA synchronous=FULL")
        self._failures = RateLimitedLog(log, every_s=3600)

    def stop(self, timeout: float = 30.0) -> None:
        super().stop(timeout)
        self._checkpoint()  # leave the log short for whoever opens the database next
        self._conn.close()
        self._writer_turn.close()

    def tick(self) -> None:
        if self._checkpoint() >= self.catch_up_pages:
            with self._writer_turn:
                self._checkpoint("RESTART")

    def failures_since_logged(self) -> int:
        return self._failures.held()

    def _checkpoint(self, mode: str = "PASSIVE") -> int:
        """One checkpoint; returns the log's length in pages (0 on failure)."""
        try:
            _busy, log_pages, _copied = self._conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        except sqlite3.Error as exc:
            # Every half second while the disk is full: one traceback, then a line an hour with the count.
            self._failures.log(logging.ERROR, f"WAL checkpoint failed ({exc}); retrying every {self.every_s} s",
                               exc_info=True)
            return 0
        if self._failures.clear():
            log.warning("WAL checkpoint works again")
        return log_pages


class StorePool:
    """The store processes: batches go to the one with least in hand, summaries come back in order.

    Each validates its batch on its own core and then waits its turn to write (`WriteTurn`), so one's
    validation overlaps another's transaction; SQLite commits them one at a time, so a row committed
    later still has a higher rowid (the alert worker's cursors rely on it). The first process also runs
    the WAL checkpointer.
    """

    def __init__(self, db_path: Path, snapshot_dir: Path, urgent: UrgentCheck | None = None, *,
                 processes: int = 2, snapshot_quota_bytes: int = SNAPSHOT_QUOTA_BYTES) -> None:
        if processes < 1:
            raise ValueError("a store pool needs at least one process")
        self.processes = [StoreProcess(db_path, snapshot_dir, urgent, checkpoints=n == 0,
                                       snapshot_quota_bytes=snapshot_quota_bytes) for n in range(processes)]
        self._order: deque[StoreProcess] = deque()  # who holds each batch in flight, oldest first

    @property
    def restarts(self) -> int:
        return sum(p.restarts for p in self.processes)

    def start(self) -> "StorePool":
        for process in self.processes:
            process.start()
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        for process in self.processes:
            process.wait_ready(timeout)

    def submit(self, batch: list[Inbound], now: datetime, *, caught_up: bool = True) -> None:
        process = min(self.processes, key=lambda p: p.in_flight)
        process.submit(batch, now, caught_up=caught_up)
        self._order.append(process)

    def has_result(self, timeout: float = 0.0) -> bool:
        return bool(self._order) and self._order[0].has_result(timeout)

    def result(self) -> BatchSummary:
        if not self._order:
            raise StoreError("no batch in flight")
        return self._order.popleft().result()

    def write(self, batch: list[Inbound], now: datetime, *, caught_up: bool = True) -> BatchSummary:
        """Store one batch and wait for it (nothing else may be in flight)."""
        self.submit(batch, now, caught_up=caught_up)
        return self.result()

    def stop(self) -> None:
        for process in self.processes:
            process.stop()
        self._order.clear()


class StoreProcess:
    """The parent's handle on one store child: `submit` sends a batch, `result` returns its summary.

    A child that dies is started again by the next batch; each batch it held fails, to be retried.
    """

    def __init__(self, db_path: Path, snapshot_dir: Path, urgent: UrgentCheck | None = None, *,
                 checkpoints: bool = True, snapshot_quota_bytes: int = SNAPSHOT_QUOTA_BYTES) -> None:
        self._child = ChildSupervisor("store process", "isowatch-store", _Served, (
            str(db_path), str(snapshot_dir), urgent, checkpoints, snapshot_quota_bytes))
        self._in_flight: deque[Child] = deque()  # which child holds each batch, oldest first

    @property
    def restarts(self) -> int:
        return self._child.restarts

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def start(self) -> "StoreProcess":
        """Spawn the child and return at once; the first batch (or `wait_ready`) waits for it to be up."""
        self._child.start()
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        try:
            self._child.current().wait_ready(timeout)
        except ChildStartError as exc:
            raise StoreError(str(exc)) from exc

    def submit(self, batch: list[Inbound], now: datetime, *, caught_up: bool = True) -> None:
        """Hand a batch over without waiting; `result` returns the summaries in submission order."""
        child = self._child.current()
        try:
            child.wait_ready(START_TIMEOUT_S)
            child.send((batch, now, caught_up))
        except ChildStartError as exc:
            raise StoreError(str(exc)) from exc
        except ChildGone as exc:
            raise StoreError("the store process died before it took the batch") from exc
        self._in_flight.append(child)

    def has_result(self, timeout: float = 0.0) -> bool:
        """Whether the oldest batch in flight is done (or its child gone), waiting up to `timeout`."""
        return bool(self._in_flight) and self._in_flight[0].has_reply(timeout)

    def result(self) -> BatchSummary:
        if not self._in_flight:
            raise StoreError("no batch in flight")
        try:
            reply = self._in_flight.popleft().reply()
        except ChildGone:
            raise StoreError("the store process died with the batch in hand") from None
        if isinstance(reply, str):
            raise StoreError(reply)
        assert isinstance(reply, BatchSummary)  # the child sends a summary, an error text or dies
        return reply

    def stop(self, timeout: float = 30.0) -> None:
        self._child.stop(timeout)


class _Served:
    """The store child's side: one batch in, its summary (or the traceback of a failing database) out."""

    def __init__(self, db_path: str, snapshot_dir: str, urgent: UrgentCheck | None, checkpoints: bool,
                 snapshot_quota_bytes: int) -> None:
        self.store = Store(db_path, snapshot_dir, snapshot_quota_bytes=snapshot_quota_bytes)
        self.store.db.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer's job, off the writers' path
        self.store.db.execute(f"PRAGMA journal_size_limit={64 * 1024 * 1024}")  # a log started over shrinks
        self.store.db.execute(f"PRAGMA busy_timeout={STORE_BUSY_TIMEOUT_MS}")  # see `_write_in_turn`
        self.write_turn = WriteTurn(db_path)
        self.checkpointer = WalCheckpointer(db_path).start() if checkpoints else None
        self.urgent = urgent
        self.acks = AckBook()

    def handle(self, request: tuple[list[Inbound], datetime, bool]) -> BatchSummary | str:
        batch, now, caught_up = request
        try:
            return store_batch(self.store, batch, now, self.acks, self.urgent, caught_up=caught_up,
                               write_turn=self.write_turn)
        except Exception:  # a failing database: the parent logs it and retries the batch with backoff
            return traceback.format_exc()

    def stop(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.stop()
        self.write_turn.close()
        self.store.close()
