"""Rules: turn stored events, readings and silences into alert findings.

Pure decisions (`count_openings`, `disagreements`, `reading_deadline`, `is_fever`) sit beside the
functions that read the database for them. Nothing here pages anyone: the alert worker turns
findings into alerts and pages. Events outside an active isolation, or from a device not registered
to that household, are logged in `rule_log` and alert nobody.

Time is the gateway's: every decision and ordering here uses `received_at`, never `device_time`. A box
without a real-time clock boots in 1970, and one message dated 2099 must neither escape the isolation
period nor count as the newest sign of life.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Literal
from zoneinfo import ZoneInfo

from gateway.policy import Policy, Rules
from gateway.registry import Isolation, Registry, isolation_active
from gateway.resident import self_reported
from gateway.store import BatchOutcome
from gateway.vocabulary import AlertKind
from isowatch.clock import iso, parse_iso
from isowatch.contract import DeviceMessage
from isowatch.localtime import DEFAULT_ZONE


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

    outcome: str  # alert, expected, merged, outside_isolation, unregistered, no_alert
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


def _unregistered(device: str) -> Verdict:
    return Verdict("unregistered", detail=f"device {device} is not registered to this household")


def _chunks(values: list[str], size: int = 500) -> Iterable[list[str]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


def screen(conn: sqlite3.Connection, rows: list[sqlite3.Row]) -> dict[int, Verdict]:
    """Verdicts for a batch of candidate rows (door opens, contact opens, tamper starts, fevers, implausible
    readings) that two lookups for the whole batch decide, by rowid: a device not registered to the row's household,
    or a household with no isolation period that had not ended by the row's time.

    The same verdicts `evaluate_event` and `evaluate_reading` reach, at a fraction of their per-row
    queries: at full load most candidates come from households that are not isolated.
    Rows left out go through those functions.
    """
    devices = sorted({row["device"] for row in rows})
    households = sorted({row["household"] for row in rows})
    registered: set[tuple[str, str]] = set()
    latest_end: dict[str, datetime | None] = {}  # None: a period has not ended
    for chunk in _chunks(devices):
        registered.update((device, household) for device, household in conn.execute(
            f"SELECT device, household FROM devices WHERE registered_at IS NOT NULL "  # noqa: S608
            f"AND device IN ({','.join('?' * len(chunk))})", chunk))
    for chunk in _chunks(households):
        for household, open_periods, last_end in conn.execute(
            f"SELECT household, count(*) - count(ended_at), max(ended_at) FROM isolation_periods "  # noqa: S608
            f"WHERE household IN ({','.join('?' * len(chunk))}) GROUP BY household", chunk,
        ):
            latest_end[household] = None if open_periods else parse_iso(last_end)
    decided: dict[int, Verdict] = {}
    for row in rows:
        household = row["household"]
        if (row["device"], household) not in registered and not self_reported(row["device"], household):
            decided[row["rowid"]] = _unregistered(row["device"])
        elif household not in latest_end:
            decided[row["rowid"]] = Verdict("outside_isolation")
        elif (end := latest_end[household]) is not None and parse_iso(row["received_at"]) >= end:
            decided[row["rowid"]] = Verdict("outside_isolation")
    return decided


def _registered(conn: sqlite3.Connection, device: str, household: str) -> bool:
    if self_reported(device, household):  # a reading the household sent through its own link
        return True
    row = conn.execute("SELECT household, registered_at FROM devices WHERE device = ?", (device,)).fetchone()
    return row is not None and row[1] is not None and row[0] == household


def _door_event(conn: sqlite3.Connection, registry: Registry, policy: Policy, row: sqlite3.Row) -> Verdict:
    """A door opening the camera (or a contact wired to the box) reported as a door event."""
    payload = json.loads(row["payload"])
    snapshots = payload.get("snapshots") or []
    detail = payload.get("source", "camera") + (", exit suspected" if payload.get("exit_suspected") else "")
    return _door_opening(conn, registry, policy, row, detail, snapshots[0]["sha256"] if snapshots else None,
                         exit_suspected=bool(payload.get("exit_suspected")))


def _tamper_start(conn: sqlite3.Connection, registry: Registry, policy: Policy, row: sqlite3.Row) -> Verdict:
    screened = _screen(conn, registry, row)
    if isinstance(screened, Verdict):
        return screened
    at, period = screened
    base = dict(site=row["site"], household=row["household"], at=at, ref=row["id"], isolation_id=period.id)
    reason = json.loads(row["payload"]).get("reason", "")
    return Verdict("alert", (Finding(AlertKind.CAMERA_TAMPERED, detail=reason, **base),))


def _screen(conn: sqlite3.Connection, registry: Registry, row: sqlite3.Row) -> Verdict | tuple[datetime, Isolation]:
    """An event's verdict when its device is not the household's or the household is not isolated at the
    gateway's receive time; else that time and the isolation period."""
    if not _registered(conn, row["device"], row["household"]):
        return _unregistered(row["device"])
    at = parse_iso(row["received_at"])
    active = registry.active_isolation(row["household"], at)
    if active is None:
        return Verdict("outside_isolation")
    return at, active[0]


