"""The edge box's configuration file (TOML), validated once with clear errors (`isowatch edge check-config`)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edge.camera_config import CameraConfig
from firmware_bridge.sensors import SENSORS, SensorConfig
from isowatch.broker import BrokerError, BrokerUrl
from isowatch.contract import Ident


class EdgeConfigError(ValueError):
    """The config file is missing, not TOML, or has wrong values; the message lists each problem."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeviceSection(_Section):
    site: Ident = Field(description="Site (street office) the household belongs to")
    household: Ident = Field(description="Household id, e.g. hh-3-502")
    id: Ident = Field(description="This device's id, also its broker username")


class UplinkSection(_Section):
    broker: str = Field(description="mqtt://host:port or mqtts://host:port of the gateway's broker")
    password_file: Path | None = Field(None, description="File holding this device's broker password")
    resend_after_s: float = Field(20.0, ge=0.5, le=3600, description="Resend what the gateway has not acknowledged after this long")
    reconnect_max_s: int = Field(30, ge=1, le=600, description="Longest wait between reconnect attempts")

    @model_validator(mode="after")
    def _url_parses(self) -> "UplinkSection":
        try:
            BrokerUrl.parse(self.broker)
        except BrokerError as exc:
            raise ValueError(str(exc)) from None
        return self


class OutboxSection(_Section):
    path: Path = Field(Path("outbox.db"), description="SQLite file of unacknowledged messages")
    max_rows: int = Field(100_000, ge=100, le=10_000_000, description="Bound on queued messages")
    max_mb: int = Field(256, ge=1, le=100_000, description="Bound on queued bytes (snapshots are the big ones)")


class CaptureSection(_Section):
    source: str = Field(description="V4L2 device index (0), RTSP/HTTP URL, or video file")
    loop: bool = Field(False, description="Start a video file again at its end (demos)")
    realtime: bool = Field(True, description="Play a video file at its own frame rate rather than as fast as possible")
    reconnect_max_s: float = Field(30.0, ge=0.5, le=600, description="Longest wait between attempts to reopen the camera")


class HeartbeatSection(_Section):
    interval_s: float = Field(30.0, ge=1, le=3600, description="Seconds between heartbeats")


# One discriminated union over the sensor table: a new sensor type registered there is accepted here.
if TYPE_CHECKING:  # a union built at run time is beyond a type checker: it sees the models' base class
    Sensor = SensorConfig
else:
    Sensor = Annotated[Union[tuple(t.config for t in SENSORS.values())], Field(discriminator="type")]


class EdgeConfig(_Section):
    device: DeviceSection
    uplink: UplinkSection
    outbox: OutboxSection = OutboxSection()
    camera: CameraConfig | None = Field(None, description="Door camera; absent on a sensors-only box")
    capture: CaptureSection | None = None
    heartbeat: HeartbeatSection = HeartbeatSection()
    sensors: list[Sensor] = Field(default_factory=list)

    @model_validator(mode="after")
    def _camera_needs_capture(self) -> "EdgeConfig":
        if (self.camera is None) != (self.capture is None):
            raise ValueError("[camera] and [capture] go together: give both or neither")
        return self

    def broker_url(self) -> BrokerUrl:
        url = BrokerUrl.parse(self.uplink.broker)
        password = url.password
        if self.uplink.password_file is not None:
            password = self.uplink.password_file.read_text().strip()
        return url.with_user(url.username or self.device.id, password or "")


def _resolve(config: EdgeConfig, base: Path) -> EdgeConfig:
    """Relative paths in the file are relative to the file, not to wherever the agent was started."""

    def fix(path: Path | None) -> Path | None:
        return path if path is None or path.is_absolute() else base / path

    updates: dict[str, BaseModel] = {
        "outbox": config.outbox.model_copy(update={"path": fix(config.outbox.path)}),
        "uplink": config.uplink.model_copy(update={"password_file": fix(config.uplink.password_file)}),
    }
    if config.camera is not None:
        updates["camera"] = config.camera.model_copy(update={"reference_frame": fix(config.camera.reference_frame)})
    return config.model_copy(update=updates)


def format_errors(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error["loc"]) or "(top level)"
        given = f" (got {error['input']!r})" if not isinstance(error.get("input"), dict) else ""
        lines.append(f"  {where}: {error['msg']}{given}")
    return "\n".join(lines)


def load_edge_config(path: Path | str) -> EdgeConfig:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise EdgeConfigError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise EdgeConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        config = EdgeConfig.model_validate(data)
    except ValidationError as exc:
        raise EdgeConfigError(f"{path}: {exc.error_count()} problem(s):\n{format_errors(exc)}") from None
    return _resolve(config, path.resolve().parent)
