"""The page behind a notification's link: a phone page to take the alert and close it, without logging in.

GET shows the alert and never changes anything: chat apps fetch links for previews, and a bot must not
acknowledge for the person. The recipient acts with the page's forms: "I'm handling it" (POST
.../acknowledge), then an outcome that fits the alert kind (POST .../resolve). The signed link is the
credential (see gateway.ack_links); each form carries a token derived from the link, so only the page's
own forms can act.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from dashboard.ack_text import page_translator
from dashboard.deps import templates
from dashboard.i18n import language_of
from dashboard.routes.groups import member_detail
from gateway.ack_links import AckDesk, BadForm, BadLink, GroupLinkExpired, GroupLinkView, LinkExpired, LinkView
from gateway.alerts import AlertError
from gateway.vocabulary import TODO, detail_text, group_text
from isowatch.localtime import clock_text, local, offset

router = APIRouter(tags=["acknowledge"])
NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex"}
TEMPERATURE = re.compile(r"\d{2}\.\d °C")  # the reading in a fever / implausible alert's detail


def ack_desk() -> AckDesk:
    raise HTTPException(503, "acknowledgements are not configured on this server")


Desk = Annotated[AckDesk, Depends(ack_desk)]


def _notice(request: Request, status: int, key: str, lang: str, **values: object) -> Response:
    """A page that only says something (bad, expired or stale link), in the chosen language and the other."""
    others = [lang, *(x for x in ("zh", "en") if x != lang)]
    lines = [(x, page_translator(x)(f"{key}_title"), page_translator(x)(f"{key}_text", **values)) for x in others]
    context = {"lines": lines, "lang": lang, "dashboard": page_translator(lang)("open_dashboard"),
               ("group_id" if key.startswith("group_") else "alert_id"): values.get("id")}
    return templates.TemplateResponse(request, "ack_notice.html", context, status_code=status, headers=NO_STORE)


def _page(request: Request, token: str, view: LinkView, lang: str) -> Response:
    t = page_translator(lang)
    zone = view.timezone
    temperature = TEMPERATURE.search(view.detail) if view.kind in ("fever", "implausible_reading") else None
    context = {
        "v": view, "t": t, "lang": lang, "token": token,
        "place": " ".join(p for p in (view.address, view.unit) if p) or view.household,
        "when": clock_text(view.last_event_at, zone), "opened": clock_text(view.opened_at, zone),
        "zone": t("zone", zone=zone, offset=offset(view.last_event_at, zone)),
        "temperature": temperature.group(0) if temperature else None,
        # The rule's detail in the reader's language (a help request's carries the household's own words).
        "detail": detail_text(view.detail, lang) if not temperature else "",
        "acknowledged_at": clock_text(view.acknowledged_at, zone) if view.acknowledged_at else "",
        "resolved_at": clock_text(view.resolved_at, zone) if view.resolved_at else "",
        "expires": clock_text(view.expires_at, zone), "todo": TODO[lang].get(view.kind, ()),
        "tel": lambda phone: "tel:" + re.sub(r"[^0-9+]", "", phone),
        "other_lang": "en" if lang == "zh" else "zh",
    }
    return templates.TemplateResponse(request, "ack.html", context, headers=NO_STORE)


@router.get("/ack/{token}", include_in_schema=False)
def show(request: Request, token: str, desk: Desk, lang: str = "") -> Response:
    """Read only: opening the link (a person or a preview bot) shows the alert and changes nothing."""
    try:
        view = desk.view(token)
    except LinkExpired as exc:
        return _notice(request, 410, "expired", language_of(lang, None), id=exc.alert_id)
    except BadLink:
        return _notice(request, 404, "invalid", language_of(lang, None))
    return _page(request, token, view, language_of(lang, view.language))


def _back(token: str, lang: str, done: str) -> RedirectResponse:
    """Post/redirect/get: a reload shows the page again instead of sending the form twice. `done` only
    tells the address of the handled page from the resolved one; the page shows the state itself."""
    return RedirectResponse(f"/ack/{token}?lang={lang}&done={done}#act", status_code=303)


def _refused(request: Request, exc: Exception, lang: str) -> Response:
    if isinstance(exc, LinkExpired):
        return _notice(request, 410, "expired", lang, id=exc.alert_id)
    if isinstance(exc, GroupLinkExpired):
        return _notice(request, 410, "group_expired", lang, id=exc.group_id)
    if isinstance(exc, BadForm):
        return _notice(request, 403, "bad_form", lang)
    return _notice(request, 404, "invalid", lang)


@router.post("/ack/{token}/acknowledge", include_in_schema=False)
def acknowledge(request: Request, token: str, desk: Desk, form: Annotated[str, Form(max_length=64)] = "",
                lang: Annotated[str, Form(max_length=2)] = "") -> Response:
    """"I'm handling it": the link's recipient acknowledges; the escalation stops."""
    lang = language_of(lang, None)
    try:
        desk.acknowledge(token, form)
    except (BadLink, LinkExpired, BadForm) as exc:
        return _refused(request, exc, lang)
    return _back(token, lang, "handling")


