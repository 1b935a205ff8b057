"""Households at a glance (isolation day, door, last temperature, device online) and one household's timeline."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from html import escape
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from dashboard.deps import Scope
from isowatch.clock import iso, parse_iso
from isowatch.localtime import local, stamp

OFFLINE_AFTER = timedelta(seconds=90)  # DESIGN.md: heartbeat every 30 s, offline after 90 s of silence


def actor_name(column: str) -> str:
    """SQL for who acted, as people read it: a staff member's name, else a user's display name, else the id."""
    return (f"coalesce((SELECT name FROM staff WHERE staff = {column}), "  # noqa: S608
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
    devices_clock_skew: int = 0
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
    # The latest by the gateway's receive time: a reading dated 2099 by a wrong clock is not "latest" for ever.
    # The door as the camera or the door contact last reported it. (+type: walk the household's index.)
    seen = db.execute("SELECT state, received_at FROM events WHERE household = ? AND +type = 'door' "
                      "ORDER BY received_at DESC LIMIT 1", (hh,)).fetchone()
    contact = db.execute("SELECT CASE WHEN open THEN 'open' ELSE 'closed' END, received_at FROM readings "
                         "WHERE household = ? AND type = 'contact' ORDER BY received_at DESC LIMIT 1", (hh,)).fetchone()
    door = max((r for r in (seen, contact) if r is not None), key=lambda r: r[1], default=None)
    temp = db.execute("SELECT celsius, received_at FROM readings WHERE household = ? AND type = 'temperature' "
                      "AND subject = 'body' ORDER BY received_at DESC LIMIT 1", (hh,)).fetchone()
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
        devices_online=sum(device_online(d, now) for d in devices), devices=len(devices), open_alerts=alerts_open,
        devices_clock_skew=sum(bool(d["clock_skew"]) for d in devices))


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
    """Events, readings, alerts (opened, acknowledged, resolved with verdict) and pages, newest first, all
    by the gateway's clock (events and readings when received: a device's clock may be decades off)."""
    a, b = iso(since), iso(until + timedelta(minutes=1))
    items: list[TimelineItem] = []
    for r in db.execute("SELECT e.id, e.type, e.state, e.received_at, s.sha256 FROM events e "
                        "LEFT JOIN snapshots s ON s.event_id = e.id WHERE e.household = ? AND e.received_at >= ? "
                        "AND e.received_at < ? ORDER BY e.received_at DESC LIMIT ?", (household, a, b, limit)):
        items.append(TimelineItem(at=r[3], what="event", kind=r[1], detail=r[2] or "", ref=r[0], snapshot=r[4]))
    for r in db.execute("SELECT id, type, celsius, open, received_at, subject FROM readings WHERE household = ? "
                        "AND received_at >= ? AND received_at < ? ORDER BY received_at DESC LIMIT ?",
                        (household, a, b, limit)):
        if r[1] == "temperature":  # body or room: a 22 °C room is no hypothermia, a 38 °C body no heatwave
            kind = "room_temperature" if r[5] == "ambient" else "body_temperature"
            detail = f"{r[2]:.1f} °C" if r[2] is not None else ""
        else:
            kind, detail = r[1], "open" if r[3] else "closed"
        items.append(TimelineItem(at=r[4], what="reading", kind=kind, detail=detail, ref=r[0]))
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


CHART_HOURS = 72  # three days by the hour: twice-daily readings stay apart, a fever's course stays readable


@dataclass(frozen=True)
class ChartText:
    """The words a chart needs, in the reader's language (dashboard.i18n supplies them)."""

    title: str
    axis: str  # "hours, UTC+08:00"
    fever: str = ""  # "fever from 37.3 °C"
    empty: str = ""


def _readings(db: sqlite3.Connection, household: str, subject: str, since: datetime,
              until: datetime) -> list[sqlite3.Row]:
    return db.execute("SELECT received_at, celsius, method FROM readings WHERE household = ? AND type = 'temperature' "
                      "AND subject = ? AND celsius IS NOT NULL AND received_at >= ? AND received_at < ? "
                      "ORDER BY received_at", (household, subject, iso(since), iso(until))).fetchall()


