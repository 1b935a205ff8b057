"""Signed, expiring, single-use acknowledge links: one per notification, bound to alert, recipient and step.

The signature (HMAC via itsdangerous) stops forged or edited links; the `ack_tokens` row makes a link
expire by the injected clock and work once. Whoever the link was sent to is recorded as acknowledging.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from itsdangerous import BadSignature, URLSafeSerializer

from gateway import alerts
from gateway.registry import iso, parse_iso
from gateway.store import connect
from isowatch.clock import Clock


class AckLinkError(Exception):
    """Base: the link cannot acknowledge anything."""


class BadLink(AckLinkError):
    pass


class LinkUsed(AckLinkError):
    def __init__(self, used_at: str) -> None:
        super().__init__(f"this link was already used at {used_at}")
        self.used_at = used_at


class LinkExpired(AckLinkError):
    pass


@dataclass(frozen=True)
class AckOutcome:
    alert_id: int
    staff: str
    staff_name: str
    household: str
    kind: str
    already_by: str | None  # someone else acknowledged first; this link still counts as used


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


class AckLinks:
    def __init__(self, secret: str, clock: Clock, *, ttl_hours: float = 24) -> None:
        self._serializer = URLSafeSerializer(secret, salt="isowatch-ack-v1")
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
        """The token's row if the link is genuine and unexpired (used or not): for viewing the snapshot."""
        claims = self._claims(token)
        row = conn.execute("SELECT * FROM ack_tokens WHERE jti = ?", (claims["j"],)).fetchone()
        if row is None or row["alert_id"] != claims["a"] or row["staff"] != claims["s"]:
            raise BadLink("this link is not valid")
        if self.clock.now() >= parse_iso(row["expires_at"]):
            raise LinkExpired("this link has expired")
        return row

    def redeem(self, conn: sqlite3.Connection, token: str) -> AckOutcome:
        """Use the link once: acknowledges the alert as the recipient, or raises an AckLinkError."""
        row = self.peek(conn, token)
        now = self.clock.now()
        with conn:
            cursor = conn.execute("UPDATE ack_tokens SET used_at = ? WHERE jti = ? AND used_at IS NULL",
                                  (iso(now), row["jti"]))
            if cursor.rowcount != 1:
                used = conn.execute("SELECT used_at FROM ack_tokens WHERE jti = ?", (row["jti"],)).fetchone()[0]
                raise LinkUsed(used)
            already = alerts.acknowledge(conn, row["alert_id"], row["staff"], now, via="link")
        info = conn.execute(
            "SELECT a.household, a.kind, coalesce(s.name, a.acknowledged_by) AS name FROM alerts a "
            "LEFT JOIN staff s ON s.staff = ? WHERE a.id = ?", (row["staff"], row["alert_id"]),
        ).fetchone()
        return AckOutcome(row["alert_id"], row["staff"], info["name"], info["household"], info["kind"], already)


class AckDesk:
    """What the HTTP route needs: its own writable connection to the database, and the links."""

    def __init__(self, db_path: Path, links: AckLinks, snapshot_dir: Path) -> None:
        self.db_path = Path(db_path)
        self.links = links
        self.snapshot_dir = Path(snapshot_dir)
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        conn = connect(self.db_path)
        conn.row_factory = sqlite3.Row
        return conn

    def redeem(self, token: str) -> AckOutcome:
        with self._lock:
            conn = self._connect()
            try:
                return self.links.redeem(conn, token)
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


def now_iso(clock: Clock) -> str:
    value: datetime = clock.now()
    return iso(value)