def _door_opening(conn: sqlite3.Connection, registry: Registry, policy: Policy, row: sqlite3.Row, detail: str,
                  snapshot: str | None, *, exit_suspected: bool = False) -> Verdict:
    """One door opening, seen by the camera (a door event) or a door contact (a contact reading): the same
    rules for both. The camera and the contact report the same opening separately, in either order; the
    second to be evaluated within `opening_merge_s` of the first joins the first's alert, and pages nobody.
    """
    screened = _screen(conn, registry, row)
    if isinstance(screened, Verdict):
        return screened
    at, period = screened
    visit = registry.visit_covering(row["household"], at, exit_suspected=exit_suspected)
    if visit is not None:
        return Verdict("expected", detail=f"announced visit {visit}")
    rules = policy.rules
    merge = timedelta(seconds=rules.opening_merge_s)
    first = conn.execute(
        "SELECT event_id FROM door_violations WHERE household = ? AND at >= ? AND at <= ? AND event_id != ? "
        "ORDER BY at LIMIT 1", (row["household"], iso(at - merge), iso(at + merge), row["id"])).fetchone()
    conn.execute("INSERT OR IGNORE INTO door_violations (event_id, household, at) VALUES (?, ?, ?)",
                 (row["id"], row["household"], iso(at)))
    if first is not None:
        # Linked to the first report's alerts as evidence (a camera's snapshot too), not counted as an event.
        conn.execute("INSERT OR IGNORE INTO alert_events (alert_id, ref, at) SELECT alert_id, ?, ? FROM alert_events "
                     "WHERE ref = ?", (row["id"], iso(at), first[0]))
        if snapshot is not None:
            conn.execute("UPDATE alerts SET snapshot = coalesce(snapshot, ?) "
                         "WHERE id IN (SELECT alert_id FROM alert_events WHERE ref = ?)", (snapshot, first[0]))
        return Verdict("merged", detail=f"{detail}: the opening {first[0]} reported")
    base = dict(site=row["site"], household=row["household"], at=at, ref=row["id"], isolation_id=period.id)
    since = at - timedelta(hours=rules.repeat_window_hours)
    times = [parse_iso(t) for (t,) in conn.execute(
        "SELECT at FROM door_violations WHERE household = ? AND at > ? AND at <= ?",
        (row["household"], iso(since), iso(at)))]
    findings = [Finding(AlertKind.DOOR_OPENED, detail=detail, snapshot=snapshot, **base)]
    openings = count_openings(times, rules.opening_merge_s)
    if openings >= rules.repeat_count:
        findings.append(Finding(AlertKind.REPEATED_DOOR, snapshot=snapshot,
                                detail=f"{openings} openings in {rules.repeat_window_hours:g} h", **base))
    return Verdict("alert", tuple(findings))


def _contact_opening(conn: sqlite3.Connection, registry: Registry, policy: Policy, row: sqlite3.Row) -> Verdict:
    """A door contact reporting open: a door opening like a camera's, unless it was open already."""
    if _contact_was_open(conn, row):
        return Verdict("no_alert", detail="the door contact was open already")
    return _door_opening(conn, registry, policy, row, "contact", None)


def _body_temperature(conn: sqlite3.Connection, registry: Registry, policy: Policy, row: sqlite3.Row
                      ) -> Verdict | None:
    """A fever by the reading's own method's threshold, or a reading the device flagged implausible; None for
    a temperature between the lowest threshold (the trigger) and its method's."""
    method = row["method"]
    if row["plausible"] and not is_fever(policy.rules, row["celsius"], method):
        return None
    screened = _screen(conn, registry, row)
    if isinstance(screened, Verdict):
        return screened
    at, period = screened
    base = dict(site=row["site"], household=row["household"], at=at, ref=row["id"], isolation_id=period.id)
    kind = AlertKind.FEVER if row["plausible"] else AlertKind.IMPLAUSIBLE_READING
    return Verdict("alert", (Finding(kind, detail=f"{row['celsius']:.1f} °C ({method or 'unknown'})", **base),))


