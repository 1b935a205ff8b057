"""The serial link against a simulated firmware on a real pseudo-terminal, unplug and replug included."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from firmware_bridge import line_protocol as lp
from firmware_bridge.readings import MemorySink
from firmware_bridge.serial_link import Backoff, SerialLink
from firmware_bridge.simulator import SimulatedFirmware
from firmware_bridge.stream import stream_line
from firmware_bridge.virtual_port import VirtualPort
from isowatch.clock import ManualClock
from isowatch.contract import ContactReading, TemperatureReading, decode, encode, topic_for

WAIT = 15.0  # generous: only ever waited for, never asserted on


def wait_until(condition: Callable[[], bool], timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


class RunningBridge:
    """stream_line in a thread, as `isowatch bridge run` runs it."""

    def __init__(self, link: SerialLink, sink: MemorySink) -> None:
        self.link, self.sink = link, sink
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            stream_line(self.link, self.sink, self.stop)
        except BaseException as exc:  # surfaced by the test, which must fail on it
            self.errors.append(exc)

    def start(self) -> "RunningBridge":
        self.thread.start()
        return self

    def readings(self, n: int) -> list:
        assert wait_until(lambda: len(self.sink.sent) >= n or bool(self.errors)), f"only {len(self.sink.sent)} of {n} readings"
        assert not self.errors
        return list(self.sink.sent)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(WAIT)
        assert not self.thread.is_alive(), "the read loop did not stop"
        assert not self.errors


@pytest.fixture
def port(tmp_path: Path) -> Iterator[VirtualPort]:
    # Like /dev/serial/by-id/usb-...: a stable name that points at whatever tty the kernel gave.
    vport = VirtualPort(tmp_path / "usb-isowatch-sim-if00").plug()
    yield vport
    vport.unplug()


@pytest.fixture
def sim(port: VirtualPort) -> Iterator[SimulatedFirmware]:
    firmware = SimulatedFirmware(port, device_id="esp32-door-01", firmware="1.4.2").start()
    yield firmware
    firmware.stop()


@pytest.fixture
def bridge(port: VirtualPort) -> Iterator[RunningBridge]:
    link = SerialLink(str(port.link), backoff=Backoff(0.05, 0.5))
    running = RunningBridge(link, MemorySink("edge-3-502")).start()
    assert link.connected.wait(WAIT)
    yield running
    running.close()


def test_firmware_readings_become_contract_payloads(sim: SimulatedFirmware, bridge: RunningBridge) -> None:
    assert isinstance(sim.send_until_acked(lp.Hello(seq=0, ack=True, device_id="esp32-door-01", firmware="1.4.2")), lp.Ack)
    sim.battery(91)
    sim.body(3712, method="axillary")
    sim.ambient(2150, sensor="hall")
    sim.door(True)
    body, ambient, door = bridge.readings(3)

    assert isinstance(body, TemperatureReading)
    assert (body.celsius, body.subject, body.method, body.plausible) == (37.12, "body", "axillary", True)
    assert (body.sensor, body.battery_pct, body.device) == ("esp32-door-01", 91.0, "edge-3-502")
    assert isinstance(ambient, TemperatureReading)
    assert (ambient.celsius, ambient.subject, ambient.method, ambient.sensor) == (21.5, "ambient", None, "hall")
    assert isinstance(door, ContactReading) and door.open is True
    assert [m.seq for m in (body, ambient, door)] == [1, 2, 3]
    for message in (body, ambient, door):  # what the gateway will accept, checked by the gateway's own decoder
        _, decoded = decode(topic_for("s1", "h1", message), encode(message))
        assert decoded == message
    assert bridge.link.counters.frames_ok == 5  # HELLO, BATT, BODY, AMB, DOOR


@pytest.mark.parametrize(("centi_c", "plausible"), [(2210, False), (3399, False), (3400, True), (4300, True), (4301, False), (4550, False)])
def test_a_body_temperature_outside_34_43_is_forwarded_flagged_implausible(
    sim: SimulatedFirmware, bridge: RunningBridge, centi_c: int, plausible: bool
) -> None:
    sim.body(centi_c, method="forehead")
    (reading,) = bridge.readings(1)
    assert reading.celsius == centi_c / 100
    assert reading.plausible is plausible


def test_host_acks_good_frames_naks_impossible_values_and_ignores_bad_checksums(sim: SimulatedFirmware, bridge: RunningBridge) -> None:
    good = lp.encode(lp.AmbientTemperature(seq=5, ack=True, centi_c=2000))
    sim.write_raw(good.replace(b"2000", b"2001"))  # a flipped digit on the cable: checksum now wrong
    sim.write_raw(b"$IW1,6,A,BODY,13000,oral*" + f"{lp.crc16_ccitt_false(b'IW1,6,A,BODY,13000,oral'):04X}".encode() + b"\r\n")
    sim.write_raw(good)
    assert isinstance(sim.wait_reply(5, WAIT), lp.Ack)
    nak = sim.wait_reply(6, WAIT)
    assert isinstance(nak, lp.Nak) and nak.reason == "bad_value"
    (reading,) = bridge.readings(1)
    assert reading.celsius == 20.0
    assert [r.acked for r in sim.replies if isinstance(r, (lp.Ack, lp.Nak))] == [6, 5]  # none for the corrupt one
    assert (bridge.link.counters.bad_checksum, bridge.link.counters.bad_value) == (1, 1)


def test_a_resent_frame_is_acknowledged_again_but_forwarded_once(sim: SimulatedFirmware, bridge: RunningBridge) -> None:
    frame = sim.door(True)
    assert sim.wait_reply(frame.seq, WAIT) is not None
    sim.resend(frame)  # the firmware did not see our ACK and tries again, same seq
    sim.door(False)
    first, second = bridge.readings(2)
    assert wait_until(lambda: sum(1 for r in sim.replies if getattr(r, "acked", None) == frame.seq) == 2)
    assert (first.open, second.open) == (True, False)
    assert len(bridge.sink.sent) == 2
    assert bridge.link.counters.duplicates == 1


def test_garbage_on_the_line_is_skipped_and_counted(sim: SimulatedFirmware, bridge: RunningBridge) -> None:
    sim.write_raw(b"\x00\xff\xfeboot: rst cause 2\r\n")  # what an ESP32 prints at reset
    sim.ambient(1999)
    sim.write_raw(b"$IW1,99,N,AMB,2" + b"0" * 200)  # runaway line
    sim.ambient(2001)
    first, second = bridge.readings(2)
    assert (first.celsius, second.celsius) == (19.99, 20.01)
    counters = bridge.link.counters
    assert counters.garbage_bytes > 20
    assert counters.overflow == 1


def test_cable_pulled_and_replugged_under_another_tty_name(tmp_path: Path, port: VirtualPort, sim: SimulatedFirmware, bridge: RunningBridge) -> None:
    sim.boot()
    sim.body(3650, method="oral")
    bridge.readings(1)
    old_device = bridge.link.device_path
    assert old_device == port.slave_name

    sim.write_raw(lp.encode(lp.Battery(seq=40, pct=10))[:12])  # pulled mid-frame
    sim.unplug()
    assert wait_until(lambda: bridge.link.counters.disconnects >= 1)
    # Something else takes the freed pts number, so the adapter comes back under a new name.
    squatter = VirtualPort(tmp_path / "other-device").plug()
    try:
        sim.replug()
        assert port.slave_name != old_device
        assert isinstance(sim.send_until_acked(lp.Hello(seq=0, ack=True, device_id="esp32-door-01", firmware="1.4.2")), lp.Ack)
        # Bytes sent before the host reopened the port are lost (pyserial flushes on open): the firmware
        # resends until acknowledged, as the protocol says.
        sim.send_until_acked(lp.DoorContact(seq=1, ack=True, open=True))
        readings = bridge.readings(2)
    finally:
        squatter.unplug()
    assert isinstance(readings[1], ContactReading) and readings[1].open is True
    assert bridge.link.device_path == port.slave_name
    assert bridge.link.counters.reconnects >= 1
    assert bridge.link.counters.frames_ok >= 3


def test_port_absent_at_start_is_retried_until_it_appears(tmp_path: Path) -> None:
    link_path = tmp_path / "usb-late"
    link = SerialLink(str(link_path), backoff=Backoff(0.02, 0.2))
    running = RunningBridge(link, MemorySink()).start()
    try:
        assert wait_until(lambda: link.counters.open_failures >= 2)
        with VirtualPort(link_path) as vport:
            firmware = SimulatedFirmware(vport).start()
            try:
                firmware.send_until_acked(lp.AmbientTemperature(seq=1, ack=True, centi_c=2222))
                (reading,) = running.readings(1)
            finally:
                firmware.stop()
        assert reading.celsius == 22.22
        assert link.counters.reconnects == 0  # a first connection is not a reconnection
    finally:
        running.close()


def test_a_port_that_keeps_failing_warns_once_and_the_retries_go_to_debug(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="firmware_bridge.serial_link")
    link = SerialLink(str(tmp_path / "usb-never"), backoff=Backoff(0.01, 0.02))
    running = RunningBridge(link, MemorySink()).start()
    try:
        assert wait_until(lambda: link.counters.open_failures >= 5)
    finally:
        running.close()
    failures = [r for r in caplog.records if r.getMessage().startswith("serial open failed")]
    assert [r.levelno for r in failures[:5]] == [logging.WARNING] + [logging.DEBUG] * 4
    assert "usb-never" in failures[0].getMessage()


def test_stopping_ends_the_read_loop_and_closes_the_port(port: VirtualPort) -> None:
    link = SerialLink(str(port.link), read_timeout=0.1)
    running = RunningBridge(link, MemorySink()).start()
    assert link.connected.wait(WAIT)
    running.close()  # asserts the thread ended
    assert not link.connected.is_set()


def test_a_silent_firmware_is_reported_once(port: VirtualPort) -> None:
    clock = ManualClock()
    link = SerialLink(str(port.link), clock=clock, silent_after_s=180, read_timeout=0.05)
    running = RunningBridge(link, MemorySink()).start()
    try:
        assert link.connected.wait(WAIT)
        clock.advance(181)
        assert wait_until(lambda: link.counters.silences == 1)
        clock.advance(500)
        time.sleep(0.2)  # give it the chance to count twice; it must not
        assert link.counters.silences == 1
    finally:
        running.close()


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    import random

    backoff = Backoff(0.5, 30.0, jitter=0.25, rng=random.Random(1))
    delays = [backoff.next() for _ in range(12)]
    for attempt, delay in enumerate(delays):
        base = min(30.0, 0.5 * 2**attempt)
        assert base * 0.75 <= delay <= min(30.0, base * 1.25)
    assert max(delays) <= 30.0
    backoff.reset()
    assert backoff.next() <= 0.625


def test_virtual_port_link_points_at_a_real_tty(port: VirtualPort) -> None:
    assert os.path.islink(port.link)
    assert os.readlink(port.link) == port.slave_name
    assert os.isatty(os.open(port.link, os.O_RDWR | os.O_NOCTTY)) is True


class _WatchingSink(MemorySink):
    """Records, at each send, how many ACKs the link had already sent."""

    def __init__(self, link_holder: list[SerialLink]) -> None:
        super().__init__("edge-1")
        self.link_holder = link_holder
        self.acks_at_send: list[int] = []

    def send(self, message) -> None:  # type: ignore[no-untyped-def]
        self.acks_at_send.append(self.link_holder[0].counters.acks_sent)
        super().send(message)


def test_the_ack_goes_out_only_after_the_reading_is_handed_to_the_sink(port: VirtualPort, sim: SimulatedFirmware) -> None:
    holder: list[SerialLink] = []
    link = SerialLink(str(port.link))
    holder.append(link)
    sink = _WatchingSink(holder)
    running = RunningBridge(link, sink).start()
    try:
        assert link.connected.wait(WAIT)
        first = sim.body(3650)
        assert isinstance(sim.wait_reply(first.seq, WAIT), lp.Ack)
        second = sim.door(False)
        assert isinstance(sim.wait_reply(second.seq, WAIT), lp.Ack)
    finally:
        running.close()
    assert sink.acks_at_send == [0, 1]


def test_unknown_frame_types_from_a_newer_firmware_get_a_nak(sim: SimulatedFirmware, bridge: RunningBridge) -> None:
    body = b"IW1,12,A,RAIN,3"
    sim.write_raw(b"$" + body + b"*" + f"{lp.crc16_ccitt_false(body):04X}".encode() + b"\r\n")
    nak = sim.wait_reply(12, WAIT)
    assert isinstance(nak, lp.Nak) and nak.reason == "unknown_type"
    assert bridge.link.counters.unknown_type == 1 and bridge.link.counters.naks_sent == 1


def test_a_port_already_held_by_another_bridge_is_refused(port: VirtualPort) -> None:
    from firmware_bridge.errors import PortUnavailable
    from firmware_bridge.serial_link import open_serial

    first = open_serial(str(port.link), 115200, 0.1)
    try:
        with pytest.raises(PortUnavailable):
            open_serial(str(port.link), 115200, 0.1)
    finally:
        first.close()
