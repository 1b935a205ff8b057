"""The household's own phone page and JSON API, and the household page's link controls.

`GET /r/{token}` shows the page: no account, large text, the household's language, plain forms that
work without JavaScript. The same three actions take a JSON body (`Content-Type: application/json`) or
the page's form (which must carry the page's form token, so a page elsewhere cannot submit for the
household): `POST /r/{token}/announce`, `/temperature`, `/help`. A wrong, revoked or out-of-isolation
link answers 404 and says nothing about why. The library is gateway.resident.
"""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from dashboard.deps import CurrentUser, HouseholdRow, Scope, protected_router, templates
from dashboard.i18n import language_of
from dashboard.resident_text import page_translator
from gateway.policy import HELP_KINDS
from gateway.resident import REASONS, BadForm, LinkNotFound, Refused, ResidentDesk, ResidentView
from gateway.vocabulary import visit_decision
from isowatch.clock import iso, parse_iso
from isowatch.localtime import DEFAULT_ZONE

router = APIRouter(tags=["resident"])
staff_router = protected_router(tags=["resident"])
NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex"}
MAX_BODY = 4096
PAGE_METHODS = ("axillary", "oral", "forehead", "tympanic", "rectal", "unknown")  # the usual way first  # the largest action is a help request of 500 characters


def resident_desk() -> ResidentDesk | None:  # overridden by create_app when the gateway signs links
    return None


Desk = Annotated[ResidentDesk | None, Depends(resident_desk)]


def _desk(desk: ResidentDesk | None) -> ResidentDesk:
    if desk is None:
        raise HTTPException(404, "not found")
    return desk


def _local(at: datetime, zone: str) -> str:
    return f"{at.astimezone(ZoneInfo(zone)):%H:%M}"


def _notice(request: Request, status: int, key: str, lang: str) -> Response:
    t = page_translator(lang)
    return templates.TemplateResponse(request, "resident_notice.html", {
        "lang": lang, "title": t(f"{key}_title"), "text": t(f"{key}_text")}, status_code=status, headers=NO_STORE)


def _page(request: Request, token: str, view: ResidentView, lang: str, *, done: str = "", error: str = "",
          status: int = 200, form: dict[str, str] | None = None) -> Response:
    t = page_translator(lang)
    zone = view.timezone
    latest = view.announcements[0] if view.announcements else None
    context = {
        "v": view, "t": t, "lang": lang, "token": token, "other_lang": "en" if lang == "zh" else "zh",
        "place": " ".join(p for p in (view.address, view.unit) if p) or view.household,
        "local": lambda at: _local(at, zone), "reasons": list(REASONS), "methods": PAGE_METHODS, "help_kinds": HELP_KINDS,
        "done": t(done, end=_local(latest.ends_at, zone) if latest else "") if done else "",
        "error": error, "form": form or {},
        "tel": lambda phone: "tel:" + re.sub(r"[^0-9+]", "", phone),
    }
    return templates.TemplateResponse(request, "resident.html", context, status_code=status, headers=NO_STORE)


@router.get("/r/{token}", include_in_schema=False)
def show(request: Request, token: str, desk: Desk, lang: str = "", done: str = "") -> Response:
    """Read only (a preview bot may fetch it): the household's own isolation, team, announcements, requests."""
    try:
        view = _desk(desk).view(token)
    except (LinkNotFound, HTTPException):
        return _notice(request, 404, "invalid", language_of(lang, None))
    lang = language_of(lang, view.language)
    done_key = done if done in ("announce", "hospital", "temperature", "fever", "help") else ""
    return _page(request, token, view, lang, done=f"done_{done_key}" if done_key else "")


@router.get("/r/{token}/status", include_in_schema=False)
def status(token: str, desk: Desk) -> Response:
    """The JSON of what the page shows about the household's own announcements and requests."""
    try:
        view = _desk(desk).view(token)
    except LinkNotFound:
        raise HTTPException(404, "not found") from None
    return JSONResponse({
        "household": view.household, "day": view.day, "days": view.days, "last_date": view.last_date.isoformat(),
        "announcements_left": view.announcements_left,
        "announcements": [{"id": a.id, "reason": a.reason, "from": a.starts_at.isoformat(),
                           "to": a.ends_at.isoformat(), "approval": a.approval} for a in view.announcements],
        "requests": [{"id": r.id, "kind": r.kind, "text": r.text, "at": r.created_at.isoformat(), "status": r.status}
                     for r in view.requests],
    }, headers=NO_STORE)


