"""`isowatch bridge`: read a serial or Modbus sensor once, or stream its readings through an outbox to the gateway."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from firmware_bridge.errors import BridgeError
from firmware_bridge.modbus import ModbusThermometer, ModbusThermometerConfig
from firmware_bridge.presets import PRESETS
from firmware_bridge.readings import MemorySink, ReadingSink, StdoutSink, dumps
from firmware_bridge.serial_link import DEFAULT_BAUDRATE, Backoff, SerialLink
from firmware_bridge.stream import describe, modbus_config, stream_line, stream_modbus
from isowatch.broker import BrokerError


class _RegisterAddress(click.ParamType):
    """A register address as datasheets print it: 1, 0x0001 or 0x01."""

    name = "address"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            number = int(str(value), 0)
        except ValueError:
            self.fail(f"{value!r} is not an integer (decimal or 0x hex)", param, ctx)
        if not 0 <= number <= 0xFFFF:
            self.fail(f"{value!r} is not in 0..0xFFFF", param, ctx)
        return number


def modbus_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by `run` and `read` for --protocol modbus; unset ones come from the preset or default."""
    options = [
        click.option("--preset", type=click.Choice(sorted(PRESETS), case_sensitive=False), help="A known module's register map."),
        click.option("--unit", type=click.IntRange(1, 247), help="Modbus unit (slave) id [1]."),
        click.option("--register", "address", type=_RegisterAddress(), help="Register address, 0-based (0x.. accepted)."),
        click.option("--function", type=click.Choice(["input", "holding", "3", "4"]), help="input (0x04) or holding (0x03) [input]."),
        click.option("--scale", type=float, help="Celsius per count [0.1]."),
        click.option("--offset", type=float, help="Added after scaling [0]."),
        click.option("--signed/--unsigned", default=None, help="Register is two's complement [signed]."),
        click.option("--subject", type=click.Choice(["ambient", "body"]), help="What the module measures [ambient]."),
        click.option("--interval", "interval_s", type=click.FloatRange(min=0.01), help="Seconds between polls [30]."),
        click.option("--timeout", "timeout_s", type=click.FloatRange(min=0.01, max=30), help="Seconds to wait for an answer [1]."),
        click.option("--sensor", help="Sensor name in readings [modbus-<unit>]."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _config(baud: int | None, options: dict[str, Any]) -> ModbusThermometerConfig:
    name = options.pop("preset", None)
    if options.get("function") in ("3", "4"):
        options["function"] = int(options["function"])
    try:
        return modbus_config(name, baudrate=baud, **options)
    except ValidationError as exc:
        # Name the command-line option, not the config field: "--register: Field required".
        option = {"address": "register", "interval_s": "interval", "timeout_s": "timeout", "baudrate": "baud"}
        problems = [f"--{option.get(str(e['loc'][0]), str(e['loc'][0]))}: {e['msg']}" for e in exc.errors()]
        raise click.UsageError("; ".join(problems)) from None


@click.group()
def bridge() -> None:
    """Serial and Modbus sensors: read once to check a sensor, or stream readings to the edge uplink.

    Our own firmware speaks the line protocol of docs/serial-protocol.md (--protocol line); off-the-shelf
    RS-485 thermometers speak Modbus RTU (--protocol modbus, 9600 8N1 unless --baud).
    """


@bridge.command()
@click.option("--port", required=True, help="Serial device; prefer a stable path such as /dev/serial/by-id/...")
@click.option("--protocol", type=click.Choice(["line", "modbus"]), default="line", show_default=True)
@click.option("--baud", type=int, help=f"Baud rate [line: {DEFAULT_BAUDRATE}, modbus: 9600].")
@modbus_options
@click.option("--broker", help="Uplink broker, mqtt://device:password@host:port.")
@click.option("--site", help="Site id for the uplink topics.")
@click.option("--household", help="Household id for the uplink topics.")
@click.option("--device", help="Device id, which is also the broker username; the bridge's own, not an edge agent's.")
@click.option("--outbox", "outbox_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Outbox file: readings wait here until the gateway has stored them [outbox-DEVICE.db].")
@click.option("--stdout", "to_stdout", is_flag=True, help="Print contract JSON, one reading per line, instead of publishing.")
@click.option("--for", "duration", type=click.FloatRange(min=0), help="Stop after this many seconds.")
@click.option("--count", type=click.IntRange(min=1), help="Stop after this many readings.")
def run(
    port: str,
    protocol: str,
    baud: int | None,
    broker: str | None,
    site: str | None,
    household: str | None,
    device: str | None,
    outbox_path: Path | None,
    to_stdout: bool,
    duration: float | None,
    count: int | None,
    **modbus: Any,
) -> None:
    """Stream readings from a sensor to the gateway (or to stdout) until stopped.

    Each reading is written to the outbox before the sensor gets its ACK, and leaves it only when the
    gateway has stored it: nothing is lost if the broker or the bridge restarts meanwhile.
    """
    sink: ReadingSink
    uplink = None
    config = _config(baud, modbus) if protocol == "modbus" else None  # bad options fail before connecting
    if to_stdout:
        sink = StdoutSink(device or "bench")
    else:
        missing = [name for name, value in (("--broker", broker), ("--site", site), ("--household", household), ("--device", device)) if not value]
        if missing:
            raise click.UsageError(f"publishing needs {', '.join(missing)} (or use --stdout)")
        from edge.durable_uplink import DurableUplink
        from edge.uplink import DeviceIdentity

        try:
            assert broker and site and household and device  # none missing
            identity = DeviceIdentity(site, household, device)
            uplink = DurableUplink(broker, identity, outbox_path or Path(f"outbox-{device}.db")).start()
        except (BrokerError, ValueError, OSError, sqlite3.Error) as exc:
            raise click.ClickException(str(exc)) from exc
        sink = uplink
    try:
        with _stopping(duration) as stop:
            if protocol == "line":
                link = SerialLink(port, baudrate=baud or DEFAULT_BAUDRATE)
                stream_line(link, sink, stop, count=count)
            else:
                assert config is not None  # made above for modbus
                thermometer = ModbusThermometer(port, config)
                stream_modbus(thermometer, sink, stop, count=count)
    except KeyboardInterrupt:
        pass
    finally:
        if uplink is not None:
            uplink.stop()


@bridge.command()
@click.option("--port", required=True, help="Serial device; prefer a stable path such as /dev/serial/by-id/...")
@click.option("--protocol", type=click.Choice(["line", "modbus"]), default="modbus", show_default=True)
@click.option("--baud", type=int, help=f"Baud rate [line: {DEFAULT_BAUDRATE}, modbus: 9600].")
@modbus_options
@click.option("--json", "as_json", is_flag=True, help="One contract JSON reading per line.")
@click.option("--wait", type=click.FloatRange(min=0.1), default=10.0, show_default=True, help="Line protocol: seconds to wait for a reading.")
@click.option("--count", type=click.IntRange(min=1), default=1, show_default=True, help="Line protocol: readings to wait for.")
@click.option("--device", default="bench", show_default=True, help="Device id stamped on the readings.")
def read(port: str, protocol: str, baud: int | None, as_json: bool, wait: float, count: int, device: str, **modbus: Any) -> None:
    """Poll a sensor once and print what it says: for installers checking a new sensor."""
    if not os.path.exists(port):
        raise click.ClickException(f"no such serial port: {port}")
    sink = MemorySink(device)
    if protocol == "modbus":
        thermometer = ModbusThermometer(port, _config(baud, modbus))
        try:
            messages = [thermometer.reading(sink)]
        except BridgeError as exc:
            raise click.ClickException(str(exc)) from exc
        finally:
            thermometer.close()
    else:
        link = SerialLink(port, baudrate=baud or DEFAULT_BAUDRATE, backoff=Backoff(0.2, 2.0))
        with _stopping(wait) as stop:
            stream_line(link, sink, stop, count=count)
        messages = list(sink.sent)
        if len(messages) < count:
            _print(messages, as_json)
            raise click.ClickException(f"{len(messages)} of {count} readings within {wait:.0f} s; counters: {link.counters.log_text()}")
    _print(messages, as_json)


def _print(messages: list[Any], as_json: bool) -> None:
    for message in messages:
        click.echo(dumps(message) if as_json else describe(message))


@bridge.command()
def presets() -> None:
    """List the Modbus module presets and their register maps."""
    for name in sorted(PRESETS):
        p = PRESETS[name]
        sign = "signed" if p.get("signed", True) else "unsigned"
        click.echo(f"{name}: {p['function']} register 0x{p['address']:04X}, {sign} x{p['scale']}, unit {p['unit']}, {p['baudrate']} 8N1")


@contextmanager
def _stopping(duration: float | None) -> Iterator[threading.Event]:
    """An event set after `duration` seconds or on SIGTERM, so `run` ends cleanly under systemd and in tests."""
    stop = threading.Event()
    timer = threading.Timer(duration, stop.set) if duration is not None else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        yield stop
    finally:
        stop.set()
        if timer is not None:
            timer.cancel()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)