def _contact_was_open(conn: sqlite3.Connection, row: sqlite3.Row) -> bool:
    """Whether this door contact's previous report (in receive order) was open too: sensors repeat their state
    (a battery update, a periodic report), and only a change to open is an opening."""
    before = conn.execute(
        "SELECT open FROM readings WHERE household = ? AND type = 'contact' AND device = ? AND received_at <= ? "
        "AND rowid < ? ORDER BY received_at DESC, rowid DESC LIMIT 1",
        (row["household"], row["device"], row["received_at"], row["rowid"])).fetchone()
    return before is not None and bool(before[0])


# -- row-triggered rules: each declares its trigger once ------------------------------------------
#
# A rule that judges stored rows says here which rows trigger it. The alert worker selects those rows with
# the trigger written as SQL (`candidates`: the rest never leave SQLite), `may_page_now` wakes the worker
# for a stored message that meets it, and `evaluate_event`/`evaluate_reading` hand a row to the rule it
# triggers. A new rule is one more `RowRule` in `ROW_RULES`; tests/gateway/test_row_rules.py checks the
# three agree for every rule.

Record = sqlite3.Row | DeviceMessage  # a stored row, or the message stored as it


@dataclass(frozen=True)
class Check:
    """One test of a trigger on a column (a stored row's, or the same-named field of the contract message):
    `column op value`, the value a constant or taken from the policy's rules."""

    column: str
    op: Literal["=", ">="]
    value: str | int | float | Callable[[Rules], float]

    def bound(self, rules: Rules) -> str | int | float:
        return self.value(rules) if callable(self.value) else self.value

    def sql(self) -> str:
        return f"+{self.column} {self.op} ?"  # unary +: the planner stays on the rowid range, off any index

    def holds(self, record: Record, rules: Rules) -> bool:
        have = record[self.column] if isinstance(record, sqlite3.Row) else getattr(record, self.column, None)
        want = self.bound(rules)
        if have is None:
            return False  # as SQL's comparison with NULL
        return have == want if self.op == "=" else have >= want


@dataclass(frozen=True)
class RowRule:
    """A rule triggered by rows of `table` of one `type` (the contract message's type) for which every check
    of `all_of` holds and, if `any_of` is given, one of its checks. A row is judged by the first rule it
    triggers (one verdict per row); the judgement, `evaluate`, may still find nothing to alert on. The worker
    screens a batch's candidates first (`screen`): a row whose device is not its household's, or whose
    household was not isolated when it came, is logged so and not evaluated."""

    name: str
    table: Literal["events", "readings"]
    type: str
    evaluate: Callable[[sqlite3.Connection, Registry, Policy, sqlite3.Row], Verdict | None]
    all_of: tuple[Check, ...] = ()
    any_of: tuple[Check, ...] = ()

    def where(self, rules: Rules) -> tuple[str, tuple[str | int | float, ...]]:
        parts = ["+type = ?", *(check.sql() for check in self.all_of)]
        if self.any_of:
            parts.append("(" + " OR ".join(check.sql() for check in self.any_of) + ")")
        params = (self.type, *(check.bound(rules) for check in (*self.all_of, *self.any_of)))
        return "(" + " AND ".join(parts) + ")", params

    def matches(self, record: Record, rules: Rules) -> bool:
        kind = record["type"] if isinstance(record, sqlite3.Row) else getattr(record, "type", None)
        return (kind == self.type and all(check.holds(record, rules) for check in self.all_of)
                and (not self.any_of or any(check.holds(record, rules) for check in self.any_of)))


ROW_RULES: tuple[RowRule, ...] = (
    RowRule("door opening", "events", "door", _door_event, all_of=(Check("state", "=", "open"),)),
    RowRule("camera tamper", "events", "tamper", _tamper_start, all_of=(Check("state", "=", "start"),)),
    RowRule("door contact opening", "readings", "contact", _contact_opening, all_of=(Check("open", "=", 1),)),
    # Any method's fever: the rule applies the reading's own method's threshold.
    RowRule("body temperature", "readings", "temperature", _body_temperature, all_of=(Check("subject", "=", "body"),),
            any_of=(Check("plausible", "=", 0), Check("celsius", ">=", lambda rules: rules.lowest_fever))),
)


def candidates(table: str, rules: Rules) -> tuple[str, tuple[str | int | float, ...]]:
    """The SQL filter (and its parameters) for the rows of `table` some rule is triggered by."""
    wheres = [rule.where(rules) for rule in ROW_RULES if rule.table == table]
    if not wheres:
        return "0", ()
    return "(" + " OR ".join(sql for sql, _ in wheres) + ")", tuple(p for _, params in wheres for p in params)


