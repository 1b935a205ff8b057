"""Site-local time for people: every page, notification, filter and CSV shows and reads times through here.

The store keeps UTC ("...Z"); a person reads and picks the site's wall-clock time. Every shown time
carries its offset ("2026-11-26 04:42 (UTC+08:00)"), so a page, a message and a spreadsheet agree and
a reader in another zone is not misled. A picked date means that whole local day.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo

DEFAULT_ZONE = "Asia/Shanghai"  # the gateway's default for sites without one (gateway.registry uses it too)

Zone = str | tzinfo


@lru_cache(maxsize=64)
def _zone_named(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def zone_of(zone: Zone | None) -> tzinfo:
    if zone is None or zone == "":
        return _zone_named(DEFAULT_ZONE)
    return _zone_named(zone) if isinstance(zone, str) else zone


def _aware(at: datetime | str) -> datetime:
    if isinstance(at, str):
        at = datetime.fromisoformat(at.replace("Z", "+00:00"))
    return at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at


def local(at: datetime | str, zone: Zone | None) -> datetime:
    """`at` (aware, naive UTC, or a stored ISO text) as wall-clock time in the zone."""
    return _aware(at).astimezone(zone_of(zone))


def offset(at: datetime | str, zone: Zone | None) -> str:
    """The zone's offset at that moment, e.g. "+08:00" (daylight saving moves it)."""
    text = local(at, zone).strftime("%z")
    return f"{text[:3]}:{text[3:]}"


def label(at: datetime | str, zone: Zone | None) -> str:
    """"UTC+08:00": the label shown beside a local time."""
    return f"UTC{offset(at, zone)}"


def clock_text(at: datetime | str, zone: Zone | None, *, seconds: bool = False) -> str:
    """"2026-11-26 04:42" in the zone, without its label (for a table whose header or cell carries it)."""
    return f"{local(at, zone):%Y-%m-%d %H:%M:%S}" if seconds else f"{local(at, zone):%Y-%m-%d %H:%M}"


def stamp(at: datetime | str, zone: Zone | None, *, seconds: bool = False) -> str:
    """"2026-11-26 04:42 (UTC+08:00)": the one way a time is written for a person (pages and messages)."""
    return f"{clock_text(at, zone, seconds=seconds)} ({label(at, zone)})"


def iso_local(at: datetime | str, zone: Zone | None) -> str:
    """ISO 8601 with the local offset, "2026-11-26T04:42:00+08:00": for CSV (spreadsheets and programs)."""
    return local(at, zone).isoformat(timespec="seconds")


def picker_value(at: datetime | str, zone: Zone | None) -> str:
    """The value of an <input type=date> showing `at`'s local day."""
    return local(at, zone).date().isoformat()


def day_start(day: date, zone: Zone | None) -> datetime:
    """Local midnight starting `day`, in UTC (a day may be 23 or 25 hours long where clocks change)."""
    return datetime.combine(day, time(0), tzinfo=zone_of(zone)).astimezone(timezone.utc)


class BadTime(ValueError):
    """A filter or picker value that is neither a date nor a date and time."""


def parse_picked(text: str, zone: Zone | None, *, end: bool = False) -> datetime | None:
    """A value picked in a form, read as the site's local time, returned in UTC.

    "2026-11-25" is that local day: its start, or with `end` the start of the next day (so a "to" date
    includes the whole day). "2026-11-25T23:30" (an <input type=datetime-local>) is a local wall-clock
    time. A value with an offset or Z is taken as written. Empty means no bound.
    """
    text = text.strip()
    if not text:
        return None
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return day_start(day + timedelta(days=1) if end else day, zone)
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadTime(f"not a date (YYYY-MM-DD) or a date and time: {text[:40]!r}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone_of(zone))
    return value.astimezone(timezone.utc)
