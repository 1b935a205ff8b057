"""REST API for the registry: the same operations as `isowatch admin`, for an admin token or an admin session.

Every route takes `Authorization: Bearer <admin token>` (`isowatch gateway run --admin-token`) or a
dashboard admin's session cookie with its CSRF token; other roles get 403. An app built
without a registry desk answers 503.
"""

from __future__ import annotations

import hmac
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from dashboard.accounts import Session
from dashboard.deps import optional_session
from gateway import alerts
from gateway.registry import (
    MAX_EXTENSION_DAYS,
    HouseholdIn,
    Ident,
    IsolationIn,
    NotFound,
    Registry,
    RegistryError,
    SiteIn,
    StaffIn,
    TeamIn,
    Text,
    VisitIn,
)
from gateway.registry_import import MAX_IMPORT_BYTES, ImportProblem, apply, decode_upload, parse_csv, parse_yaml
from gateway.store import connect
from isowatch.clock import Clock


@dataclass
class RegistryDesk:
    db_path: Path
    clock: Clock
    admin_token: str
    on_device_registered: Callable[[], None] | None = None  # rewrite broker files and reload the broker
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def connect(self) -> sqlite3.Connection:
        return connect(self.db_path)


def registry_desk() -> RegistryDesk:
    raise HTTPException(503, "the registry API is not configured on this server (no admin token)")


def _admin(desk: Annotated[RegistryDesk, Depends(registry_desk)],
           session: Annotated[Session | None, Depends(optional_session)],
           authorization: Annotated[str, Header()] = "") -> RegistryDesk:
    expected = f"Bearer {desk.admin_token}"
    if desk.admin_token and hmac.compare_digest(authorization.encode(), expected.encode()):
        return desk
    # Or a dashboard admin's session (cookie, CSRF checked), the same permissions as the pages.
    if session is not None:
        if session.user.role != "admin":
            raise HTTPException(403, "admins only")
        return desk
    raise HTTPException(401, "admin token or admin session required", headers={"WWW-Authenticate": "Bearer"})


def _registry(desk: Annotated[RegistryDesk, Depends(_admin)]) -> Iterator[Registry]:
    conn = desk.connect()
    try:
        with desk._lock:
            yield Registry(conn, desk.clock)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except (RegistryError, ValueError) as exc:  # ValueError: e.g. a device id that cannot be a topic level
        raise HTTPException(422, str(exc)) from None
    finally:
        conn.close()


Reg = Annotated[Registry, Depends(_registry)]
RowId = Annotated[int, PathParam(ge=1, le=2**63 - 1)]  # SQLite's INTEGER range
Admin = Annotated[RegistryDesk, Depends(_admin)]
router = APIRouter(prefix="/api/v1/registry", tags=["registry"])
ADMIN = "admin-api"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExtendIn(_Body):
    days: int = Field(ge=1, le=MAX_EXTENSION_DAYS)


class SignIn(_Body):
    staff: Ident
    reason: Text = ""


class DeviceIn(_Body):
    device: Ident
    household: Ident


class ResolveIn(_Body):
    staff: Ident
    verdict: Literal[alerts.VERDICTS]  # type: ignore[valid-type]  # built at import; resolve checks it fits the kind
    note: Text = ""


@router.put("/sites")
def put_site(site: SiteIn, reg: Reg) -> dict[str, str]:
    reg.upsert_site(site)
    return {"site": site.site}


@router.put("/staff")
def put_staff(staff: StaffIn, reg: Reg) -> dict[str, str]:
    reg.upsert_staff(staff)
    return {"staff": staff.staff}


@router.put("/teams")
def put_team(team: TeamIn, reg: Reg) -> dict[str, str]:
    reg.upsert_team(team)
    return {"team": team.team}


@router.put("/households")
def put_household(household: HouseholdIn, reg: Reg) -> dict[str, str]:
    reg.upsert_household(household)
    return {"household": household.household}


@router.post("/isolations", status_code=201)
def start_isolation(period: IsolationIn, reg: Reg) -> dict[str, int]:
    return {"id": reg.start_isolation(period, by=ADMIN)}


@router.post("/isolations/{period_id}/extend")
def extend(period_id: RowId, body: ExtendIn, reg: Reg) -> dict[str, Any]:
    period = reg.extend_isolation(period_id, body.days, by=ADMIN)
    return {"id": period.id, "days": period.days}


@router.post("/isolations/{period_id}/end-signoff")
def sign_end(period_id: RowId, body: SignIn, reg: Reg) -> dict[str, Any]:
    period = reg.sign_end(period_id, staff=body.staff, reason=body.reason)
    return {"id": period.id, "ended_at": period.ended_at.isoformat() if period.ended_at else None}


@router.post("/visits", status_code=201)
def add_visit(visit: VisitIn, reg: Reg) -> dict[str, int]:
    return {"id": reg.add_visit(visit, by=ADMIN)}


@router.post("/devices", status_code=201)
def register_device(body: DeviceIn, reg: Reg, desk: Admin) -> dict[str, str]:
    """Returns the device's broker password once; only its hash is kept."""
    password = reg.register_device(body.device, body.household, by=ADMIN)
    if desk.on_device_registered:
        desk.on_device_registered()
    return {"device": body.device, "username": body.device, "password": password}


@router.post("/import")
async def import_file(request: Request, desk: Admin,
                      fmt: Literal["yaml", "csv"] = "yaml") -> dict[str, Any]:
    """Body: the YAML or CSV text (`?fmt=csv`), UTF-8, at most 8 MiB; errors name the line."""
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_IMPORT_BYTES:
            raise HTTPException(413, f"an import file may have at most {MAX_IMPORT_BYTES // 2**20} MiB")
    conn = desk.connect()
    try:
        text = decode_upload(bytes(raw), f"upload.{fmt}")
        plan = parse_csv(text, "upload.csv") if fmt == "csv" else parse_yaml(text, "upload.yaml")
        with desk._lock:
            return {"imported": apply(plan, Registry(conn, desk.clock), by=ADMIN, source=f"upload.{fmt}")}
    except ImportProblem as exc:
        raise HTTPException(422, {"problems": exc.problems}) from None
    finally:
        conn.close()


@router.post("/alerts/{alert_id}/resolve")
def resolve_alert(alert_id: RowId, body: ResolveIn, desk: Admin) -> dict[str, Any]:
    conn = desk.connect()
    try:
        alerts.resolve(conn, alert_id, staff=body.staff, verdict=body.verdict, note=body.note, now=desk.clock.now())
    except alerts.AlertError as exc:
        raise HTTPException(409, str(exc)) from None
    finally:
        conn.close()
    return {"id": alert_id, "verdict": body.verdict}