def may_page_now(outcome: BatchOutcome, policy: Policy) -> bool:
    """Whether a stored batch holds a message that triggers a rule (a door opening, a tamper start, a fever or
    an implausible reading): it may page at once. Everything else (normal readings, closings) waits for the
    worker's next regular pass, a fraction of a second away; waking it for every batch at 1,000 messages a
    second would cost more than it saves.
    """
    rules = policy.rules
    return any(rule.matches(item.message, rules) for item in outcome.stored for rule in ROW_RULES)


def _evaluate(table: str, conn: sqlite3.Connection, registry: Registry, policy: Policy, row: sqlite3.Row
              ) -> Verdict | None:
    for rule in ROW_RULES:
        if rule.table == table and rule.matches(row, policy.rules):
            return rule.evaluate(conn, registry, policy, row)
    return None


def evaluate_event(conn: sqlite3.Connection, registry: Registry, policy: Policy, row: sqlite3.Row) -> Verdict | None:
    """The verdict of the rule an event triggers (door opens, tamper starts); None for events none looks at."""
    return _evaluate("events", conn, registry, policy, row)


def evaluate_reading(conn: sqlite3.Connection, registry: Registry, policy: Policy, row: sqlite3.Row) -> Verdict | None:
    """The verdict of the rule a reading triggers (contact opens, body temperatures); None for the rest."""
    return _evaluate("readings", conn, registry, policy, row)


# -- silences: scanned periodically with the injected clock ----------------------------------------
#
# Set-based: a scan is a few queries whatever the number of households. Each query starts
# from the rows that can matter (a silent device, a quiet vulnerable household, a door opening, a
# household without its reading mark) and the isolation rule then runs, as `Registry.active_isolation`
# runs it, on those few. Time values are ISO-8601 UTC text, compared as text as the per-household
# queries did; where a text bound only narrows the rows, the exact comparison follows in Python.


@dataclass(frozen=True)
class _Isolated:
    site: str
    period: Isolation
    tz: str


def _isolated(conn: sqlite3.Connection, households: Iterable[str], now: datetime) -> dict[str, _Isolated]:
    """Those of `households` in an active isolation at `now`: the first period by start date that
    `isolation_active` accepts in the site's timezone. Only households with a period not ended early are
    scanned at all (a period's natural end leaves `ended_at` empty)."""
    wanted = sorted(set(households))
    if not wanted:
        return {}
    rows = conn.execute(
        "SELECT h.household, h.site, coalesce(s.timezone, ?), p.id, p.start_date, p.days, p.ended_at "
        "FROM households h LEFT JOIN sites s ON s.site = h.site JOIN isolation_periods p ON p.household = h.household "
        "WHERE h.household IN (SELECT value FROM json_each(?)) "
        "AND EXISTS (SELECT 1 FROM isolation_periods o WHERE o.household = h.household AND o.ended_at IS NULL) "
        "ORDER BY h.household, p.start_date, p.id", (DEFAULT_ZONE, json.dumps(wanted)),
    ).fetchall()
    out: dict[str, _Isolated] = {}
    for household, site, tz, period_id, start_date, days, ended_at in rows:
        if household in out:
            continue
        period = Isolation(period_id, household, date.fromisoformat(start_date), days,
                           parse_iso(ended_at) if ended_at else None)
        if isolation_active(period, now, tz):
            out[household] = _Isolated(site, period, tz)
    return out


def _at_most(at: datetime) -> str:
    """A text bound B such that every stored time up to `at` satisfies `column <= B`, whatever its
    sub-second digits ('...:05Z' sorts after '...:05.5Z'). It narrows; the exact test is up to the caller."""
    return iso(at)[:19] + "Z"


def _marks(conn: sqlite3.Connection, rule: str, households: Iterable[str]) -> dict[str, str]:
    return dict(conn.execute(
        "SELECT household, mark FROM rule_marks WHERE rule = ? AND household IN (SELECT value FROM json_each(?))",
        (rule, json.dumps(sorted(set(households))))).fetchall())


def _registry_seq(conn: sqlite3.Connection) -> int:
    """How far `registry_changes` (households whose isolation or site changed, by trigger) has got."""
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'registry_changes'").fetchone()
    return row[0] if row else 0  # the high-water mark survives the pruning of the log


