"""The paho internals gateway/ingest.py overrides, named one by one, so a paho upgrade fails here first.

`_GatewayClient` replaces paho's `loop_read`, calls `_sock_recv`, `_loop_rc_handle`, `_easy_log` and
`_packet_handle`, fills `_in_packet` the way paho's reader leaves it, and queues raw bytes through
`_packet_queue` with command 0 so paho's after-write care (on_publish, close after DISCONNECT) skips
them. None of that is public API: pyproject.toml pins paho to the minor version checked here.
"""

from __future__ import annotations

import inspect
import queue
import tomllib
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from gateway.ingest import _RAW_WRITE, _GatewayClient
from gateway.store_process import Inbound
from isowatch import mqtt_wire
from tests.mqtt_peer import BrokerPeer
from tests.support import wait_until

WAIT_S = 30.0

# name -> the parameters ingest passes or overrides with (after self).
PAHO_METHODS = {
    "loop_read": ["max_packets"],  # overridden: paho's network thread calls it on every readable socket
    "_sock_recv": ["bufsize"],
    "_loop_rc_handle": ["rc"],
    "_easy_log": ["level", "fmt", "args"],
    "_packet_handle": [],  # reads the packet from self._in_packet
    "_packet_queue": ["command", "packet", "mid", "qos", "info"],
}
# The state paho's own reader leaves in _in_packet before it calls _packet_handle.
IN_PACKET_KEYS = {"command", "have_remaining", "remaining_count", "remaining_mult", "remaining_length", "packet",
                  "to_process", "pos"}
PAHO_ATTRIBUTES = ["_sock", "_msgtime_mutex", "_last_bytes_received", "_protocol", "_in_packet", "_out_packet"]


def paho_pins(root: Path) -> list[str]:
    extras = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    return [requirement for name in ("edge", "gateway") for requirement in extras[name]
            if requirement.startswith("paho-mqtt")]


def test_paho_is_pinned_to_one_minor_version_and_the_installed_one_is_in_it(repo_root: Path) -> None:
    pins = paho_pins(repo_root)
    assert len(pins) == 2 and pins[0] == pins[1], pins  # the edge and the gateway install the same paho
    spec = SpecifierSet(pins[0].removeprefix("paho-mqtt"))
    lower = Version(next(s.version for s in spec if s.operator == ">="))
    upper = Version(next(s.version for s in spec if s.operator == "<"))
    assert (upper.major, upper.minor) == (lower.major, lower.minor + 1), f"{pins[0]} spans more than one minor"
    installed = version("paho-mqtt")
    assert installed in spec, f"paho-mqtt {installed} installed, {pins[0]} pinned: run this file's tests, then move both"


@pytest.mark.parametrize("name", PAHO_METHODS)
def test_paho_still_has_each_method_ingest_overrides_or_calls(name: str) -> None:
    method = getattr(mqtt.Client, name, None)
    assert callable(method), f"paho.mqtt.client.Client.{name} is gone: gateway/ingest.py relies on it"
    params = list(inspect.signature(method).parameters)[1:]
    assert params == PAHO_METHODS[name], f"Client.{name}{inspect.signature(method)} changed"


def test_paho_still_has_the_state_and_names_ingest_reads() -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    for name in PAHO_ATTRIBUTES:
        assert hasattr(client, name), f"paho's client no longer has {name}"
    assert set(client._in_packet) == IN_PACKET_KEYS
    assert issubclass(mqtt.MalformedPacket, Exception)
    assert callable(mqtt.time_func)
    assert mqtt.PUBLISH == mqtt_wire.PUBLISH and mqtt.MQTT_LOG_ERR
    assert _RAW_WRITE not in {mqtt.PUBLISH, mqtt.DISCONNECT}  # no after-care for our own writes
    assert MQTTErrorCode.MQTT_ERR_PROTOCOL and MQTTErrorCode.MQTT_ERR_CONN_LOST


