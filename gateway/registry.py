"""The registry: sites, households, isolation periods, staff, teams of four, devices and announced visits.

A library over the gateway database; the admin CLI, the REST API and the rules call it. Every change
that matters to an inquiry (device registration, isolation end sign-off) is written to the audit log.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.vocabulary import STAFF_ROLES, Role
from isowatch.broker import DEVICE_ACL, GATEWAY_USER, mosquitto_password_hash, write_atomic
from isowatch.clock import Clock, SystemClock, iso, parse_iso
from isowatch.contract import IDENT_PATTERN
from isowatch.localtime import DEFAULT_ZONE

# Bounds on what an admin may enter: beyond them dates overflow and pages fail for everyone.
EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(2100, 1, 1, tzinfo=timezone.utc)
MAX_ISOLATION_DAYS = 365  # start plus every extension
MAX_EXTENSION_DAYS = 60
MAX_VISIT = timedelta(days=14)  # an announced visit is a window of hours, not a pass for the whole isolation
MAX_CONTACTS = 10
# Broker usernames and client ids that the gateway, the broker and the bridges use: a device registered
# under one of them would take that identity on the broker.
# A device id is also its broker user and client id: it must never be one of the gateway's, a shard's
# (gw-...) or the operator's (docs/deployment.md), or that device could hold their sessions.
RESERVED_DEVICE_NAMES = frozenset({"gateway", "admin", "root", "mosquitto", "broker", "localhost", "operator"})
RESERVED_DEVICE_PREFIXES = ("isowatch", "gateway", "gw-", "mosquitto", "zigbee2mqtt")


class RegistryError(ValueError):
    """A registry operation that cannot be done as asked (unknown household, missing sign-off, ...)."""


class NotFound(RegistryError):
    pass


def _ident(value: str) -> str:
    if not IDENT_PATTERN.match(value):
        raise ValueError("must be 1-64 characters of A-Z a-z 0-9 _ - (it appears in MQTT topics)")
    return value


def _in_range_day(value: date) -> date:
    if not EARLIEST.date() <= value < LATEST.date():
        raise ValueError(f"must lie between {EARLIEST.date()} and {LATEST.date()}")
    return value


def _in_range_moment(value: datetime) -> datetime:
    try:
        utc = value.astimezone(timezone.utc)
    except OverflowError:
        raise ValueError(f"must lie between {EARLIEST.date()} and {LATEST.date()}") from None
    if not EARLIEST <= utc < LATEST:
        raise ValueError(f"must lie between {EARLIEST.date()} and {LATEST.date()}")
    return value


def check_device_name(device: str) -> str:
    """A device id becomes a broker username: it must be a topic level and none of the system's own names."""
    _ident(device)
    folded = device.lower()
    if folded in RESERVED_DEVICE_NAMES or folded.startswith(RESERVED_DEVICE_PREFIXES):
        raise RegistryError(f"{device!r} is reserved for the gateway or the broker; choose another device id")
    return device


