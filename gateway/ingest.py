"""MQTT ingest: validate every device message, store it once, then PUBACK it and tell the device.

The broker's PUBACK to the gateway is sent only after the batch holding the message is committed
(paho's manual_ack), and the session is persistent (clean_session false, fixed client id): a gateway
killed at any moment gets every unacknowledged message again on restart, and dedupe by id makes the
redelivery harmless.
"""

from __future__ import annotations

import logging
import queue
import struct
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from gateway.store import JPEG_MAGIC, Accepted, BatchOutcome, Rejected, SnapshotUpload, Store
from isowatch.broker import BrokerUrl
from isowatch.clock import Clock, SystemClock
from isowatch.contract import (
    DEVICE_PUBLISHES,
    MAX_SNAPSHOT_BYTES,
    ContractError,
    GatewayAck,
    Topic,
    TopicKind,
    decode,
    encode,
    subscription,
    topic,
)

log = logging.getLogger(__name__)

BatchListener = Callable[[BatchOutcome], None]


@dataclass(frozen=True, slots=True)
class _Inbound:
    topic: bytes
    payload: bytes
    mid: int
    qos: int


def seq_ranges(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """[1, 2, 3, 7, 9, 10] -> [(1, 3), (7, 7), (9, 10)]"""
    ranges: list[tuple[int, int]] = []
    for seq in sorted(set(seqs)):
        if ranges and seq == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], seq)
        else:
            ranges.append((seq, seq))
    return ranges


def classify(raw_topic: bytes, payload: bytes, received_at: Any) -> Accepted | Rejected | SnapshotUpload:
    """Decide what one MQTT message is, without touching the database. Never raises on input."""
    try:
        topic_text = raw_topic.decode("utf-8")
    except UnicodeDecodeError:
        return Rejected(raw_topic.decode("utf-8", "replace"), "topic", "topic is not UTF-8", payload, received_at)
    try:
        parsed = Topic.parse(topic_text)
        if parsed.kind is TopicKind.SNAPSHOT:
            if len(payload) > MAX_SNAPSHOT_BYTES:
                raise ContractError("too_large", f"snapshot of {len(payload)} bytes > {MAX_SNAPSHOT_BYTES}")
            if not payload.startswith(JPEG_MAGIC):
                raise ContractError("snapshot", "not a JPEG")
            return SnapshotUpload(parsed, payload, received_at)
        parsed, message = decode(topic_text, payload)
    except ContractError as exc:
        return Rejected(topic_text, exc.reason, exc.detail, payload, received_at)
    return Accepted(parsed, message, received_at)


class _GatewayClient(mqtt.Client):
    """paho's client with cheaper reads and one write for a batch's PUBACKs (issue 8, docs/benchmarks.md).

    paho reads every packet with at least three recv() calls (command byte, each remaining-length byte,
    the body) and handles one packet per select(); in the gateway's profile at full load those syscalls
    were the largest single cost. Here the socket is read in large chunks and every whole packet in the
    chunk is handled before the next select(). Overrides paho 2.x internals (`_sock_recv`, `loop_read`,
    `_packet_queue`, `_handle_on_message`); the gateway tests run through them.
    """

    _READ_CHUNK = 256 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_sock: object = None
        self._read_buf = b""
        self._read_pos = 0

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._read_sock is not self._sock:  # a new connection: nothing buffered belongs to it
            self._read_sock, self._read_buf, self._read_pos = self._sock, b"", 0
        if self._read_pos >= len(self._read_buf):
            self._read_buf, self._read_pos = super()._sock_recv(self._READ_CHUNK), 0  # raises when nothing to read
        data = self._read_buf[self._read_pos:self._read_pos + bufsize]
        self._read_pos += len(data)
        return data

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        rc = super().loop_read(max_packets)
        # select() cannot see bytes already in our buffer: handle them now.
        while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and self._sock is not None and self._read_sock is self._sock \
                and self._read_pos < len(self._read_buf):
            rc = super().loop_read(1)
        return rc

    def _handle_on_message(self, message: mqtt.MQTTMessage) -> None:
        # Straight to on_message: we register no per-topic callbacks, and paho's matcher walk per
        # message showed in the profile. on_message (a queue put) does not raise.
        self.on_message(self, self._userdata, message)

    def ack_many(self, mids: list[int]) -> None:
        """PUBACK QoS 1 messages in one write instead of one queued packet (and wake-up) per message."""
        if mids:
            self._packet_queue(mqtt.PUBACK, b"".join([_PUBACK.pack(0x40, 2, mid) for mid in mids]), 0, 1)


