"""Zigbee2MQTT payloads through a real Mosquitto become contract readings on the uplink."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import ValidationError

from edge.uplink import DeviceIdentity, Uplink
from firmware_bridge.readings import MemorySink
from firmware_bridge.zigbee import (
    Zigbee2MqttInput,
    ZigbeeSensor,
    availability_from_payload,
    sensor_id,
    values_from_state,
)
from isowatch.broker import DEVICE_ACL, GATEWAY_USER, BrokerUrl, MosquittoBroker
from isowatch.clock import ManualClock
from isowatch.contract import ContactReading, TemperatureReading, TopicKind, decode, subscription

WAIT = 15.0

# -- payload parsing -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "values"),
    [
        ({"contact": False, "battery": 91, "linkquality": 120}, {"open": True, "battery_pct": 91.0}),
        ({"contact": True, "voltage": 3005}, {"open": False}),
        ({"temperature": 21.37, "humidity": 48.2, "battery": 80}, {"celsius": 21.37, "battery_pct": 80.0}),
        ({"temperature": -3, "battery": 140}, {"celsius": -3.0}),  # a battery reading of 140 % is left out
        ({"humidity": 40}, {}),
        ({"contact": None, "temperature": None}, {}),
    ],
)
def test_values_from_zigbee2mqtt_state(payload: dict, values: dict) -> None:
    assert values_from_state(payload) == values


@pytest.mark.parametrize("payload", [[1, 2], "open", {"contact": "false"}, {"temperature": "21.5"}, {"temperature": True}, {"temperature": float("nan")}])
def test_malformed_state_values_are_refused(payload: object) -> None:
    with pytest.raises(ValueError):
        values_from_state(payload)


@pytest.mark.parametrize(
    ("payload", "state"),
    [(b'{"state": "online"}', True), (b'{"state":"offline"}', False), (b"online", True), (b"offline", False), (b"{}", None), (b"\xff", None), (b"[1]", None)],
)
def test_availability_in_2x_json_and_legacy_text(payload: bytes, state: bool | None) -> None:
    assert availability_from_payload(payload) == state


def test_sensor_ids_are_contract_safe() -> None:
    assert sensor_id("Front door/contact sensor") == "Front-door-contact-sensor"
    assert sensor_id("门") == "zigbee"
    assert len(sensor_id("x" * 200)) == 64


@pytest.mark.parametrize("name", ["door/+", "#", "a/availability"])
def test_wildcard_friendly_names_are_refused(name: str) -> None:
    with pytest.raises(ValidationError):
        ZigbeeSensor(friendly_name=name)


def offline_input(clock: ManualClock, **kwargs: object) -> tuple[Zigbee2MqttInput, MemorySink]:
    """The input without a broker: handle_message is the whole library part."""
    sink = MemorySink("edge-1", clock=clock)
    sensors = [ZigbeeSensor(friendly_name="front door"), ZigbeeSensor(friendly_name="bedroom thermo")]
    return Zigbee2MqttInput("mqtt://127.0.0.1:1", sensors, sink, clock=clock, **kwargs), sink  # type: ignore[arg-type]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None)
@given(
    payload=st.one_of(
        st.binary(max_size=80),
        st.dictionaries(st.sampled_from(["contact", "temperature", "battery", "humidity", "state"]), json_values, max_size=4).map(
            lambda d: json.dumps(d).encode()
        ),
    ),
    suffix=st.sampled_from(["", "/availability"]),
)
def test_any_payload_on_a_sensor_topic_never_raises(payload: bytes, suffix: str) -> None:
    zigbee, sink = offline_input(ManualClock())
    for message in zigbee.handle_message("zigbee2mqtt/front door" + suffix, payload):
        assert isinstance(message, (ContactReading, TemperatureReading))


def test_unchanged_values_are_repeated_only_after_the_repeat_interval() -> None:
    clock = ManualClock()
    zigbee, sink = offline_input(clock, repeat_after_s=600)
    topic = "zigbee2mqtt/front door"
    assert len(zigbee.handle_message(topic, b'{"contact": true, "battery": 90}')) == 1
    assert zigbee.handle_message(topic, b'{"contact": true, "battery": 89}') == []  # a battery report
    assert [m.open for m in zigbee.handle_message(topic, b'{"contact": false}')] == [True]  # type: ignore[attr-defined]
    clock.advance(601)
    assert [m.open for m in zigbee.handle_message(topic, b'{"contact": false}')] == [True]  # type: ignore[attr-defined]
    assert zigbee.counters.repeats_suppressed == 1
    assert len(sink.sent) == 3


def test_impossible_temperature_is_counted_not_forwarded() -> None:
    zigbee, sink = offline_input(ManualClock())
    assert zigbee.handle_message("zigbee2mqtt/bedroom thermo", b'{"temperature": 327.67}') == []
    assert zigbee.counters.bad_value == 1 and sink.sent == []


def test_unconfigured_devices_and_bridge_topics_are_ignored() -> None:
    zigbee, sink = offline_input(ManualClock())
    assert zigbee.handle_message("zigbee2mqtt/kitchen plug", b'{"state": "ON"}') == []
    assert zigbee.handle_message("zigbee2mqtt/bridge/state", b'{"state": "online"}') == []
    assert zigbee.counters.messages == 0


def test_a_sensor_that_says_nothing_for_too_long_is_reported_silent_once() -> None:
    clock = ManualClock()
    zigbee, _ = offline_input(clock, silent_after_s=7200)
    clock.advance(3600)
    zigbee.handle_message("zigbee2mqtt/front door", b'{"contact": true}')
    assert zigbee.check_silence() == []
    clock.advance(3601)
    assert zigbee.check_silence() == ["bedroom thermo"]  # never heard from since start
    clock.advance(3600)
    assert zigbee.check_silence() == ["front door"]
    assert zigbee.check_silence() == []
    assert zigbee.silent_sensors() == ["bedroom thermo", "front door"]
    zigbee.handle_message("zigbee2mqtt/front door", b'{"contact": true}')
    assert zigbee.silent_sensors() == ["bedroom thermo"]
    assert zigbee.counters.went_silent == 2


def test_availability_offline_makes_a_sensor_silent_at_once() -> None:
    zigbee, _ = offline_input(ManualClock())
    zigbee.handle_message("zigbee2mqtt/front door/availability", b'{"state": "offline"}')
    assert zigbee.silent_sensors() == ["front door"]
    zigbee.handle_message("zigbee2mqtt/front door/availability", b'{"state": "online"}')
    assert zigbee.silent_sensors() == []
    assert zigbee.counters.went_offline == 1


# -- through a real Mosquitto --------------------------------------------------------------

ZIGBEE_USER = "zigbee2mqtt"
# Our input reads with a user of its own: the broker names connections by user, so sharing Zigbee2MQTT's
# would make the two take turns disconnecting each other.
INPUT_USER = "edge-zigbee"


def mqtt_client(url: BrokerUrl, client_id: str) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    client.username_pw_set(url.username, url.password)
    return client


@pytest.fixture
def local_broker(mosquitto: MosquittoBroker) -> Iterator[MosquittoBroker]:
    """Our production Mosquitto, with an account that may use zigbee2mqtt/# as on the edge box."""
    mosquitto.acl_file.write_text(DEVICE_ACL.format(gateway=GATEWAY_USER)
                                  + "".join(f"\nuser {u}\ntopic readwrite zigbee2mqtt/#\n" for u in (ZIGBEE_USER, INPUT_USER)))
    mosquitto.add_user(INPUT_USER)
    mosquitto.add_user(ZIGBEE_USER)  # rewrites the passwords and sends SIGHUP, which rereads the ACL too
    # Wait (not assert on time) until the reload took effect: a probe must come back to us.
    probe = mqtt_client(mosquitto.url(ZIGBEE_USER), "acl-probe")
    got = threading.Event()
    probe.on_message = lambda *_: got.set()
    probe.on_connect = lambda c, *_: c.subscribe("zigbee2mqtt/probe", qos=1)
    probe.connect("127.0.0.1", mosquitto.port)
    probe.loop_start()
    deadline = time.monotonic() + WAIT
    while not got.is_set() and time.monotonic() < deadline:
        probe.publish("zigbee2mqtt/probe", b"1", qos=1)
        got.wait(0.2)
    probe.loop_stop()
    probe.disconnect()
    assert got.is_set(), "Mosquitto did not pick up the zigbee2mqtt ACL"
    yield mosquitto


