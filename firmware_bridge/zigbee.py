"""Zigbee sensors published by Zigbee2MQTT on the edge box's local broker become contract readings.

Zigbee2MQTT publishes each device's state as JSON on `zigbee2mqtt/<friendly_name>`:
`{"contact": false, "battery": 91, ...}` from a door contact (false: the magnet is away, the door is
open) and `{"temperature": 21.4, "humidity": 48, "battery": 80}` from a thermometer. Since 2.0 it
publishes `{"state": "online"|"offline"}` on `.../availability` (older versions: the bare words).
A sensor that is offline, or has said nothing for `silent_after_s`, is reported silent.
"""

from __future__ import annotations

import json
import logging
import math
import re
import secrets
import threading
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import BaseModel, ConfigDict, Field, field_validator

from firmware_bridge.readings import ReadingSink, contact, temperature
from isowatch.broker import BrokerUrl
from isowatch.clock import Clock, SystemClock
from isowatch.contract import DeviceMessage

log = logging.getLogger(__name__)

DEFAULT_BASE_TOPIC = "zigbee2mqtt"
SENSOR_RANGE_C = (-40.0, 125.0)


class ZigbeeError(RuntimeError):
    """The Zigbee2MQTT input could not start (broker unreachable or refused us)."""


def sensor_id(friendly_name: str) -> str:
    """A contract-safe sensor id from a friendly name: 'Front door/contact' -> 'Front-door-contact'."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", friendly_name).strip("-")
    return (slug or "zigbee")[:64]


class ZigbeeSensor(BaseModel):
    """One Zigbee2MQTT device to follow."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    friendly_name: str = Field(min_length=1, max_length=200, description="As in Zigbee2MQTT's configuration")
    subject: Literal["ambient", "body"] = Field("ambient", description="What a temperature from it measures")
    sensor: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,64}$", description="Sensor id in readings")

    @field_validator("friendly_name")
    @classmethod
    def _no_wildcards(cls, value: str) -> str:
        # Zigbee2MQTT forbids these too; a '+' or '#' would make our subscription a wildcard.
        if any(ch in value for ch in "+#\x00") or value.endswith("/availability"):
            raise ValueError("friendly name must not contain '+', '#' or end in /availability")
        return value

    @property
    def sensor_id(self) -> str:
        return self.sensor or sensor_id(self.friendly_name)


@dataclass
class ZigbeeCounters:
    messages: int = 0
    readings: int = 0
    bad_payload: int = 0
    bad_value: int = 0
    repeats_suppressed: int = 0
    went_offline: int = 0
    went_silent: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class SensorHealth:
    """What we know about one sensor; `silent` is what the edge reports upstream."""

    available: bool | None = None  # None: Zigbee2MQTT has not said (availability may be disabled)
    last_seen: float | None = None  # monotonic time of its last state message
    silent: bool = False
    last_sent: dict[str, tuple[Any, float]] = field(default_factory=dict)  # key -> (value, when sent)


def values_from_state(payload: Any) -> dict[str, Any]:
    """The parts of a Zigbee2MQTT state payload we use: contact (bool), temperature (float), battery (0-100).

    Raises ValueError for payloads that are not a JSON object or carry a malformed value we use.
    """
    if not isinstance(payload, dict):
        raise ValueError("state payload is not a JSON object")
    values: dict[str, Any] = {}
    if "contact" in payload and payload["contact"] is not None:
        if not isinstance(payload["contact"], bool):
            raise ValueError(f"contact is not a boolean: {payload['contact']!r:.20}")
        values["open"] = not payload["contact"]  # contact true: magnet at the switch, door closed
    if "temperature" in payload and payload["temperature"] is not None:
        celsius = payload["temperature"]
        if isinstance(celsius, bool) or not isinstance(celsius, (int, float)) or not math.isfinite(celsius):
            raise ValueError(f"temperature is not a number: {celsius!r:.20}")
        values["celsius"] = float(celsius)
    battery = payload.get("battery")
    if isinstance(battery, (int, float)) and not isinstance(battery, bool) and 0 <= battery <= 100:
        values["battery_pct"] = float(battery)  # a battery outside 0-100 is left out, not fatal
    return values


def availability_from_payload(payload: bytes) -> bool | None:
    """True/False for online/offline in either the 2.x JSON or the legacy plain-text form; None if unreadable."""
    text = payload.decode("utf-8", "replace").strip()
    if text in ("online", "offline"):
        return text == "online"
    try:
        data = json.loads(text)
    except ValueError:
        return None
    state = data.get("state") if isinstance(data, dict) else None
    return {"online": True, "offline": False}.get(state) if isinstance(state, str) else None


