"""Households at a glance (isolation day, door, last temperature, device online) and one household's timeline."""

from __future__ import annotations

import sqlite3
from datetime import date, datetime, timedelta, timezone
from html import escape
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from dashboard.deps import Scope
from gateway.registry import iso, parse_iso

OFFLINE_AFTER = timedelta(seconds=90)  # DESIGN.md: heartbeat every 30 s, offline after 90 s of silence
FEVER_C = 37.3


def actor_name(column: str) -> str:
    """SQL for who acted, as people read it: a staff member's name, else a user's display name, else the id."""
    return (f"coalesce((SELECT name FROM staff WHERE staff = {column}), "
            f"(SELECT display_name FROM users WHERE username = {column}), {column})")


class HouseholdSummary(BaseModel):
    household: str
    site: str
    address: str
    team: str | None
    team_name: str | None
    phone: str  # the resident's, '' when the registry has none
    residents: int | None
    isolation_day: int | None
    isolation_days: int | None
    door: str | None
    door_at: str | None
    temperature: float | None
    temperature_at: str | None
    devices_online: int
    devices: int
    open_alerts: int


class TimelineItem(BaseModel):
    at: str
    what: str  # event, reading, alert, acknowledged, resolved, notification
    kind: str
    detail: str
    ref: str
    snapshot: str | None = None
    alert_detail: str = ""  # the rule's words, rendered in the reader's language by gateway.vocabulary


class Isolation(BaseModel):
    id: int
    start_date: date
    days: int
    ended_at: str | None


def device_online(row: sqlite3.Row, now: datetime) -> bool:
    if row["status"] == "offline":
        return False
    seen = row["last_heartbeat"] or row["status_time"] or row["last_seen"]
    return bool(seen) and now - parse_iso(seen) <= OFFLINE_AFTER


def current_isolation(db: sqlite3.Connection, household: str, now: datetime, tz: str) -> tuple[Isolation, int] | None:
    """The latest period and today's day number in it (may be past its end), or None."""
    row = db.execute("SELECT id, start_date, days, ended_at FROM isolation_periods WHERE household = ? "
                     "ORDER BY start_date DESC, id DESC LIMIT 1", (household,)).fetchone()
    if row is None:
        return None
    period = Isolation(id=row[0], start_date=date.fromisoformat(row[1]), days=row[2], ended_at=row[3])
    day = (now.astimezone(ZoneInfo(tz)).date() - period.start_date).days + 1
    return period, day


def summaries(db: sqlite3.Connection, scope: Scope, now: datetime, *, site: str | None = None,
              limit: int = 200, offset: int = 0) -> list[HouseholdSummary]:
    where, params = scope.sql("h.household")
    if site:
        where += " AND h.site = ?"
        params.append(site)
    homes = db.execute(
        f"SELECT h.*, coalesce(s.timezone, 'Asia/Shanghai') AS timezone FROM households h "  # noqa: S608
        f"LEFT JOIN sites s ON s.site = h.site WHERE {where} ORDER BY h.site, h.household LIMIT ? OFFSET ?",
        [*params, limit, offset]).fetchall()
    out = []
    for h in homes:
        out.append(summary(db, h, now))
    return out


def summary(db: sqlite3.Connection, h: sqlite3.Row, now: datetime) -> HouseholdSummary:
    hh = h["household"]
    iso_now = current_isolation(db, hh, now, h["timezone"])
    active = iso_now is not None and iso_now[0].ended_at is None and 1 <= iso_now[1] <= iso_now[0].days
    door = db.execute("SELECT state, device_time FROM events WHERE household = ? AND type = 'door' "
                      "ORDER BY device_time DESC LIMIT 1", (hh,)).fetchone()
    temp = db.execute("SELECT celsius, device_time FROM readings WHERE household = ? AND type = 'temperature' "
                      "ORDER BY device_time DESC LIMIT 1", (hh,)).fetchone()
    devices = db.execute("SELECT * FROM devices WHERE household = ?", (hh,)).fetchall()
    alerts_open = db.execute("SELECT count(*) FROM alerts WHERE household = ? AND resolved_at IS NULL",
                             (hh,)).fetchone()[0]
    team_name = db.execute("SELECT coalesce(nullif(name, ''), team) FROM teams WHERE team = ?", (h["team"],)).fetchone()
    return HouseholdSummary(
        household=hh, site=h["site"], address=f"{h['address'] or ''} {h['unit'] or ''}".strip(), team=h["team"],
        team_name=team_name[0] if team_name else h["team"], phone=h["phone"] or "", residents=h["residents"],
        isolation_day=iso_now[1] if active and iso_now else None,
        isolation_days=iso_now[0].days if active and iso_now else None,
        door=door[0] if door else None, door_at=door[1] if door else None,
        temperature=temp[0] if temp else None, temperature_at=temp[1] if temp else None,
        devices_online=sum(device_online(d, now) for d in devices), devices=len(devices), open_alerts=alerts_open)


def timeline_window(db: sqlite3.Connection, h: sqlite3.Row, now: datetime) -> tuple[datetime, datetime]:
    """The isolation period (start midnight to end midnight, site time), or the last 14 days without one."""
    found = current_isolation(db, h["household"], now, h["timezone"])
    if found is None:
        return now - timedelta(days=14), now
    period = found[0]
    tz = ZoneInfo(h["timezone"])
    start = datetime(period.start_date.year, period.start_date.month, period.start_date.day, tzinfo=tz)
    end = start + timedelta(days=period.days)
    return start.astimezone(timezone.utc), min(end.astimezone(timezone.utc), max(now, start.astimezone(timezone.utc)))


