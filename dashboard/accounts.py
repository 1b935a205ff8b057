"""Dashboard accounts: users with roles, argon2 passwords, server-side sessions, login rate limiting.

Sessions live in the database (only a hash of the cookie's token is stored), so a gateway restart keeps
people logged in and a stolen database does not hand out live sessions.
"""

from __future__ import annotations

import hashlib
import logging
import math
import secrets
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Literal, get_args

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from pydantic import BaseModel, ConfigDict, Field, model_validator

from dashboard.password_policy import check_password
from gateway.alerts import audit
from isowatch.clock import iso, parse_iso

log = logging.getLogger(__name__)

# A user's role: a staff role (gateway.vocabulary.Role, checked by tests/test_vocabulary.py), or one of the two
# that only use the dashboard.
Role = Literal["admin", "leader", "medical", "police", "social", "auditor"]
ROLES: tuple[str, ...] = get_args(Role)
Language = Literal["zh", "en"]

SESSION_HOURS = 12  # one shift; staff on call log in again once a day
MAX_FAILURES_PER_USER = 5  # per user and address within FAILURE_WINDOW; then each try waits (LIMITED_DELAY, doubling)
MAX_FAILURES_PER_IP = 20  # per address over all users (one address trying many names)
FAILURE_WINDOW = timedelta(minutes=15)
LIMITED_DELAY = timedelta(minutes=1)
ATTEMPT_PENDING = -1  # login_attempts.ok while the password is being checked; counts as a failure

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


class UnknownReference(AccountError):
    """The new user names a staff member or team the registry does not have, or a staff id of another role."""


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    username: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    display_name: str = Field("", max_length=100)
    role: Role
    language: Language = "zh"
    password: str = Field(description="At least 10 characters; not a common password, a repeated character or "
                                      "simple sequence, nor the username")
    staff: str | None = Field(None, max_length=64, description="The registry staff id of a team member; the "
                                                               "user's role must be that member's role")
    teams: list[Annotated[str, Field(max_length=64)]] = Field(default_factory=list, max_length=100,
                                                             description="Extra team memberships (existing teams)")

    @model_validator(mode="after")
    def _strong_password(self) -> "UserCreate":
        check_password(self.password, self.username)
        return self


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
        return UserPublic(username=self.username, display_name=self.display_name, role=self.role,
                          language=self.language, staff=self.staff, teams=list(self.teams))


@dataclass(frozen=True)
class Session:
    token: str  # goes in the cookie; only its hash is stored
    csrf: str
    user: User


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _check_references(conn: sqlite3.Connection, new: UserCreate) -> None:
    """A user on a team or staff id that does not exist would see nothing, or the wrong households later."""
    if new.staff is not None:
        row = conn.execute("SELECT role FROM staff WHERE staff = ?", (new.staff,)).fetchone()
        if row is None:
            raise UnknownReference(f"no such staff member: {new.staff}")
        if row[0] != new.role:
            raise UnknownReference(f"staff member {new.staff} is a {row[0]}; the user's role must be {row[0]}")
    for team in new.teams:
        if conn.execute("SELECT 1 FROM teams WHERE team = ?", (team,)).fetchone() is None:
            raise UnknownReference(f"no such team: {team}")


def create_user(conn: sqlite3.Connection, new: UserCreate, *, by: str, now: datetime) -> User:
    with conn:
        if conn.execute("SELECT 1 FROM users WHERE username = ?", (new.username,)).fetchone():
            raise UserExists(f"user {new.username} exists")
        _check_references(conn, new)
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
    """Raises WeakPassword when the password breaks the policy (dashboard/password_policy.py)."""
    check_password(password, username)
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


def _backoff_s(failures: int, limit: int) -> float:
    """How long after the last checked attempt the next one may be checked: nothing under the limit, then
    doubling from one minute, never longer than the window (the failures age out of it by then)."""
    if failures < limit:
        return 0.0
    return min(LIMITED_DELAY.total_seconds() * 2 ** min(failures - limit, 16), FAILURE_WINDOW.total_seconds())


def _reserve_attempt(conn: sqlite3.Connection, username: str, ip: str, now: datetime) -> int:
    """Count this attempt before the password is checked, or refuse it: one write transaction
    (BEGIN IMMEDIATE) reads the failures and records the attempt, so parallel requests in any number of
    processes queue here and cannot all pass the same count. The row stays `pending` (counted as a
    failure) until the check decides it. Failures count per user and address: someone guessing from one
    address slows only that address down, and the real user elsewhere still logs in."""
    since = iso(now - FAILURE_WINDOW)
    with conn:
        conn.execute("BEGIN IMMEDIATE")
        # Failures since this address's last success for this user: a correct login starts afresh.
        by_pair = conn.execute(
            "SELECT count(*), max(at) FROM login_attempts WHERE username = ? AND ip = ? AND at >= ? AND ok != 1 "
            "AND id > coalesce((SELECT max(id) FROM login_attempts WHERE username = ? AND ip = ? AND ok = 1), 0)",
            (username, ip, since, username, ip)).fetchone()
        by_ip = conn.execute("SELECT count(*), max(at) FROM login_attempts WHERE ip = ? AND at >= ? AND ok != 1",
                             (ip, since)).fetchone()
        wait = 0.0
        for (failures, last), limit in ((by_pair, MAX_FAILURES_PER_USER), (by_ip, MAX_FAILURES_PER_IP)):
            backoff = _backoff_s(failures, limit)
            if backoff:
                wait = max(wait, backoff - (now - parse_iso(last)).total_seconds())
        if wait > 0:  # the refusal is audited (committed), the attempt not counted: it checked nothing
            audit(conn, username, "auth.login_refused", f"user:{username}", {"ip": ip, "reason": "rate_limited"}, now)
        else:
            attempt = conn.execute("INSERT INTO login_attempts (at, username, ip, ok) VALUES (?, ?, ?, ?)",
                                   (iso(now), username, ip, ATTEMPT_PENDING)).lastrowid
    if wait > 0:
        log.warning("login rate limited user=%s ip=%s retry_after=%.0fs", username, ip, wait)
        raise TooManyAttempts(max(1, math.ceil(wait)))
    assert attempt is not None  # an INSERT sets it
    return int(attempt)


