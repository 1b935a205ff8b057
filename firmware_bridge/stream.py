"""Sensor loops that turn frames and polls into readings for a sink: the library under `isowatch bridge`."""

from __future__ import annotations

import logging
import threading
from typing import Any

from firmware_bridge.modbus import ModbusThermometer, ModbusThermometerConfig
from firmware_bridge.presets import preset
from firmware_bridge.readings import FirmwareSession, ReadingSink
from firmware_bridge.serial_link import SerialLink
from isowatch.contract import DeviceMessage

log = logging.getLogger(__name__)


def stream_line(link: SerialLink, sink: ReadingSink, stop: threading.Event, *, count: int | None = None) -> int:
    """Forward readings from our firmware until `stop` or `count` readings; returns how many were sent."""
    session = FirmwareSession()
    sent = 0
    try:
        for frame in link.frames(stop):
            message = session.reading(frame, sink)
            if message is not None:
                sink.send(message)
                sent += 1
            link.acknowledge(frame)  # only now: the reading is in the uplink's hands
            if count is not None and sent >= count:
                break
    finally:
        log.info("serial link closed port=%s sent=%d %s", link.path, sent, link.counters.log_text())
    return sent


def stream_modbus(thermometer: ModbusThermometer, sink: ReadingSink, stop: threading.Event, *, count: int | None = None) -> int:
    return thermometer.poll(sink, stop, count=count)


def modbus_config(preset_name: str | None = None, **options: Any) -> ModbusThermometerConfig:
    """A config from a preset and/or explicit options; options set to None are left to the preset or default."""
    if preset_name:
        return preset(preset_name, **options)
    return ModbusThermometerConfig(**{key: value for key, value in options.items() if value is not None})


def describe(message: DeviceMessage) -> str:
    """One human line per reading, for installers at a terminal."""
    data = message.model_dump()
    if data["type"] == "temperature":
        flag = "" if data["plausible"] else " IMPLAUSIBLE"
        method = f" {data['method']}" if data.get("method") else ""
        text = f"temperature {data['celsius']:.2f} C {data['subject']}{method}{flag}"
    elif data["type"] == "contact":
        text = f"door contact {'OPEN' if data['open'] else 'closed'}"
    else:
        text = data["type"]
    extras = [f"sensor={data['sensor']}"] if data.get("sensor") else []
    if data.get("battery_pct") is not None:
        extras.append(f"battery={data['battery_pct']:.0f}%")
    return " ".join([text, *extras])
