"""Users: admins list, create, disable and enable accounts, reset passwords and set teams, on pages and in
the API (the first admin comes from `isowatch admin create-user`). Every change is in the audit log
(user.create, user.disable, user.enable, user.password, user.teams)."""

from __future__ import annotations

import sqlite3
from typing import Annotated, Any

from fastapi import Form, Request
from fastapi import Path as PathParam
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dashboard import accounts
from dashboard.accounts import UserCreate, UserPublic, UserRow
from dashboard.deps import AdminUser, ClockDep, WriteDB, protected_router, render
from dashboard.i18n import translator
from dashboard.password_policy import WeakPassword, check_password

router = protected_router(tags=["users"])
API_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Not logged in"}, 403: {"description": "Admins only"},
    422: {"description": "No such user, staff member or team; or a weak password"}}
FIELD_KEYS = {"username": "username", "display_name": "display_name", "role": "role", "language": "language",
              "password": "password", "staff": "staff_member", "teams": "extra_teams"}
Username = Annotated[str, PathParam(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")]


class PasswordIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    password: str = Field(min_length=1, max_length=200)


class TeamsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    teams: list[Annotated[str, Field(max_length=64)]] = Field(default_factory=list, max_length=100)


def policy_text(error: WeakPassword, language: str) -> str:
    """The policy's message is 'Chinese / English': a page shows the reader's half."""
    zh, _, en = str(error).partition(" / ")
    return zh if language == "zh" else (en or zh)


def _choices(db: sqlite3.Connection) -> dict:
    return {"staff": db.execute("SELECT staff, name, role FROM staff WHERE active = 1 ORDER BY role, name").fetchall(),
            "teams": db.execute("SELECT team, coalesce(nullif(name, ''), team) FROM teams ORDER BY team").fetchall()}


def _page(request: Request, db: sqlite3.Connection, status: int = 200, **context: object) -> Response:
    return render(request, "users.html", {"users": accounts.all_users(db), **_choices(db), **context},
                  status_code=status)


@router.get("/users", include_in_schema=False)
def users_page(request: Request, db: WriteDB, admin: AdminUser, done: str = "", who: str = "") -> Response:
    return _page(request, db, done=done if done in DONE else "", who=who)


DONE = ("created", "disabled", "enabled", "password", "teams")


def _done(action: str, username: str) -> Response:
    return RedirectResponse(f"/users?done={action}&who={username}", status_code=303)


@router.post("/users", include_in_schema=False)
def create_form(request: Request, db: WriteDB, admin: AdminUser, clock: ClockDep,
                username: Annotated[str, Form(max_length=64)], role: Annotated[str, Form(max_length=16)],
                password: Annotated[str, Form(max_length=200)], display_name: Annotated[str, Form(max_length=100)] = "",
                language: Annotated[str, Form(max_length=2)] = "zh", staff: Annotated[str, Form(max_length=64)] = "",
                teams: Annotated[list[str], Form()] = []) -> Response:  # noqa: B006 - FastAPI copies the default
    language_of_page = admin.language
    try:
        check_password(password, username)
        new = UserCreate(username=username, display_name=display_name, role=role, language=language,
                         password=password, staff=staff or None, teams=teams)
        accounts.create_user(db, new, by=admin.username, now=clock.now())
    except WeakPassword as weak:
        return _page(request, db, 422, error=policy_text(weak, language_of_page))
    except ValidationError as invalid:
        t = translator(language_of_page)
        fields = ", ".join(dict.fromkeys(t(FIELD_KEYS.get(str(e["loc"][0]), "error_title"))
                                         for e in invalid.errors() if e.get("loc")))
        return _page(request, db, 422, error_key="user_invalid", error=fields)
    except accounts.UserExists:
        return _page(request, db, 409, error_key="user_exists", error=username)
    except accounts.UnknownReference as unknown:
        return _page(request, db, 422, error_key="user_reference", error=str(unknown))
    return _done("created", username)


@router.post("/users/{username}/disable", include_in_schema=False)
def disable_form(username: Username, db: WriteDB, admin: AdminUser, clock: ClockDep) -> Response:
    accounts.set_active(db, username, False, by=admin.username, now=clock.now())
    return _done("disabled", username)


@router.post("/users/{username}/enable", include_in_schema=False)
def enable_form(username: Username, db: WriteDB, admin: AdminUser, clock: ClockDep) -> Response:
    accounts.set_active(db, username, True, by=admin.username, now=clock.now())
    return _done("enabled", username)


@router.post("/users/{username}/password", include_in_schema=False)
def reset_form(request: Request, username: Username, db: WriteDB, admin: AdminUser, clock: ClockDep,
               password: Annotated[str, Form(max_length=200)]) -> Response:
    try:
        accounts.set_password(db, username, password, by=admin.username, now=clock.now())
    except WeakPassword as weak:
        return _page(request, db, 422, error=policy_text(weak, admin.language))
    except accounts.BadCredentials:
        return _page(request, db, 422, error_key="user_reference", error=username)
    return _done("password", username)


@router.post("/users/{username}/teams", include_in_schema=False)
def teams_form(username: Username, db: WriteDB, admin: AdminUser, clock: ClockDep,
               teams: Annotated[list[str], Form()] = []) -> Response:  # noqa: B006
    accounts.set_teams(db, username, teams, by=admin.username, now=clock.now())
    return _done("teams", username)


# -- REST API -------------------------------------------------------------------------------------


@router.get("/api/v1/users", responses=API_ERRORS)
def list_users(db: WriteDB, admin: AdminUser) -> list[UserRow]:
    """Every user, disabled ones included (`active` false)."""
    return accounts.all_users(db)


@router.post("/api/v1/users", status_code=201, responses={**API_ERRORS, 409: {"description": "User exists"}})
def create_user(body: UserCreate, db: WriteDB, admin: AdminUser, clock: ClockDep) -> UserPublic:
    return accounts.create_user(db, body, by=admin.username, now=clock.now()).public()


@router.post("/api/v1/users/{username}/disable", status_code=204, responses=API_ERRORS)
def api_disable(username: Username, db: WriteDB, admin: AdminUser, clock: ClockDep) -> None:
    """Disable: the user cannot log in and their sessions end now."""
    accounts.set_active(db, username, False, by=admin.username, now=clock.now())


@router.post("/api/v1/users/{username}/enable", status_code=204, responses=API_ERRORS)
def api_enable(username: Username, db: WriteDB, admin: AdminUser, clock: ClockDep) -> None:
    accounts.set_active(db, username, True, by=admin.username, now=clock.now())


@router.post("/api/v1/users/{username}/password", status_code=204, responses=API_ERRORS)
def api_reset_password(username: Username, body: PasswordIn, db: WriteDB, admin: AdminUser, clock: ClockDep) -> None:
    """Reset a password (the policy applies); the user's sessions end."""
    try:
        accounts.set_password(db, username, body.password, by=admin.username, now=clock.now())
    except accounts.BadCredentials:
        raise accounts.UnknownReference(f"no such user: {username}") from None


@router.put("/api/v1/users/{username}/teams", status_code=204, responses=API_ERRORS)
def api_set_teams(username: Username, body: TeamsIn, db: WriteDB, admin: AdminUser, clock: ClockDep) -> None:
    accounts.set_teams(db, username, body.teams, by=admin.username, now=clock.now())
