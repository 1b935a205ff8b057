"""Devices: online state, last heartbeat, outbox depth, camera health, config version; admins push a config."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from dashboard.deps import (
    AdminUser,
    ClockDep,
    DeviceRow,
    ReadDB,
    Scope,
    UserScope,
    WriteDB,
    protected_router,
    render,
)
from dashboard.household_view import device_online
from gateway.alerts import audit
from gateway.device_config import PushError
from isowatch.contract import DeviceConfig
from isowatch.localtime import DEFAULT_ZONE

log = logging.getLogger(__name__)
router = protected_router(tags=["devices"])
MAX_CAMERA_OVERRIDES = 16_000
API_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Not logged in"}, 403: {"description": "Admins only"},
    404: {"description": "No such device in your teams"}}


class ConfigUnavailable(Exception):
    """This server has no broker to push configs through."""


class DevicePublic(BaseModel):
    device: str
    site: str
    household: str
    online: bool
    status: str | None
    last_seen: str | None
    last_heartbeat: str | None
    outbox_depth: int | None
    outbox_dropped: int | None
    flags: dict[str, int] = Field(default_factory=dict, description="Raised health flags (docs/operations.md)")
    camera: str | None
    firmware: str | None
    config_version: str | None
    config_error: str | None
    clock_skew: bool = Field(description="The device clock is further from the gateway's than the policy allows")
    clock_skew_s: float | None = Field(description="Device clock minus gateway clock, seconds, as last measured")
    timezone: str  # the site's: pages show the heartbeat in it


DEVICE_SQL = (f"SELECT d.*, coalesce(s.timezone, '{DEFAULT_ZONE}') AS timezone FROM devices d "  # noqa: S608
              "LEFT JOIN sites s ON s.site = d.site")


class ConfigIn(BaseModel):
    """A DeviceConfig without the device id (taken from the path)."""

    model_config = ConfigDict(extra="forbid")
    version: str = Field(min_length=1, max_length=64)
    camera: dict[str, Any] = Field(default_factory=dict)
    heartbeat_s: float = Field(30.0, ge=5, le=3600)
    temperature_times: list[Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]] = Field(
        default_factory=lambda: ["08:00", "20:00"], max_length=24)

    @field_validator("camera")
    @classmethod
    def _small(cls, value: dict[str, Any]) -> dict[str, Any]:
        """The config is kept retained on the broker and applied on the device: a few overrides, not a file."""
        if len(json.dumps(value)) > MAX_CAMERA_OVERRIDES:
            raise ValueError(f"camera overrides may take at most {MAX_CAMERA_OVERRIDES} characters of JSON")
        return value


class PushResult(BaseModel):
    device: str
    version: str
    pushed: bool


def config_pusher() -> Callable[[str, str, DeviceConfig], None]:  # overridden by create_app
    raise ConfigUnavailable("config push is not configured on this server (no broker)")


Pusher = Annotated[Callable[[str, str, DeviceConfig], None], Depends(config_pusher)]


def public(row: sqlite3.Row, now: datetime) -> DevicePublic:
    beat: dict[str, Any] = {}
    if row["heartbeat"]:
        try:
            beat = json.loads(row["heartbeat"])
        except ValueError:
            beat = {}
    return DevicePublic(device=row["device"], site=row["site"], household=row["household"],
                        online=device_online(row, now), status=row["status"], last_seen=row["last_seen"],
                        last_heartbeat=row["last_heartbeat"], outbox_depth=beat.get("outbox_depth"),
                        outbox_dropped=beat.get("outbox_dropped"), flags=beat.get("flags") or {},
                        camera=row["camera"], firmware=row["firmware"],
                        config_version=row["config_version"], config_error=row["config_error"],
                        clock_skew=bool(row["clock_skew"]), clock_skew_s=row["clock_skew_s"],
                        timezone=row["timezone"])


def list_devices(db: sqlite3.Connection, scope: Scope, now: datetime, limit: int = 500,
                 offset: int = 0) -> list[DevicePublic]:
    where, params = scope.sql("d.household")
    rows = db.execute(f"{DEVICE_SQL} WHERE {where} ORDER BY d.site, d.household, d.device LIMIT ? OFFSET ?",
                      [*params, limit, offset]).fetchall()
    return [public(r, now) for r in rows]


def push(db: sqlite3.Connection, row: sqlite3.Row, body: ConfigIn, pusher: Pusher, who: str,
         now: datetime) -> PushResult:
    config = DeviceConfig(device=row["device"], **body.model_dump())
    pusher(row["site"], row["household"], config)
    with db:
        audit(db, who, "device.config_push", row["device"], {"version": config.version}, now)
    log.info("config pushed device=%s version=%s by=%s", row["device"], config.version, who)
    return PushResult(device=row["device"], version=config.version, pushed=True)


@router.get("/devices", response_class=HTMLResponse, include_in_schema=False)
def devices_page(request: Request, db: ReadDB, scope: UserScope, clock: ClockDep, done: str = "",
                 error: str = "") -> Response:
    return render(request, "devices.html", {"rows": list_devices(db, scope, clock.now()), "done": done,
                                             "error": error})


@router.post("/devices/{device}/config", include_in_schema=False)
def push_form(device: str, row: DeviceRow, admin: AdminUser, db: WriteDB, clock: ClockDep, pusher: Pusher,
              config: Annotated[str, Form(max_length=20_000)]) -> Response:
    try:
        body = ConfigIn.model_validate_json(config)
        push(db, row, body, pusher, admin.actor, clock.now())
    except ValidationError as exc:
        return RedirectResponse(f"/devices?error={quote(device + ': ' + str(exc.errors()[0]['msg']))}", status_code=303)
    except PushError as exc:
        return RedirectResponse(f"/devices?error={quote(device + ': ' + str(exc))}", status_code=303)
    return RedirectResponse(f"/devices?done={device}", status_code=303)


@router.get("/api/v1/devices", responses=API_ERRORS)
def api_devices(db: ReadDB, scope: UserScope, clock: ClockDep, limit: Annotated[int, Query(ge=1, le=5000)] = 500,
                offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0) -> list[DevicePublic]:
    return list_devices(db, scope, clock.now(), limit, offset)


@router.get("/api/v1/devices/{device}", responses=API_ERRORS)
def api_device(device: str, row: DeviceRow, clock: ClockDep) -> DevicePublic:
    return public(row, clock.now())


@router.post("/api/v1/devices/{device}/config", responses={**API_ERRORS, 502: {"description": "Broker unreachable"},
                                                          503: {"description": "No broker configured"}})
def api_push(device: str, body: ConfigIn, row: DeviceRow, admin: AdminUser, db: WriteDB, clock: ClockDep,
             pusher: Pusher) -> PushResult:
    """Publish the config retained to the device; its status later shows the version it applied."""
    return push(db, row, body, pusher, admin.actor, clock.now())

