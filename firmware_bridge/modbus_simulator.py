"""A Modbus RTU temperature module simulated by pymodbus's own server on a serial port (a pty in tests).

Register values can be changed while it runs, so a test or a demo can warm the room up.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from pymodbus import FramerType
from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import DataType, SimData, SimDevice

from firmware_bridge.errors import BridgeError

log = logging.getLogger(__name__)

REGISTERS = 64  # addresses 0..63 of each table exist; above is an "illegal address" exception


class SimulatedModbusModule:
    """pymodbus ModbusSerialServer (RTU) in a thread, serving one unit's input and holding registers."""

    def __init__(
        self,
        port: str,
        *,
        unit: int = 1,
        input_registers: dict[int, int] | None = None,
        holding_registers: dict[int, int] | None = None,
        baudrate: int = 9600,
    ) -> None:
        self.port = port
        self.unit = unit
        self.baudrate = baudrate
        self.tables: dict[str, dict[int, int]] = {
            "input": dict(input_registers or {}),
            "holding": dict(holding_registers or {}),
        }
        self.requests = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: ModbusSerialServer | None = None
        self._thread: threading.Thread | None = None

    def set_register(self, table: str, address: int, value: int) -> None:
        with self._lock:
            self.tables[table][address] = value & 0xFFFF

    async def _on_access(
        self, function_code: int, start_address: int, address: int, count: int, current: list[int], set_values: object
    ) -> None:
        # pymodbus hands us the registers about to be answered; fill them from our tables.
        table = {3: "holding", 4: "input"}.get(function_code)
        with self._lock:
            self.requests += 1
            if table is not None:
                values = self.tables[table]
                for i in range(len(current)):
                    current[i] = values.get(start_address + i, current[i])
        return None

    def _device(self) -> SimDevice:
        bits = [SimData(0, count=REGISTERS, values=False, datatype=DataType.BITS)]
        return SimDevice(
            id=self.unit,
            simdata=(
                bits,
                [SimData(0, count=REGISTERS, values=False, datatype=DataType.BITS)],
                [SimData(0, count=REGISTERS, values=0, datatype=DataType.REGISTERS)],
                [SimData(0, count=REGISTERS, values=0, datatype=DataType.REGISTERS)],
            ),
            action=self._on_access,
        )

    def start(self, timeout: float = 10.0) -> "SimulatedModbusModule":
        ready = threading.Event()
        errors: list[BaseException] = []

        async def serve() -> None:
            self._server = ModbusSerialServer(
                self._device(),
                framer=FramerType.RTU,
                port=self.port,
                baudrate=self.baudrate,
            )
            await self._server.serve_forever(background=True)

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(serve())
            except (RuntimeError, OSError) as exc:  # reported to the starting thread
                errors.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="modbus-module-sim", daemon=True)
        self._thread.start()
        if not ready.wait(timeout) or errors:
            raise BridgeError(f"simulated Modbus module did not start on {self.port}: {errors[:1]}")
        log.info("simulated modbus module port=%s unit=%d baud=%d", self.port, self.unit, self.baudrate)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._server is not None:
            future = asyncio.run_coroutine_threadsafe(self._server.shutdown(), self._loop)
            future.result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = self._server = self._thread = None

    def __enter__(self) -> "SimulatedModbusModule":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
