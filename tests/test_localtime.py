"""isowatch.localtime: the one place times are written for people and picked dates are read."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from isowatch.localtime import BadTime, iso_local, parse_picked, picker_value, stamp

UTC = timezone.utc


def test_a_late_evening_in_utc_is_the_next_morning_in_shanghai_labelled():
    at = datetime(2026, 11, 25, 20, 42, tzinfo=UTC)
    assert stamp(at, "Asia/Shanghai") == "2026-11-26 04:42 (UTC+08:00)"
    assert stamp("2026-11-25T20:42:00Z", "Asia/Shanghai") == "2026-11-26 04:42 (UTC+08:00)"  # as stored
    assert iso_local(at, "Asia/Shanghai") == "2026-11-26T04:42:00+08:00"
    assert picker_value(at, "Asia/Shanghai") == "2026-11-26"


def test_the_label_follows_daylight_saving():
    assert stamp(datetime(2026, 7, 1, 12, 0, tzinfo=UTC), "Europe/Berlin") == "2026-07-01 14:00 (UTC+02:00)"
    assert stamp(datetime(2026, 1, 1, 12, 0, tzinfo=UTC), "Europe/Berlin") == "2026-01-01 13:00 (UTC+01:00)"


@pytest.mark.parametrize(("text", "end", "expected"), [
    ("2026-11-25", False, datetime(2026, 11, 24, 16, 0, tzinfo=UTC)),  # local midnight starting the day
    ("2026-11-25", True, datetime(2026, 11, 25, 16, 0, tzinfo=UTC)),  # "to" includes the whole local day
    ("2026-11-25T23:30", False, datetime(2026, 11, 25, 15, 30, tzinfo=UTC)),  # datetime-local: site time
    ("2026-11-25T23:30Z", False, datetime(2026, 11, 25, 23, 30, tzinfo=UTC)),  # an explicit zone is kept
    ("2026-11-25T23:30+01:00", False, datetime(2026, 11, 25, 22, 30, tzinfo=UTC)),
    ("", False, None),
])
def test_a_picked_value_is_site_local(text, end, expected):
    assert parse_picked(text, "Asia/Shanghai", end=end) == expected


def test_a_local_day_is_23_hours_when_clocks_go_forward():
    start = parse_picked("2026-03-29", "Europe/Berlin")
    end = parse_picked("2026-03-29", "Europe/Berlin", end=True)
    assert (end - start).total_seconds() == 23 * 3600


@pytest.mark.parametrize("text", ["yesterday", "2026-13-01", "25/11/2026", "2026-11-25T25:00"])
def test_an_unreadable_value_is_refused_by_name(text):
    with pytest.raises(BadTime):
        parse_picked(text, "Asia/Shanghai")