def _chart(rows: list[sqlite3.Row], since: datetime, until: datetime, zone: str, *, css: str, text: ChartText,
           lo: float, hi: float, grid: list[float], fever: Callable[[str | None], float] | None,
           width: int = 420, height: int = 190) -> str:
    """An inline SVG line chart over [since, until) with hour ticks in site time; no JS, no CDN.

    Drawn 420 units wide so its 11-unit labels stay readable when a phone scales it to its width."""
    pad_l, pad_r, pad_t, pad_b = 30, 6, 14, 30
    span = max((until - since).total_seconds(), 1.0)

    def x(at: datetime) -> float:
        return pad_l + (at - since).total_seconds() / span * (width - pad_l - pad_r)

    def y(c: float) -> float:
        c = min(max(c, lo), hi)
        return pad_t + (hi - c) / (hi - lo) * (height - pad_t - pad_b)

    parts = [f'<svg class="chart {css}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="{escape(text.title)}" xmlns="http://www.w3.org/2000/svg"><title>{escape(text.title)}</title>']
    for c in grid:
        parts.append(f'<line x1="{pad_l}" x2="{width - pad_r}" y1="{y(c):.1f}" y2="{y(c):.1f}" class="grid"/>'
                     f'<text x="2" y="{y(c) + 4:.1f}" class="axis">{c:g}°</text>')
    if fever is not None:
        line = fever(None)
        parts.append(f'<line x1="{pad_l}" x2="{width - pad_r}" y1="{y(line):.1f}" y2="{y(line):.1f}" class="fever"/>'
                     f'<text x="{width - pad_r}" y="{y(line) - 3:.1f}" class="axis fever-label" text-anchor="end">'
                     f'{escape(text.fever)}</text>')
    # Ticks every 12 hours on the local clock (noon "12:00", midnight the date "11-26").
    tick = local(since, zone).replace(minute=0, second=0, microsecond=0)
    tick += timedelta(hours=(12 - tick.hour % 12) % 12)
    while tick < local(until, zone):
        px = x(tick.astimezone(timezone.utc))
        label = f"{tick:%m-%d}" if tick.hour == 0 else f"{tick:%H}:00"
        parts.append(f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{pad_t}" y2="{height - pad_b}" class="grid hour"/>'
                     f'<text x="{px:.1f}" y="{height - pad_b + 12}" class="axis" text-anchor="middle">{label}</text>')
        tick = (tick.astimezone(timezone.utc) + timedelta(hours=12)).astimezone(tick.tzinfo)
    parts.append(f'<text x="{width - pad_r}" y="{height - 3}" class="axis" text-anchor="end">{escape(text.axis)}</text>')
    if rows:
        points = [(parse_iso(r["received_at"]), r["celsius"], r["method"]) for r in rows]
        parts.append('<polyline points="' + " ".join(f"{x(at):.1f},{y(c):.1f}" for at, c, _ in points)
                     + '" class="line"/>')
        for at, c, method in points:
            cls = "dot hot" if fever is not None and c >= fever(method) else "dot"
            parts.append(f'<circle cx="{x(at):.1f}" cy="{y(c):.1f}" r="3.5" class="{cls}">'
                         f'<title>{escape(stamp(at, zone))} {c:.1f} °C</title></circle>')
    elif text.empty:
        parts.append(f'<text x="{width / 2:.0f}" y="{height / 2:.0f}" class="axis" text-anchor="middle">'
                     f'{escape(text.empty)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def body_chart(db: sqlite3.Connection, household: str, until: datetime, zone: str, text: ChartText,
               fever: Callable[[str | None], float]) -> str:
    """Body temperatures of the last three days by the hour, with the policy's fever line (per method for dots)."""
    since = until - timedelta(hours=CHART_HOURS)
    rows = _readings(db, household, "body", since, until + timedelta(minutes=1))
    return _chart(rows, since, until, zone, css="body", text=text, lo=35.0, hi=40.0, grid=[36, 37, 38, 39],
                  fever=fever)


def room_chart(db: sqlite3.Connection, household: str, until: datetime, zone: str, text: ChartText) -> str:
    """Room temperature on its own small scale, or nothing when the household has no room sensor."""
    since = until - timedelta(hours=CHART_HOURS)
    rows = _readings(db, household, "ambient", since, until + timedelta(minutes=1))
    if not rows:
        return ""
    values = [r["celsius"] for r in rows]
    lo, hi = float(int(min(values)) - 1), float(int(max(values)) + 2)
    step = max(1, int((hi - lo) // 3))
    return _chart(rows, since, until, zone, css="room", text=text, lo=lo, hi=hi,
                  grid=[float(v) for v in range(int(lo) + 1, int(hi), step)], fever=None, height=120)
