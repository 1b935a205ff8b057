"""Modbus RTU thermometers: register decoding, presets, and polls against pymodbus's RTU server on ptys."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from firmware_bridge.errors import ModbusReadError, PresetError
from firmware_bridge.modbus import ModbusThermometer, ModbusThermometerConfig, decode_register
from firmware_bridge.modbus_simulator import SimulatedModbusModule
from firmware_bridge.presets import PRESETS, preset
from firmware_bridge.readings import MemorySink
from firmware_bridge.serial_link import Backoff
from firmware_bridge.virtual_port import NullModem
from isowatch.contract import TemperatureReading, decode, encode, topic_for

# -- decoding ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "signed", "scale", "offset", "celsius"),
    [
        (215, True, 0.1, 0.0, 21.5),
        (0xFF38, True, 0.1, 0.0, -20.0),  # -200 in two's complement
        (0xFF38, False, 0.1, 0.0, 6533.6),
        (0x8000, True, 0.1, 0.0, -3276.8),
        (0x7FFF, True, 0.1, 0.0, 3276.7),
        (3712, True, 0.01, 0.0, 37.12),
        (0, True, 0.1, -40.0, -40.0),
        (1650, False, 0.1, -40.0, 125.0),
        (1, False, 1.0, 0.0, 1.0),
    ],
)
def test_decode_register_signed_unsigned_scale_offset(raw: int, signed: bool, scale: float, offset: float, celsius: float) -> None:
    assert decode_register(raw, signed=signed, scale=scale, offset=offset) == celsius


@given(st.integers(-32768, 32767))
def test_signed_decoding_inverts_twos_complement(value: int) -> None:
    assert decode_register(value & 0xFFFF, signed=True, scale=1.0) == value


@pytest.mark.parametrize("raw", [-1, 0x10000])
def test_decode_register_refuses_values_that_are_not_16_bit(raw: int) -> None:
    with pytest.raises(ValueError):
        decode_register(raw, signed=True, scale=0.1)


# -- configuration and presets -------------------------------------------------------------


def test_defaults_are_9600_8n1_not_pymodbus_19200() -> None:
    config = ModbusThermometerConfig(address=0)
    assert (config.baudrate, config.bytesize, config.parity, config.stopbits) == (9600, 8, "N", 1)
    assert (config.unit, config.function, config.signed, config.scale) == (1, "input", True, 0.1)


@pytest.mark.parametrize(("given_function", "name", "code"), [(3, "holding", 3), ("4", "input", 4), ("0x03", "holding", 3), ("input", "input", 4)])
def test_function_accepts_datasheet_codes(given_function: object, name: str, code: int) -> None:
    config = ModbusThermometerConfig(address=0, function=given_function)  # type: ignore[arg-type]
    assert (config.function, config.function_code) == (name, code)


@pytest.mark.parametrize("bad", [{"unit": 0}, {"unit": 248}, {"address": 70000}, {"function": 6}, {"baudrate": 0}, {"colour": "red"}])
def test_invalid_configs_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ModbusThermometerConfig(**{"address": 1, **bad})  # type: ignore[arg-type]


def test_xy_md02_preset_is_input_register_1_signed_tenths() -> None:
    config = preset("xy-md02")
    assert (config.function, config.address, config.signed, config.scale, config.unit, config.baudrate) == ("input", 1, True, 0.1, 1, 9600)


def test_preset_options_override_and_none_means_keep() -> None:
    config = preset("XY-MD02", unit=7, scale=None, address=None)
    assert (config.unit, config.scale, config.address) == (7, 0.1, 1)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_validates(name: str) -> None:
    assert preset(name).baudrate == 9600


def test_unknown_preset_names_the_known_ones() -> None:
    with pytest.raises(PresetError, match="xy-md02"):
        preset("sht31-wifi")


# -- against a real pymodbus RTU server on a pty pair --------------------------------------


@pytest.fixture
def wire(tmp_path: Path) -> Iterator[NullModem]:
    with NullModem(tmp_path / "module-side", tmp_path / "usb-rs485-adapter") as modem:
        yield modem


@pytest.fixture
def module(wire: NullModem) -> Iterator[SimulatedModbusModule]:
    with SimulatedModbusModule(str(wire.a.link), unit=1, input_registers={1: 215, 2: 455}, holding_registers={0: 0xFF38, 3: 3712}) as sim:
        yield sim


def thermometer(wire: NullModem, **fields: object) -> ModbusThermometer:
    return ModbusThermometer(str(wire.b.link), ModbusThermometerConfig(**{"timeout_s": 0.5, **fields}), backoff=Backoff(0.01, 0.05))  # type: ignore[arg-type]


def test_reads_an_input_register_as_the_xy_md02_keeps_it(wire: NullModem, module: SimulatedModbusModule) -> None:
    meter = ModbusThermometer(str(wire.b.link), preset("xy-md02"))
    try:
        assert meter.read_celsius() == 21.5
        module.set_register("input", 1, 0xFFF6)  # -1.0 C, the balcony in January
        assert meter.read_celsius() == -1.0
    finally:
        meter.close()
    assert meter.counters.polls_ok == 2


def test_holding_and_input_tables_are_distinct(wire: NullModem, module: SimulatedModbusModule) -> None:
    holding = thermometer(wire, address=0, function="holding")
    try:
        assert holding.read_celsius() == -20.0
    finally:
        holding.close()
    as_input = thermometer(wire, address=0, function="input")
    try:
        assert as_input.read_celsius() == 0.0
    finally:
        as_input.close()


def test_body_temperature_module_reading_is_a_contract_payload(wire: NullModem, module: SimulatedModbusModule) -> None:
    meter = thermometer(wire, address=3, function="holding", scale=0.01, subject="body", sensor="bedside")
    try:
        reading = meter.reading(MemorySink("edge-1"))
    finally:
        meter.close()
    assert isinstance(reading, TemperatureReading)
    assert (reading.celsius, reading.subject, reading.method, reading.plausible, reading.sensor) == (37.12, "body", "unknown", True, "bedside")
    assert decode(topic_for("s", "h", reading), encode(reading))[1] == reading


def test_an_exception_response_raises_a_named_error(wire: NullModem, module: SimulatedModbusModule) -> None:
    meter = thermometer(wire, address=200)  # beyond the module's register map
    try:
        with pytest.raises(ModbusReadError, match="exception 2"):
            meter.read_celsius()
    finally:
        meter.close()
    assert meter.counters.exception_responses == 1


def test_a_probe_fault_value_is_not_reported_as_a_temperature(wire: NullModem, module: SimulatedModbusModule) -> None:
    module.set_register("input", 1, 0x8000)  # what many modules return with the probe unplugged
    meter = thermometer(wire, address=1)
    try:
        with pytest.raises(ModbusReadError, match="probe fault"):
            meter.read_celsius()
    finally:
        meter.close()
    assert meter.counters.bad_value == 1


def test_no_answer_raises_and_the_poll_loop_recovers_when_the_module_returns(wire: NullModem) -> None:
    meter = thermometer(wire, address=1, interval_s=0.05)
    with pytest.raises(ModbusReadError, match="no answer"):
        meter.read_celsius()  # nobody on the line yet
    sink = MemorySink("edge-1")
    stop = threading.Event()
    result: list[int] = []
    poller = threading.Thread(target=lambda: result.append(meter.poll(sink, stop, count=2)), daemon=True)
    poller.start()
    with SimulatedModbusModule(str(wire.a.link), input_registers={1: 222}):
        poller.join(30)
    stop.set()
    assert not poller.is_alive()
    assert result == [2]
    assert [m.celsius for m in sink.sent] == [22.2, 22.2]
    assert meter.counters.no_answer >= 1 and meter.counters.reconnects >= 1


def test_poll_stops_when_asked(wire: NullModem, module: SimulatedModbusModule) -> None:
    meter = thermometer(wire, address=1, interval_s=3600)
    stop = threading.Event()
    sink = MemorySink()
    poller = threading.Thread(target=meter.poll, args=(sink, stop), daemon=True)
    poller.start()
    deadline = time.monotonic() + 30  # a wait, not a timing assertion
    while not sink.sent and poller.is_alive() and time.monotonic() < deadline:
        poller.join(0.01)
    stop.set()
    poller.join(30)
    assert not poller.is_alive()
    assert len(sink.sent) == 1


def test_adapter_replugged_under_another_tty_name_is_found_again(tmp_path: Path, wire: NullModem, module: SimulatedModbusModule) -> None:
    from firmware_bridge.virtual_port import VirtualPort

    meter = thermometer(wire, address=1)
    try:
        assert meter.read_celsius() == 21.5
        old_device = meter.device_path
        squatter = VirtualPort(tmp_path / "squatter")
        wire.b.unplug()  # free the pts number first, so the squatter can take it
        squatter.plug()
        try:
            wire.replug_b()
            assert wire.b.slave_name != old_device
            with pytest.raises(ModbusReadError):
                meter.read_celsius()  # the old tty is gone: this poll fails, and the client is dropped
            module.set_register("input", 1, 230)
            assert meter.read_celsius() == 23.0  # reopened through the stable link, now another tty
        finally:
            squatter.unplug()
    finally:
        meter.close()
    assert meter.device_path == wire.b.slave_name
    assert meter.counters.reconnects == 1
