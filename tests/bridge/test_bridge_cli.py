"""`isowatch bridge read|run` against real peers: pymodbus's RTU server and the simulated firmware on ptys."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from click.testing import CliRunner
from paho.mqtt.enums import CallbackAPIVersion

from firmware_bridge import line_protocol as lp
from firmware_bridge.modbus_simulator import SimulatedModbusModule
from firmware_bridge.simulator import SimulatedFirmware
from firmware_bridge.virtual_port import NullModem, VirtualPort
from isowatch.contract import ContactReading, TemperatureReading, TopicKind, decode, subscription, topic_for
from isowatch_app.cli import cli

WAIT = 20.0


@pytest.fixture
def wire(tmp_path: Path) -> Iterator[NullModem]:
    with NullModem(tmp_path / "module-side", tmp_path / "usb-rs485") as modem:
        yield modem


@pytest.fixture
def module(wire: NullModem) -> Iterator[SimulatedModbusModule]:
    with SimulatedModbusModule(str(wire.a.link), unit=3, input_registers={0: 231, 1: 0xFFEC}, holding_registers={0: 3655}) as sim:
        yield sim


def parse_reading(line: str) -> TemperatureReading | ContactReading:
    data = json.loads(line)
    _, message = decode(topic_for("s", "h", _shim(data)), line.encode())
    assert isinstance(message, (TemperatureReading, ContactReading))
    return message


def _shim(data: dict) -> object:
    class _M:  # topic_for needs only .device and .type
        device = data["device"]
        type = data["type"]

    return _M()


def test_read_modbus_prints_one_json_reading(wire: NullModem, module: SimulatedModbusModule) -> None:
    result = CliRunner().invoke(
        cli, ["bridge", "read", "--port", str(wire.b.link), "--protocol", "modbus", "--unit", "3", "--register", "0", "--scale", "0.1", "--json"]
    )
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    reading = parse_reading(lines[0])
    assert isinstance(reading, TemperatureReading)
    assert (reading.celsius, reading.subject, reading.sensor, reading.device) == (23.1, "ambient", "modbus-3", "bench")


def test_read_with_a_preset_and_hex_register_prints_a_human_line(wire: NullModem, module: SimulatedModbusModule) -> None:
    result = CliRunner().invoke(cli, ["bridge", "read", "--port", str(wire.b.link), "--preset", "xy-md02", "--unit", "3", "--register", "0x0001"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "temperature -2.00 C ambient sensor=modbus-3"


def test_read_holding_body_register_flags_nothing_at_36_55(wire: NullModem, module: SimulatedModbusModule) -> None:
    args = ["--function", "holding", "--register", "0", "--scale", "0.01", "--subject", "body", "--unit", "3", "--json"]
    result = CliRunner().invoke(cli, ["bridge", "read", "--port", str(wire.b.link), *args])
    assert result.exit_code == 0, result.output
    reading = parse_reading(result.output.strip())
    assert (reading.celsius, reading.subject, reading.plausible) == (36.55, "body", True)  # type: ignore[union-attr]


def test_read_fails_cleanly_when_nothing_answers(wire: NullModem) -> None:
    result = CliRunner().invoke(cli, ["bridge", "read", "--port", str(wire.b.link), "--register", "0", "--timeout", "0.3"])
    assert result.exit_code == 1
    assert "no answer from unit 1" in result.output


def test_read_fails_cleanly_on_a_missing_port(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["bridge", "read", "--port", str(tmp_path / "nope"), "--register", "0"])
    assert result.exit_code == 1
    assert "no such serial port" in result.output


def test_read_refuses_a_register_outside_16_bits(wire: NullModem) -> None:
    result = CliRunner().invoke(cli, ["bridge", "read", "--port", str(wire.b.link), "--register", "0x10000"])
    assert result.exit_code == 2
    assert "0..0xFFFF" in result.output


def firmware_thread(sim: SimulatedFirmware, frames: list[lp.Frame]) -> threading.Thread:
    """The firmware side: each frame resent until the bridge acknowledges it, as the spec says."""

    def run() -> None:
        for frame in frames:
            if sim.send_until_acked(frame, timeout=WAIT) is None:
                return

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


FRAMES: list[lp.Frame] = [
    lp.Hello(seq=0, ack=True, device_id="nano-7", firmware="0.9.1"),
    lp.Battery(seq=1, ack=True, pct=64),
    lp.BodyTemperature(seq=2, ack=True, centi_c=3841, method="tympanic"),
    lp.DoorContact(seq=3, ack=True, open=True, sensor="front"),
    lp.BodyTemperature(seq=4, ack=True, centi_c=4460, method="oral"),
]


def test_run_stdout_streams_firmware_readings_and_stops_after_count(tmp_path: Path) -> None:
    with VirtualPort(tmp_path / "usb-nano") as port, SimulatedFirmware(port) as sim:
        feeder = firmware_thread(sim, FRAMES)
        result = CliRunner().invoke(cli, ["bridge", "run", "--port", str(port.link), "--stdout", "--count", "3", "--for", "60"])
        feeder.join(WAIT)
    assert result.exit_code == 0, result.output
    readings = [parse_reading(line) for line in result.output.strip().splitlines()]
    assert [r.type for r in readings] == ["temperature", "contact", "temperature"]
    fever, door, implausible = readings
    assert (fever.celsius, fever.method, fever.plausible, fever.battery_pct, fever.sensor) == (38.41, "tympanic", True, 64.0, "nano-7")  # type: ignore[union-attr]
    assert (door.open, door.sensor) == (True, "front")  # type: ignore[union-attr]
    assert (implausible.celsius, implausible.plausible) == (44.6, False)  # type: ignore[union-attr]


def test_run_for_seconds_ends_on_a_silent_port(tmp_path: Path) -> None:
    with VirtualPort(tmp_path / "usb-quiet") as port:
        result = CliRunner().invoke(cli, ["bridge", "run", "--port", str(port.link), "--stdout", "--for", "0.3"])
    assert result.exit_code == 0, result.output
    assert result.output == ""


def test_run_modbus_stdout_polls_until_count(wire: NullModem, module: SimulatedModbusModule) -> None:
    args = ["--protocol", "modbus", "--preset", "xy-md02", "--unit", "3", "--interval", "0.05", "--count", "2", "--stdout", "--for", "60"]
    result = CliRunner().invoke(cli, ["bridge", "run", "--port", str(wire.b.link), *args])
    assert result.exit_code == 0, result.output
    readings = [parse_reading(line) for line in result.output.strip().splitlines()]
    assert [r.celsius for r in readings] == [-2.0, -2.0]  # type: ignore[union-attr]
    assert [r.seq for r in readings] == [1, 2]


def test_run_without_an_uplink_or_stdout_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["bridge", "run", "--port", str(tmp_path / "x"), "--site", "s1"])
    assert result.exit_code == 2
    assert "--broker, --household, --device" in result.output


def test_run_publishes_through_the_outbox_to_a_real_broker(tmp_path: Path, mosquitto) -> None:
    device_url = mosquitto.add_user("edge-3-502")
    received: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
    gateway = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-gateway")
    gw = mosquitto.url()
    gateway.username_pw_set(gw.username, gw.password)
    subscribed = threading.Event()
    gateway.on_connect = lambda c, *_: c.subscribe(subscription("site-a", TopicKind.READING), qos=1)
    gateway.on_subscribe = lambda *_: subscribed.set()
    gateway.on_message = lambda c, u, msg: received.put(msg)
    gateway.connect("127.0.0.1", mosquitto.port)
    gateway.loop_start()
    try:
        assert subscribed.wait(WAIT)
        with VirtualPort(tmp_path / "usb-nano") as port, SimulatedFirmware(port) as sim:
            feeder = firmware_thread(sim, FRAMES[:3])
            args = ["--broker", str(device_url), "--site", "site-a", "--household", "hh-3-502", "--device", "edge-3-502",
                    "--outbox", str(tmp_path / "outbox.db")]
            result = CliRunner().invoke(cli, ["bridge", "run", "--port", str(port.link), *args, "--count", "1", "--for", "60"])
            feeder.join(WAIT)
        assert result.exit_code == 0, result.output
        message = received.get(timeout=WAIT)
    finally:
        gateway.loop_stop()
        gateway.disconnect()
    assert message.topic == "isowatch/v1/site-a/hh-3-502/edge-3-502/reading"
    parsed, reading = decode(message.topic, message.payload)
    assert isinstance(reading, TemperatureReading)
    assert (reading.celsius, reading.subject, reading.method, reading.device) == (38.41, "body", "tympanic", "edge-3-502")


def test_read_line_protocol_prints_the_first_reading(tmp_path: Path) -> None:
    with VirtualPort(tmp_path / "usb-nano") as port, SimulatedFirmware(port) as sim:
        feeder = firmware_thread(sim, FRAMES[:3])  # up to the first reading: nobody acknowledges after it
        result = CliRunner().invoke(cli, ["bridge", "read", "--protocol", "line", "--port", str(port.link), "--wait", "30"])
        feeder.join(WAIT)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "temperature 38.41 C body tympanic sensor=nano-7 battery=64%"


def test_read_line_protocol_gives_up_after_the_wait(tmp_path: Path) -> None:
    with VirtualPort(tmp_path / "usb-quiet") as port:
        result = CliRunner().invoke(cli, ["bridge", "read", "--protocol", "line", "--port", str(port.link), "--wait", "0.3"])
    assert result.exit_code == 1
    assert "0 of 1 readings" in result.output


def test_read_without_register_or_preset_names_the_missing_option(tmp_path: Path) -> None:
    (tmp_path / "ttyX").touch()
    result = CliRunner().invoke(cli, ["bridge", "read", "--port", str(tmp_path / "ttyX")])
    assert result.exit_code == 2
    assert "--register: Field required" in result.output


def test_presets_command_lists_the_xy_md02() -> None:
    result = CliRunner().invoke(cli, ["bridge", "presets"])
    assert result.exit_code == 0
    assert "xy-md02: input register 0x0001, signed x0.1, unit 1, 9600 8N1" in result.output
