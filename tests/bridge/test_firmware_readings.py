"""Frames become contract readings: plausibility, sensor names and battery carried from BATT."""

from __future__ import annotations

import io
import json

import pytest

from firmware_bridge import line_protocol as lp
from firmware_bridge.readings import FirmwareSession, MemorySink, StdoutSink, body_plausible, temperature
from isowatch.clock import ManualClock
from isowatch.contract import ContactReading, TemperatureReading


@pytest.mark.parametrize(("celsius", "plausible"), [(33.99, False), (34.0, True), (37.3, True), (43.0, True), (43.01, False), (-5.0, False)])
def test_body_plausibility_bounds(celsius: float, plausible: bool) -> None:
    assert body_plausible(celsius) is plausible


def test_ambient_temperatures_are_never_flagged_and_carry_no_method() -> None:
    reading = temperature(MemorySink(), 48.0, subject="ambient", method="oral")
    assert (reading.plausible, reading.method) == (True, None)


def test_session_names_sensors_after_hello_and_attaches_the_last_battery() -> None:
    session, sink = FirmwareSession(), MemorySink()
    before = session.reading(lp.AmbientTemperature(seq=1, centi_c=2000), sink)
    assert isinstance(before, TemperatureReading) and before.sensor is None and before.battery_pct is None
    assert session.reading(lp.Hello(seq=0, device_id="nano-7", firmware="1"), sink) is None
    assert session.reading(lp.Battery(seq=1, pct=55), sink) is None
    door = session.reading(lp.DoorContact(seq=2, open=True), sink)
    named = session.reading(lp.BodyTemperature(seq=3, centi_c=3650, method="oral", sensor="probe2"), sink)
    assert isinstance(door, ContactReading) and (door.sensor, door.battery_pct) == ("nano-7", 55.0)
    assert isinstance(named, TemperatureReading) and named.sensor == "probe2"
    session.reading(lp.Hello(seq=0, device_id="nano-7", firmware="2"), sink)  # reboot: battery unknown again
    after = session.reading(lp.DoorContact(seq=1, open=False), sink)
    assert after is not None and after.battery_pct is None


def test_host_frames_echoed_by_a_device_produce_nothing() -> None:
    session = FirmwareSession()
    assert session.reading(lp.Ack(seq=1, acked=1), MemorySink()) is None
    assert session.reading(lp.Nak(seq=1, acked=1, reason="bad_value"), MemorySink()) is None


def test_stdout_sink_prints_one_contract_json_line_per_reading() -> None:
    out = io.StringIO()
    sink = StdoutSink("bench-2", stream=out, clock=ManualClock())
    sink.send(temperature(sink, 36.6, subject="body", method="oral"))
    sink.send(temperature(sink, 44.2, subject="body", method="oral"))
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(d["celsius"], d["plausible"], d["seq"], d["device"]) for d in lines] == [(36.6, True, 1, "bench-2"), (44.2, False, 2, "bench-2")]
    assert lines[0]["device_time"].startswith("2026-01-01T00:00:00")
