"""The edge's MQTT uplink: stamps messages with id, sequence number and time, and publishes them QoS 1.

Birth and Last Will go on the retained status topic. Issue 5 puts a durable outbox in front of
`send`, so a message leaves the box's disk only when the gateway acknowledges it; the interface
(`stamp`, `send`) stays the same.
"""

from __future__ import annotations

import itertools
import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from isowatch import __version__
from isowatch.broker import BrokerUrl
from isowatch.clock import Clock, SystemClock
from isowatch.contract import DeviceMessage, Status, TopicKind, encode, topic, topic_for
from isowatch.ids import uuid7

log = logging.getLogger(__name__)

M = TypeVar("M", bound=DeviceMessage)


class UplinkError(RuntimeError):
    pass


@dataclass(frozen=True)
class DeviceIdentity:
    site: str
    household: str
    device: str


class Stamper:
    """Fills the envelope (id, device, seq, device_time) of messages made on one device."""

    def __init__(self, device: str, clock: Clock | None = None, first_seq: int = 1) -> None:
        self.device = device
        self.clock = clock or SystemClock()
        self._seq = itertools.count(first_seq)
        self._lock = threading.Lock()

    def stamp(self, model: type[M], *, at: datetime | None = None, **fields: Any) -> M:
        with self._lock:
            seq = next(self._seq)
        return model(
            id=uuid7(),
            device=self.device,
            seq=seq,
            device_time=at or self.clock.now(),
            **fields,
        )


class Uplink:
    """A paho-mqtt 2.x client for one device: QoS 1 publishes, retained birth, Last Will offline."""

    def __init__(
        self,
        broker: BrokerUrl | str,
        identity: DeviceIdentity,
        *,
        stamper: Stamper | None = None,
        firmware: str = __version__,
        keepalive: int = 30,
    ) -> None:
        self.broker = BrokerUrl.parse(broker) if isinstance(broker, str) else broker
        self.identity = identity
        self.stamper = stamper or Stamper(identity.device)
        self.firmware = firmware
        self.keepalive = keepalive
        self._connected = threading.Event()
        self._status_topic = topic(identity.site, identity.household, identity.device, TopicKind.STATUS)
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"edge-{identity.device}",
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        if self.broker.username:
            self.client.username_pw_set(self.broker.username, self.broker.password)
        if self.broker.tls:
            self.client.tls_set()
        self.client.max_queued_messages_set(0)
        self.client.max_inflight_messages_set(100)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        will = self.stamper.stamp(Status, type="status", state="offline", firmware=firmware)
        self.client.will_set(self._status_topic, encode(will), qos=1, retain=True)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.error("uplink refused device=%s reason=%s", self.identity.device, reason)
            if reason in ("Bad user name or password", "Not authorized"):
                client.disconnect()  # retrying bad credentials only hammers the broker
            return
        birth = self.stamper.stamp(Status, type="status", state="online", firmware=self.firmware)
        client.publish(self._status_topic, encode(birth), qos=1, retain=True)
        self._connected.set()
        log.info("uplink connected device=%s", self.identity.device)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._connected.clear()
        if reason.is_failure:
            log.warning("uplink lost device=%s reason=%s", self.identity.device, reason)

    def start(self, wait: float = 10.0) -> "Uplink":
        self.client.connect_async(self.broker.host, self.broker.port, keepalive=self.keepalive)
        self.client.loop_start()
        if wait and not self._connected.wait(wait):
            self.client.loop_stop()
            raise UplinkError(f"could not connect to {self.broker.redacted()} within {wait:.0f} s")
        return self

    def stamp(self, model: type[M], *, at: datetime | None = None, **fields: Any) -> M:
        return self.stamper.stamp(model, at=at, **fields)

    def send(self, message: DeviceMessage) -> mqtt.MQTTMessageInfo:
        """Publish QoS 1; paho queues in memory while the link is down (issue 5 adds the disk outbox)."""
        return self.client.publish(
            topic_for(self.identity.site, self.identity.household, message), encode(message), qos=1
        )

    def send_raw(self, kind: TopicKind, payload: bytes, event_id: str | None = None) -> mqtt.MQTTMessageInfo:
        """Publish bytes as they are: snapshots, and deliberately broken messages in tests."""
        ident = self.identity
        return self.client.publish(topic(ident.site, ident.household, ident.device, kind, event_id), payload, qos=1)

    def stop(self, timeout: float = 10.0) -> None:
        """Mark the device offline (retained) and disconnect after in-flight messages are out."""
        if self._connected.is_set():
            offline = self.stamper.stamp(Status, type="status", state="offline", firmware=self.firmware)
            info = self.client.publish(self._status_topic, encode(offline), qos=1, retain=True)
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError) as exc:
                log.warning("uplink offline status not sent device=%s: %s", self.identity.device, exc)
        self.client.disconnect()
        self.client.loop_stop()