class Zigbee2MqttInput:
    """Follows some Zigbee2MQTT devices on a broker and forwards their readings to a sink."""

    def __init__(
        self,
        broker: BrokerUrl | str,
        sensors: list[ZigbeeSensor],
        sink: ReadingSink,
        *,
        base_topic: str = DEFAULT_BASE_TOPIC,
        clock: Clock | None = None,
        silent_after_s: float = 2 * 3600.0,
        repeat_after_s: float = 600.0,
        check_every_s: float = 30.0,
        client_id: str | None = None,
    ) -> None:
        self.broker = BrokerUrl.parse(broker) if isinstance(broker, str) else broker
        self.sink = sink
        self.base_topic = base_topic.rstrip("/")
        self.clock = clock or SystemClock()
        # Contact sensors report about hourly even when nothing happens; two hours of nothing is silence.
        self.silent_after_s = silent_after_s
        # Zigbee2MQTT republishes the whole state on every change (a battery update repeats "contact"),
        # so an unchanged value is forwarded again only after this long.
        self.repeat_after_s = repeat_after_s
        self.check_every_s = check_every_s
        self.counters = ZigbeeCounters()
        self._sensors = {s.friendly_name: s for s in sensors}
        self._health = {name: SensorHealth() for name in self._sensors}
        self._started_at = self.clock.monotonic()
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._stop = threading.Event()
        self._watchdog: threading.Thread | None = None
        # A fixed id shared by two inputs (two sensor workers, two agents on one box) made the broker
        # disconnect each in turn whenever the other reconnected; a clean session needs no stable id.
        client_id = client_id or f"isowatch-zigbee-{secrets.token_hex(4)}"
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True, protocol=mqtt.MQTTv311)
        if self.broker.username:
            self.client.username_pw_set(self.broker.username, self.broker.password)
        if self.broker.tls:
            self.client.tls_set()
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    # -- topics -----------------------------------------------------------------------------

    def state_topic(self, name: str) -> str:
        return f"{self.base_topic}/{name}"

    def availability_topic(self, name: str) -> str:
        return f"{self.base_topic}/{name}/availability"

    # -- MQTT plumbing ----------------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.error("zigbee2mqtt broker refused us broker=%s reason=%s", self.broker.redacted(), reason)
            return
        # Subscribing here, not once after connect, so a reconnect restores the subscriptions.
        topics = [(self.state_topic(n), 1) for n in self._sensors] + [(self.availability_topic(n), 1) for n in self._sensors]
        if topics:
            client.subscribe(topics)
        self._connected.set()
        log.info("zigbee2mqtt input connected broker=%s sensors=%d", self.broker.redacted(), len(self._sensors))

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._connected.clear()
        if reason.is_failure:
            log.warning("zigbee2mqtt broker lost broker=%s reason=%s", self.broker.redacted(), reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            self.handle_message(message.topic, bytes(message.payload))
        except Exception:  # one bad message or a sink hiccup must not kill paho's network thread
            log.exception("zigbee2mqtt message handling failed topic=%s", message.topic)

    def start(self, wait: float = 10.0) -> "Zigbee2MqttInput":
        self.client.connect_async(self.broker.host, self.broker.port, keepalive=30)
        self.client.loop_start()
        if wait and not self._connected.wait(wait):
            self.client.loop_stop()
            raise ZigbeeError(f"could not connect to {self.broker.redacted()} within {wait:.0f} s")
        self._stop.clear()
        self._watchdog = threading.Thread(target=self._watch, name="zigbee-silence", daemon=True)
        self._watchdog.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._watchdog is not None:
            self._watchdog.join(10)
        self.client.disconnect()
        self.client.loop_stop()

    def _watch(self) -> None:
        while not self._stop.wait(self.check_every_s):
            self.check_silence()

    # -- the library part: testable without a broker ----------------------------------------

    def handle_message(self, topic: str, payload: bytes) -> list[DeviceMessage]:
        """Turn one Zigbee2MQTT message into readings, sent to the sink and returned. Never raises on bad input."""
        prefix = self.base_topic + "/"
        if not topic.startswith(prefix):
            return []
        rest = topic[len(prefix) :]
        if rest.endswith("/availability") and rest[: -len("/availability")] in self._sensors:
            self._availability(rest[: -len("/availability")], payload)
            return []
        sensor = self._sensors.get(rest)
        if sensor is None:
            return []
        self.counters.messages += 1
        try:
            values = values_from_state(json.loads(payload))
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            self.counters.bad_payload += 1
            log.warning("zigbee2mqtt bad payload sensor=%s error=%s", rest, exc)
            return []
        now = self.clock.monotonic()
        with self._lock:
            health = self._health[rest]
            health.last_seen = now
            if health.silent:
                health.silent = False
                log.info("zigbee sensor heard again sensor=%s", rest)
        return self._forward(sensor, values, health, now)

    def _forward(self, sensor: ZigbeeSensor, values: dict[str, Any], health: SensorHealth, now: float) -> list[DeviceMessage]:
        out: list[DeviceMessage] = []
        battery = values.get("battery_pct")
        if "open" in values and self._due(health, "open", values["open"], now):
            out.append(contact(self.sink, values["open"], sensor=sensor.sensor_id, battery_pct=battery))
        if "celsius" in values:
            celsius = values["celsius"]
            low, high = SENSOR_RANGE_C
            if not low <= celsius <= high:
                self.counters.bad_value += 1
                log.warning("zigbee2mqtt impossible temperature sensor=%s celsius=%s", sensor.friendly_name, celsius)
            elif self._due(health, "celsius", celsius, now):
                out.append(temperature(self.sink, celsius, subject=sensor.subject, sensor=sensor.sensor_id, battery_pct=battery))
        for message in out:
            self.sink.send(message)
        self.counters.readings += len(out)
        return out

    def _due(self, health: SensorHealth, key: str, value: Any, now: float) -> bool:
        with self._lock:
            previous = health.last_sent.get(key)
            if previous is not None and previous[0] == value and now - previous[1] < self.repeat_after_s:
                self.counters.repeats_suppressed += 1
                return False
            health.last_sent[key] = (value, now)
            return True

    def _availability(self, name: str, payload: bytes) -> None:
        state = availability_from_payload(payload)
        if state is None:
            self.counters.bad_payload += 1
            log.warning("zigbee2mqtt bad availability payload sensor=%s", name)
            return
        with self._lock:
            health = self._health[name]
            was = health.available
            health.available = state
        if state is False and was is not False:
            self.counters.went_offline += 1
            log.warning("zigbee sensor offline sensor=%s", name)
        elif state and was is False:
            log.info("zigbee sensor online again sensor=%s", name)
        self.check_silence()  # report an offline sensor now, not at the next watchdog round

    def check_silence(self) -> list[str]:
        """Sensors that went silent since the last check (offline, or nothing for `silent_after_s`)."""
        now = self.clock.monotonic()
        newly: list[str] = []
        with self._lock:
            for name, health in self._health.items():
                heard = health.last_seen if health.last_seen is not None else self._started_at
                quiet = health.available is False or now - heard > self.silent_after_s
                if quiet and not health.silent:
                    health.silent = True
                    newly.append(name)
                elif not quiet and health.silent:
                    health.silent = False
        for name in newly:
            self.counters.went_silent += 1
            log.warning("zigbee sensor silent sensor=%s silent_after_s=%.0f", name, self.silent_after_s)
        return newly

    def silent_sensors(self) -> list[str]:
        """Every sensor currently silent or offline: what the edge heartbeat will report."""
        self.check_silence()
        with self._lock:
            return sorted(name for name, h in self._health.items() if h.silent)

    def health(self) -> dict[str, SensorHealth]:
        with self._lock:
            return {name: SensorHealth(h.available, h.last_seen, h.silent, dict(h.last_sent)) for name, h in self._health.items()}


def run_zigbee_sensor(
    broker: BrokerUrl | str,
    friendly_name: str | list[str],
    sink: ReadingSink,
    stop: threading.Event,
    *,
    subject: Literal["ambient", "body"] = "ambient",
    retry_s: float = 5.0,
    **options: Any,
) -> None:
    """Follow one (or several) Zigbee2MQTT devices until `stop`: the edge agent's sensor worker.

    The agent runs one worker per local broker with all of that broker's sensors: a broker that uses the
    username as client id (ours does) lets only one connection per user stay connected.

    A broker that is not up yet (Zigbee2MQTT's Mosquitto starting after us at boot) is retried,
    never raised: the worker must outlive it.
    """
    names = [friendly_name] if isinstance(friendly_name, str) else friendly_name
    sensors = [ZigbeeSensor(friendly_name=name, subject=subject) for name in names]
    while not stop.is_set():
        zigbee = Zigbee2MqttInput(broker, sensors, sink, **options)
        try:
            zigbee.start(wait=retry_s)
        except ZigbeeError as exc:
            log.warning("zigbee2mqtt input not started error=%s retry_s=%.0f", exc, retry_s)
            stop.wait(retry_s)
            continue
        try:
            stop.wait()
        finally:
            zigbee.stop()
        return