def test_zigbee2mqtt_payloads_through_mosquitto_become_readings_on_the_uplink(local_broker: MosquittoBroker) -> None:
    # The gateway side: subscribe to readings of our site.
    readings: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
    gateway = mqtt_client(local_broker.url(), "test-gateway")
    subscribed = threading.Event()
    gateway.on_connect = lambda c, *_: c.subscribe(subscription("site-z", TopicKind.READING), qos=1)
    gateway.on_subscribe = lambda *_: subscribed.set()
    gateway.on_message = lambda c, u, msg: readings.put(msg)
    gateway.connect("127.0.0.1", local_broker.port)
    gateway.loop_start()
    uplink = Uplink(local_broker.add_user("edge-z-7"), DeviceIdentity("site-z", "hh-7", "edge-z-7")).start()
    sensors = [ZigbeeSensor(friendly_name="front door"), ZigbeeSensor(friendly_name="living room/thermo", sensor="livingroom")]
    zigbee = Zigbee2MqttInput(local_broker.url(INPUT_USER), sensors, uplink, silent_after_s=3600).start()
    z2m = mqtt_client(local_broker.url(ZIGBEE_USER), "zigbee2mqtt-bridge")
    z2m.connect("127.0.0.1", local_broker.port)
    z2m.loop_start()
    try:
        assert subscribed.wait(WAIT)
        # Zigbee2MQTT's own subscriptions are in place once it has connected; ours once start() returned,
        # but the SUBACK may still be in flight: publish the first state until a reading comes out.
        deadline = time.monotonic() + WAIT
        first = None
        while first is None and time.monotonic() < deadline:
            z2m.publish("zigbee2mqtt/front door", json.dumps({"contact": False, "battery": 91, "linkquality": 87}), qos=1)
            try:
                first = readings.get(timeout=0.5)
            except queue.Empty:
                pass
        assert first is not None, "no reading from the first Zigbee2MQTT payload"
        z2m.publish("zigbee2mqtt/living room/thermo", json.dumps({"temperature": 22.6, "humidity": 41, "battery": 77}), qos=1)
        z2m.publish("zigbee2mqtt/front door", json.dumps({"contact": True, "battery": 91}), qos=1)
        second, third = readings.get(timeout=WAIT), readings.get(timeout=WAIT)

        z2m.publish("zigbee2mqtt/living room/thermo/availability", json.dumps({"state": "offline"}), qos=1, retain=True)
        deadline = time.monotonic() + WAIT
        while zigbee.silent_sensors() != ["living room/thermo"] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert zigbee.silent_sensors() == ["living room/thermo"]
    finally:
        z2m.loop_stop()
        z2m.disconnect()
        zigbee.stop()
        uplink.stop()
        gateway.loop_stop()
        gateway.disconnect()

    decoded = [decode(m.topic, m.payload) for m in (first, second, third)]
    assert all(t.device == "edge-z-7" and t.household == "hh-7" for t, _ in decoded)
    opened, thermo, closed = (message for _, message in decoded)
    assert isinstance(opened, ContactReading) and (opened.open, opened.sensor, opened.battery_pct) == (True, "front-door", 91.0)
    assert isinstance(thermo, TemperatureReading)
    assert (thermo.celsius, thermo.subject, thermo.sensor, thermo.battery_pct, thermo.plausible) == (22.6, "ambient", "livingroom", 77.0, True)
    assert isinstance(closed, ContactReading) and closed.open is False
    assert zigbee.counters.went_offline == 1


