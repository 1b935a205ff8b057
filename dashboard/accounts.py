"""Dashboard accounts: users with roles, argon2 passwords, server-side sessions, login rate limiting (issue 7).

Sessions live in the database (only a hash of the cookie's token is stored), so a gateway restart keeps
people logged in and a stolen database does not hand out live sessions.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from pydantic import BaseModel, ConfigDict, Field

from gateway.alerts import audit
from gateway.registry import iso

log = logging.getLogger(__name__)

Role = Literal["admin", "leader", "medical", "police", "social", "auditor"]
ROLES: tuple[str, ...] = ("admin", "leader", "medical", "police", "social", "auditor")
STAFF_ROLES = ("leader", "medical", "police", "social")
Language = Literal["zh", "en"]

SESSION_HOURS = 12  # one shift; staff on call log in again once a day
MAX_FAILURES_PER_USER = 5  # within FAILURE_WINDOW, before further tries are refused unchecked
MAX_FAILURES_PER_IP = 20
FAILURE_WINDOW = timedelta(minutes=15)

_hasher = PasswordHasher()
# A hash to verify against when the user does not exist, so timing does not reveal which names exist.
_DUMMY_HASH = _hasher.hash("isowatch-no-such-user")


class AccountError(Exception):
    """Base of the account errors translated at the HTTP edge."""


class BadCredentials(AccountError):
    pass


class TooManyAttempts(AccountError):
    def __init__(self, retry_after_s: int) -> None:
        super().__init__("too many failed logins; try again later")
        self.retry_after_s = retry_after_s


class UserExists(AccountError):
    pass


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    username: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    display_name: str = Field("", max_length=100)
    role: Role
    language: Language = "zh"
    password: str = Field(min_length=10, max_length=200)
    staff: str | None = Field(None, max_length=64, description="The registry staff id of a team member")
    teams: list[str] = Field(default_factory=list, max_length=100, description="Extra team memberships")


class UserPublic(BaseModel):
    username: str
    display_name: str
    role: Role
    language: Language
    staff: str | None
    teams: list[str]


@dataclass(frozen=True)
class User:
    username: str
    display_name: str
    role: str
    language: str
    staff: str | None
    teams: tuple[str, ...]  # every team the user belongs to; empty for admins and auditors

    @property
    def sees_all(self) -> bool:
        return self.role in ("admin", "auditor")

    @property
    def can_change(self) -> bool:
        """Auditors read everything and change nothing."""
        return self.role != "auditor"

    @property
    def actor(self) -> str:
        """The name written to alerts and the audit log: the staff id when the user is a team member."""
        return self.staff or self.username

    def public(self) -> UserPublic:
        return UserPublic(username=self.username, display_name=self.display_name, role=self.role,  # type: ignore[arg-type]
                          language=self.language, staff=self.staff, teams=list(self.teams))  # type: ignore[arg-type]


@dataclass(frozen=True)
class Session:
    token: str  # goes in the cookie; only its hash is stored
    csrf: str
    user: User


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_user(conn: sqlite3.Connection, new: UserCreate, *, by: str, now: datetime) -> User:
    with conn:
        if conn.execute("SELECT 1 FROM users WHERE username = ?", (new.username,)).fetchone():
            raise UserExists(f"user {new.username} exists")
        conn.execute(
            "INSERT INTO users (username, display_name, role, language, password_hash, staff, active, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, 1, ?)",
            (new.username, new.display_name or new.username, new.role, new.language, _hasher.hash(new.password),
             new.staff, iso(now)),
        )
        for team in new.teams:
            conn.execute("INSERT OR IGNORE INTO user_teams (username, team) VALUES (?, ?)", (new.username, team))
        audit(conn, by, "user.create", f"user:{new.username}", {"role": new.role, "staff": new.staff}, now)
    user = load_user(conn, new.username)
    assert user is not None
    return user


def set_password(conn: sqlite3.Connection, username: str, password: str, *, by: str, now: datetime) -> None:
    with conn:
        cursor = conn.execute("UPDATE users SET password_hash = ? WHERE username = ?", (_hasher.hash(password), username))
        if cursor.rowcount != 1:
            raise BadCredentials(f"no such user {username}")
        conn.execute("DELETE FROM sessions WHERE username = ?", (username,))
        audit(conn, by, "user.password", f"user:{username}", {}, now)


def set_language(conn: sqlite3.Connection, username: str, language: str) -> None:
    with conn:
        conn.execute("UPDATE users SET language = ? WHERE username = ?", (language, username))


def load_user(conn: sqlite3.Connection, username: str) -> User | None:
    row = conn.execute("SELECT username, display_name, role, language, staff FROM users "
                       "WHERE username = ? AND active = 1", (username,)).fetchone()
    if row is None:
        return None
    teams = {r[0] for r in conn.execute("SELECT team FROM user_teams WHERE username = ?", (username,))}
    if row[4]:
        teams |= {r[0] for r in conn.execute(
            "SELECT team FROM teams WHERE ? IN (leader, medical, police, social)", (row[4],))}
    return User(row[0], row[1], row[2], row[3], row[4], tuple(sorted(teams)))


def list_users(conn: sqlite3.Connection) -> list[User]:
    names = [r[0] for r in conn.execute("SELECT username FROM users WHERE active = 1 ORDER BY username")]
    return [u for u in (load_user(conn, n) for n in names) if u is not None]


def login(conn: sqlite3.Connection, username: str, password: str, *, ip: str, now: datetime) -> Session:
    """Check the password (unless rate limited), record the attempt and open a session."""
    since = iso(now - FAILURE_WINDOW)
    by_user = conn.execute("SELECT count(*) FROM login_attempts WHERE username = ? AND at >= ? AND ok = 0",
                           (username, since)).fetchone()[0]
    by_ip = conn.execute("SELECT count(*) FROM login_attempts WHERE ip = ? AND at >= ? AND ok = 0",
                         (ip, since)).fetchone()[0]
    if by_user >= MAX_FAILURES_PER_USER or by_ip >= MAX_FAILURES_PER_IP:
        with conn:
            audit(conn, username, "auth.login_refused", f"user:{username}", {"ip": ip, "reason": "rate_limited"}, now)
        log.warning("login rate limited user=%s ip=%s", username, ip)
        raise TooManyAttempts(int(FAILURE_WINDOW.total_seconds()))
    row = conn.execute("SELECT password_hash FROM users WHERE username = ? AND active = 1", (username,)).fetchone()
    ok = False
    try:
        ok = _hasher.verify(row[0] if row else _DUMMY_HASH, password) and row is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        ok = False
    with conn:
        conn.execute("INSERT INTO login_attempts (at, username, ip, ok) VALUES (?, ?, ?, ?)",
                     (iso(now), username, ip, int(ok)))
        audit(conn, username, "auth.login" if ok else "auth.login_failed", f"user:{username}", {"ip": ip}, now)
        if not ok:
            raise_after = BadCredentials("wrong username or password")
        else:
            if row and _hasher.check_needs_rehash(row[0]):
                conn.execute("UPDATE users SET password_hash = ? WHERE username = ?", (_hasher.hash(password), username))
            token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
            conn.execute("INSERT INTO sessions (token_hash, username, csrf, created_at, expires_at, ip) "
                         "VALUES (?, ?, ?, ?, ?, ?)",
                         (_token_hash(token), username, csrf, iso(now), iso(now + timedelta(hours=SESSION_HOURS)), ip))
            # Old rows go when someone logs in: the table stays small without a background job.
            conn.execute("DELETE FROM sessions WHERE expires_at < ?", (iso(now),))
    if not ok:
        raise raise_after
    user = load_user(conn, username)
    assert user is not None
    return Session(token, csrf, user)


def session(conn: sqlite3.Connection, token: str, *, now: datetime) -> Session | None:
    row = conn.execute("SELECT username, csrf, expires_at FROM sessions WHERE token_hash = ?",
                       (_token_hash(token),)).fetchone()
    if row is None or row[2] <= iso(now):
        return None
    user = load_user(conn, row[0])
    return Session(token, row[1], user) if user else None


def logout(conn: sqlite3.Connection, token: str, *, now: datetime) -> None:
    with conn:
        row = conn.execute("SELECT username FROM sessions WHERE token_hash = ?", (_token_hash(token),)).fetchone()
        conn.execute("DELETE FROM sessions WHERE token_hash = ?", (_token_hash(token),))
        if row:
            audit(conn, row[0], "auth.logout", f"user:{row[0]}", {}, now)