Ident = Annotated[str, AfterValidator(_ident)]
Name = Annotated[str, Field(max_length=200)]
Text = Annotated[str, Field(max_length=2000)]
Day = Annotated[date, AfterValidator(_in_range_day)]
Moment = Annotated[AwareDatetime, AfterValidator(_in_range_moment)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class SiteIn(_In):
    site: Ident
    name: Name = ""
    timezone: str = Field(DEFAULT_ZONE, max_length=64)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except Exception:  # ZoneInfoNotFoundError, or ValueError for a malformed key
            raise ValueError(f"unknown timezone {value!r}") from None
        return value


class StaffIn(_In):
    staff: Ident
    name: Name = Field(min_length=1)
    role: Role
    language: Literal["zh", "en"] = "zh"
    contacts: list[Annotated[str, Field(max_length=500)]] = Field(
        default_factory=list, max_length=MAX_CONTACTS, description="Apprise URLs, tried in this order")
    phone: str = Field("", max_length=32, pattern=r"^(\+?[0-9][0-9 -]{2,30})?$",
                       description="For call links on the acknowledge page: digits, spaces, dashes, optional +")
    share_phone: bool = Field(False, description="Agreed to show the phone number to the households of their team")

    @field_validator("contacts", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):  # CSV: URLs separated by spaces
            return value.split()
        return value

    @field_validator("contacts")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if "://" not in url:
                raise ValueError(f"{url!r} is not an Apprise URL (schema://...)")
        return value


class TeamIn(_In):
    """Four staff members, each holding the slot of their own role (so four different people)."""

    team: Ident
    name: Name = ""
    leader: Ident
    medical: Ident
    police: Ident
    social: Ident

    @model_validator(mode="after")
    def _different_people(self) -> "TeamIn":
        if self.leader == self.medical:
            raise ValueError("the leader and the medical worker must be different people (both sign an early end)")
        return self


class HouseholdIn(_In):
    household: Ident
    site: Ident
    address: Name = ""
    unit: str = Field("", max_length=32)
    residents: int = Field(1, ge=1, le=50)
    elderly_alone: bool = False
    disabled: bool = False
    language: Literal["zh", "en"] = "zh"
    team: Ident | None = None
    phone: str = Field("", max_length=32, pattern=r"^(\+?[0-9][0-9 -]{2,30})?$",
                       description="The resident's phone, for the call link on the household page")


class IsolationIn(_In):
    household: Ident
    start_date: Day
    days: int = Field(14, ge=1, le=60)


class VisitIn(_In):
    household: Ident
    kind: Literal["supplies", "rubbish", "hospital", "other"]
    starts_at: Moment
    ends_at: Moment
    note: Text = ""

    @model_validator(mode="after")
    def _order(self) -> "VisitIn":
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        if self.ends_at - self.starts_at > MAX_VISIT:
            raise ValueError(f"a visit lasts at most {MAX_VISIT.days} days; announce each visit on its own")
        return self


@dataclass(frozen=True)
class Isolation:
    id: int
    household: str
    start_date: date
    days: int
    ended_at: datetime | None

    @property
    def last_date(self) -> date:
        return self.start_date + timedelta(days=self.days - 1)


def isolation_day(period: Isolation, at: datetime, tz: str) -> int:
    """Day 1 is the start date, in the site's timezone."""
    return (at.astimezone(ZoneInfo(tz)).date() - period.start_date).days + 1


def isolation_active(period: Isolation, at: datetime, tz: str) -> bool:
    if period.ended_at is not None and at >= period.ended_at:
        return False
    return 1 <= isolation_day(period, at, tz) <= period.days


def isolation_ends_at(period: Isolation, tz: str) -> datetime:
    """When the period is over: its early end, or midnight after its last day in the site's timezone."""
    if period.ended_at is not None:
        return period.ended_at
    end_day = period.last_date + timedelta(days=1)
    return datetime(end_day.year, end_day.month, end_day.day, tzinfo=ZoneInfo(tz)).astimezone(timezone.utc)


class Registry:
    """Registry operations on one connection; each public method is one transaction."""

    def __init__(self, conn: sqlite3.Connection, clock: Clock | None = None) -> None:
        self.conn = conn
        self.conn.row_factory = sqlite3.Row
        self.clock = clock or SystemClock()

    def _now(self) -> str:
        return iso(self.clock.now())

    def audit(self, who: str, action: str, obj: str, detail: dict | str = "") -> None:
        text = detail if isinstance(detail, str) else json.dumps(detail, ensure_ascii=False, sort_keys=True)
        self.conn.execute(
            "INSERT INTO audit_log (at, who, action, object, detail) VALUES (?, ?, ?, ?, ?)",
            (self._now(), who, action, obj, text),
        )

    def _one(self, sql: str, params: tuple, what: str) -> sqlite3.Row:
        row = self.conn.execute(sql, params).fetchone()
        if row is None:
            raise NotFound(f"no such {what}: {params[0]}")
        return row

    # -- sites, staff, teams, households -----------------------------------------------------------

    def upsert_site(self, site: SiteIn) -> None:
        with self.conn:
            self.conn.execute(
                "INSERT INTO sites (site, name, timezone) VALUES (?, ?, ?) ON CONFLICT(site) DO UPDATE SET "
                "name = excluded.name, timezone = excluded.timezone",
                (site.site, site.name, site.timezone),
            )

    def upsert_staff(self, staff: StaffIn) -> None:
        with self.conn:
            for slot in STAFF_ROLES:  # a team has one member of each role
                if slot != staff.role and self.conn.execute(
                        f"SELECT 1 FROM teams WHERE {slot} = ?", (staff.staff,)).fetchone():  # noqa: S608 - a slot name
                    raise RegistryError(f"{staff.staff} holds a team's {slot} slot; reassign it before changing "
                                        f"the role to {staff.role}")
            self.conn.execute(
                "INSERT INTO staff (staff, name, role, language, contacts, phone, share_phone, active) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 1) ON CONFLICT(staff) DO UPDATE SET name = excluded.name, "
                "role = excluded.role, language = excluded.language, contacts = excluded.contacts, "
                "phone = excluded.phone, share_phone = excluded.share_phone",
                (staff.staff, staff.name, staff.role, staff.language, json.dumps(staff.contacts), staff.phone,
                 int(staff.share_phone)),
            )

    def upsert_team(self, team: TeamIn) -> None:
        with self.conn:
            for slot in STAFF_ROLES:  # a team has one member of each role
                member = self._one("SELECT staff, role FROM staff WHERE staff = ?", (getattr(team, slot),),
                                   f"staff member ({slot})")
                if member["role"] != slot:
                    raise RegistryError(f"{member['staff']} is a {member['role']} and cannot hold the {slot} slot")
            self.conn.execute(
                "INSERT INTO teams (team, name, leader, medical, police, social) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(team) DO UPDATE SET name = excluded.name, leader = excluded.leader, "
                "medical = excluded.medical, police = excluded.police, social = excluded.social",
                (team.team, team.name, team.leader, team.medical, team.police, team.social),
            )

    def upsert_household(self, household: HouseholdIn) -> None:
        with self.conn:
            if not self.conn.execute("SELECT 1 FROM sites WHERE site = ?", (household.site,)).fetchone():
                # A site named only by its households gets the default timezone; import a site row to change it.
                self.conn.execute("INSERT INTO sites (site, name, timezone) VALUES (?, ?, ?)",
                                  (household.site, household.site, DEFAULT_ZONE))
            if household.team:
                self._one("SELECT team FROM teams WHERE team = ?", (household.team,), "team")
            self.conn.execute(
                "INSERT INTO households (household, site, address, unit, residents, elderly_alone, disabled, "
                "language, team, phone, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(household) DO UPDATE "
                "SET site = excluded.site, address = excluded.address, unit = excluded.unit, "
                "residents = excluded.residents, elderly_alone = excluded.elderly_alone, "
                "disabled = excluded.disabled, language = excluded.language, team = excluded.team, "
                "phone = excluded.phone",
                (household.household, household.site, household.address, household.unit, household.residents,
                 int(household.elderly_alone), int(household.disabled), household.language, household.team,
                 household.phone, self._now()),
            )

    def add_fleet(self, households: list[HouseholdIn], *, by: str, devices: dict[str, str] | None = None,
                  isolation_start: date | None = None, isolation_days: int = 14) -> None:
        """Many households at once, with their devices (device -> household) and isolation periods.

        For simulated fleets and benchmarks of tens of thousands of households, where one upsert each,
        with its own transaction and audit row, takes minutes. The rows are validated as one at a time
        would be (the same models, teams must exist), written in one transaction with one audit row.
        Devices get no broker password: a fleet publishes through a bench credential.
        """
        now = self._now()
        devices = devices or {}
        for device in devices:
            check_device_name(device)
        if isolation_start is not None:
            IsolationIn(household=households[0].household if households else "x", start_date=isolation_start,
                        days=isolation_days)  # the same bounds as one period at a time
        site_of = {h.household: h.site for h in households}
        with self.conn:
            for team in {h.team for h in households if h.team}:
                self._one("SELECT team FROM teams WHERE team = ?", (team,), "team")
            self.conn.executemany("INSERT OR IGNORE INTO sites (site, name, timezone) VALUES (?, ?, ?)",
                                  [(site, site, DEFAULT_ZONE) for site in sorted(set(site_of.values()))])
            self.conn.executemany(
                "INSERT OR REPLACE INTO households (household, site, address, unit, residents, elderly_alone, "
                "disabled, language, team, phone, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                ((h.household, h.site, h.address, h.unit, h.residents, int(h.elderly_alone), int(h.disabled),
                  h.language, h.team, h.phone, now) for h in households))
            if isolation_start is not None:
                self.conn.executemany(
                    "INSERT INTO isolation_periods (household, start_date, days, created_by, created_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    ((h.household, isolation_start.isoformat(), isolation_days, by, now) for h in households))
            for household in set(devices.values()) - set(site_of):  # registered before this call
                site_of[household] = self._household(household)["site"]
            self.conn.executemany(
                "INSERT OR REPLACE INTO devices (device, site, household, registered_at, registered_by) "
                "VALUES (?, ?, ?, ?, ?)",
                ((device, site_of[household], household, now, by) for device, household in devices.items()))
            self.audit(by, "fleet.add", f"{len(households)} households, {len(devices)} devices",
                       {"households": len(households), "devices": len(devices),
                        "isolated": isolation_start is not None})

    def household(self, household: str) -> sqlite3.Row:
        return self._household(household)

    def _household(self, household: str) -> sqlite3.Row:
        row = self.conn.execute(
            "SELECT h.*, coalesce(s.timezone, ?) AS timezone FROM households h LEFT JOIN sites s ON s.site = h.site "
            "WHERE h.household = ?", (DEFAULT_ZONE, household),
        ).fetchone()
        if row is None:
            raise NotFound(f"no such household: {household}")
        return row

    def team_member(self, household: str, role: str) -> sqlite3.Row | None:
        """The staff member holding `role` on the household's team, or None when no team is assigned."""
        return self.conn.execute(
            f"SELECT s.* FROM households h JOIN teams t ON t.team = h.team JOIN staff s ON s.staff = t.{role} "  # noqa: S608 - role is an enum value
            "WHERE h.household = ?", (household,),
        ).fetchone()

    def team_slot(self, team: str, role: str) -> sqlite3.Row | None:
        """The staff member holding `role` on `team` (a storm's group pages its team, not a household)."""
        return self.conn.execute(
            f"SELECT s.* FROM teams t JOIN staff s ON s.staff = t.{Role(role).value} WHERE t.team = ?",  # noqa: S608 - an enum value
            (team,),
        ).fetchone()

    # -- isolation periods ---------------------------------------------------------------------------

    def start_isolation(self, period: IsolationIn, *, by: str) -> int:
        self._household(period.household)
        with self.conn:
            cursor = self.conn.execute(
                "INSERT INTO isolation_periods (household, start_date, days, created_by, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (period.household, period.start_date.isoformat(), period.days, by, self._now()),
            )
            self.audit(by, "isolation.start", period.household,
                       {"period": cursor.lastrowid, "start_date": period.start_date.isoformat(), "days": period.days})
        assert cursor.lastrowid is not None  # an INSERT sets it
        return int(cursor.lastrowid)

    def isolation(self, period_id: int) -> Isolation:
        row = self._one("SELECT * FROM isolation_periods WHERE id = ?", (period_id,), "isolation period")
        return _isolation(row)

    def isolations(self, household: str) -> list[Isolation]:
        rows = self.conn.execute("SELECT * FROM isolation_periods WHERE household = ? ORDER BY start_date",
                                 (household,))
        return [_isolation(r) for r in rows]

    def active_isolation(self, household: str, at: datetime) -> tuple[Isolation, str] | None:
        """The period covering `at` and the site's timezone, or None: events outside it alert nobody."""
        row = self.conn.execute(
            "SELECT coalesce(s.timezone, ?) FROM households h LEFT JOIN sites s ON s.site = h.site "
            "WHERE h.household = ?", (DEFAULT_ZONE, household),
        ).fetchone()
        if row is None:
            return None
        tz = row[0]
        for period in self.isolations(household):
            if isolation_active(period, at, tz):
                return period, tz
        return None

    def extend_isolation(self, period_id: int, days: int, *, by: str) -> Isolation:
        if not 1 <= days <= MAX_EXTENSION_DAYS:
            raise RegistryError(f"extend by 1 to {MAX_EXTENSION_DAYS} days at a time")
        period = self.isolation(period_id)
        if period.ended_at is not None:
            raise RegistryError(f"isolation period {period_id} has ended; start a new one")
        if period.days + days > MAX_ISOLATION_DAYS:
            raise RegistryError(f"an isolation lasts at most {MAX_ISOLATION_DAYS} days ({period.days} so far)")
        with self.conn:
            self.conn.execute("UPDATE isolation_periods SET days = days + ? WHERE id = ?", (days, period_id))
            self.audit(by, "isolation.extend", period.household, {"period": period_id, "days": days})
        return self.isolation(period_id)

    def sign_end(self, period_id: int, *, staff: str, reason: str = "") -> Isolation:
        """Ending early needs two people: the household team's medical worker and its leader, each signing
        in the slot of their own role; the second signature ends it. One person never signs both."""
        if len(reason) > 2000:
            raise RegistryError("the reason may have at most 2000 characters")
        period = self.isolation(period_id)
        if period.ended_at is not None:
            raise RegistryError(f"isolation period {period_id} has already ended")
        slots = [slot for slot in ("leader", "medical")
                 if (member := self.team_member(period.household, slot)) is not None
                 and member["staff"] == staff and member["role"] == slot]
        if not slots:  # also a slot held by someone of another role (a team saved before roles were checked)
            raise RegistryError(f"{staff} is neither the medical worker nor the team leader of {period.household}")
        slot = slots[0]  # one at most: a staff member has one role
        other = "medical" if slot == "leader" else "leader"
        now = self._now()
        with self.conn:
            signed = self.conn.execute(f"SELECT end_{slot}_by, end_{other}_by FROM isolation_periods "  # noqa: S608
                                       "WHERE id = ?", (period_id,)).fetchone()
            if signed[0] is not None:
                raise RegistryError(f"the {slot} has already signed the early end of period {period_id}")
            if signed[1] == staff:
                raise RegistryError(f"{staff} has already signed as {other}; the {slot} must be someone else")
            self.conn.execute(
                f"UPDATE isolation_periods SET end_{slot}_by = ?, end_{slot}_at = ? WHERE id = ?",  # noqa: S608
                (staff, now, period_id),
            )
            self.audit(staff, "isolation.end_signoff", period.household,
                       {"period": period_id, "as": [slot], "reason": reason})
            row = self.conn.execute("SELECT end_medical_by, end_leader_by FROM isolation_periods WHERE id = ?",
                                    (period_id,)).fetchone()
            if row["end_medical_by"] and row["end_leader_by"]:
                self.conn.execute("UPDATE isolation_periods SET ended_at = ?, end_reason = ? WHERE id = ?",
                                  (now, reason, period_id))
                self.audit(staff, "isolation.end", period.household, {"period": period_id, "reason": reason})
        return self.isolation(period_id)

    # -- devices and broker credentials ----------------------------------------------------------

    def register_device(self, device: str, household: str, *, by: str, password: str | None = None) -> str:
        """Bind a device to a household and issue its broker password (returned once, stored hashed)."""
        check_device_name(device)
        home = self._household(household)
        password = password or secrets.token_urlsafe(18)
        now = self._now()
        with self.conn:
            self.conn.execute(
                "INSERT INTO devices (device, site, household, registered_at, registered_by, password_hash) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(device) DO UPDATE SET site = excluded.site, "
                "household = excluded.household, registered_at = excluded.registered_at, "
                "registered_by = excluded.registered_by, password_hash = excluded.password_hash",
                (device, home["site"], household, now, by, mosquitto_password_hash(password)),
            )
            self.audit(by, "device.register", device, {"site": home["site"], "household": household})
        return password

    def write_broker_files(self, password_file: Path, acl_file: Path, *,
                           gateway_password: str, gateway_user: str = GATEWAY_USER) -> int:
        """Mosquitto's password file (gateway plus every registered device) and the per-device ACL.

        Send the broker SIGHUP afterwards to reload them. Returns the number of device accounts.
        """
        rows = self.conn.execute(
            "SELECT device, password_hash FROM devices WHERE password_hash IS NOT NULL ORDER BY device"
        ).fetchall()
        lines = [f"{gateway_user}:{mosquitto_password_hash(gateway_password)}\n"]
        lines += [f"{r['device']}:{r['password_hash']}\n" for r in rows if r["device"] != gateway_user]
        write_atomic(Path(password_file), "".join(lines), mode=0o600)
        write_atomic(Path(acl_file), DEVICE_ACL.format(gateway=gateway_user), mode=0o600)
        return len(rows)

    # -- announced visits ----------------------------------------------------------------------------

    def add_visit(self, visit: VisitIn, *, by: str) -> int:
        self._household(visit.household)
        with self.conn:
            cursor = self.conn.execute(
                "INSERT INTO visits (household, kind, starts_at, ends_at, note, created_by, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (visit.household, visit.kind, iso(visit.starts_at), iso(visit.ends_at), visit.note, by, self._now()),
            )
            self.audit(by, "visit.announce", visit.household,
                       {"visit": cursor.lastrowid, "kind": visit.kind, "from": iso(visit.starts_at),
                        "to": iso(visit.ends_at)})
        assert cursor.lastrowid is not None  # an INSERT sets it
        return int(cursor.lastrowid)

    def visit_covering(self, household: str, at: datetime, *, exit_suspected: bool = False) -> int | None:
        """The announced visit that makes an opening at `at` expected. One the household announced itself
        (docs/residents.md) does not cover a suspected exit unless it is a hospital visit, and a hospital
        visit covers nothing until staff resolved its approval alert as approved."""
        row = self.conn.execute(
            "SELECT v.id FROM visits v WHERE v.household = ? AND v.starts_at <= ? AND v.ends_at >= ? "
            "AND (v.approval_alert IS NULL OR EXISTS (SELECT 1 FROM alerts a WHERE a.id = v.approval_alert "
            "AND a.verdict = 'visit_approved')) AND (? = 0 OR v.source <> 'resident' OR v.kind = 'hospital') "
            "ORDER BY v.starts_at LIMIT 1",
            (household, iso(at), iso(at), int(exit_suspected)),
        ).fetchone()
        return row[0] if row else None


def _isolation(row: sqlite3.Row) -> Isolation:
    return Isolation(
        id=row["id"],
        household=row["household"],
        start_date=date.fromisoformat(row["start_date"]),
        days=row["days"],
        ended_at=parse_iso(row["ended_at"]) if row["ended_at"] else None,
    )