def timeline(db: sqlite3.Connection, household: str, since: datetime, until: datetime,
             limit: int = 1000) -> list[TimelineItem]:
    """Events, readings, alerts (opened, acknowledged, resolved with verdict) and pages, newest first."""
    a, b = iso(since), iso(until + timedelta(minutes=1))
    items: list[TimelineItem] = []
    for r in db.execute("SELECT e.id, e.type, e.state, e.device_time, s.sha256 FROM events e "
                        "LEFT JOIN snapshots s ON s.event_id = e.id WHERE e.household = ? AND e.device_time >= ? "
                        "AND e.device_time < ? ORDER BY e.device_time DESC LIMIT ?", (household, a, b, limit)):
        items.append(TimelineItem(at=r[3], what="event", kind=r[1], detail=r[2] or "", ref=r[0], snapshot=r[4]))
    for r in db.execute("SELECT id, type, celsius, open, device_time FROM readings WHERE household = ? "
                        "AND device_time >= ? AND device_time < ? ORDER BY device_time DESC LIMIT ?",
                        (household, a, b, limit)):
        detail = f"{r[2]:.1f} °C" if r[1] == "temperature" and r[2] is not None else ("open" if r[3] else "closed")
        items.append(TimelineItem(at=r[4], what="reading", kind=r[1], detail=detail, ref=r[0]))
    for r in db.execute(f"SELECT *, {actor_name('acknowledged_by')} AS ack_name, "  # noqa: S608
                        f"{actor_name('resolved_by')} AS resolve_name FROM alerts "
                        "WHERE household = ? AND opened_at >= ? AND opened_at < ? "
                        "ORDER BY opened_at DESC LIMIT ?", (household, a, b, limit)):
        ref = f"alert:{r['id']}"
        items.append(TimelineItem(at=r["opened_at"], what="alert", kind=r["kind"],
                                  detail=f"#{r['id']} ×{r['count']}", alert_detail=r["detail"] or "", ref=ref,
                                  snapshot=r["snapshot"]))
        if r["acknowledged_at"]:
            items.append(TimelineItem(at=r["acknowledged_at"], what="acknowledged", kind=r["kind"],
                                      detail=r["ack_name"] or "", ref=ref))
        if r["resolved_at"]:
            items.append(TimelineItem(at=r["resolved_at"], what="resolved", kind=r["verdict"] or "",
                                      detail=f"{r['resolve_name'] or ''}: {r['note'] or ''}", ref=ref))
    for r in db.execute(f"SELECT n.id, n.alert_id, {actor_name('n.staff')}, n.role, n.state, "  # noqa: S608
                        "coalesce(n.sent_at, n.created_at) "
                        "FROM notifications n JOIN alerts a ON a.id = n.alert_id WHERE a.household = ? "
                        "AND n.created_at >= ? AND n.created_at < ? ORDER BY n.id DESC LIMIT ?",
                        (household, a, b, limit)):
        items.append(TimelineItem(at=r[5], what="notification", kind=r[3] or "", detail=f"{r[2]} ({r[4]})",
                                  ref=f"alert:{r[1]}"))
    items.sort(key=lambda i: i.at, reverse=True)
    return items[:limit]


def temperature_svg(db: sqlite3.Connection, household: str, since: datetime, until: datetime, *,
                    width: int = 640, height: int = 200, title: str = "Temperature") -> str:
    """An inline SVG line chart of temperature readings over the window, with the fever line; no JS, no CDN."""
    rows = db.execute("SELECT device_time, celsius FROM readings WHERE household = ? AND type = 'temperature' "
                      "AND celsius IS NOT NULL AND device_time >= ? AND device_time < ? ORDER BY device_time",
                      (household, iso(since), iso(until + timedelta(minutes=1)))).fetchall()
    lo, hi = 35.0, 40.0
    pad_l, pad_r, pad_t, pad_b = 36, 8, 8, 20
    span = max((until - since).total_seconds(), 1.0)

    def x(at: str) -> float:
        return pad_l + (parse_iso(at) - since).total_seconds() / span * (width - pad_l - pad_r)

    def y(c: float) -> float:
        c = min(max(c, lo), hi)
        return pad_t + (hi - c) / (hi - lo) * (height - pad_t - pad_b)

    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" '
             f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>']
    for c in (36, 37, 38, 39):
        parts.append(f'<line x1="{pad_l}" x2="{width - pad_r}" y1="{y(c):.1f}" y2="{y(c):.1f}" class="grid"/>'
                     f'<text x="2" y="{y(c) + 4:.1f}" class="axis">{c}°</text>')
    parts.append(f'<line x1="{pad_l}" x2="{width - pad_r}" y1="{y(FEVER_C):.1f}" y2="{y(FEVER_C):.1f}" class="fever"/>')
    days = int(span // 86400)
    for d in range(days + 1):
        px = pad_l + d * 86400 / span * (width - pad_l - pad_r)
        parts.append(f'<text x="{px:.1f}" y="{height - 4}" class="axis">{d + 1}</text>')
    if rows:
        points = " ".join(f"{x(r[0]):.1f},{y(r[1]):.1f}" for r in rows)
        parts.append(f'<polyline points="{points}" class="line"/>')
        for r in rows:
            cls = "dot hot" if r[1] >= FEVER_C else "dot"
            parts.append(f'<circle cx="{x(r[0]):.1f}" cy="{y(r[1]):.1f}" r="3" class="{cls}">'
                         f'<title>{escape(r[0][:16])} {r[1]:.1f} °C</title></circle>')
    parts.append("</svg>")
    return "".join(parts)
