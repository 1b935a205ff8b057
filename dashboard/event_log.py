"""Event log review: filtered, keyset-paged over (received_at, id), CSV export of the same filter.

Ordered and filtered by the gateway's receive time: a device's own clock may be decades off;
its `device_time` is shown beside it.

Keyset, not OFFSET: page 500 costs what page 1 costs, because each page starts from an index seek on
the last row seen. Events (door, tamper) and readings (temperature, contact) are paged per table and
merged, so each side walks its own (…, received_at, id) index.
"""

from __future__ import annotations

import io
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from dashboard.csv_cells import SafeWriter
from dashboard.deps import Scope
from gateway.vocabulary import VERDICTS, AlertKind
from isowatch.clock import iso
from isowatch.localtime import DEFAULT_ZONE, iso_local

EVENT_TYPES = ("door", "tamper")
READING_TYPES = ("temperature", "contact")
EntryType = Literal["door", "tamper", "temperature", "contact"]
ALERT_KINDS: tuple[str, ...] = tuple(kind.value for kind in AlertKind)  # the filter's choices
VerdictName = Literal[VERDICTS]  # type: ignore[valid-type]  # every outcome of any kind; resolve checks it fits the kind


# 2000 to 2100 in any zone: a picked local 2000-01-01 00:00 in Shanghai is 1999-12-31 16:00 UTC.
EARLIEST = datetime(1999, 12, 31, tzinfo=timezone.utc)
LATEST = datetime(2100, 1, 2, tzinfo=timezone.utc)


class BadCursor(ValueError):
    pass


class LogFilter(BaseModel):
    model_config = ConfigDict(extra="forbid")
    since: datetime | None = Field(None, description="Device time from (inclusive)")
    until: datetime | None = Field(None, description="Device time up to (exclusive)")
    site: str | None = Field(None, max_length=64)
    household: str | None = Field(None, max_length=64)
    type: EntryType | None = None
    alert_kind: AlertKind | None = None
    verdict: VerdictName | None = None

    @field_validator("since", "until")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value
        if not EARLIEST <= value <= LATEST:
            raise ValueError("must be between 2000 and 2100")
        return value

    @field_validator("site", "household", mode="before")
    @classmethod
    def _blank(cls, value: object) -> object:
        return value or None  # an empty form field means "any"


class LogEntry(BaseModel):
    id: str
    site: str
    household: str
    device: str
    type: str
    detail: str
    device_time: str
    received_at: str
    alert_id: int | None = None
    alert_kind: str | None = None
    verdict: str | None = None
    snapshot: str | None = None
    timezone: str | None = Field(None, description="The site's zone")
    local_time: str | None = Field(None, description="received_at (the gateway's time) in the site's zone, ISO 8601 with offset")


class LogPage(BaseModel):
    entries: list[LogEntry]
    next_cursor: str | None = Field(None, description="Pass as `before` for the next (older) page")


def encode_cursor(entry: LogEntry) -> str:
    return f"{entry.received_at}|{entry.id}"


def decode_cursor(text: str) -> tuple[str, str]:
    time_part, sep, id_part = text.partition("|")
    if not sep or not id_part or len(text) > 200:
        raise BadCursor("cursor must be RECEIVED_AT|ID as returned in next_cursor")
    return time_part, id_part