def _changed_since(conn: sqlite3.Connection, seq: int) -> set[str | None]:
    """Households the registry changed after `seq`; None among them: a site's timezone changed."""
    return {household for (household,) in conn.execute(
        "SELECT DISTINCT household FROM registry_changes WHERE seq > ?", (seq,))}


def _save_state(conn: sqlite3.Connection, scan: str, state: dict) -> None:
    """Record where a scan got to, and drop the registry changes every scan has read."""
    conn.execute("INSERT OR REPLACE INTO scan_state (scan, state) VALUES (?, ?)", (scan, json.dumps(state)))
    read = min(json.loads(s)["seq"] for (s,) in conn.execute("SELECT state FROM scan_state"))
    if (conn.execute("SELECT min(seq) FROM registry_changes").fetchone()[0] or read + 1) <= read:
        conn.execute("DELETE FROM registry_changes WHERE seq <= ?", (read,))


def scan_offline(conn: sqlite3.Connection, registry: Registry, policy: Policy, now: datetime) -> list[Finding]:
    """A registered device silent for `offline_after_s` (by the gateway's receive clock) while isolated."""
    limit = now - timedelta(seconds=policy.rules.offline_after_s)
    # One pass over devices, already marked silences left out in SQL. No index on last_seen: ingest rewrites
    # it with every heartbeat, and keeping an index up to date there costs more than this scan.
    rows = conn.execute(
        "SELECT d.device, d.household, coalesce(d.last_seen, d.registered_at) FROM devices d "
        "LEFT JOIN rule_marks m ON m.household = d.household AND m.rule = 'offline:' || d.device "
        "WHERE d.registered_at IS NOT NULL AND coalesce(d.last_seen, d.registered_at) <= ? "
        "AND m.mark IS NOT coalesce(d.last_seen, d.registered_at) ORDER BY d.rowid", (_at_most(limit),),
    ).fetchall()
    silent = [(device, household, last) for device, household, last in rows if parse_iso(last) <= limit]
    isolated = _isolated(conn, (household for _, household, _ in silent), now)
    out = []
    for device, household, last in silent:
        if household in isolated:
            home = isolated[household]
            out.append(Finding(AlertKind.DEVICE_OFFLINE, home.site, household, now, f"offline:{device}:{last}",
                               home.period.id, detail=f"{device} silent since {last}", mark=(f"offline:{device}", last)))
    return out


def _zones(conn: sqlite3.Connection) -> dict[str, list[str]]:
    """Site timezones and their sites; households of a site without a row are in the default timezone."""
    zones: dict[str, list[str]] = {DEFAULT_ZONE: []}
    for site, tz in conn.execute("SELECT site, coalesce(timezone, ?) FROM sites ORDER BY site", (DEFAULT_ZONE,)):
        zones.setdefault(tz, []).append(site)
    return zones


def _in_zone(zones: dict[str, list[str]], tz: str) -> tuple[str, str]:
    """SQL condition on households `h` whose site is in `tz`, and its `:sites` parameter."""
    if len(zones) == 1:
        return "1", "[]"
    if tz == DEFAULT_ZONE:
        others = [site for zone, sites in zones.items() if zone != tz for site in sites]
        return "(h.site IS NULL OR h.site NOT IN (SELECT value FROM json_each(:sites)))", json.dumps(others)
    return "h.site IN (SELECT value FROM json_each(:sites))", json.dumps(zones[tz])


_CHUNK = 2000  # households a pass checks after a deadline (~20 ms); the next pass, 5 s later, goes on


def scan_missed_readings(conn: sqlite3.Connection, registry: Registry, policy: Policy, now: datetime) -> list[Finding]:
    """An isolated household without a body temperature by the latest passed deadline (in its site's time).

    Every household checked for a deadline gets a mark (its reading's, or its finding's), and what else
    decides (isolation periods, sites, timezones) changes only through the registry. So once a deadline
    (or a new local day) has come, the households of its timezone are checked `_CHUNK` at a time, pass by
    pass; after that only those `registry_changes` names, and a pass when nothing changed reads two rows.
    """
    rules = policy.rules
    out: list[Finding] = []
    seq = _registry_seq(conn)
    states = {scan: json.loads(state) for scan, state in conn.execute(
        "SELECT scan, state FROM scan_state WHERE scan LIKE 'missed_reading:%'")}
    zones = _zones(conn)
    for gone in set(states) - {f"missed_reading:{tz}" for tz in zones}:
        conn.execute("DELETE FROM scan_state WHERE scan = ?", (gone,))  # a timezone no site uses any more
    for tz in sorted(zones):
        slot = reading_deadline(now, rules.readings_expected_at, rules.reading_grace_minutes, tz)
        name = f"missed_reading:{tz}"
        key = None if slot is None else " ".join(
            [*(iso(t) for t in slot), now.astimezone(ZoneInfo(tz)).date().isoformat()])
        state = states.get(name, {"key": None, "seq": 0, "after": None})
        after = state["after"] if slot is not None else None  # None: every household checked
        if slot is not None and state["key"] != key:
            after = ""
        elif slot is not None and state["seq"] < seq:
            changed = _changed_since(conn, state["seq"])
            if None in changed or len(changed) > _CHUNK:  # a site's timezone, or a bulk import: all again
                after = ""
            else:
                out += _missed_in_zone(conn, zones, tz, slot, now, only=sorted(h for h in changed if h is not None))[0]
        if slot is not None and after is not None:
            found, after = _missed_in_zone(conn, zones, tz, slot, now, after=after)
            out += found
        if {"key": key, "seq": seq, "after": after} != state:
            _save_state(conn, name, {"key": key, "seq": seq, "after": after})
    return out


