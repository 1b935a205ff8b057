"""Logging in and out, and the user's own settings. The only area without the default session guard.

Session cookie: HttpOnly, SameSite=Lax, Secure when the request came over TLS (directly or through a
proxy that uvicorn trusts). The login form is CSRF-protected by a double-submit cookie, since there is
no session yet to hold the token.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, ConfigDict, Field

from dashboard import accounts
from dashboard.accounts import UserPublic
from dashboard.deps import (
    SESSION_COOKIE,
    ClockDep,
    CurrentSession,
    NotAuthenticated,
    WriteDB,
    check_csrf_token,
    render,
)
from dashboard.i18n import translator
from dashboard.password_policy import WeakPassword

router = APIRouter(tags=["session"])
LOGIN_CSRF_COOKIE = "isowatch_login_csrf"
LANGUAGE_COOKIE = "lang"  # only chooses the login page's language; a logged-in user's choice is stored with them


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=200)


class SessionPublic(BaseModel):
    user: UserPublic
    csrf: str = Field(description="Send as X-CSRF-Token on every POST")


class LanguageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    language: Literal["zh", "en"]


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _set_session_cookie(request: Request, response: Response, token: str) -> None:
    response.set_cookie(SESSION_COOKIE, token, max_age=accounts.SESSION_HOURS * 3600, httponly=True, samesite="lax",
                        secure=request.url.scheme == "https", path="/")


def _safe_next(target: str) -> str:
    """Only same-site paths: an open redirect would turn the login page into a phishing tool."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"


LOGIN_ERRORS = ("login_failed", "login_limited")


@router.get("/login", include_in_schema=False)
def login_form(request: Request, next: str = "/", error: str = "",
               lang: Literal["zh", "en"] | None = None) -> Response:
    """In the language last chosen in this browser (the `lang` cookie, set at each login and by the switch
    link on this page), Chinese at first."""
    token = secrets.token_urlsafe(24)
    language = lang or request.cookies.get(LANGUAGE_COOKIE, "zh")
    request.state.language = language
    # A failed login may be a newcomer's who has not found the switch yet: the error shows in both languages.
    order = (language, "en" if language == "zh" else "zh")
    errors = [translator(lang)(error) for lang in order] if error in LOGIN_ERRORS else []
    response = render(request, "login.html", {"next": _safe_next(next), "login_csrf": token, "errors": errors})
    response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/login")
    if lang:
        _remember_language(request, response, lang)
    return response


def _remember_language(request: Request, response: Response, language: str) -> None:
    response.set_cookie(LANGUAGE_COOKIE, language, max_age=365 * 86400, samesite="lax",
                        secure=request.url.scheme == "https", path="/")


@router.post("/login", include_in_schema=False)
def login_submit(request: Request, db: WriteDB, clock: ClockDep, username: Annotated[str, Form(max_length=64)],
                 password: Annotated[str, Form(max_length=200)], csrf: Annotated[str, Form()] = "",
                 next: Annotated[str, Form()] = "/") -> Response:
    check_csrf_token(request.cookies.get(LOGIN_CSRF_COOKIE, ""), csrf)
    try:
        session = accounts.login(db, username, password, ip=_client_ip(request), now=clock.now())
    except accounts.BadCredentials:
        return RedirectResponse("/login?" + urlencode({"error": "login_failed", "next": _safe_next(next)}), status_code=303)
    except accounts.TooManyAttempts:
        return RedirectResponse("/login?" + urlencode({"error": "login_limited", "next": _safe_next(next)}), status_code=303)
    response = RedirectResponse(_safe_next(next), status_code=303)
    _set_session_cookie(request, response, session.token)
    _remember_language(request, response, session.user.language)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout", include_in_schema=False)
def logout(request: Request, session: CurrentSession, db: WriteDB, clock: ClockDep) -> Response:
    accounts.logout(db, session.token, now=clock.now())
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.post("/me/language", include_in_schema=False)
def choose_language(session: CurrentSession, db: WriteDB, language: Annotated[Literal["zh", "en"], Form()],
                    back: Annotated[str, Form()] = "/") -> Response:
    """Every role may pick its language, auditors included: it changes nothing anyone else sees."""
    accounts.set_language(db, session.user.username, language)
    return RedirectResponse(_safe_next(back), status_code=303)


@router.get("/me/password", include_in_schema=False)
def password_page(request: Request, session: CurrentSession, done: str = "") -> Response:
    return render(request, "password.html", {"done": done == "1"})


@router.post("/me/password", include_in_schema=False)
def change_password(request: Request, session: CurrentSession, db: WriteDB, clock: ClockDep,
                    current: Annotated[str, Form(max_length=200)], new: Annotated[str, Form(max_length=200)]) -> Response:
    """Everyone, auditors included, changes their own password; the other sessions of the user end."""
    t = translator(session.user.language)
    try:
        accounts.change_own_password(db, session, current, new, now=clock.now())
    except accounts.BadCredentials:
        return render(request, "password.html", {"error": t("current_password_wrong")}, status_code=422)
    except WeakPassword as weak:
        zh, _, en = str(weak).partition(" / ")
        return render(request, "password.html", {"error": zh if session.user.language == "zh" else en or zh},
                      status_code=422)
    return RedirectResponse("/me/password?done=1", status_code=303)


class PasswordChangeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    current: str = Field(min_length=1, max_length=200)
    new: str = Field(min_length=1, max_length=200)


@router.post("/api/v1/me/password", status_code=204,
             responses={401: {"description": "Not logged in"}, 422: {"description": "Wrong current password or weak"}})
def api_change_password(body: PasswordChangeIn, session: CurrentSession, db: WriteDB, clock: ClockDep) -> None:
    """Change your own password (the policy applies); your other sessions end, this one stays."""
    try:
        accounts.change_own_password(db, session, body.current, body.new, now=clock.now())
    except accounts.BadCredentials:
        raise accounts.UnknownReference("the current password is wrong") from None


@router.post("/api/v1/session", responses={401: {"description": "Wrong username or password"},
                                           429: {"description": "Too many failed logins"}})
def api_login(body: LoginIn, request: Request, response: Response, db: WriteDB, clock: ClockDep) -> SessionPublic:
    """Log in: sets the session cookie and returns the CSRF token for later POSTs."""
    try:
        session = accounts.login(db, body.username, body.password, ip=_client_ip(request), now=clock.now())
    except accounts.BadCredentials:
        raise NotAuthenticated() from None
    _set_session_cookie(request, response, session.token)
    _remember_language(request, response, session.user.language)
    return SessionPublic(user=session.user.public(), csrf=session.csrf)


@router.get("/api/v1/me", responses={401: {"description": "Not logged in"}})
def me(session: CurrentSession) -> SessionPublic:
    return SessionPublic(user=session.user.public(), csrf=session.csrf)


@router.post("/api/v1/me/language", responses={401: {"description": "Not logged in"}})
def api_language(body: LanguageIn, session: CurrentSession, db: WriteDB) -> UserPublic:
    accounts.set_language(db, session.user.username, body.language)
    found = accounts.load_user(db, session.user.username)
    assert found is not None
    return found.public()
