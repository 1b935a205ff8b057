"""MQTT ingest: validate every device message, store it once, then PUBACK it and tell the device.

The broker's PUBACK to the gateway is sent only after the batch holding the message is committed
(paho's manual_ack), and the session is persistent (clean_session false, fixed client id): a gateway
killed at any moment gets every unacknowledged message again on restart, and dedupe by id makes the
redelivery harmless.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from gateway.store import Store
from gateway.store_process import BatchSummary, Inbound, StoreError, StorePool, UrgentCheck
from isowatch import mqtt_wire
from isowatch.broker import BrokerUrl
from isowatch.clock import Clock, SystemClock
from isowatch.contract import DEVICE_PUBLISHES, subscription
from isowatch.log_limit import RateLimitedLog

log = logging.getLogger(__name__)

BatchListener = Callable[[BatchSummary], None]


class _GatewayClient(mqtt.Client):
    """paho's client with the inbound path and the batched writes the gateway's load needs.

    Stock paho reads every packet with three or more recv() calls, handles one packet per select(), and
    builds, decodes and debug-logs an MQTTMessage in Python for each PUBLISH: at 10,000 messages a
    second that was most of the gateway's CPU (docs/benchmarks.md). Here `loop_read` reads the socket in
    large chunks and slices every whole packet out of the buffer (isowatch.mqtt_wire); QoS 0 and 1
    PUBLISHes go to `on_publishes` as one list per read, every other packet (CONNACK, SUBACK, PUBACK,
    PINGRESP, QoS 2) to paho's own handler. Overrides paho internals (`loop_read`, `_sock_recv`,
    `_in_packet`, `_packet_handle`, `_packet_queue`) for MQTT 3.1.1 only, so paho is pinned to one minor
    version (pyproject.toml) and tests/gateway/test_ingest_paho.py fails first when they change.
    """

    _READ_CHUNK = 256 * 1024

    def __init__(self, *args: Any, on_publishes: Callable[[list[Inbound]], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self._protocol != mqtt.MQTTv311:
            raise ValueError("the gateway's PUBLISH parser speaks MQTT 3.1.1")
        self.on_publishes = on_publishes
        self._frames = mqtt_wire.FrameReader()
        self._frames_sock: object = None

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        if self._sock is None:
            return MQTTErrorCode.MQTT_ERR_NO_CONN
        if self._frames_sock is not self._sock:  # a new connection: nothing buffered belongs to it
            self._frames_sock = self._sock
            self._frames.reset()
        try:
            data = self._sock_recv(self._READ_CHUNK)
        except BlockingIOError:
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        except OSError as err:
            self._easy_log(mqtt.MQTT_LOG_ERR, "failed to receive on socket: %s", err)
            return self._loop_rc_handle(MQTTErrorCode.MQTT_ERR_CONN_LOST)
        if not data:
            return self._loop_rc_handle(MQTTErrorCode.MQTT_ERR_CONN_LOST)
        with self._msgtime_mutex:
            self._last_bytes_received = mqtt.time_func()
        publishes: list[Inbound] = []
        rc = MQTTErrorCode.MQTT_ERR_SUCCESS
        try:
            for first_byte, body in self._frames.feed(data):
                # QoS 2 needs paho's PUBREC/PUBREL state; the gateway subscribes at QoS 1, so it is rare.
                if first_byte & 0xF0 != mqtt_wire.PUBLISH or first_byte & 0x06 == 0x04:
                    rc = self._handle_packet(first_byte, body)
                    if rc:
                        break
                    continue
                topic, payload, packet_id, qos, retain, _dup = mqtt_wire.decode_publish(first_byte, body)
                publishes.append((topic, payload, packet_id, qos, retain))
        except mqtt_wire.MalformedFrame as exc:
            log.error("malformed packet from the broker, closing the connection: %s", exc)
            rc = MQTTErrorCode.MQTT_ERR_PROTOCOL
        if publishes:
            self.on_publishes(publishes)
        return self._loop_rc_handle(rc) if rc else rc

    def _handle_packet(self, command: int, body: bytes) -> MQTTErrorCode:
        """Anything but a QoS 0/1 PUBLISH: paho's own handler, fed through the state it reads from."""
        self._in_packet = {"command": command, "have_remaining": 1, "remaining_count": [], "remaining_mult": 1,
                           "remaining_length": len(body), "packet": bytearray(body), "to_process": 0, "pos": 0}
        try:
            return self._packet_handle()
        except mqtt.MalformedPacket as exc:
            self._easy_log(mqtt.MQTT_LOG_ERR, "malformed packet from the broker: %s", exc)
            return MQTTErrorCode.MQTT_ERR_PROTOCOL
        finally:
            self._in_packet = {"command": 0, "have_remaining": 0, "remaining_count": [], "remaining_mult": 1,
                               "remaining_length": 0, "packet": bytearray(b""), "to_process": 0, "pos": 0}

    def write_packets(self, packets: list[bytes]) -> None:
        """Queue ready-made packets (PUBACKs, QoS 0 PUBLISHes) as one write and one wake-up of the loop."""
        data = b"".join(packets)
        if data:
            self._packet_queue(_RAW_WRITE, data, 0, 0)