def _missed_in_zone(conn: sqlite3.Connection, zones: dict[str, list[str]], tz: str,
                    slot: tuple[datetime, datetime, datetime], now: datetime, *, only: list[str] | None = None,
                    after: str | None = None) -> tuple[list[Finding], str | None]:
    """Households of one timezone without a mark for this deadline, those in `only` or the `_CHUNK` next
    after `after`: a mark where a reading came in the window, a finding where none did. Returns the
    findings and the household to go on after (None: done)."""
    window_start, expected, deadline = slot
    zone = ZoneInfo(tz)
    in_zone, sites = _in_zone(zones, tz)
    params = {"sites": sites, "only": json.dumps(only), "after": after, "start": iso(window_start),
              "deadline": iso(deadline), "expected_day": expected.astimezone(zone).date().isoformat(),
              "today": now.astimezone(zone).date().isoformat()}
    resume = None
    if only is not None:
        pick = "h.household IN (SELECT value FROM json_each(:only))"
    else:
        params["last"], count = conn.execute(
            f"SELECT max(household), count(*) FROM (SELECT h.household FROM households h "  # noqa: S608
            f"WHERE h.household > :after AND {in_zone} ORDER BY h.household LIMIT {_CHUNK})", params).fetchone()
        if not count:
            return [], None
        pick = "h.household > :after AND h.household <= :last"
        resume = params["last"] if count == _CHUNK else None
    # Isolated at `now` and at `expected`, loosely: a period covering both days. The exact rule runs below on
    # the households without a reading; a mark for one that turns out not to be isolated changes nothing
    # (were it isolated later for this deadline, that reading would earn it the same mark).
    rows = conn.execute(
        f"SELECT h.household, EXISTS (SELECT 1 FROM readings r WHERE r.household = h.household "  # noqa: S608
        "AND r.type = 'temperature' AND r.subject = 'body' AND r.received_at > :start AND r.received_at <= :deadline) "
        f"FROM households h WHERE {pick} AND {in_zone} AND NOT EXISTS (SELECT 1 FROM rule_marks m "
        "WHERE m.household = h.household AND m.rule = 'missed_reading' AND m.mark >= :deadline) "
        "AND EXISTS (SELECT 1 FROM isolation_periods o WHERE o.household = h.household AND o.ended_at IS NULL) "
        "AND EXISTS (SELECT 1 FROM isolation_periods p WHERE p.household = h.household "
        "AND p.start_date <= :expected_day AND :today < date(p.start_date, '+' || p.days || ' days')) "
        "ORDER BY h.household", params,
    ).fetchall()
    mark = ("missed_reading", iso(deadline))
    conn.execute("INSERT OR REPLACE INTO rule_marks (household, rule, mark) SELECT value, ?, ? FROM json_each(?)",
                 (*mark, json.dumps([household for household, seen in rows if seen])))
    missing = [household for household, seen in rows if not seen]
    local = expected.astimezone(zone)
    out = []
    for household, home in sorted(_isolated(conn, missing, now).items()):
        if isolation_active(home.period, expected, home.tz):
            out.append(Finding(AlertKind.MISSED_READING, home.site, household, deadline,
                               f"missed:{household}:{iso(deadline)}", home.period.id,
                               detail=f"expected by {local:%H:%M}", mark=mark))
    return out, resume


