"""The household's own link: announce a short opening, report a temperature, ask for help.

Residents take part instead of only being watched. The link is a signed token (HMAC via itsdangerous)
whose `resident_links` row makes it revocable; it works only while the household has an active
isolation period. What the household does through it goes where staff work already goes:
- an announced opening is a visit (`visits`, `source = 'resident'`), so an opening inside its window is
  logged `expected` by the rules exactly as for a visit staff announced; a hospital visit covers
  nothing until staff approve it (a `visit_approval` alert to the social worker, resolved as approved);
- a temperature is a body reading (`method = 'self_report'`, device `household:<id>`), so the fever,
  missed-reading and welfare rules see it as any other;
- a help request opens its own `help_request` alert, routed by what was asked (policy
  `resident.help_routes`), which the alert worker pages and escalates as any other alert.
Every action is rate limited per household (counted in the audit log, so a restart forgets nothing)
and written to the audit log as `resident:<household>`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo

from itsdangerous import BadSignature, URLSafeSerializer

from gateway import alerts
from gateway.policy import HELP_KINDS, Policy
from gateway.registry import Registry, isolation_day
from gateway.store import connect
from gateway.vocabulary import STAFF_ROLES, visit_decision
from isowatch.clock import Clock, iso, parse_iso
from isowatch.ids import uuid7

SELF_REPORT_PREFIX = "household:"  # not a valid device id (":"), so no registered device can pose as one
SELF_REPORT_METHOD = "self_report"
# What the household says -> the kind of visit staff would have entered for it.
REASONS = {"rubbish": "rubbish", "delivery": "supplies", "hospital": "hospital", "other": "other"}
METHODS = ("oral", "axillary", "tympanic", "forehead", "rectal", "unknown")
# A body temperature outside this range is not a measurement (isowatch.contract: `plausible`); the page
# refuses it and asks to measure again rather than paging anyone.
PLAUSIBLE_C = (34.0, 43.0)
MAX_HELP_TEXT = 500
ACTIONS = ("resident.announce", "resident.temperature", "resident.help")
T = TypeVar("T")


# What a household asked for, named for the staff member's page (the dashboard names them in dashboard.i18n).
def link_url(public_url: str, token: str) -> str:
    """The household's link: the page, and the JSON API under it (`{link}/announce`, ...)."""
    return f"{public_url.rstrip('/')}/r/{token}"


def self_report_device(household: str) -> str:
    return SELF_REPORT_PREFIX + household


def self_reported(device: str, household: str) -> bool:
    """A reading the household sent itself through its link (the rules treat it as registered)."""
    return device == SELF_REPORT_PREFIX + household


class ResidentError(Exception):
    """Base: the link cannot show or change anything."""


class LinkNotFound(ResidentError):
    """Unknown, forged or revoked link, or no active isolation: answered 404, saying nothing more."""


class BadForm(ResidentError):
    """A form POST without the page's form token."""


class Refused(ResidentError):
    """The action was understood and refused; `key` names the message shown to the household."""

    status = 422

    def __init__(self, key: str, **values: object) -> None:
        super().__init__(key)
        self.key = key
        self.values = values


class Limited(Refused):
    status = 429


@dataclass(frozen=True)
class Member:
    name: str
    role: str
    phone: str  # empty unless the staff member agreed to share it


@dataclass(frozen=True)
class Announcement:
    id: int
    reason: str
    starts_at: datetime
    ends_at: datetime
    approval: str | None  # hospital visits: waiting, approved or refused


@dataclass(frozen=True)
class SelfReport:
    id: str
    celsius: float
    fever: bool


@dataclass(frozen=True)
class HelpRequest:
    id: int
    kind: str
    text: str
    created_at: datetime
    status: str  # received, on_it, done


@dataclass(frozen=True)
class ResidentView:
    household: str
    language: str
    address: str
    unit: str
    timezone: str
    day: int
    days: int
    last_date: date
    team: tuple[Member, ...]
    announcements: tuple[Announcement, ...]
    requests: tuple[HelpRequest, ...]
    form_token: str
    max_minutes: int
    announcements_left: int