_PUBACK = struct.Struct("!BBH")


class Ingest:
    """One gateway's MQTT consumer: a paho network thread feeds a queue, a writer thread stores batches."""

    def __init__(
        self,
        store: Store,
        broker: BrokerUrl | str,
        *,
        sites: Iterable[str] = ("+",),
        client_id: str = "isowatch-gateway",
        clock: Clock | None = None,
        batch_max: int = 500,
        batch_wait_s: float = 0.01,
    ) -> None:
        self.store = store
        self.broker = BrokerUrl.parse(broker) if isinstance(broker, str) else broker
        self.sites = tuple(sites)
        self.clock = clock or SystemClock()
        self.batch_max = batch_max
        self.batch_wait_s = batch_wait_s
        self.listeners: list[BatchListener] = []
        self.counters: Counter[str] = Counter()
        self.reject_reasons: Counter[str] = Counter()
        self._queue: queue.Queue[_Inbound] = queue.Queue()
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._writer: threading.Thread | None = None
        self.client = _GatewayClient(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=False,  # the broker queues for us while we are down
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
        if self.broker.username:
            self.client.username_pw_set(self.broker.username, self.broker.password)
        if self.broker.tls:
            self.client.tls_set()
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    # -- paho callbacks (network thread): keep them trivial -----------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.error("gateway connect refused reason=%s broker=%s", reason, self.broker.redacted())
            return
        # Subscribing on every connect restores subscriptions even if the broker lost our session.
        # Only what devices publish: our own acks and configs must not come back to us.
        client.subscribe([(subscription(site, kind), 1) for site in self.sites for kind in sorted(DEVICE_PUBLISHES)])
        self._connected.set()
        log.info("gateway connected session_present=%s sites=%s", flags.session_present, ",".join(self.sites))

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._connected.clear()
        if not self._stop.is_set():
            log.warning("gateway disconnected reason=%s; paho reconnects", reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        # The raw topic bytes: `msg.topic` raises on a topic that is not UTF-8, and that must be a reject.
        self._queue.put(_Inbound(msg._topic, msg.payload, msg.mid, msg.qos))

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self, wait: float = 10.0) -> "Ingest":
        self._writer = threading.Thread(target=self._write_loop, name="ingest-writer", daemon=True)
        self._writer.start()
        self.client.connect_async(self.broker.host, self.broker.port, keepalive=30)
        self.client.loop_start()
        if wait and not self._connected.wait(wait):
            self.stop()
            raise ConnectionError(f"gateway could not connect to {self.broker.redacted()} within {wait:.0f} s")
        return self

    def stop(self) -> None:
        """Store what is queued, acknowledge it, then disconnect."""
        self.client.loop_stop()  # no new messages from here on
        self._stop.set()
        if self._writer:
            self._writer.join(30)
        # Restart the network loop only to flush the final PUBACKs, then leave; the DISCONNECT is queued
        # behind them and on_disconnect fires once it is out.
        self.client.loop_start()
        self.client.disconnect()
        deadline = time.monotonic() + 5
        while self._connected.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)
        self.client.loop_stop()

    def idle(self) -> bool:
        return self._queue.empty() and self.counters["in_batch"] == 0

    def wait_idle(self, quiet_s: float = 0.5, timeout: float = 30.0) -> bool:
        """Wait until nothing has arrived for `quiet_s` and the queue is empty."""
        deadline = time.monotonic() + timeout
        last_total = -1
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            total = self.counters["received"]
            if total != last_total or not self.idle():
                last_total, quiet_since = total, time.monotonic()
            elif time.monotonic() - quiet_since >= quiet_s:
                return True
            time.sleep(0.05)
        return False

    # -- the writer thread ------------------------------------------------------------------------

    def _write_loop(self) -> None:
        while not (self._stop.is_set() and self._queue.empty()):
            try:
                first = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            batch = [first]
            deadline = time.monotonic() + self.batch_wait_s
            while len(batch) < self.batch_max:
                try:
                    batch.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            self.counters["in_batch"] = len(batch)
            self._handle_with_retry(batch)
            self.counters["in_batch"] = 0

    def _handle_with_retry(self, batch: list[_Inbound]) -> None:
        """Input never raises (classify); a failing database (locked, disk full) is retried with backoff.

        On shutdown we give up after a few tries and leave the batch unacknowledged: the broker
        redelivers it to the next gateway start.
        """
        attempt = 0
        while True:
            try:
                self._handle_batch(batch)
                return
            except Exception:
                attempt += 1
                self.counters["batch_errors"] += 1
                log.exception("batch of %d not stored (attempt %d); retrying", len(batch), attempt)
                if self._stop.is_set() and attempt >= 3:
                    return
                time.sleep(min(5.0, 0.1 * 2**attempt))

    def _handle_batch(self, batch: list[_Inbound]) -> None:
        now = self.clock.now()
        accepted: list[Accepted] = []
        rejected: list[Rejected] = []
        snapshots: list[SnapshotUpload] = []
        for item in batch:
            result = classify(item.topic, item.payload, now)
            if isinstance(result, Accepted):
                accepted.append(result)
            elif isinstance(result, SnapshotUpload):
                snapshots.append(result)
            else:
                rejected.append(result)
        outcome = self.store.write_batch(accepted, rejected, snapshots)
        self.client.ack_many([item.mid for item in batch if item.qos == 1])
        self._count(len(batch), outcome)
        self._ack_devices(outcome)
        for listener in self.listeners:
            try:
                listener(outcome)
            except Exception:
                log.exception("batch listener %r failed", listener)

    def _count(self, received: int, outcome: BatchOutcome) -> None:
        self.counters["received"] += received
        self.counters["stored"] += len(outcome.stored)
        self.counters["duplicates"] += len(outcome.duplicates)
        self.counters["updates"] += len(outcome.updates)
        self.counters["snapshots"] += outcome.new_snapshots
        self.counters["rejected"] += len(outcome.rejected)
        for reject in outcome.rejected:
            self.reject_reasons[reject.reason] += 1
            log.warning(
                "rejected reason=%s topic=%s size=%d detail=%s",
                reject.reason, reject.topic[:200], len(reject.payload), reject.detail[:200],
            )

    def _ack_devices(self, outcome: BatchOutcome) -> None:
        """Tell each device which sequence numbers are stored, so its outbox can let them go."""
        seqs: dict[tuple[str, str, str], list[int]] = defaultdict(list)
        hashes: dict[tuple[str, str, str], list[str]] = defaultdict(list)
        for item in outcome.handled():
            seqs[(item.topic.site, item.topic.household, item.topic.device)].append(item.message.seq)
        for snapshot_topic, digest in outcome.snapshots:
            hashes[(snapshot_topic.site, snapshot_topic.household, snapshot_topic.device)].append(digest)
        now = self.clock.now()
        for site, household, device in seqs.keys() | hashes.keys():
            key = (site, household, device)
            ack = GatewayAck(device=device, ranges=seq_ranges(seqs.get(key, ())), snapshots=hashes.get(key, []),
                             gateway_time=now)
            self.client.publish(topic(site, household, device, TopicKind.ACK), encode(ack), qos=1)

    def stats(self) -> dict[str, Any]:
        return {**{k: v for k, v in self.counters.items() if k != "in_batch"}, "reject_reasons": dict(self.reject_reasons)}