async def _body(request: Request) -> tuple[dict[str, Any], bool]:
    """(fields, is_json). JSON only with its content type: a form on another site cannot send that."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        raw = await request.body()
        if len(raw) > MAX_BODY:
            raise HTTPException(413, "request too large")
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            raise HTTPException(422, "body is not JSON") from None
        if not isinstance(data, dict):
            raise HTTPException(422, "body must be a JSON object")
        return data, True
    if content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.form(max_files=0, max_fields=20)
        return {k: v for k, v in form.items() if isinstance(v, str) and len(v) <= 2000}, False
    raise HTTPException(415, "send JSON (application/json) or the page's form")


async def _action(request: Request, token: str, desk: ResidentDesk | None, name: str) -> Response:
    data, is_json = await _body(request)
    lang = language_of(str(data.get("lang", "")), None)
    form = None if is_json else str(data.get("form", ""))
    desk_ = _desk(desk)
    try:
        if name == "announce":
            done = desk_.announce(token, data.get("minutes"), data.get("reason"), form=form)
            result = {"id": done.id, "reason": done.reason, "from": done.starts_at.isoformat(),
                      "to": done.ends_at.isoformat(), "approval": done.approval}
            flash = "hospital" if done.approval else "announce"
        elif name == "temperature":
            report = desk_.temperature(token, data.get("celsius"), data.get("method"), form=form)
            result = {"id": report.id, "celsius": report.celsius, "fever": report.fever}
            flash = "fever" if report.fever else "temperature"
        else:
            request_ = desk_.help(token, data.get("kind"), data.get("text", ""), form=form)
            result = {"id": request_.id, "kind": request_.kind, "status": request_.status}
            flash = "help"
    except LinkNotFound:
        if is_json:
            return JSONResponse({"detail": "not found"}, status_code=404, headers=NO_STORE)
        return _notice(request, 404, "invalid", lang)
    except BadForm:
        return _notice(request, 403, "bad_form", lang)
    except Refused as exc:
        en = page_translator("en")(exc.key, **exc.values)
        if is_json:
            return JSONResponse({"detail": en, "error": exc.key}, status_code=exc.status, headers=NO_STORE)
        try:
            view = desk_.view(token)
        except LinkNotFound:
            return _notice(request, 404, "invalid", lang)
        message = page_translator(lang)(exc.key, **exc.values)
        return _page(request, token, view, lang, error=message, status=exc.status,
                     form={"section": name, **{k: str(v) for k, v in data.items() if k != "form"}})
    if is_json:
        return JSONResponse(result, status_code=201, headers=NO_STORE)
    # Post/redirect/get: a reload shows the page instead of sending the form again.
    return RedirectResponse(f"/r/{token}?lang={lang}&done={flash}#done", status_code=303)


@router.post("/r/{token}/announce", include_in_schema=False)
async def announce(request: Request, token: str, desk: Desk) -> Response:
    """{"minutes": 1-30, "reason": "rubbish|delivery|hospital|other"}: a window in which an opening is expected."""
    return await _action(request, token, desk, "announce")


@router.post("/r/{token}/temperature", include_in_schema=False)
async def temperature(request: Request, token: str, desk: Desk) -> Response:
    """{"celsius": 36.8, "method": optional}: a body reading through the same rules as a device's."""
    return await _action(request, token, desk, "temperature")


@router.post("/r/{token}/help", include_in_schema=False)
async def ask_for_help(request: Request, token: str, desk: Desk) -> Response:
    """{"kind": "supplies|medicine|symptoms|mental_health|other", "text": "..."}: a help_request alert."""
    return await _action(request, token, desk, "help")


# -- the dashboard: announcements on the board; the household page shows, issues and revokes the link --


def announced_now(db: sqlite3.Connection, scope: Scope, now: datetime) -> list[dict[str, Any]]:
    """Openings households announced that are open now or were in the last hour, in the user's scope."""
    where, params = scope.sql("v.household")
    rows = db.execute(
        "SELECT v.household, v.reason, v.starts_at, v.ends_at, h.address, h.unit, coalesce(s.timezone, ?) AS tz, "  # noqa: S608
        "a.verdict, v.approval_alert FROM visits v JOIN households h ON h.household = v.household "
        "LEFT JOIN sites s ON s.site = h.site LEFT JOIN alerts a ON a.id = v.approval_alert "
        f"WHERE v.source = 'resident' AND v.ends_at >= ? AND {where} ORDER BY v.starts_at DESC LIMIT 50",
        [DEFAULT_ZONE, iso(now - timedelta(hours=1)), *params]).fetchall()
    return [{"household": r["household"], "place": " ".join(p for p in (r["address"], r["unit"]) if p),
             "reason": r["reason"], "from": _local(parse_iso(r["starts_at"]), r["tz"]),
             "to": _local(parse_iso(r["ends_at"]), r["tz"]), "now": parse_iso(r["ends_at"]) >= now,
             "approval": None if r["approval_alert"] is None else visit_decision(r["verdict"])}
            for r in rows]



def link_for(desk: ResidentDesk | None, household: str) -> str | None:
    return desk.current_url(household) if desk is not None else None


@staff_router.post("/households/{household}/resident-link", include_in_schema=False)
def issue_link(household: str, row: HouseholdRow, user: CurrentUser, desk: Desk) -> Response:
    _desk(desk).issue(row["household"], by=user.actor)
    return RedirectResponse(f"/households/{row['household']}#resident-link", status_code=303)


@staff_router.post("/households/{household}/resident-link/revoke", include_in_schema=False)
def revoke_link(household: str, row: HouseholdRow, user: CurrentUser, desk: Desk) -> Response:
    _desk(desk).revoke(row["household"], by=user.actor)
    return RedirectResponse(f"/households/{row['household']}#resident-link", status_code=303)