# paho looks at a queued packet's command after writing it (to call on_publish for QoS 0, to close after
# DISCONNECT); 0 is no MQTT packet type, so our pre-built writes get no after-care.
_RAW_WRITE = 0


class Ingest:
    """One gateway's MQTT consumer: a paho network thread feeds a queue; a writer thread hands batches to
    the store process and, once each is committed, sends the PUBACKs and the devices' GatewayAcks."""

    def __init__(
        self,
        store: Store,
        broker: BrokerUrl | str,
        *,
        sites: Iterable[str] = ("+",),
        client_id: str = "isowatch-gateway",
        clock: Clock | None = None,
        batch_max: int = 2000,
        batch_wait_s: float = 0.01,
        urgent: UrgentCheck | None = None,
        store_processes: int = 2,
    ) -> None:
        self.store_pool = StorePool(store.path, store.snapshot_dir, urgent, processes=store_processes,
                                    snapshot_quota_bytes=store.snapshot_quota_bytes)
        self.broker = BrokerUrl.parse(broker) if isinstance(broker, str) else broker
        self.sites = tuple(sites)
        self.clock = clock or SystemClock()
        self.batch_max = batch_max
        self._retry_log = RateLimitedLog(log)
        self.batch_wait_s = batch_wait_s
        self.listeners: list[BatchListener] = []
        self.counters: Counter[str] = Counter()
        self.reject_reasons: Counter[str] = Counter()
        self._queue: queue.Queue[list[Inbound]] = queue.Queue()  # one list per socket read
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._writer: threading.Thread | None = None
        # Retained messages we cleared (an empty retained PUBLISH): the broker sends each clear back to us as
        # an empty message on that topic, which is ours, not a device's. Topic -> when cleared (monotonic).
        self._own_clears: dict[bytes, float] = {}
        self.client = _GatewayClient(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=False,  # the broker queues for us while we are down
            protocol=mqtt.MQTTv311,
            manual_ack=True,
            on_publishes=self._queue.put,  # the network thread only slices and hands over
        )
        if self.broker.username:
            self.client.username_pw_set(self.broker.username, self.broker.password)
        if self.broker.tls:
            self.client.tls_set()
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect

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

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self, wait: float = 10.0) -> "Ingest":
        self.store_pool.start()  # they open the database while we connect
        self._writer = threading.Thread(target=self._write_loop, name="ingest-writer", daemon=True)
        self._writer.start()
        self.client.connect_async(self.broker.host, self.broker.port, keepalive=30)
        self.client.loop_start()
        if wait and not self._connected.wait(wait):
            self.stop()
            raise ConnectionError(f"gateway could not connect to {self.broker.redacted()} within {wait:.0f} s")
        if wait:
            try:
                self.store_pool.wait_ready()
            except Exception:
                self.stop()
                raise
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
        self.store_pool.stop()

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

    PIPELINE_DEPTH = 4  # batches handed to the store processes at once: each has one in hand, one waiting
    POLL_S = 0.002  # with a batch in flight, how long to wait for more messages before checking on it

    def _write_loop(self) -> None:
        # Waiting only for the batch in flight would idle the store process: the broker sends the next
        # messages when our PUBACKs free its in-flight window, i.e. while the store works on the next batch.
        in_flight: deque[list[Inbound]] = deque()
        failed: list[list[Inbound]] = []
        while not (self._stop.is_set() and self._queue.empty() and not in_flight):
            # A committed batch is finished before the next is gathered: under a steady trickle there is
            # always more to gather, and its PUBACKs and its wake-up of the alert worker (a door page)
            # waited behind up to PIPELINE_DEPTH gathers of `batch_wait_s` each (docs/benchmarks.md).
            finished = bool(in_flight) and self.store_pool.has_result()
            if len(in_flight) < self.PIPELINE_DEPTH and not failed and not finished:
                batch = self._next_batch(timeout=self.POLL_S if in_flight else 0.2)
                if batch and self._own_clears:
                    batch = self._without_own_clears(batch)
                if batch:
                    self.counters["in_batch"] += len(batch)
                    try:
                        self.store_pool.submit(batch, self.clock.now(), caught_up=self._queue.empty())
                        in_flight.append(batch)
                        continue
                    except StoreError:
                        failed.append(batch)
                elif in_flight and not self.store_pool.has_result():
                    continue
            if in_flight:
                batch = in_flight.popleft()
                try:
                    self._finish(batch, self.store_pool.result())
                except StoreError:
                    failed.append(batch)
                else:
                    self.counters["in_batch"] -= len(batch)
            if failed and not in_flight:  # what is in flight is resolved; retry the rest one at a time
                for batch in failed:
                    self._handle_with_retry(batch)
                    self.counters["in_batch"] -= len(batch)
                failed = []

    def _next_batch(self, timeout: float) -> list[Inbound]:
        """What has arrived, up to `batch_max`, waiting up to `timeout` for the first and `batch_wait_s` for more."""
        try:
            batch = self._queue.get(timeout=timeout) if timeout else self._queue.get_nowait()
        except queue.Empty:
            return []
        deadline = time.monotonic() + self.batch_wait_s
        while len(batch) < self.batch_max:
            try:
                batch += self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
        return batch

    OWN_CLEAR_ECHO_S = 60.0  # how long a clear's echo is expected; a later empty message is a device's

    def _without_own_clears(self, batch: list[Inbound]) -> list[Inbound]:
        now = time.monotonic()
        kept = []
        for item in batch:
            raw_topic, payload, _mid, qos, _retain = item
            cleared_at = self._own_clears.get(raw_topic) if not payload and qos == 0 else None
            if cleared_at is not None and now - cleared_at < self.OWN_CLEAR_ECHO_S:
                del self._own_clears[raw_topic]
            else:
                kept.append(item)
        if len(self._own_clears) > 10_000:  # echoes that never came (a broker that drops them)
            self._own_clears = {t: at for t, at in self._own_clears.items() if now - at < self.OWN_CLEAR_ECHO_S}
        return kept

    def _handle_with_retry(self, batch: list[Inbound]) -> None:
        """Input never raises (classify); a failing database (locked, disk full) or a store process that died
        is retried with backoff.

        On shutdown we give up after a few tries and leave the batch unacknowledged: the broker
        redelivers it to the next gateway start.
        """
        attempt = 0
        while True:
            try:
                self._handle_batch(batch)
                return
            except Exception as exc:
                attempt += 1
                self.counters["batch_errors"] += 1
                # A full disk fails every retry the same way: the first in full, then a count a minute.
                self._retry_log.log(logging.ERROR, f"batch not stored; retrying with backoff: {exc!r:.300}",
                                    exc_info=True)
                if self._stop.is_set() and attempt >= 3:
                    return
                time.sleep(min(5.0, 0.1 * 2**attempt))

    def _handle_batch(self, batch: list[Inbound]) -> None:
        self._finish(batch, self.store_pool.write(batch, self.clock.now()))

    def _finish(self, batch: list[Inbound], summary: BatchSummary) -> None:
        """The batch is committed: PUBACKs to the broker, then a GatewayAck to each device, in one write."""
        clears = [mqtt_wire.publish(topic_text, b"", retain=True) for topic_text in summary.clear_retained]
        acks = mqtt_wire.pubacks([mid for _topic, _payload, mid, qos, _retain in batch if qos == 1])
        self.client.write_packets([acks, summary.ack_packets, *clears])
        if summary.clear_retained:
            now = time.monotonic()
            self._own_clears.update((topic_text.encode(), now) for topic_text in summary.clear_retained)
        self._count(summary)
        for listener in self.listeners:
            try:
                listener(summary)
            except Exception:
                log.exception("batch listener %r failed", listener)

    def _count(self, summary: BatchSummary) -> None:
        self.counters["received"] += summary.received
        self.counters["stored"] += summary.stored
        self.counters["duplicates"] += summary.duplicates
        self.counters["updates"] += summary.updates
        self.counters["snapshots"] += summary.new_snapshots
        self.counters["rejected"] += len(summary.rejected)
        if summary.clear_retained:
            self.counters["retained_cleared"] += len(summary.clear_retained)
        if summary.replayed:
            self.counters["retained_replays"] += summary.replayed
            log.info("%d retained rejects replayed by the broker, recorded before", summary.replayed)
        for reason, topic_text, size, detail in summary.rejected:
            self.reject_reasons[reason] += 1
            log.warning("rejected reason=%s topic=%s size=%d detail=%s", reason, topic_text, size, detail)

    def stats(self) -> dict[str, Any]:
        return {**{k: v for k, v in self.counters.items() if k != "in_batch"}, "reject_reasons": dict(self.reject_reasons),
                "store_restarts": self.store_pool.restarts}