class ResidentLinks:
    """Issue, check and revoke households' links; the signing key is the gateway's."""

    def __init__(self, secret: str, clock: Clock, policy: Policy) -> None:
        self._serializer = URLSafeSerializer(secret, salt="isowatch-resident-v1")
        self._form_key = hashlib.sha256(b"isowatch-resident-form-v1:" + secret.encode()).digest()
        self.clock = clock
        self.policy = policy

    def _token(self, household: str, jti: str) -> str:
        return self._serializer.dumps({"h": household, "j": jti})

    def current(self, conn: sqlite3.Connection, household: str) -> str | None:
        row = conn.execute("SELECT jti FROM resident_links WHERE household = ? AND revoked_at IS NULL",
                           (household,)).fetchone()
        return self._token(household, row[0]) if row else None

    def issue(self, conn: sqlite3.Connection, household: str, *, by: str) -> str:
        """The household's live link, or a new one (the same link on a reprint, so printed notices agree)."""
        Registry(conn, self.clock).household(household)  # registry.NotFound for an unknown household
        with conn:
            token = self.current(conn, household)
            if token is not None:
                return token
            jti = secrets.token_urlsafe(12)
            conn.execute("INSERT INTO resident_links (jti, household, created_at, created_by) VALUES (?, ?, ?, ?)",
                         (jti, household, iso(self.clock.now()), by))
            alerts.audit(conn, by, "resident.link_issue", household, {"jti": jti}, self.clock.now())
        return self._token(household, jti)

    def revoke(self, conn: sqlite3.Connection, household: str, *, by: str) -> bool:
        """End the household's link at once; False when it had none."""
        now = self.clock.now()
        with conn:
            done = conn.execute("UPDATE resident_links SET revoked_at = ?, revoked_by = ? WHERE household = ? "
                                "AND revoked_at IS NULL", (iso(now), by, household)).rowcount
            if done:
                alerts.audit(conn, by, "resident.link_revoke", household, "", now)
        return bool(done)

    def household_of(self, conn: sqlite3.Connection, token: str) -> tuple[str, str]:
        """(household, jti) of a genuine, live link whose household is isolated now; else LinkNotFound."""
        try:
            claims = self._serializer.loads(token)
        except BadSignature:
            raise LinkNotFound() from None
        if not isinstance(claims, dict) or not isinstance(claims.get("h"), str) or not isinstance(claims.get("j"), str):
            raise LinkNotFound()
        row = conn.execute("SELECT household FROM resident_links WHERE jti = ? AND revoked_at IS NULL",
                           (claims["j"],)).fetchone()
        if row is None or row[0] != claims["h"]:
            raise LinkNotFound()
        if Registry(conn, self.clock).active_isolation(row[0], self.clock.now()) is None:
            raise LinkNotFound()
        return row[0], claims["j"]

    def form_token(self, jti: str) -> str:
        return hmac.new(self._form_key, jti.encode(), hashlib.sha256).hexdigest()[:32]

    def check_form(self, jti: str, form: str | None) -> None:
        """`form` None: the JSON API (a cross-site page cannot send JSON); else it must be the page's token."""
        if form is not None and not hmac.compare_digest(form.encode(), self.form_token(jti).encode()):
            raise BadForm("this form did not come from the link's page")


