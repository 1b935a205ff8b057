"""Read and write the `[camera]` section of the edge TOML without disturbing the other sections.

Python 3.11 reads TOML (tomllib) but cannot write it; the section is flat, so a small serializer
writes it and the rest of the file is kept byte for byte.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edge.camera_config import CameraConfig

SECTION = "camera"
_HEADER = re.compile(r"^\s*\[\s*([^\]]+?)\s*\]\s*(#.*)?$")


class CameraConfigError(ValueError):
    """The edge TOML is missing, unreadable, or its [camera] section is invalid."""


def _escape(char: str) -> str:
    """TOML basic strings: quote and backslash escaped, control characters as \\uXXXX, the rest as is."""
    if char in '"\\':
        return "\\" + char
    if ord(char) < 0x20 or ord(char) == 0x7F:
        return f"\\u{ord(char):04x}"
    return char


def toml_value(value: Any) -> str:
    """One TOML value for the flat types the camera section holds."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (str, Path)):
        return '"' + "".join(_escape(c) for c in str(value)) + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise CameraConfigError(f"cannot write {type(value).__name__} to TOML")


def section_text(config: CameraConfig) -> str:
    lines = [f"[{SECTION}]"]
    values = config.model_dump(mode="python")
    first = ("roi", "reference_frame", "source", "teach")  # what an installer looks for, then the knobs
    for name, value in sorted(values.items(), key=lambda item: (item[0] not in first, first.index(item[0]) if item[0] in first else 0)):
        if value is not None:
            lines.append(f"{name} = {toml_value(value)}")
    return "\n".join(lines) + "\n"


def replace_section(document: str, section: str, new_section: str) -> str:
    """`document` with its `[section]` table (up to the next header) replaced, or `new_section` appended."""
    lines = document.splitlines(keepends=True)
    start = end = None
    for i, line in enumerate(lines):
        match = _HEADER.match(line)
        if match is None:
            continue
        if start is None and match.group(1) == section:
            start = i
        elif start is not None:
            end = i
            break
    if start is None:
        prefix = document if not document or document.endswith("\n") else document + "\n"
        return prefix + ("\n" if prefix.strip() else "") + new_section
    end = len(lines) if end is None else end
    tail = lines[end:]
    return "".join(lines[:start]) + new_section + ("\n" if tail else "") + "".join(tail)


def save_camera_config(path: Path, config: CameraConfig) -> None:
    document = path.read_text(encoding="utf-8") if path.exists() else ""
    if document:
        try:
            tomllib.loads(document)
        except tomllib.TOMLDecodeError as exc:
            raise CameraConfigError(f"{path} is not valid TOML ({exc}); not overwriting it") from exc
    updated = replace_section(document, SECTION, section_text(config))
    tomllib.loads(updated)  # never write a file we could not read back
    path.write_text(updated, encoding="utf-8")


def load_camera_config(path: Path) -> CameraConfig:
    """The `[camera]` section, with `reference_frame` and `teach` resolved against the config file's folder."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CameraConfigError(f"{path} does not exist; run `isowatch calibrate` first") from exc
    except tomllib.TOMLDecodeError as exc:
        raise CameraConfigError(f"{path} is not valid TOML: {exc}") from exc
    if SECTION not in data:
        raise CameraConfigError(f"{path} has no [{SECTION}] section; run `isowatch calibrate`")
    try:
        config = CameraConfig.model_validate(data[SECTION])
    except ValidationError as exc:
        problems = "; ".join(f"{SECTION}.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise CameraConfigError(f"{path}: {problems}") from exc
    for name in ("reference_frame", "teach"):
        value = getattr(config, name)
        if value is not None and not value.is_absolute():
            config = config.model_copy(update={name: path.parent / value})
    return config