def test_run_zigbee_sensor_worker_forwards_until_stopped(local_broker: MosquittoBroker) -> None:
    from firmware_bridge.zigbee import run_zigbee_sensor

    sink = MemorySink("edge-w")
    stop = threading.Event()
    worker = threading.Thread(target=run_zigbee_sensor, args=(local_broker.url(INPUT_USER), "hall contact", sink, stop), daemon=True)
    worker.start()
    z2m = mqtt_client(local_broker.url(ZIGBEE_USER), "zigbee2mqtt-bridge")
    z2m.connect("127.0.0.1", local_broker.port)
    z2m.loop_start()
    try:
        deadline = time.monotonic() + WAIT
        while not sink.sent and time.monotonic() < deadline:  # until the worker's subscription is in place
            z2m.publish("zigbee2mqtt/hall contact", json.dumps({"contact": False}), qos=1)
            time.sleep(0.2)
    finally:
        z2m.loop_stop()
        z2m.disconnect()
        stop.set()
        worker.join(WAIT)
    assert not worker.is_alive()
    assert isinstance(sink.sent[0], ContactReading) and sink.sent[0].open is True
    assert {m.sensor for m in sink.sent} == {"hall-contact"}


def test_start_fails_with_a_named_error_when_the_broker_refuses(mosquitto: MosquittoBroker) -> None:
    from firmware_bridge.zigbee import ZigbeeError

    bad = BrokerUrl("127.0.0.1", mosquitto.port, "nobody", "wrong")
    with pytest.raises(ZigbeeError):
        Zigbee2MqttInput(bad, [ZigbeeSensor(friendly_name="x")], MemorySink()).start(wait=1.0)


