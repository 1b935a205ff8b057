"""Every sensor type an edge box can read, registered in one table (as Frigate registers detector plugins).

A sensor type is its config model (a `[[sensors]]` entry of the edge config, told apart by `type`) and a
function that turns the configured sensors of that type into workers. A worker reads its sensors and
hands each reading to the edge's sink until asked to stop. Adding a sensor type: a driver module in
this package, one config model and one workers function here, and a row in SENSORS.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from firmware_bridge.readings import ReadingSink

Worker = Callable[[ReadingSink, threading.Event], None]


class SensorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: str


class LineSensor(SensorConfig):
    type: Literal["line"]
    port: str = Field(description="Serial port; prefer a stable /dev/serial/by-id/... path")
    baud: int = Field(115200, ge=300, le=4_000_000)


class ModbusSensor(SensorConfig):
    type: Literal["modbus"]
    port: str
    preset: str | None = Field(None, description="A shipped preset, e.g. xy-md02")
    unit: int | None = Field(None, ge=1, le=247)
    address: int | None = Field(None, ge=0, le=0xFFFF, description="Register address (0-based)")
    scale: float | None = None
    interval_s: float = Field(60.0, ge=1, le=86400, description="Polling interval")


class ZigbeeSensor(SensorConfig):
    type: Literal["zigbee"]
    broker: str = Field("mqtt://127.0.0.1:1883", description="The local broker Zigbee2MQTT publishes to")
    friendly_name: str = Field(description="Zigbee2MQTT friendly name of the sensor")


def _line_workers(sensors: list[LineSensor]) -> list[tuple[str, Worker]]:
    def run(sensor: LineSensor, sink: ReadingSink, stop: threading.Event) -> None:
        from firmware_bridge.serial_link import SerialLink
        from firmware_bridge.stream import stream_line

        stream_line(SerialLink(sensor.port, baudrate=sensor.baud), sink, stop)

    return [(f"line-{n}", partial(run, sensor)) for n, sensor in enumerate(sensors)]


def _modbus_workers(sensors: list[ModbusSensor]) -> list[tuple[str, Worker]]:
    def run(sensor: ModbusSensor, sink: ReadingSink, stop: threading.Event) -> None:
        from firmware_bridge.modbus import ModbusThermometer
        from firmware_bridge.stream import modbus_config, stream_modbus

        config = modbus_config(sensor.preset, unit=sensor.unit, address=sensor.address, scale=sensor.scale,
                               interval_s=sensor.interval_s)
        stream_modbus(ModbusThermometer(sensor.port, config), sink, stop)

    return [(f"modbus-{n}", partial(run, sensor)) for n, sensor in enumerate(sensors)]


def _zigbee_workers(sensors: list[ZigbeeSensor]) -> list[tuple[str, Worker]]:
    # One connection per local broker for all its Zigbee sensors: two with the same credentials (or the
    # same client id) would take turns disconnecting each other.
    by_broker: dict[str, list[str]] = {}
    for sensor in sensors:
        by_broker.setdefault(sensor.broker, []).append(sensor.friendly_name)

    def run(broker: str, names: list[str], sink: ReadingSink, stop: threading.Event) -> None:
        from firmware_bridge.zigbee import run_zigbee_sensor

        run_zigbee_sensor(broker, names, sink, stop)

    return [(f"zigbee-{n}", partial(run, broker, names)) for n, (broker, names) in enumerate(by_broker.items())]


@dataclass(frozen=True)
class SensorType:
    config: type[SensorConfig]
    workers: Callable[[list], list[tuple[str, Worker]]]


SENSORS: dict[str, SensorType] = {
    "line": SensorType(LineSensor, _line_workers),
    "modbus": SensorType(ModbusSensor, _modbus_workers),
    "zigbee": SensorType(ZigbeeSensor, _zigbee_workers),
}


def workers(sensors: list[SensorConfig]) -> list[tuple[str, Worker]]:
    """The workers for a box's configured sensors, named `sensor-TYPE-N` for logs and thread lists."""
    found: list[tuple[str, Worker]] = []
    for name, sensor_type in SENSORS.items():
        of_type = [s for s in sensors if s.type == name]
        if of_type:
            found += [(f"sensor-{worker_name}", run) for worker_name, run in sensor_type.workers(of_type)]
    return found
