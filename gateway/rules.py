"""Rules: turn stored events, readings and silences into alert findings.

Pure decisions (`count_openings`, `disagreements`, `reading_deadline`, `is_fever`) sit beside the
functions that read the database for them. Nothing here pages anyone: the alert worker turns
findings into alerts and pages. Events outside an active isolation, or from a device not registered
to that household, are logged in `rule_log` and alert nobody.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from gateway.policy import AlertKind, Policy, Rules
from gateway.registry import Registry, iso, isolation_active, parse_iso


@dataclass(frozen=True)
class Finding:
    kind: AlertKind
    site: str
    household: str
    at: datetime
    ref: str  # the event or reading id, or a synthetic id for silences ("offline:cam-1:<last seen>")
    isolation_id: int
    detail: str = ""
    snapshot: str | None = None
    mark: tuple[str, str] | None = None  # (rule, value) remembered so a silence fires once


@dataclass(frozen=True)
class Verdict:
    """What the rules made of one event or reading: an outcome for rule_log, and findings to alert on."""

    outcome: str  # alert, expected, outside_isolation, unregistered, no_alert
    findings: tuple[Finding, ...] = ()
    detail: str = ""


# -- pure decisions ------------------------------------------------------------------------------


def count_openings(times: list[datetime], merge_s: float) -> int:
    """Openings at least `merge_s` apart: camera and contact reporting one opening count once."""
    count, last = 0, None
    for at in sorted(times):
        if last is None or (at - last).total_seconds() >= merge_s:
            count += 1
            last = at
    return count


def is_fever(rules: Rules, celsius: float, method: str | None) -> bool:
    return celsius >= rules.fever_threshold(method)


def disagreements(camera: list[datetime], contact: list[datetime], window_s: float) -> list[tuple[str, datetime]]:
    """Openings one source saw and the other did not, within `window_s` either side."""
    out = []
    for source, mine, theirs in (("camera", camera, contact), ("contact", contact, camera)):
        for at in mine:
            if not any(abs((at - other).total_seconds()) <= window_s for other in theirs):
                out.append((source, at))
    return sorted(out, key=lambda item: item[1])


def reading_deadline(now: datetime, expected: list[time], grace_minutes: float, tz: str
                     ) -> tuple[datetime, datetime, datetime] | None:
    """The latest passed deadline: (window start, expected time, deadline), all UTC.

    A body temperature is expected by each local `expected` time, with `grace_minutes` to spare; the
    window for it opens at the previous expected time.
    """
    zone = ZoneInfo(tz)
    local_now = now.astimezone(zone)
    slots = []
    for day_offset in (-2, -1, 0):
        day = local_now.date() + timedelta(days=day_offset)
        slots += [datetime.combine(day, t, tzinfo=zone) for t in sorted(expected)]
    grace = timedelta(minutes=grace_minutes)
    passed = [i for i, slot in enumerate(slots) if slot + grace <= local_now and i > 0]
    if not passed:
        return None
    i = passed[-1]
    utc = timezone.utc
    return slots[i - 1].astimezone(utc), slots[i].astimezone(utc), (slots[i] + grace).astimezone(utc)


# -- events and readings -------------------------------------------------------------------------


def _registered(conn: sqlite3.Connection, device: str, household: str) -> bool:
    row = conn.execute("SELECT household, registered_at FROM devices WHERE device = ?", (device,)).fetchone()
    return row is not None and row[1] is not None and row[0] == household


def evaluate_event(conn: sqlite3.Connection, registry: Registry, policy: Policy, row: sqlite3.Row) -> Verdict | None:
    """Door opens and tamper starts; None for events no rule looks at (closings, tamper ends)."""
    payload = json.loads(row["payload"])
    if row["type"] == "door" and row["state"] != "open":
        return None
    if row["type"] == "tamper" and row["state"] != "start":
        return None
    if not _registered(conn, row["device"], row["household"]):
        return Verdict("unregistered", detail=f"device {row['device']} is not registered to this household")
    at = parse_iso(row["device_time"])
    active = registry.active_isolation(row["household"], at)
    if active is None:
        return Verdict("outside_isolation")
    period, _tz = active
    base = dict(site=row["site"], household=row["household"], at=at, ref=row["id"], isolation_id=period.id)
    if row["type"] == "tamper":
        return Verdict("alert", (Finding(AlertKind.CAMERA_TAMPERED, detail=payload.get("reason", ""), **base),))
    visit = registry.visit_covering(row["household"], at)
    if visit is not None:
        return Verdict("expected", detail=f"announced visit {visit}")
    snapshots = payload.get("snapshots") or []
    snapshot = snapshots[0]["sha256"] if snapshots else None
    conn.execute("INSERT OR IGNORE INTO door_violations (event_id, household, at) VALUES (?, ?, ?)",
                 (row["id"], row["household"], iso(at)))
    rules = policy.rules
    since = at - timedelta(hours=rules.repeat_window_hours)
    times = [parse_iso(t) for (t,) in conn.execute(
        "SELECT at FROM door_violations WHERE household = ? AND at > ? AND at <= ?",
        (row["household"], iso(since), iso(at)))]
    detail = f"{payload.get('source', 'camera')}" + (", exit suspected" if payload.get("exit_suspected") else "")
    findings = [Finding(AlertKind.DOOR_OPENED, detail=detail, snapshot=snapshot, **base)]
    openings = count_openings(times, rules.opening_merge_s)
    if openings >= rules.repeat_count:
        findings.append(Finding(AlertKind.REPEATED_DOOR, snapshot=snapshot,
                                detail=f"{openings} openings in {rules.repeat_window_hours:g} h", **base))
    return Verdict("alert", tuple(findings))


def evaluate_reading(conn: sqlite3.Connection, registry: Registry, policy: Policy, row: sqlite3.Row) -> Verdict | None:
    if row["type"] != "temperature" or row["subject"] != "body":
        return None
    method = row["method"]
    if row["plausible"] and not is_fever(policy.rules, row["celsius"], method):
        return None  # the common case decides without a database lookup: most readings are normal
    if not _registered(conn, row["device"], row["household"]):
        return Verdict("unregistered")
    at = parse_iso(row["device_time"])
    active = registry.active_isolation(row["household"], at)
    if active is None:
        return Verdict("outside_isolation")
    base = dict(site=row["site"], household=row["household"], at=at, ref=row["id"], isolation_id=active[0].id)
    kind = AlertKind.FEVER if row["plausible"] else AlertKind.IMPLAUSIBLE_READING
    return Verdict("alert", (Finding(kind, detail=f"{row['celsius']:.1f} °C ({method or 'unknown'})", **base),))


# -- silences: scanned periodically with the injected clock ----------------------------------------


def _isolated_households(conn: sqlite3.Connection, registry: Registry, now: datetime, where: str = "1"):
    rows = conn.execute(
        "SELECT DISTINCT h.household, h.site FROM households h JOIN isolation_periods p ON p.household = h.household "
        f"WHERE p.ended_at IS NULL AND {where}"  # noqa: S608 - fixed fragments
    ).fetchall()
    for row in rows:
        active = registry.active_isolation(row["household"], now)
        if active is not None:
            yield row["household"], row["site"], active[0], active[1]


def _mark(conn: sqlite3.Connection, household: str, rule: str) -> str | None:
    row = conn.execute("SELECT mark FROM rule_marks WHERE household = ? AND rule = ?", (household, rule)).fetchone()
    return row[0] if row else None


def scan_offline(conn: sqlite3.Connection, registry: Registry, policy: Policy, now: datetime) -> list[Finding]:
    """A registered device silent for `offline_after_s` (by the gateway's receive clock) while isolated."""
    out = []
    limit = now - timedelta(seconds=policy.rules.offline_after_s)
    isolated = {household: (site, period) for household, site, period, _tz in _isolated_households(conn, registry, now)}
    # One pass over the devices table, not one query per household: at 50,000 households the per-household
    # queries took most of the gateway's CPU (issue 8's steady-load profile).
    rows = conn.execute(
        "SELECT device, household, coalesce(last_seen, registered_at) FROM devices WHERE registered_at IS NOT NULL"
    ).fetchall()
    for device, household, last in rows:
        if household not in isolated or parse_iso(last) > limit:
            continue
        if _mark(conn, household, f"offline:{device}") == last:
            continue
        site, period = isolated[household]
        out.append(Finding(AlertKind.DEVICE_OFFLINE, site, household, now, f"offline:{device}:{last}", period.id,
                           detail=f"{device} silent since {last}", mark=(f"offline:{device}", last)))
    return out


def scan_missed_readings(conn: sqlite3.Connection, registry: Registry, policy: Policy, now: datetime) -> list[Finding]:
    out = []
    rules = policy.rules
    for household, site, period, tz in _isolated_households(conn, registry, now):
        slot = reading_deadline(now, rules.readings_expected_at, rules.reading_grace_minutes, tz)
        if slot is None:
            continue
        window_start, expected, deadline = slot
        if not isolation_active(period, expected, tz) or (_mark(conn, household, "missed_reading") or "") >= iso(deadline):
            continue
        seen = conn.execute(
            "SELECT 1 FROM readings WHERE household = ? AND type = 'temperature' AND subject = 'body' "
            "AND device_time > ? AND device_time <= ? LIMIT 1", (household, iso(window_start), iso(deadline)),
        ).fetchone()
        mark = ("missed_reading", iso(deadline))
        if seen:
            conn.execute("INSERT OR REPLACE INTO rule_marks (household, rule, mark) VALUES (?, ?, ?)",
                         (household, *mark))
            continue
        local = expected.astimezone(ZoneInfo(tz))
        out.append(Finding(AlertKind.MISSED_READING, site, household, deadline, f"missed:{household}:{iso(deadline)}",
                           period.id, detail=f"expected by {local:%H:%M}", mark=mark))
    return out


def scan_welfare(conn: sqlite3.Connection, registry: Registry, policy: Policy, now: datetime) -> list[Finding]:
    """A vulnerable resident's household with no door, contact or reading activity for too long."""
    out = []
    quiet = timedelta(hours=policy.rules.welfare_quiet_hours)
    for household, site, period, tz in _isolated_households(
        conn, registry, now, "(h.elderly_alone = 1 OR h.disabled = 1)"
    ):
        last = conn.execute(
            "SELECT max(t) FROM (SELECT max(device_time) AS t FROM events WHERE household = ? "
            "UNION ALL SELECT max(device_time) FROM readings WHERE household = ?)", (household, household),
        ).fetchone()[0]
        start = datetime.combine(period.start_date, time(0), tzinfo=ZoneInfo(tz)).astimezone(timezone.utc)
        since = max(parse_iso(last), start) if last else start
        if now - since < quiet or _mark(conn, household, "welfare") == iso(since):
            continue
        out.append(Finding(AlertKind.WELFARE_CHECK, site, household, now, f"welfare:{household}:{iso(since)}",
                           period.id, detail=f"no activity since {iso(since)}", mark=("welfare", iso(since))))
    return out


def scan_disagreements(conn: sqlite3.Connection, registry: Registry, policy: Policy, now: datetime) -> list[Finding]:
    """Camera and door contact must both see an opening; checked once both had `disagree_window_s` to report."""
    out = []
    window = policy.rules.disagree_window_s
    for household, site, period, _tz in _isolated_households(conn, registry, now):
        until = now - timedelta(seconds=window)
        since_text = _mark(conn, household, "disagree") or iso(now - timedelta(hours=1))
        since = parse_iso(since_text)
        if until <= since:
            continue
        lo, hi = iso(since - timedelta(seconds=window)), iso(now)
        camera = [parse_iso(t) for (t,) in conn.execute(
            "SELECT device_time FROM events WHERE household = ? AND type = 'door' AND state = 'open' "
            "AND json_extract(payload, '$.source') = 'camera' AND device_time > ? AND device_time <= ?",
            (household, lo, hi))]
        contact = [parse_iso(t) for (t,) in conn.execute(
            "SELECT device_time FROM readings WHERE household = ? AND type = 'contact' AND open = 1 "
            "AND device_time > ? AND device_time <= ? UNION ALL SELECT device_time FROM events WHERE household = ? "
            "AND type = 'door' AND state = 'open' AND json_extract(payload, '$.source') = 'contact' "
            "AND device_time > ? AND device_time <= ?", (household, lo, hi, household, lo, hi))]
        has_contact = conn.execute(
            "SELECT 1 FROM readings WHERE household = ? AND type = 'contact' AND device_time > ? LIMIT 1",
            (household, iso(now - timedelta(days=1)))).fetchone()
        conn.execute("INSERT OR REPLACE INTO rule_marks (household, rule, mark) VALUES (?, 'disagree', ?)",
                     (household, iso(until)))
        if not has_contact:
            continue  # no contact sensor reporting: nothing to disagree with
        for source, at in disagreements(camera, contact, window):
            if since < at <= until:
                out.append(Finding(AlertKind.SENSOR_DISAGREE, site, household, at,
                                   f"disagree:{household}:{source}:{iso(at)}", period.id,
                                   detail=f"only the {source} saw the door open"))
    return out


SCANS = (scan_offline, scan_missed_readings, scan_welfare, scan_disagreements)