class ResidentDesk:
    """What the HTTP routes need: a connection per call, one writer at a time from this process."""

    def __init__(self, db_path: Path | str, links: ResidentLinks, public_url: str) -> None:
        self.db_path = Path(db_path)
        self.links = links
        self.public_url = public_url.rstrip("/")
        self._lock = threading.Lock()

    def url(self, token: str) -> str:
        return link_url(self.public_url, token)

    def current_url(self, household: str) -> str | None:
        conn = self._connect()
        try:
            token = self.links.current(conn, household)
        finally:
            conn.close()
        return self.url(token) if token else None

    def issue(self, household: str, *, by: str) -> str:
        with self._lock:
            conn = self._connect()
            try:
                return self.url(self.links.issue(conn, household, by=by))
            finally:
                conn.close()

    def revoke(self, household: str, *, by: str) -> bool:
        with self._lock:
            conn = self._connect()
            try:
                return self.links.revoke(conn, household, by=by)
            finally:
                conn.close()

    @property
    def policy(self) -> Policy:
        return self.links.policy

    @property
    def clock(self) -> Clock:
        return self.links.clock

    def _connect(self) -> sqlite3.Connection:
        conn = connect(self.db_path)
        conn.row_factory = sqlite3.Row
        return conn

    # -- reading -----------------------------------------------------------------------------------

    def view(self, token: str) -> ResidentView:
        """What the page shows: this household's own isolation, team, announcements and requests, nothing else."""
        conn = self._connect()
        try:
            household, jti = self.links.household_of(conn, token)
            return self._view(conn, household, jti)
        finally:
            conn.close()

    def _view(self, conn: sqlite3.Connection, household: str, jti: str) -> ResidentView:
        registry = Registry(conn, self.clock)
        now = self.clock.now()
        home = registry.household(household)
        active = registry.active_isolation(household, now)
        assert active is not None  # household_of checked it
        period, tz = active
        since = iso(datetime.combine(period.start_date, datetime.min.time(), tzinfo=ZoneInfo(tz)))
        team = []
        if home["team"]:
            for role in STAFF_ROLES:
                person = conn.execute(
                    f"SELECT s.name, s.phone, s.share_phone FROM teams t JOIN staff s ON s.staff = t.{role} "  # noqa: S608
                    "WHERE t.team = ? AND s.active = 1", (home["team"],)).fetchone()
                if person is not None:
                    team.append(Member(person["name"], role, person["phone"] if person["share_phone"] else ""))
        announcements = tuple(
            Announcement(r["id"], r["reason"], parse_iso(r["starts_at"]), parse_iso(r["ends_at"]),
                         None if r["approval_alert"] is None else visit_decision(r["verdict"]))
            for r in conn.execute(
                "SELECT v.id, v.reason, v.starts_at, v.ends_at, v.approval_alert, a.verdict FROM visits v "
                "LEFT JOIN alerts a ON a.id = v.approval_alert WHERE v.household = ? AND v.source = 'resident' "
                "AND v.created_at >= ? ORDER BY v.id DESC LIMIT 10", (household, since)))
        requests = tuple(
            HelpRequest(r["id"], r["kind"], r["text"], parse_iso(r["created_at"]),
                        "done" if r["resolved_at"] else "on_it" if r["acknowledged_at"] else "received")
            for r in conn.execute(
                "SELECT q.id, q.kind, q.text, q.created_at, a.acknowledged_at, a.resolved_at FROM resident_requests q "
                "LEFT JOIN alerts a ON a.id = q.alert_id WHERE q.household = ? AND q.created_at >= ? "
                "ORDER BY q.id DESC LIMIT 10", (household, since)))
        return ResidentView(
            household=household, language=home["language"] or "zh", address=home["address"] or "",
            unit=home["unit"] or "", timezone=tz, day=isolation_day(period, now, tz), days=period.days,
            last_date=period.last_date, team=tuple(team), announcements=announcements, requests=requests,
            form_token=self.links.form_token(jti), max_minutes=self.policy.resident.announce_max_minutes,
            announcements_left=max(0, self.policy.resident.announcements_per_day - self._announced_today(
                conn, household, tz, now)),
        )

    # -- acting ------------------------------------------------------------------------------------

    def _act(self, token: str, form: str | None, action: Callable[..., T], *args: object) -> T:
        """Check the link (and the form token of a form POST), then run `action(conn, household, *args)`."""
        with self._lock:
            conn = self._connect()
            try:
                household, jti = self.links.household_of(conn, token)
                self.links.check_form(jti, form)
                return action(conn, household, *args)
            finally:
                conn.close()

    def _limit(self, conn: sqlite3.Connection, household: str, now: datetime) -> None:
        done = conn.execute(
            "SELECT count(*) FROM audit_log WHERE who = ? AND at > ? AND action IN (SELECT value FROM json_each(?))",
            (f"resident:{household}", iso(now - timedelta(hours=1)), json.dumps(ACTIONS))).fetchone()[0]
        if done >= self.policy.resident.actions_per_hour:
            raise Limited("limited", n=self.policy.resident.actions_per_hour)

    def _announced_today(self, conn: sqlite3.Connection, household: str, tz: str, now: datetime) -> int:
        midnight = datetime.combine(now.astimezone(ZoneInfo(tz)).date(), datetime.min.time(), tzinfo=ZoneInfo(tz))
        return conn.execute("SELECT count(*) FROM visits WHERE household = ? AND source = 'resident' "
                            "AND created_at >= ?", (household, iso(midnight))).fetchone()[0]

    def announce(self, token: str, minutes: object, reason: object, form: str | None = None) -> Announcement:
        return self._act(token, form, self._announce, minutes, reason)

    def _announce(self, conn: sqlite3.Connection, household: str, minutes: object, reason: object) -> Announcement:
        limit = self.policy.resident.announce_max_minutes
        if reason not in REASONS:
            raise Refused("bad_reason")
        minutes = _integer(minutes)
        if minutes is None or not 1 <= minutes <= limit:
            raise Refused("bad_minutes", max=limit)
        now = self.clock.now()
        registry = Registry(conn, self.clock)
        active = registry.active_isolation(household, now)
        assert active is not None  # household_of checked it
        period, tz = active
        self._limit(conn, household, now)
        if self._announced_today(conn, household, tz, now) >= self.policy.resident.announcements_per_day:
            raise Limited("daily_limit", n=self.policy.resident.announcements_per_day)
        ends = now + timedelta(minutes=minutes)
        who = f"resident:{household}"
        with conn:
            visit_id = conn.execute(
                "INSERT INTO visits (household, kind, starts_at, ends_at, note, created_by, created_at, source, reason) "
                "VALUES (?, ?, ?, ?, '', ?, ?, 'resident', ?)",
                (household, REASONS[reason], iso(now), iso(ends), who, iso(now), reason)).lastrowid
            assert visit_id is not None  # an INSERT sets it
            approval = None
            if reason == "hospital":
                # Leaving for hospital is an exit: staff approve it first (the social worker is paged).
                home = registry.household(household)
                opened = alerts.open_or_attach(
                    conn, site=home["site"], household=household, kind="visit_approval", at=now, ref=f"visit:{visit_id}",
                    now=now, isolation_id=period.id, detail=f"hospital visit announced for {minutes} min")
                if opened.new:  # the alert worker's escalation pass pages the first step
                    conn.execute("UPDATE alerts SET next_step_at = ? WHERE id = ?", (iso(now), opened.alert_id))
                conn.execute("UPDATE visits SET approval_alert = ? WHERE id = ?", (opened.alert_id, visit_id))
                approval = "waiting"
            alerts.audit(conn, who, "resident.announce", household,
                         {"visit": visit_id, "reason": reason, "minutes": minutes, "from": iso(now), "to": iso(ends)},
                         now)
        return Announcement(visit_id, reason, now, ends, approval)

    def temperature(self, token: str, celsius: object, method: object = None, form: str | None = None) -> SelfReport:
        return self._act(token, form, self._temperature, celsius, method)

    def _temperature(self, conn: sqlite3.Connection, household: str, celsius: object, method: object) -> SelfReport:
        value = _number(celsius)
        if value is None:
            raise Refused("bad_celsius")
        if not PLAUSIBLE_C[0] <= value <= PLAUSIBLE_C[1]:
            raise Refused("implausible", low=PLAUSIBLE_C[0], high=PLAUSIBLE_C[1])
        if method in (None, ""):
            method = "unknown"
        if method not in METHODS:
            raise Refused("bad_method")
        now = self.clock.now()
        self._limit(conn, household, now)
        home = Registry(conn, self.clock).household(household)
        reading_id = uuid7()
        value = round(value, 1)
        payload = {"id": reading_id, "type": "temperature", "celsius": value, "subject": "body",
                   "method": SELF_REPORT_METHOD, "measured": method, "source": "household"}
        with conn:
            conn.execute(
                "INSERT INTO readings (id, site, household, device, seq, type, device_time, received_at, celsius, "
                "subject, method, plausible, open, payload) VALUES (?, ?, ?, ?, 0, 'temperature', ?, ?, ?, 'body', ?, 1, "
                "NULL, ?)",
                (reading_id, home["site"], household, self_report_device(household), iso(now), iso(now), value,
                 SELF_REPORT_METHOD, json.dumps(payload, ensure_ascii=False)))
            alerts.audit(conn, f"resident:{household}", "resident.temperature", household,
                         {"reading": reading_id, "celsius": value, "measured": method}, now)
        # The alert worker decides on its own pass; this only tells the household what to expect.
        return SelfReport(reading_id, value, value >= self.policy.rules.fever_threshold(SELF_REPORT_METHOD))

    def help(self, token: str, kind: object, text: object, form: str | None = None) -> HelpRequest:
        return self._act(token, form, self._help, kind, text)

    def _help(self, conn: sqlite3.Connection, household: str, kind: object, text: object) -> HelpRequest:
        if kind not in HELP_KINDS:
            raise Refused("bad_kind")
        text = " ".join(str(text or "").split())  # one line: it goes into a page's detail
        if len(text) > MAX_HELP_TEXT:
            raise Refused("too_long", n=MAX_HELP_TEXT)
        now = self.clock.now()
        self._limit(conn, household, now)
        registry = Registry(conn, self.clock)
        active = registry.active_isolation(household, now)
        assert active is not None  # household_of checked it
        period, _tz = active
        still_open = conn.execute(
            "SELECT count(*) FROM resident_requests q JOIN alerts a ON a.id = q.alert_id WHERE q.household = ? "
            "AND a.resolved_at IS NULL", (household,)).fetchone()[0]
        if still_open >= self.policy.resident.open_requests:
            raise Limited("too_many_open", n=still_open)
        home = registry.household(household)
        route = self.policy.resident.help_routes[kind].value
        with conn:
            request_id = conn.execute(
                "INSERT INTO resident_requests (household, kind, text, created_at) VALUES (?, ?, ?, ?)",
                (household, kind, text, iso(now))).lastrowid
            assert request_id is not None  # an INSERT sets it
            ref = f"help:{request_id}"
            # Its own alert (not merged into a live one): each request has its own route and status. The alert
            # worker's escalation pass pages the first step (to `route`) as soon as it sees next_step_at due.
            alert_id = conn.execute(
                "INSERT INTO alerts (site, household, kind, state, opened_at, first_event_id, last_event_at, count, "
                "isolation_id, detail, step, renotified, next_step_at, route) "
                "VALUES (?, ?, 'help_request', 'open', ?, ?, ?, 1, ?, ?, 0, 0, ?, ?)",
                (home["site"], household, iso(now), ref, iso(now), period.id, f"{kind}: {text}" if text else kind,
                 iso(now), route)).lastrowid
            assert alert_id is not None  # an INSERT sets it
            conn.execute("INSERT INTO alert_events (alert_id, ref, at) VALUES (?, ?, ?)", (alert_id, ref, iso(now)))
            conn.execute("UPDATE resident_requests SET alert_id = ? WHERE id = ?", (alert_id, request_id))
            alerts.audit(conn, f"resident:{household}", "resident.help", household,
                         {"request": request_id, "kind": kind, "alert": alert_id, "route": route}, now)
        return HelpRequest(request_id, kind, text, now, "received")


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):  # JSON's and forms' types only
        return None
    try:
        number = float(value.strip().replace(",", ".")) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and abs(number) != float("inf") else None


def _integer(value: object) -> int | None:
    number = _number(value)
    return int(number) if number is not None and number == int(number) else None