class GatewayLink:
    """ingest's paho client connected to a BrokerPeer, with what its callbacks saw."""

    def __init__(self) -> None:
        self.peer = BrokerPeer()
        self.inbound: queue.Queue[list[Inbound]] = queue.Queue()
        self.events: queue.Queue[str] = queue.Queue()
        self.client = _GatewayClient(CallbackAPIVersion.VERSION2, client_id="guard", clean_session=False,
                                     protocol=mqtt.MQTTv311, manual_ack=True, on_publishes=self.inbound.put)
        self.client.reconnect_delay_set(min_delay=30, max_delay=30)  # one connection per test
        self.client.on_connect = lambda *args: self.events.put("connected")
        self.client.on_subscribe = lambda _c, _u, mid, _codes, _p: self.events.put(f"subscribed {mid}")
        self.client.on_disconnect = lambda *args: self.events.put("disconnected")
        self.client.on_publish = lambda _c, _u, mid, *_: self.events.put(f"published {mid}")
        self.client.connect("127.0.0.1", self.peer.port, keepalive=0)
        self.peer.accept()
        self.client.loop_start()
        assert self.events.get(timeout=WAIT_S) == "connected"  # the CONNACK went through _packet_handle

    def publishes(self, count: int) -> list[Inbound]:
        got: list[Inbound] = []
        while len(got) < count:
            got += self.inbound.get(timeout=WAIT_S)
        return got

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self.peer.close()


@pytest.fixture
def gateway_link() -> Iterator[GatewayLink]:
    link = GatewayLink()
    yield link
    link.close()


def test_ingest_reads_publishes_from_any_split_and_hands_other_packets_to_paho(gateway_link: GatewayLink) -> None:
    peer = gateway_link.peer
    _result, mid = gateway_link.client.subscribe("isowatch/+/status", qos=1)
    subscribe, _raw = peer.next_frame()
    assert subscribe.first_byte == 0x82 and int.from_bytes(subscribe.body[:2], "big") == mid
    messages = [mqtt_wire.Publish(f"isowatch/s1/h{n}/d{n}/status".encode(), b"{}" * n, n % 2 * (n + 1), n % 2,
                                  n == 3, False) for n in range(40)]
    stream = (mqtt_wire.packet(0x90, mid.to_bytes(2, "big") + b"\x01")  # SUBACK: paho's handler, on_subscribe
              + b"".join(mqtt_wire.publish(m.topic, m.payload, qos=m.qos, retain=m.retain, packet_id=m.packet_id)
                         for m in messages))
    for start in range(0, len(stream), 7):  # seven bytes a write: lengths, topics and ids split every way
        peer.send(stream[start:start + 7])
    assert gateway_link.publishes(len(messages)) == [m[:5] for m in messages]
    assert gateway_link.events.get(timeout=WAIT_S) == f"subscribed {mid}"


def test_ingest_writes_prebuilt_packets_as_they_are_with_no_after_care(gateway_link: GatewayLink) -> None:
    packets = [mqtt_wire.pubacks([1, 2, 65_535]), mqtt_wire.publish("isowatch/s1/h1/d1/ack", b"{}")]
    gateway_link.client.write_packets(packets)
    got = b""
    while len(got) < len(b"".join(packets)):
        got += gateway_link.peer.next_frame()[1]
    assert got == b"".join(packets)
    assert gateway_link.events.empty()  # no on_publish for bytes paho did not build


@pytest.mark.parametrize("malformed", [b"\x36\x05\x00\x01a\x00\x01", b"\x32\x05\x00\x01a\x00\x00",
                                       b"\x30\xff\xff\xff\xff\x01"], ids=["QoS 3", "packet id 0", "5-byte length"])
def test_ingest_drops_the_connection_on_a_malformed_frame_after_the_good_ones(gateway_link: GatewayLink,
                                                                             malformed: bytes) -> None:
    good = mqtt_wire.publish("isowatch/s1/h1/d1/status", b"{}", qos=1, packet_id=7)
    gateway_link.peer.send(good + malformed)
    assert gateway_link.publishes(1) == [(b"isowatch/s1/h1/d1/status", b"{}", 7, 1, False)]
    assert gateway_link.peer.closed_by_client()
    wait_until(lambda: "disconnected" in list(gateway_link.events.queue), WAIT_S, what="on_disconnect")
