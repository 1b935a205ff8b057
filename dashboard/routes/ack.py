"""Acknowledge links from notifications: GET acknowledges at once, from a phone, without logging in.

The link itself is the credential (signed, expiring, single use, bound to one recipient), so a GET
that changes state is deliberate here: staff tap it in a chat app that only opens URLs.
"""

from __future__ import annotations

from html import escape
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import FileResponse, HTMLResponse

from gateway.ack_links import AckDesk, BadLink, LinkExpired, LinkUsed

router = APIRouter(tags=["acknowledge"])


def ack_desk() -> AckDesk:
    raise HTTPException(503, "acknowledgements are not configured on this server")


Desk = Annotated[AckDesk, Depends(ack_desk)]

PAGE = """<!doctype html><html><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>isowatch</title>
<link rel="stylesheet" href="/static/ack.css">
</head><body><h1>{headline}</h1><p>{text}</p></body></html>"""


def _page(status: int, headline: str, text: str) -> HTMLResponse:
    return HTMLResponse(PAGE.format(headline=escape(headline), text=escape(text)), status_code=status)


@router.get("/ack/{token}", response_class=HTMLResponse, include_in_schema=False)
def acknowledge(token: str, desk: Desk) -> HTMLResponse:
    try:
        outcome = desk.redeem(token)
    except LinkUsed as exc:
        return _page(410, "已使用 / Already used", f"此链接已于 {exc.used_at} 使用。 This link was used at {exc.used_at}.")
    except LinkExpired:
        return _page(410, "已过期 / Expired", "此链接已过期。 This link has expired.")
    except BadLink:
        return _page(404, "无效链接 / Invalid link", "此链接无效。 This link is not valid.")
    if outcome.already_by:
        return _page(200, "已有人确认 / Already acknowledged",
                     f"告警 #{outcome.alert_id} 已由 {outcome.already_by} 确认。 "
                     f"Alert #{outcome.alert_id} was already acknowledged by {outcome.already_by}.")
    return _page(200, "已确认 / Acknowledged",
                 f"告警 #{outcome.alert_id}（{outcome.household}）已由 {outcome.staff_name} 确认。 "
                 f"Alert #{outcome.alert_id} ({outcome.household}, {outcome.kind}) acknowledged by {outcome.staff_name}.")


@router.get("/ack/{token}/snapshot", include_in_schema=False)
def snapshot(token: str, desk: Desk) -> FileResponse:
    try:
        path = desk.snapshot_path(token)
    except (BadLink, LinkExpired):
        raise HTTPException(404, "not found") from None
    if path is None or not path.exists():
        raise HTTPException(404, "no snapshot for this alert")
    return FileResponse(path, media_type="image/jpeg")