def scan_welfare(conn: sqlite3.Connection, registry: Registry, policy: Policy, now: datetime) -> list[Finding]:
    """A vulnerable resident's household with no door, contact or reading activity for too long."""
    quiet = timedelta(hours=policy.rules.welfare_quiet_hours)
    # Only households with no event and no reading after the quiet limit can be due (readings first: most
    # households have one, and the first row found ends the search).
    rows = conn.execute(
        "WITH still AS MATERIALIZED (SELECT h.household FROM households h WHERE (h.elderly_alone = 1 OR h.disabled = 1) "
        "AND NOT EXISTS (SELECT 1 FROM readings r WHERE r.household = h.household AND r.received_at > ?1) "
        "AND NOT EXISTS (SELECT 1 FROM events e WHERE e.household = h.household AND e.received_at > ?1)) "
        "SELECT household, (SELECT max(received_at) FROM events e WHERE e.household = still.household), "
        "(SELECT max(received_at) FROM readings r WHERE r.household = still.household) FROM still",
        (_at_most(now - quiet),),
    ).fetchall()
    isolated = _isolated(conn, (household for household, _, _ in rows), now)
    marks = _marks(conn, "welfare", isolated)
    out = []
    for household, last_event, last_reading in rows:
        if household not in isolated:
            continue
        home = isolated[household]
        seen = [t for t in (last_event, last_reading) if t is not None]
        last = max(seen) if seen else None  # as SQL's max() over both: text order
        start = datetime.combine(home.period.start_date, time(0), tzinfo=ZoneInfo(home.tz)).astimezone(timezone.utc)
        since = max(parse_iso(last), start) if last else start
        if now - since < quiet or marks.get(household) == iso(since):
            continue
        out.append(Finding(AlertKind.WELFARE_CHECK, home.site, household, now, f"welfare:{household}:{iso(since)}",
                           home.period.id, detail=f"no activity since {iso(since)}", mark=("welfare", iso(since))))
    return out


def scan_disagreements(conn: sqlite3.Connection, registry: Registry, policy: Policy, now: datetime) -> list[Finding]:
    """Camera and door contact must both see an opening; checked once both had `disagree_window_s` to report.

    A household is checked from where the last pass stopped (`scan_state`: that pass's `until`) if it was
    isolated then, else from its own mark or the last hour: what a mark per household and pass gave.
    Only households with an opening since then, or whose isolation has just begun and who have a mark,
    are looked at and get a mark; for the others there is nothing to disagree with. One difference from a
    mark per household and pass: a household isolated again resumes from the last pass that saw it open
    its door while isolated (or the last hour), not from the last pass of its previous isolation.
    """
    window = timedelta(seconds=policy.rules.disagree_window_s)
    until = now - window
    hour_ago = now - timedelta(hours=1)
    seq = _registry_seq(conn)
    row = conn.execute("SELECT state FROM scan_state WHERE scan = 'disagree'").fetchone()
    last = json.loads(row[0]) if row else None  # now, until and registry seq of the last pass that moved on
    last_until = parse_iso(last["until"]) if last else None
    lookback = min(hour_ago, last_until) if last_until else hour_ago
    changed = _changed_since(conn, last["seq"]) if last else {None}
    openings = _openings(conn, iso(lookback - window), iso(now))
    if last_until is None or until > last_until:
        _save_state(conn, "disagree", {"now": iso(now), "until": iso(until), "seq": seq})
    # A household the registry changed since the last pass (one that has just become isolated, say) resumes
    # from its own mark, as it would have: looked at even without a recent opening if it has one.
    resuming = set(_marks(conn, "disagree", {h for h in changed if h is not None})) | _starting_today(conn, last, now)
    isolated = _isolated(conn, {household for household, _, _ in openings} | resuming, now)
    if not isolated:
        return []
    steady = [household for household in isolated if None not in changed and household not in changed]
    before = _isolated(conn, steady, parse_iso(last["now"])) if last else {}
    marks = {household: parse_iso(mark) for household, mark in _marks(conn, "disagree", isolated).items()}
    since: dict[str, datetime] = {}
    for household in sorted(isolated):
        mark = marks.get(household)
        if household in before and last_until is not None:
            since[household] = max(last_until, mark) if mark else last_until
        else:
            since[household] = mark or hour_ago
    earlier = [household for household, at in since.items() if at < lookback]
    if earlier:  # a mark from before the lookback: that household's openings since it
        openings += _openings(conn, iso(min(since[h] for h in earlier) - window), iso(lookback - window), earlier)
    day_ago = iso(now - timedelta(days=1))
    with_contact = {household for (household,) in conn.execute(
        "SELECT DISTINCT household FROM readings WHERE household IN (SELECT value FROM json_each(?)) "
        "AND type = 'contact' AND received_at > ?", (json.dumps(sorted(isolated)), day_ago))}
    # A box with a magnet and no camera has nothing to disagree with: its contact openings page as doors.
    with_camera = {household for (household,) in conn.execute(
        "SELECT DISTINCT household FROM devices WHERE household IN (SELECT value FROM json_each(?1)) "
        "AND camera IN ('ok', 'tampered', 'no_signal') UNION SELECT DISTINCT household FROM events "
        "WHERE household IN (SELECT value FROM json_each(?1)) AND type = 'door' AND received_at > ?2 "
        "AND coalesce(json_extract(payload, '$.source'), 'camera') = 'camera'", (json.dumps(sorted(isolated)), day_ago))}
    by_household: dict[str, list[tuple[str, str]]] = {}
    for household, source, at in openings:
        by_household.setdefault(household, []).append((source, at))
    out = []
    looked = []
    hi = iso(now)
    for household, home in sorted(isolated.items()):
        if until <= since[household]:
            continue
        looked.append((household, iso(until)))
        if household not in with_contact or household not in with_camera:
            continue  # one kind of sensor only: nothing to disagree with
        lo = iso(since[household] - window)
        seen: dict[str, list[datetime]] = {"camera": [], "contact": []}
        for source, at in by_household.get(household, []):
            if lo < at <= hi:
                seen[source].append(parse_iso(at))
        for source, when in disagreements(seen["camera"], seen["contact"], window.total_seconds()):
            if since[household] < when <= until:
                out.append(Finding(AlertKind.SENSOR_DISAGREE, home.site, household, when,
                                   f"disagree:{household}:{source}:{iso(when)}", home.period.id,
                                   detail=f"only the {source} saw the door open"))
    conn.executemany("INSERT OR REPLACE INTO rule_marks (household, rule, mark) VALUES (?, 'disagree', ?)", looked)
    return out