def _table_query(table: str, f: LogFilter, scope: Scope, before: tuple[str, str] | None,
                 limit: int) -> tuple[str, list]:
    detail = ("e.state" if table == "events" else
              "CASE WHEN e.type = 'temperature' THEN printf('%.1f °C %s', e.celsius, coalesce(e.subject, '')) "
              "WHEN e.open = 1 THEN 'open' ELSE 'closed' END")
    where, params = [], []
    scope_sql, scope_params = scope.sql("e.household")
    where.append(scope_sql)
    params += scope_params
    for column, value in (("e.site", f.site), ("e.household", f.household), ("e.type", f.type)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if f.since is not None:
        where.append("e.received_at >= ?")
        params.append(iso(f.since))
    if f.until is not None:
        where.append("e.received_at < ?")
        params.append(iso(f.until))
    if f.alert_kind is not None or f.verdict is not None:
        # Alerts are far fewer than events: SQLite drives this from the alerts side through the ref index.
        cond, cond_params = [], []
        if f.alert_kind is not None:
            cond.append("a.kind = ?")
            cond_params.append(f.alert_kind)
        if f.verdict is not None:
            cond.append("a.verdict = ?")
            cond_params.append(f.verdict)
        where.append("e.id IN (SELECT ae.ref FROM alerts a JOIN alert_events ae ON ae.alert_id = a.id WHERE "  # noqa: S608
                     + " AND ".join(cond) + ")")
        params += cond_params
    if before is not None:
        where.append("(e.received_at, e.id) < (?, ?)")
        params += list(before)
    sql = (f"SELECT e.id, e.site, e.household, e.device, e.type, {detail} AS detail, e.device_time, e.received_at "  # noqa: S608
           f"FROM {table} e WHERE {' AND '.join(where)} ORDER BY e.received_at DESC, e.id DESC LIMIT ?")
    return sql, [*params, limit]


def _tables(f: LogFilter) -> list[str]:
    if f.type in EVENT_TYPES:
        return ["events"]
    if f.type in READING_TYPES:
        return ["readings"]
    return ["events", "readings"]


def _fetch(db: sqlite3.Connection, f: LogFilter, scope: Scope, before: tuple[str, str] | None,
           limit: int) -> list[LogEntry]:
    rows: list[sqlite3.Row] = []
    for table in _tables(f):
        sql, params = _table_query(table, f, scope, before, limit)
        rows += db.execute(sql, params).fetchall()
    rows.sort(key=lambda r: (r["received_at"], r["id"]), reverse=True)
    return [LogEntry(**dict(r)) for r in rows[:limit]]


def _annotate(db: sqlite3.Connection, entries: list[LogEntry]) -> None:
    """Attach the alert (kind, verdict), snapshot and site-local time of each entry shown: a handful of index
    lookups per page."""
    if not entries:
        return
    zones = {r[0]: r[1] or DEFAULT_ZONE for r in db.execute("SELECT site, timezone FROM sites")}
    for entry in entries:
        entry.timezone = zones.get(entry.site, DEFAULT_ZONE)
        entry.local_time = iso_local(entry.received_at, entry.timezone)
    ids = [e.id for e in entries]
    marks = ",".join("?" * len(ids))
    alerts = {r[0]: r for r in db.execute(
        f"SELECT ae.ref, a.id, a.kind, a.verdict FROM alert_events ae JOIN alerts a ON a.id = ae.alert_id "  # noqa: S608
        f"WHERE ae.ref IN ({marks})", ids)}
    snaps = {r[0]: r[1] for r in db.execute(
        f"SELECT event_id, sha256 FROM snapshots WHERE event_id IN ({marks})", ids)}  # noqa: S608
    for entry in entries:
        if entry.id in alerts:
            _, entry.alert_id, entry.alert_kind, entry.verdict = alerts[entry.id]
        entry.snapshot = snaps.get(entry.id)


def page(db: sqlite3.Connection, f: LogFilter, scope: Scope, *, before: str | None = None,
         limit: int = 50) -> LogPage:
    cursor = decode_cursor(before) if before else None
    entries = _fetch(db, f, scope, cursor, limit + 1)
    more = len(entries) > limit
    entries = entries[:limit]
    _annotate(db, entries)
    return LogPage(entries=entries, next_cursor=encode_cursor(entries[-1]) if more and entries else None)


CSV_COLUMNS = list(LogEntry.model_fields)


def export_csv(db: sqlite3.Connection, f: LogFilter, scope: Scope, *, chunk: int = 2000) -> Iterator[str]:
    """Everything the filter matches, newest first, streamed in keyset chunks (no whole result in memory)."""
    buffer = io.StringIO()
    writer = SafeWriter(buffer)
    writer.writerow(CSV_COLUMNS)
    before: tuple[str, str] | None = None
    while True:
        entries = _fetch(db, f, scope, before, chunk)
        _annotate(db, entries)
        for entry in entries:
            writer.writerow([getattr(entry, c) if getattr(entry, c) is not None else "" for c in CSV_COLUMNS])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        if len(entries) < chunk:
            return
        before = (entries[-1].received_at, entries[-1].id)
