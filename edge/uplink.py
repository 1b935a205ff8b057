"""The edge's MQTT connection: birth and Last Will on the retained status topic, the gateway's acks and
pushed config coming back, QoS 1 publishes going out.

A real edge box never publishes directly: edge/courier.py drains the durable outbox through `publish`.
`stamp` + `send` (no outbox) are for simulators and tests that play a device on the wire.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import ValidationError

from isowatch import __version__
from isowatch.broker import BrokerUrl
from isowatch.contract import DeviceMessage, GatewayAck, Status, TopicKind, encode, topic, topic_for
from isowatch.stamper import M, Stamper

log = logging.getLogger(__name__)

class UplinkError(RuntimeError):
    pass


@dataclass(frozen=True)
class DeviceIdentity:
    site: str
    household: str
    device: str


# Status messages are retained state, not part of the device's numbered stream.
STATUS_SEQ = 0

# Connections lost this soon after connecting, this many times in a row, look like a second process
# connecting with the same broker user: the broker names connections by user and drops the older one.
SHORT_CONNECTION_S = 10.0
SHORT_CONNECTIONS_REPORTED = 3


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
        on_ack: Callable[[GatewayAck], None] | None = None,
        on_config: Callable[[bytes], None] | None = None,
        status_fields: Callable[[], dict[str, Any]] | None = None,
        reconnect_max_s: int = 30,
    ) -> None:
        self.broker = BrokerUrl.parse(broker) if isinstance(broker, str) else broker
        self.identity = identity
        self.stamper = stamper or Stamper(identity.device)
        self.firmware = firmware
        self.keepalive = keepalive
        self.on_ack = on_ack
        self.on_config = on_config
        self.status_fields = status_fields or dict
        self.connections = 0  # how many times we connected; the courier resends everything on a new one
        self.short_connections = 0  # lost within SHORT_CONNECTION_S of connecting, in a row
        self._connected_at = 0.0
        self._connected = threading.Event()
        self._status_topic = self._topic(TopicKind.STATUS)
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            # Our Mosquitto names a connection by its user whatever we send; sending the user name too keeps
            # brokers that instead refuse a client id other than the user name (docs/deployment.md) working.
            client_id=self.broker.username or f"edge-{identity.device}",
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        if self.broker.username:
            self.client.username_pw_set(self.broker.username, self.broker.password)
        if self.broker.tls:
            self.client.tls_set()
        self.client.max_queued_messages_set(0)
        self.client.max_inflight_messages_set(1000)
        self.client.reconnect_delay_set(min_delay=1, max_delay=reconnect_max_s)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_pre_connect = self._set_will

    def _set_will(self, client: mqtt.Client, userdata: Any) -> None:
        """A fresh Last Will before every connect and reconnect, stamped with this connection's start: one made
        once at start carries a time older than every later birth. The gateway orders status by its
        receive time anyway; the device time is what a person reading the retained topic sees."""
        will = self.stamper.make(Status, STATUS_SEQ, type="status", state="offline", firmware=self.firmware)
        client.will_set(self._status_topic, encode(will), qos=1, retain=True)

    def _topic(self, kind: TopicKind, event_id: str | None = None) -> str:
        ident = self.identity
        return topic(ident.site, ident.household, ident.device, kind, event_id)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.error("uplink refused device=%s reason=%s", self.identity.device, reason)
            if reason in ("Bad user name or password", "Not authorized"):
                client.disconnect()  # retrying bad credentials only hammers the broker
            return
        subscriptions = [(self._topic(TopicKind.ACK), 1)] if self.on_ack else []
        if self.on_config:
            subscriptions.append((self._topic(TopicKind.CONFIG), 1))
        if subscriptions:
            client.subscribe(subscriptions)
        self.publish_status()
        self.connections += 1
        self._connected_at = time.monotonic()
        self._connected.set()
        log.info("uplink connected device=%s", self.identity.device)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            if msg.topic.endswith("/" + TopicKind.ACK.value) and self.on_ack:
                self.on_ack(GatewayAck.model_validate_json(msg.payload))
            elif msg.topic.endswith("/" + TopicKind.CONFIG.value) and self.on_config:
                self.on_config(bytes(msg.payload))
        except ValidationError as exc:
            log.warning("uplink ignored bad message topic=%s error=%s", msg.topic, exc.errors()[0]["msg"])
        except Exception:  # one bad handler call must not stop the network loop
            log.exception("uplink handler failed topic=%s", msg.topic)

    def publish_status(self, state: str = "online") -> mqtt.MQTTMessageInfo:
        status = self.stamper.make(Status, STATUS_SEQ, type="status", state=state, firmware=self.firmware,
                                   **self.status_fields())
        return self.client.publish(self._status_topic, encode(status), qos=1, retain=True)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        if not reason.is_failure:
            return
        log.warning("uplink lost device=%s reason=%s", self.identity.device, reason)
        if not was_connected:
            return
        if time.monotonic() - self._connected_at >= SHORT_CONNECTION_S:
            self.short_connections = 0
            return
        self.short_connections += 1
        if self.short_connections in (SHORT_CONNECTIONS_REPORTED, 10 * SHORT_CONNECTIONS_REPORTED):
            log.error("uplink keeps losing its connection right after connecting device=%s times=%d: is another "
                      "process connecting with this device's broker user? Each needs its own (docs/deployment.md)",
                      self.identity.device, self.short_connections)

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
        """Publish QoS 1; paho queues in memory while the link is down (the disk outbox is edge.outbox)."""
        return self.client.publish(
            topic_for(self.identity.site, self.identity.household, message), encode(message), qos=1
        )

    def send_raw(self, kind: TopicKind, payload: bytes, event_id: str | None = None) -> mqtt.MQTTMessageInfo:
        """Publish bytes as they are: outbox rows, snapshots, deliberately broken messages in tests."""
        return self.client.publish(self._topic(kind, event_id), payload, qos=1)

    def stop(self, timeout: float = 10.0) -> None:
        """Mark the device offline (retained) and disconnect after in-flight messages are out."""
        if self._connected.is_set():
            info = self.publish_status("offline")
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError) as exc:
                log.warning("uplink offline status not sent device=%s: %s", self.identity.device, exc)
        self.client.disconnect()
        self.client.loop_stop()