def _starting_today(conn: sqlite3.Connection, last: dict | None, now: datetime) -> set[str]:
    """Households with a disagreement mark and an isolation that began with a local day since the last pass."""
    if last is None:
        return set()
    then = parse_iso(last["now"])
    days = [(then.astimezone(ZoneInfo(tz)).date(), now.astimezone(ZoneInfo(tz)).date()) for tz in _zones(conn)]
    days = [(before, today) for before, today in days if before != today]
    if not days:
        return set()
    return {household for (household,) in conn.execute(
        "SELECT DISTINCT p.household FROM isolation_periods p JOIN rule_marks m ON m.household = p.household "
        "AND m.rule = 'disagree' WHERE p.start_date > ? AND p.start_date <= ?",
        (min(before for before, _ in days).isoformat(), max(today for _, today in days).isoformat()))}


def _openings(conn: sqlite3.Connection, lo: str, hi: str, households: list[str] | None = None
              ) -> list[tuple[str, str, str]]:
    """(household, camera or contact, receive time) of door openings in (lo, hi], of `households` if given."""
    only = "" if households is None else "household IN (SELECT value FROM json_each(?3)) AND "
    return conn.execute(
        f"SELECT household, coalesce(json_extract(payload, '$.source'), 'camera'), received_at FROM events "  # noqa: S608
        f"WHERE {only}type = 'door' AND received_at > ?1 AND received_at <= ?2 AND state = 'open' "
        f"UNION ALL SELECT household, 'contact', received_at FROM readings WHERE {only}type = 'contact' "
        "AND received_at > ?1 AND received_at <= ?2 AND open = 1",
        (lo, hi) if households is None else (lo, hi, json.dumps(households)),
    ).fetchall()


SCANS = (scan_offline, scan_missed_readings, scan_welfare, scan_disagreements)


def flag_clock_skew(conn: sqlite3.Connection, policy: Policy) -> list[tuple[str, float, bool]]:
    """Set the `clock_skew` health flag of devices whose clock (as the store last measured it) is further
    than `clock_skew_max_s` from the gateway's, and clear it when it is back; returns (device, skew, flag)
    of the rows that changed. Nothing pages for it: the rules go by receive time, so a wrong clock changes no
    decision. One pass over devices, writing only the rows whose flag changes."""
    return conn.execute(
        "UPDATE devices SET clock_skew = (abs(clock_skew_s) > ?1) "
        "WHERE clock_skew_s IS NOT NULL AND clock_skew IS NOT (abs(clock_skew_s) > ?1) "
        "RETURNING device, clock_skew_s, clock_skew", (policy.rules.clock_skew_max_s,)).fetchall()