@router.post("/ack/{token}/resolve", include_in_schema=False)
def resolve(request: Request, token: str, desk: Desk, verdict: Annotated[str, Form(max_length=40)],
            form: Annotated[str, Form(max_length=64)] = "", note: Annotated[str, Form(max_length=2000)] = "",
            lang: Annotated[str, Form(max_length=2)] = "") -> Response:
    """Close the alert as the link's recipient with an outcome that fits its kind."""
    lang = language_of(lang, None)
    try:
        desk.resolve(token, form, verdict, note.strip())
    except (BadLink, LinkExpired, BadForm) as exc:
        return _refused(request, exc, lang)
    except AlertError:
        # Already resolved (by someone else, a moment ago) shows who and how; an unfitting outcome says so.
        try:
            view = desk.view(token)
        except (BadLink, LinkExpired) as exc:
            return _refused(request, exc, lang)
        if view.resolved_at is not None:
            return _back(token, lang, "resolved")
        return _notice(request, 422, "unfit", lang)
    return _back(token, lang, "resolved")


@router.get("/ack/{token}/snapshot", include_in_schema=False)
def snapshot(token: str, desk: Desk) -> FileResponse:
    try:
        path = desk.snapshot_path(token)
    except (BadLink, LinkExpired):
        raise HTTPException(404, "not found") from None
    if path is None or not path.exists():
        raise HTTPException(404, "no snapshot for this alert")
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "private, no-store"})


# -- a group's link (a storm's alerts of one kind for one team, gateway/groups.py): the same rules ------


def _group_page(request: Request, token: str, view: GroupLinkView, lang: str) -> Response:
    t = page_translator(lang)
    g = view.group
    zone = g.timezone
    context = {
        "v": view, "g": g, "t": t, "lang": lang, "token": token, "live": g.live,
        "headline": group_text(g.kind, len(g.live) or len(g.members), g.places, f"{local(g.first_at, zone):%H:%M}",
                               lang),
        "since": clock_text(g.first_at, zone), "zone": t("zone", zone=zone, offset=offset(g.first_at, zone)),
        "acknowledged_at": clock_text(g.acknowledged_at, zone) if g.acknowledged_at else "",
        "resolved_at": clock_text(g.resolved_at, zone) if g.resolved_at else "",
        "expires": clock_text(view.expires_at, zone), "todo": TODO[lang].get(g.kind, ()),
        "clock": clock_text, "detail": lambda text, zone: member_detail(text, lang, zone),
        "other_lang": "en" if lang == "zh" else "zh",
    }
    return templates.TemplateResponse(request, "ack_group.html", context, headers=NO_STORE)


@router.get("/ack/group/{token}", include_in_schema=False)
def show_group(request: Request, token: str, desk: Desk, lang: str = "") -> Response:
    """Read only, as an alert's link: the group, its members, and the forms to act on all of them."""
    try:
        view = desk.group_view(token)
    except GroupLinkExpired as exc:
        return _notice(request, 410, "group_expired", language_of(lang, None), id=exc.group_id)
    except BadLink:
        return _notice(request, 404, "invalid", language_of(lang, None))
    return _group_page(request, token, view, language_of(lang, view.language))


def _back_to_group(token: str, lang: str, done: str) -> RedirectResponse:
    return RedirectResponse(f"/ack/group/{token}?lang={lang}&done={done}#act", status_code=303)


@router.post("/ack/group/{token}/acknowledge", include_in_schema=False)
def acknowledge_group(request: Request, token: str, desk: Desk, form: Annotated[str, Form(max_length=64)] = "",
                      lang: Annotated[str, Form(max_length=2)] = "") -> Response:
    """"I'm handling it" for the whole group: every member is acknowledged and the group's escalation stops."""
    lang = language_of(lang, None)
    try:
        desk.acknowledge_group(token, form)
    except (BadLink, GroupLinkExpired, BadForm) as exc:
        return _refused(request, exc, lang)
    return _back_to_group(token, lang, "handling")


@router.post("/ack/group/{token}/resolve", include_in_schema=False)
def resolve_group(request: Request, token: str, desk: Desk, verdict: Annotated[str, Form(max_length=40)],
                  form: Annotated[str, Form(max_length=64)] = "", note: Annotated[str, Form(max_length=2000)] = "",
                  lang: Annotated[str, Form(max_length=2)] = "") -> Response:
    """Close every member still open with one outcome that fits the group's kind."""
    lang = language_of(lang, None)
    try:
        desk.resolve_group(token, form, verdict, note.strip())
    except (BadLink, GroupLinkExpired, BadForm) as exc:
        return _refused(request, exc, lang)
    except AlertError:
        try:
            view = desk.group_view(token)
        except (BadLink, GroupLinkExpired) as exc:
            return _refused(request, exc, lang)
        if view.group.resolved_at is not None:
            return _back_to_group(token, lang, "resolved")
        return _notice(request, 422, "unfit", lang)
    return _back_to_group(token, lang, "resolved")
