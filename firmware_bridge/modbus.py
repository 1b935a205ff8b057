"""Modbus RTU thermometers (off-the-shelf RS-485 modules such as the XY-MD02) polled with pymodbus.

One 16-bit register holds the temperature as a raw integer; unit id, register, function code
(holding 0x03 or input 0x04), signedness, scale and offset come from a preset or the command line.
Serial defaults are the modules' 9600 8N1, not pymodbus's own 19200.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import asdict, dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pymodbus import FramerType
from pymodbus.client import ModbusSerialClient
from pymodbus.exceptions import ModbusException

from firmware_bridge.errors import ModbusReadError
from firmware_bridge.readings import ReadingSink, temperature
from firmware_bridge.serial_link import Backoff
from isowatch.clock import Clock, SystemClock
from isowatch.contract import DeviceMessage

log = logging.getLogger(__name__)

FUNCTION_CODES = {"holding": 0x03, "input": 0x04}
SENSOR_RANGE_C = (-40.0, 125.0)  # the contract's bounds; outside is a disconnected probe, not weather


class ModbusThermometerConfig(BaseModel):
    """Where a module keeps its temperature and how to talk to it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    unit: int = Field(1, ge=1, le=247, description="Modbus unit (slave) id; modules ship with 1")
    address: int = Field(ge=0, le=0xFFFF, description="Register address as on the wire (0-based); --register")
    function: Literal["input", "holding"] = Field("input", description="input = code 0x04, holding = 0x03")
    signed: bool = Field(True, description="Two's complement 16-bit; false for unsigned")
    scale: float = Field(0.1, description="Celsius per count")
    offset: float = Field(0.0, description="Added after scaling")
    subject: Literal["ambient", "body"] = "ambient"
    baudrate: int = Field(9600, gt=0, description="Modules default to 9600 8N1")
    parity: Literal["N", "E", "O"] = "N"
    bytesize: Literal[7, 8] = 8
    stopbits: Literal[1, 2] = 1
    interval_s: float = Field(30.0, gt=0, description="Seconds between polls")
    timeout_s: float = Field(1.0, gt=0, le=30, description="Seconds to wait for an answer")
    sensor: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,64}$")

    @field_validator("function", mode="before")
    @classmethod
    def _function_code(cls, value: Any) -> Any:
        # Installers read "FC 04" or "0x03" in datasheets; accept the codes as well as the names.
        by_code = {3: "holding", 4: "input", "3": "holding", "4": "input", "0x03": "holding", "0x04": "input"}
        return by_code.get(value, value) if isinstance(value, (int, str)) else value

    @property
    def function_code(self) -> int:
        return FUNCTION_CODES[self.function]


def decode_register(raw: int, *, signed: bool, scale: float, offset: float = 0.0) -> float:
    """A raw 16-bit register as degrees Celsius: 0xFF38 signed at 0.1 is -20.0."""
    if not 0 <= raw <= 0xFFFF:
        raise ValueError(f"register value {raw} is not 16-bit")
    value = raw - 0x10000 if signed and raw & 0x8000 else raw
    return round(value * scale + offset, 6)  # 215 * 0.1 is 21.500000000000004 otherwise


@dataclass
class ModbusCounters:
    polls_ok: int = 0
    no_answer: int = 0
    exception_responses: int = 0
    bad_value: int = 0
    disconnects: int = 0
    reconnects: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def log_text(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.as_dict().items())


