"""Register maps of common Modbus RTU temperature modules, so installers type a name, not a datasheet.

Each preset is a partial ModbusThermometerConfig; command-line options override its fields.
Sources are the vendors' datasheets; check a new module with `isowatch bridge read` before relying on it.
"""

from __future__ import annotations

from typing import Any

from firmware_bridge.errors import PresetError
from firmware_bridge.modbus import ModbusThermometerConfig

PRESETS: dict[str, dict[str, Any]] = {
    # SHT20 temperature/humidity module, RS-485: input registers 0x0001 temperature, 0x0002 humidity,
    # both x0.1, temperature signed; 9600 8N1, unit 1.
    "xy-md02": {
        "function": "input",
        "address": 0x0001,
        "signed": True,
        "scale": 0.1,
        "baudrate": 9600,
        "unit": 1,
    },
    # 8-channel DS18B20 module R4DCB08: holding registers 0x0000-0x0007, channel 1 first, signed x0.1;
    # 9600 8N1, unit 1. Other channels: --register 1..7.
    "r4dcb08": {
        "function": "holding",
        "address": 0x0000,
        "signed": True,
        "scale": 0.1,
        "baudrate": 9600,
        "unit": 1,
    },
    # Many unbranded PT100/thermocouple transmitters: holding register 0x0000, signed x0.1.
    "generic-holding-x0.1": {
        "function": "holding",
        "address": 0x0000,
        "signed": True,
        "scale": 0.1,
        "baudrate": 9600,
        "unit": 1,
    },
}


def preset(name: str, **overrides: Any) -> ModbusThermometerConfig:
    """A validated config from a preset, with options given (not None) taking precedence."""
    try:
        fields = dict(PRESETS[name.lower()])
    except KeyError:
        raise PresetError(f"no Modbus preset {name!r}; known: {', '.join(sorted(PRESETS))}") from None
    fields.update({key: value for key, value in overrides.items() if value is not None})
    return ModbusThermometerConfig(**fields)