def login(conn: sqlite3.Connection, username: str, password: str, *, ip: str, now: datetime) -> Session:
    """Count the attempt (unless rate limited), then check the password and open a session."""
    attempt = _reserve_attempt(conn, username, ip, now)
    row = conn.execute("SELECT password_hash FROM users WHERE username = ? AND active = 1", (username,)).fetchone()
    ok = False
    try:
        ok = _hasher.verify(row[0] if row else _DUMMY_HASH, password) and row is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        ok = False
    with conn:
        conn.execute("UPDATE login_attempts SET ok = ? WHERE id = ?", (int(ok), attempt))
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
            # Old rows go when someone logs in: the tables stay small without a background job.
            conn.execute("DELETE FROM sessions WHERE expires_at < ?", (iso(now),))
            conn.execute("DELETE FROM login_attempts WHERE at < ?", (iso(now - FAILURE_WINDOW),))
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


class UserRow(BaseModel):
    """A user as the admin's user list shows it, disabled ones included."""
    username: str
    display_name: str
    role: str
    language: str
    staff: str | None
    staff_name: str | None
    teams: list[str]  # extra memberships, set on the user
    all_teams: list[str]  # with the teams the registry puts the user's staff member on
    active: bool


def all_users(conn: sqlite3.Connection) -> list[UserRow]:
    rows = conn.execute("SELECT u.username, u.display_name, u.role, u.language, u.staff, s.name AS staff_name, "
                        "u.active FROM users u LEFT JOIN staff s ON s.staff = u.staff ORDER BY u.active DESC, "
                        "u.username").fetchall()
    teams: dict[str, list[str]] = {}
    for username, team in conn.execute("SELECT username, team FROM user_teams ORDER BY team"):
        teams.setdefault(username, []).append(team)
    on_staff: dict[str, set[str]] = {}
    for team, *members in conn.execute("SELECT team, leader, medical, police, social FROM teams"):
        for member in members:
            if member:
                on_staff.setdefault(member, set()).add(team)
    return [UserRow(username=r[0], display_name=r[1] or r[0], role=r[2], language=r[3] or "zh", staff=r[4],
                    staff_name=r[5], teams=teams.get(r[0], []),
                    all_teams=sorted(set(teams.get(r[0], [])) | on_staff.get(r[4] or "", set())), active=bool(r[6]))
            for r in rows]


def _existing(conn: sqlite3.Connection, username: str) -> None:
    if conn.execute("SELECT 1 FROM users WHERE username = ?", (username,)).fetchone() is None:
        raise UnknownReference(f"no such user: {username}")


def set_active(conn: sqlite3.Connection, username: str, active: bool, *, by: str, now: datetime) -> None:
    """Disabling ends the user's sessions at once (an open board's stream closes within a second)."""
    if not active and username == by:
        raise UnknownReference("an admin cannot disable their own account")
    with conn:
        _existing(conn, username)
        conn.execute("UPDATE users SET active = ? WHERE username = ?", (int(active), username))
        if not active:
            conn.execute("DELETE FROM sessions WHERE username = ?", (username,))
        audit(conn, by, "user.enable" if active else "user.disable", f"user:{username}", {}, now)


def set_teams(conn: sqlite3.Connection, username: str, teams: list[str], *, by: str, now: datetime) -> None:
    """The user's extra team memberships (a staff member is on their registry teams anyway)."""
    with conn:
        _existing(conn, username)
        for team in teams:
            if conn.execute("SELECT 1 FROM teams WHERE team = ?", (team,)).fetchone() is None:
                raise UnknownReference(f"no such team: {team}")
        before = [r[0] for r in conn.execute("SELECT team FROM user_teams WHERE username = ? ORDER BY team",
                                             (username,))]
        conn.execute("DELETE FROM user_teams WHERE username = ?", (username,))
        conn.executemany("INSERT INTO user_teams (username, team) VALUES (?, ?)", [(username, t) for t in teams])
        audit(conn, by, "user.teams", f"user:{username}", {"before": before, "after": sorted(teams)}, now)


def change_own_password(conn: sqlite3.Connection, session: Session, current: str, new: str, *,
                        now: datetime) -> None:
    """Checks the current password (a session left open on a shared phone is not enough), applies the
    policy, and ends the user's other sessions; this one stays."""
    username = session.user.username
    row = conn.execute("SELECT password_hash FROM users WHERE username = ? AND active = 1", (username,)).fetchone()
    try:
        ok = row is not None and _hasher.verify(row[0], current)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        ok = False
    if not ok:
        with conn:
            audit(conn, username, "user.password_change_refused", f"user:{username}", {"reason": "wrong_current"}, now)
        raise BadCredentials("the current password is wrong")
    check_password(new, username)
    with conn:
        conn.execute("UPDATE users SET password_hash = ? WHERE username = ?", (_hasher.hash(new), username))
        conn.execute("DELETE FROM sessions WHERE username = ? AND token_hash != ?", (username, _token_hash(session.token)))
        audit(conn, username, "user.password_change", f"user:{username}", {}, now)