class ModbusThermometer:
    """Polls one module. `read_celsius` raises ModbusReadError; `poll` counts and logs instead."""

    def __init__(self, port: str, config: ModbusThermometerConfig, *, clock: Clock | None = None, backoff: Backoff | None = None) -> None:
        self.port = port
        self.config = config
        self.clock = clock or SystemClock()
        self.backoff = backoff or Backoff()
        self.counters = ModbusCounters()
        self.device_path: str | None = None
        self._client: ModbusSerialClient | None = None
        self._ever_connected = False

    def _connect(self) -> ModbusSerialClient:
        if self._client is not None:
            return self._client
        # Resolved at each connect, so /dev/serial/by-id/... follows the adapter to its new ttyUSBn.
        resolved = os.path.realpath(self.port)
        if not os.path.exists(resolved):
            raise ModbusReadError(f"serial port {self.port} does not exist")
        cfg = self.config
        client = ModbusSerialClient(
            port=resolved,
            framer=FramerType.RTU,
            baudrate=cfg.baudrate,
            bytesize=cfg.bytesize,
            parity=cfg.parity,
            stopbits=cfg.stopbits,
            timeout=cfg.timeout_s,
            retries=1,
        )
        if not client.connect():
            raise ModbusReadError(f"cannot open {self.port}")
        if self._ever_connected:
            self.counters.reconnects += 1
        self._ever_connected = True
        self._client, self.device_path = client, resolved
        log.info("modbus connected port=%s device=%s baud=%d unit=%d", self.port, resolved, cfg.baudrate, cfg.unit)
        return client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def read_raw(self) -> int:
        cfg = self.config
        client = self._connect()
        read = client.read_input_registers if cfg.function == "input" else client.read_holding_registers
        try:
            response = read(cfg.address, count=1, device_id=cfg.unit)
        except ModbusException as exc:
            # No answer: the module is unpowered, the A/B wires are swapped or the cable is out.
            self.counters.no_answer += 1
            self.close()  # reopen next time, in case the adapter came back under another name
            self.counters.disconnects += 1
            raise ModbusReadError(f"no answer from unit {cfg.unit} on {self.port}: {exc}") from exc
        if response.isError():
            self.counters.exception_responses += 1
            code = getattr(response, "exception_code", "?")
            raise ModbusReadError(
                f"unit {cfg.unit} answered exception {code} to function 0x{cfg.function_code:02X} register 0x{cfg.address:04X}"
            )
        if len(response.registers) != 1:
            self.counters.exception_responses += 1
            raise ModbusReadError(f"unit {cfg.unit} returned {len(response.registers)} registers, wanted 1")
        return int(response.registers[0])

    def read_celsius(self) -> float:
        cfg = self.config
        raw = self.read_raw()
        celsius = decode_register(raw, signed=cfg.signed, scale=cfg.scale, offset=cfg.offset)
        low, high = SENSOR_RANGE_C
        if not low <= celsius <= high:
            self.counters.bad_value += 1
            raise ModbusReadError(f"unit {cfg.unit} register 0x{cfg.address:04X} raw=0x{raw:04X} gives {celsius} C: probe fault?")
        self.counters.polls_ok += 1
        return celsius

    def reading(self, sink: ReadingSink) -> DeviceMessage:
        """Poll once and stamp a reading. Raises ModbusReadError."""
        celsius = self.read_celsius()
        sensor = self.config.sensor or f"modbus-{self.config.unit}"
        return temperature(sink, celsius, subject=self.config.subject, sensor=sensor)

    def poll(self, sink: ReadingSink, stop: threading.Event, *, count: int | None = None) -> int:
        """Poll every interval until `stop` (or `count` readings); failures are counted, logged, retried."""
        sent = 0
        try:
            while not stop.is_set():
                try:
                    message = self.reading(sink)
                except ModbusReadError as exc:
                    delay = self.backoff.next() if self._client is None else self.config.interval_s
                    log.warning("modbus poll failed port=%s unit=%d error=%s retry_s=%.1f", self.port, self.config.unit, exc, delay)
                    stop.wait(delay)
                    continue
                self.backoff.reset()
                sink.send(message)
                sent += 1
                if count is not None and sent >= count:
                    break
                stop.wait(self.config.interval_s)
        finally:
            self.close()
            log.info("modbus counters port=%s %s", self.port, self.counters.log_text())
        return sent
