"""Signed, expiring links from notifications: one per page, bound to alert, recipient and step.

Opening a link (GET) only shows the alert; it never changes anything, because chat apps and their
preview bots fetch links on their own. The recipient acts through the page's forms (POST): "I'm handling
it" (acknowledge), then resolve with an outcome that fits the alert kind. The signed link is the
credential, so this works on a phone without a dashboard login, for the one recipient, until it expires.

The signature (HMAC via itsdangerous) stops forged or edited links; the `ack_tokens` row makes a link
expire by the injected clock (and records its first use). Every form also carries a token derived from
the link with the server's key: a POST without it is refused, so a page elsewhere cannot submit for a
recipient, and nothing but the form the page rendered can act.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from itsdangerous import BadSignature, URLSafeSerializer

from gateway import alerts, groups
from gateway.store import connect
from gateway.vocabulary import STAFF_ROLES
from isowatch.clock import Clock, iso, parse_iso
from isowatch.localtime import DEFAULT_ZONE


class AckLinkError(Exception):
    """Base: the link cannot show or change anything."""


class BadLink(AckLinkError):
    pass


class LinkExpired(AckLinkError):
    def __init__(self, alert_id: int) -> None:
        super().__init__("this link has expired")
        self.alert_id = alert_id


class BadForm(AckLinkError):
    """The POST did not carry the form token of the page this link renders."""


class GroupLinkExpired(AckLinkError):
    def __init__(self, group_id: int) -> None:
        super().__init__("this link has expired")
        self.group_id = group_id


@dataclass(frozen=True)
class TeamMember:
    staff: str
    name: str
    role: str
    phone: str


@dataclass(frozen=True)
class LinkView:
    """Everything the phone page shows for one link; read without changing anything."""

    alert_id: int
    kind: str
    household: str
    address: str
    unit: str
    timezone: str
    opened_at: datetime
    last_event_at: datetime
    count: int
    detail: str
    has_snapshot: bool
    recipient: str
    recipient_name: str
    language: str
    team: tuple[TeamMember, ...]
    acknowledged_by: str | None
    acknowledged_name: str | None
    acknowledged_at: datetime | None
    resolved_name: str | None
    resolved_at: datetime | None
    verdict: str | None
    note: str
    outcomes: tuple[str, ...]
    form_token: str
    expires_at: datetime


@dataclass(frozen=True)
class AckOutcome:
    alert_id: int
    staff: str
    already_by: str | None  # someone acknowledged first: recorded as a second acknowledgement


@dataclass(frozen=True)
class GroupLinkView:
    """What a group's link page shows (a storm's alerts, one list); read without changing anything."""

    group: groups.Group
    recipient: str
    recipient_name: str
    language: str
    acknowledged_name: str | None
    outcomes: tuple[str, ...]
    form_token: str
    expires_at: datetime


def load_or_create_secret(path: Path) -> str:
    """The signing key lives beside the database, so links survive a gateway restart."""
    if path.exists():
        return path.read_text().strip()
    key = secrets.token_urlsafe(32)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # never readable by others, not even briefly
    with os.fdopen(fd, "w") as f:
        f.write(key)
    os.replace(tmp, path)
    return key


def _when(text: str | None) -> datetime | None:
    return parse_iso(text) if text else None


class AckLinks:
    def __init__(self, secret: str, clock: Clock, *, ttl_hours: float = 24) -> None:
        self._serializer = URLSafeSerializer(secret, salt="isowatch-ack-v1")
        # A group's link (gateway/groups.py) is signed apart: an alert's link never opens a group, nor the reverse.
        self._group_serializer = URLSafeSerializer(secret, salt="isowatch-ack-group-v1")
        self._form_key = hashlib.sha256(b"isowatch-ack-form-v1:" + secret.encode()).digest()
        self.clock = clock
        self.ttl = timedelta(hours=ttl_hours)

    def issue(self, conn: sqlite3.Connection, alert_id: int, staff: str, step: int) -> str:
        """Record a new token (inside the caller's transaction) and return its signed form."""
        jti = secrets.token_urlsafe(12)
        expires = self.clock.now() + self.ttl
        conn.execute("INSERT INTO ack_tokens (jti, alert_id, staff, step, expires_at) VALUES (?, ?, ?, ?, ?)",
                     (jti, alert_id, staff, step, iso(expires)))
        return self._serializer.dumps({"j": jti, "a": alert_id, "s": staff, "n": step})

    def _claims(self, token: str) -> dict:
        try:
            claims = self._serializer.loads(token)
        except BadSignature:
            raise BadLink("this link is not valid") from None
        if not isinstance(claims, dict) or not {"j", "a", "s", "n"} <= set(claims):
            raise BadLink("this link is not valid")
        return claims

    def peek(self, conn: sqlite3.Connection, token: str) -> sqlite3.Row:
        """The token's row if the link is genuine, unexpired and its recipient still active."""
        claims = self._claims(token)
        row = conn.execute("SELECT t.*, s.active FROM ack_tokens t LEFT JOIN staff s ON s.staff = t.staff "
                           "WHERE t.jti = ?", (claims["j"],)).fetchone()
        if row is None or row["alert_id"] != claims["a"] or row["staff"] != claims["s"] or not row["active"]:
            raise BadLink("this link is not valid")
        if self.clock.now() >= parse_iso(row["expires_at"]):
            raise LinkExpired(row["alert_id"])
        return row

    def form_token(self, jti: str) -> str:
        return hmac.new(self._form_key, jti.encode(), hashlib.sha256).hexdigest()[:32]

    def _checked(self, conn: sqlite3.Connection, token: str, form: str) -> sqlite3.Row:
        row = self.peek(conn, token)
        if not form or not hmac.compare_digest(form.encode(), self.form_token(row["jti"]).encode()):
            raise BadForm("this form did not come from the link's page")
        return row

    def view(self, conn: sqlite3.Connection, token: str) -> LinkView:
        """What the link's page shows. Reads only: a GET by a preview bot must change nothing."""
        link = self.peek(conn, token)
        alert = conn.execute(
            "SELECT a.*, h.address, h.unit, h.team, coalesce(si.timezone, ?) AS timezone, "
            "ack.name AS acknowledged_name, res.name AS resolved_name FROM alerts a "
            "JOIN households h ON h.household = a.household LEFT JOIN sites si ON si.site = h.site "
            "LEFT JOIN staff ack ON ack.staff = a.acknowledged_by LEFT JOIN staff res ON res.staff = a.resolved_by "
            "WHERE a.id = ?", (DEFAULT_ZONE, link["alert_id"])).fetchone()
        if alert is None:
            raise BadLink("this link is not valid")
        me = conn.execute("SELECT name, language FROM staff WHERE staff = ?", (link["staff"],)).fetchone()
        team: list[TeamMember] = []
        if alert["team"]:
            members = conn.execute("SELECT * FROM teams WHERE team = ?", (alert["team"],)).fetchone()
            for role in STAFF_ROLES:
                person = conn.execute("SELECT staff, name, phone FROM staff WHERE staff = ?",
                                      (members[role],)).fetchone() if members else None
                if person is not None:
                    team.append(TeamMember(person["staff"], person["name"], role, person["phone"] or ""))
        return LinkView(
            alert_id=alert["id"], kind=alert["kind"], household=alert["household"], address=alert["address"] or "",
            unit=alert["unit"] or "", timezone=alert["timezone"], opened_at=parse_iso(alert["opened_at"]),
            last_event_at=parse_iso(alert["last_event_at"] or alert["opened_at"]), count=alert["count"],
            detail=alert["detail"] or "", has_snapshot=bool(alert["snapshot"]), recipient=link["staff"],
            recipient_name=me["name"], language=me["language"] or "zh", team=tuple(team),
            acknowledged_by=alert["acknowledged_by"],
            acknowledged_name=alert["acknowledged_name"] or alert["acknowledged_by"],
            acknowledged_at=_when(alert["acknowledged_at"]),
            resolved_name=alert["resolved_name"] or alert["resolved_by"], resolved_at=_when(alert["resolved_at"]),
            verdict=alert["verdict"], note=alert["note"] or "", outcomes=alerts.outcomes_for(alert["kind"]),
            form_token=self.form_token(link["jti"]), expires_at=parse_iso(link["expires_at"]),
        )

    def acknowledge(self, conn: sqlite3.Connection, token: str, form: str) -> AckOutcome:
        """"I'm handling it": acknowledges as the recipient (again is harmless and recorded)."""
        row = self._checked(conn, token, form)
        now = self.clock.now()
        with conn:
            conn.execute("UPDATE ack_tokens SET used_at = ? WHERE jti = ? AND used_at IS NULL", (iso(now), row["jti"]))
            already = alerts.acknowledge(conn, row["alert_id"], row["staff"], now, via="link")
        return AckOutcome(row["alert_id"], row["staff"], already)

    def resolve(self, conn: sqlite3.Connection, token: str, form: str, verdict: str, note: str) -> int:
        """Close the alert as the recipient with an outcome that fits its kind (alerts.AlertError if not)."""
        row = self._checked(conn, token, form)
        now = self.clock.now()
        with conn:
            conn.execute("UPDATE ack_tokens SET used_at = ? WHERE jti = ? AND used_at IS NULL", (iso(now), row["jti"]))
        alerts.resolve(conn, row["alert_id"], staff=row["staff"], verdict=verdict, note=note, now=now, via="link")
        return int(row["alert_id"])

    # -- a group's link: the same rules (GET reads, the page's forms act, expiry by the clock) ----------

    def issue_group(self, conn: sqlite3.Connection, group_id: int, staff: str, step: int) -> str:
        """Record a new token for a group's page (inside the caller's transaction) and return its signed form."""
        jti = secrets.token_urlsafe(12)
        expires = self.clock.now() + self.ttl
        conn.execute("INSERT INTO ack_tokens (jti, group_id, staff, step, expires_at) VALUES (?, ?, ?, ?, ?)",
                     (jti, group_id, staff, step, iso(expires)))
        return self._group_serializer.dumps({"j": jti, "g": group_id, "s": staff, "n": step})

    def peek_group(self, conn: sqlite3.Connection, token: str) -> sqlite3.Row:
        """The group token's row if the link is genuine, unexpired and its recipient still active."""
        try:
            claims = self._group_serializer.loads(token)
        except BadSignature:
            raise BadLink("this link is not valid") from None
        if not isinstance(claims, dict) or not {"j", "g", "s", "n"} <= set(claims):
            raise BadLink("this link is not valid")
        row = conn.execute("SELECT t.*, s.active FROM ack_tokens t LEFT JOIN staff s ON s.staff = t.staff "
                           "WHERE t.jti = ?", (claims["j"],)).fetchone()
        if row is None or row["group_id"] != claims["g"] or row["staff"] != claims["s"] or not row["active"]:
            raise BadLink("this link is not valid")
        if self.clock.now() >= parse_iso(row["expires_at"]):
            raise GroupLinkExpired(row["group_id"])
        return row

    def _checked_group(self, conn: sqlite3.Connection, token: str, form: str) -> sqlite3.Row:
        row = self.peek_group(conn, token)
        if not form or not hmac.compare_digest(form.encode(), self.form_token(row["jti"]).encode()):
            raise BadForm("this form did not come from the link's page")
        return row

    def group_view(self, conn: sqlite3.Connection, token: str) -> GroupLinkView:
        """What a group's link page shows. Reads only."""
        link = self.peek_group(conn, token)
        group = groups.load(conn, link["group_id"])
        me = conn.execute("SELECT name, language FROM staff WHERE staff = ?", (link["staff"],)).fetchone()
        taken = conn.execute("SELECT name FROM staff WHERE staff = ?", (group.acknowledged_by,)).fetchone()
        return GroupLinkView(
            group=group, recipient=link["staff"], recipient_name=me["name"], language=me["language"] or "zh",
            acknowledged_name=taken["name"] if taken else group.acknowledged_by,
            outcomes=alerts.outcomes_for(group.kind), form_token=self.form_token(link["jti"]),
            expires_at=parse_iso(link["expires_at"]))

    def acknowledge_group(self, conn: sqlite3.Connection, token: str, form: str) -> str | None:
        """"I'm handling it" for the whole group as the recipient; returns who had taken it, if anyone."""
        row = self._checked_group(conn, token, form)
        now = self.clock.now()
        with conn:
            conn.execute("UPDATE ack_tokens SET used_at = ? WHERE jti = ? AND used_at IS NULL", (iso(now), row["jti"]))
            return groups.acknowledge(conn, row["group_id"], row["staff"], now, via="link")

    def resolve_group(self, conn: sqlite3.Connection, token: str, form: str, verdict: str, note: str) -> int:
        """Close every live member with one outcome that fits the kind (alerts.AlertError if not)."""
        row = self._checked_group(conn, token, form)
        now = self.clock.now()
        with conn:
            conn.execute("UPDATE ack_tokens SET used_at = ? WHERE jti = ? AND used_at IS NULL", (iso(now), row["jti"]))
        return groups.resolve(conn, row["group_id"], staff=row["staff"], verdict=verdict, note=note, now=now,
                              via="link")


class AckDesk:
    """What the HTTP routes need: their own connection to the database per call, and the links."""

    def __init__(self, db_path: Path, links: AckLinks, snapshot_dir: Path) -> None:
        self.db_path = Path(db_path)
        self.links = links
        self.snapshot_dir = Path(snapshot_dir)
        self._lock = threading.Lock()  # one writer at a time from this process

    def _connect(self) -> sqlite3.Connection:
        conn = connect(self.db_path)
        conn.row_factory = sqlite3.Row
        return conn

    def view(self, token: str) -> LinkView:
        conn = self._connect()
        try:
            return self.links.view(conn, token)
        finally:
            conn.close()

    def acknowledge(self, token: str, form: str) -> AckOutcome:
        with self._lock:
            conn = self._connect()
            try:
                return self.links.acknowledge(conn, token, form)
            finally:
                conn.close()

    def resolve(self, token: str, form: str, verdict: str, note: str) -> int:
        with self._lock:
            conn = self._connect()
            try:
                return self.links.resolve(conn, token, form, verdict, note)
            finally:
                conn.close()

    def group_view(self, token: str) -> GroupLinkView:
        conn = self._connect()
        try:
            return self.links.group_view(conn, token)
        finally:
            conn.close()

    def acknowledge_group(self, token: str, form: str) -> str | None:
        with self._lock:
            conn = self._connect()
            try:
                return self.links.acknowledge_group(conn, token, form)
            finally:
                conn.close()

    def resolve_group(self, token: str, form: str, verdict: str, note: str) -> int:
        with self._lock:
            conn = self._connect()
            try:
                return self.links.resolve_group(conn, token, form, verdict, note)
            finally:
                conn.close()

    def snapshot_path(self, token: str) -> Path | None:
        conn = self._connect()
        try:
            row = self.links.peek(conn, token)
            snap = conn.execute(
                "SELECT s.path FROM alerts a JOIN snapshots s ON s.sha256 = a.snapshot WHERE a.id = ? LIMIT 1",
                (row["alert_id"],),
            ).fetchone()
            if snap is None:
                return None
            with conn:
                alerts.audit(conn, row["staff"], "snapshot.view", f"alert:{row['alert_id']}", "via ack link",
                             self.links.clock.now())
            return self.snapshot_dir / snap["path"]
        finally:
            conn.close()
