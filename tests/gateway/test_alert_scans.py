"""Time-driven rules, scanned with a manual clock: device offline, missed reading, welfare check, sensors disagree."""

from __future__ import annotations

import sqlite3
from datetime import date, datetime, time, timedelta, timezone

import pytest

from gateway import rules
from gateway.policy import AlertKind, load_policy
from gateway.registry import HouseholdIn, IsolationIn, Registry, SiteIn
from gateway.rules import SCANS, count_openings, disagreements, reading_deadline
from isowatch.clock import ManualClock
from isowatch.contract import Heartbeat
from tests.fixtures.world import START, World

POLICY = load_policy()


@pytest.fixture
def world(tmp_path, inbox):
    w = World(tmp_path, inbox)
    # Both households took their temperature this morning, so only the rule under test fires.
    for household in ("hh-3-502", "hh-7-101"):
        w.temperature(36.5, household=household, at=START - timedelta(hours=2))
    w.worker.settle()
    yield w
    w.close()


def kinds(world) -> list[tuple[str, str]]:
    return sorted((r["household"], r["kind"]) for r in world.rows("SELECT household, kind FROM alerts"))


def heartbeat(world, household: str) -> None:
    world.publish(world._stamp(Heartbeat, household, None, type="heartbeat", uptime_s=1.0), household)


def test_device_silent_for_90_seconds_is_offline_and_alerts_once(world, inbox):
    world.clock.advance(30)
    heartbeat(world, "hh-3-502")
    heartbeat(world, "hh-7-101")
    world.clock.advance(89)
    heartbeat(world, "hh-7-101")
    world.worker.tick()
    assert kinds(world) == []
    world.clock.advance(1)
    heartbeat(world, "hh-7-101")
    world.worker.tick()
    world.worker.tick()
    assert kinds(world) == [("hh-3-502", "device_offline")]
    assert world.recipients() == ["chen-social"]
    assert "cam-3502" in inbox.received()[0].body


def test_missed_temperature_reading_by_the_expected_time(world, inbox):
    # 21:00 Shanghai is due at 22:00 with the grace hour; hh-3-502 measures in the evening, hh-7-101 does not.
    evening = datetime(2026, 3, 5, 12, 30, tzinfo=timezone.utc)  # 20:30 local
    world.clock.advance((evening - world.clock.now()).total_seconds())
    for household in ("hh-3-502", "hh-7-101"):
        heartbeat(world, household)
    world.temperature(36.7, household="hh-3-502")
    world.clock.advance(90 * 60 - 1)  # 21:59:59 local
    for household in ("hh-3-502", "hh-7-101"):
        heartbeat(world, household)
    world.worker.tick()
    assert ("hh-7-101", "missed_reading") not in kinds(world)
    world.clock.advance(1)
    world.worker.tick()
    world.worker.tick()
    missed = [k for k in kinds(world) if k[1] == "missed_reading"]
    assert missed == [("hh-7-101", "missed_reading")]
    assert "expected by 21:00" in [m for m in inbox.received() if m.recipient == "li-medical"][0].body


def test_welfare_check_for_a_vulnerable_household_without_activity(world, inbox):
    # hh-7-101: elderly living alone. Its last sign of life is this morning's reading at 08:00 local.
    world.clock.advance(10 * 3600 - 1)
    world.worker.tick()
    assert ("hh-7-101", "welfare_check") not in kinds(world)
    world.clock.advance(1)
    world.worker.tick()
    world.worker.tick()
    welfare = [k for k in kinds(world) if k[1] == "welfare_check"]
    assert welfare == [("hh-7-101", "welfare_check")]  # hh-3-502 is not vulnerable
    (alert,) = world.rows("SELECT count FROM alerts WHERE kind = 'welfare_check'")
    assert alert[0] == 1


def test_camera_and_contact_disagree(world, inbox):
    world.contact(False)  # hh-3-502 has a contact sensor
    world.door(at=START + timedelta(seconds=10))
    world.contact(True, at=START + timedelta(seconds=12))  # agrees with the camera
    world.contact(True, at=START + timedelta(minutes=10))  # the camera saw nothing
    world.worker.settle()
    world.clock.advance(10 * 60 + 61)
    world.worker.tick()
    disagree = world.rows("SELECT household, detail FROM alerts WHERE kind = 'sensor_disagree'")
    assert [tuple(r) for r in disagree] == [("hh-3-502", "only the contact saw the door open")]
    world.worker.tick()
    assert world.rows("SELECT count FROM alerts WHERE kind = 'sensor_disagree'")[0][0] == 1


def test_pure_decisions():
    t0 = datetime(2026, 3, 5, tzinfo=timezone.utc)
    assert count_openings([t0, t0 + timedelta(seconds=30), t0 + timedelta(seconds=61)], 60) == 2
    assert disagreements([t0], [t0 + timedelta(seconds=59)], 60) == []
    assert disagreements([t0], [], 60) == [("camera", t0)]
    # 10:30 Shanghai: the 09:00 reading was due at 10:00, its window opened at 21:00 the day before.
    now = datetime(2026, 3, 5, 2, 30, tzinfo=timezone.utc)
    start, expected, deadline = reading_deadline(now, [time(9), time(21)], 60, "Asia/Shanghai")
    assert (start, expected, deadline) == (datetime(2026, 3, 4, 13, tzinfo=timezone.utc),
                                           datetime(2026, 3, 5, 1, tzinfo=timezone.utc),
                                           datetime(2026, 3, 5, 2, tzinfo=timezone.utc))


# -- the scans at scale: a few queries per pass, whatever the number of households ------------

FLEET_NOW = datetime(2026, 3, 5, 2, 0, 30, tzinfo=timezone.utc)  # 10:00:30 in Shanghai: the 09:00 reading is due


def _text(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


@pytest.fixture
def fleet_db(tmp_path):
    """5,000 isolated households from `register_fleet`, on day 5, each device heard from 10 s ago and each
    household with its 09:00 body temperature; the tests plant the silences."""
    from isowatch_app.simulate import Fleet, register_fleet

    fleet = Fleet(5000, sites=3)
    db = tmp_path / "gw.db"
    register_fleet(db, fleet)
    conn = sqlite3.connect(db)
    registry = Registry(conn)
    expected = datetime(2026, 3, 5, 1, 0, tzinfo=timezone.utc)  # 09:00 local
    with conn:  # register_fleet works by the wall clock; move the fleet to FLEET_NOW
        conn.execute("UPDATE isolation_periods SET start_date = '2026-03-01'")
        conn.execute("DELETE FROM readings")
        conn.execute("UPDATE devices SET last_seen = ?", (_text(FLEET_NOW - timedelta(seconds=10)),))
        conn.executemany(
            "INSERT INTO readings (id, site, household, device, seq, type, device_time, received_at, celsius, "
            "subject, method, plausible, payload) VALUES (?, ?, ?, ?, 1, 'temperature', ?, ?, 36.6, 'body', "
            "'axillary', 1, '{}')",
            [(f"r-{n}", fleet.site(n), fleet.household(n), fleet.device(n), _text(expected), _text(expected))
             for n in range(fleet.households)])
    yield fleet, conn, registry
    conn.close()


def scan_passes(conn, registry, now: datetime, passes: int) -> list:
    """Passes of every scan as the alert worker runs them: findings, their marks, one commit per pass."""
    found = []
    for _ in range(passes):
        with conn:
            for scan in SCANS:
                for finding in scan(conn, registry, POLICY, now):
                    found.append(finding)
                    if finding.mark:
                        conn.execute("INSERT OR REPLACE INTO rule_marks (household, rule, mark) VALUES (?, ?, ?)",
                                     (finding.household, *finding.mark))
    return found


def test_scans_over_5000_households_find_exactly_the_planted_silences(fleet_db):
    fleet, conn, registry = fleet_db
    offline, missed, quiet, disagree, agree = [1, 77, 4999], [5, 2500, 3001], [9, 1234], [42, 4321], [43]
    with conn:
        conn.executemany("UPDATE devices SET last_seen = ? WHERE device = ?",
                         [(_text(FLEET_NOW - timedelta(minutes=5)), fleet.device(n)) for n in offline])
        conn.executemany("DELETE FROM readings WHERE household = ?", [(fleet.household(n),) for n in missed + quiet])
        # Elderly living alone: most took their reading an hour ago; these two last read at 21:30 yesterday.
        conn.executemany("UPDATE households SET elderly_alone = 1 WHERE household = ?",
                         [(fleet.household(n),) for n in [*quiet, *range(100, 200)]])
        last_night = _text(datetime(2026, 3, 4, 13, 30, tzinfo=timezone.utc))
        conn.executemany(
            "INSERT INTO readings (id, site, household, device, seq, type, device_time, received_at, celsius, "
            "subject, method, plausible, payload) VALUES (?, ?, ?, ?, 2, 'temperature', ?, ?, 36.6, 'body', "
            "'axillary', 1, '{}')",
            [(f"q-{n}", fleet.site(n), fleet.household(n), fleet.device(n), last_night, last_night) for n in quiet])
        # Door contacts: two households' cameras saw an opening their contact did not; one agrees.
        for n in disagree + agree:
            opened = FLEET_NOW - timedelta(minutes=10)
            conn.execute("INSERT INTO events (id, site, household, device, seq, type, device_time, received_at, "
                         "state, payload) VALUES (?, ?, ?, ?, 3, 'door', ?, ?, 'open', ?)",
                         (f"e-{n}", fleet.site(n), fleet.household(n), fleet.device(n), _text(opened), _text(opened),
                          '{"source": "camera"}'))
            contact_at = opened + timedelta(seconds=2) if n in agree else opened - timedelta(hours=3)
            conn.execute("INSERT INTO readings (id, site, household, device, seq, type, device_time, received_at, "
                         "open, payload) VALUES (?, ?, ?, ?, 4, 'contact', ?, ?, 1, '{}')",
                         (f"c-{n}", fleet.site(n), fleet.household(n), fleet.device(n), _text(contact_at),
                          _text(contact_at)))

    # The missed-reading scan spreads a deadline's households over a few passes.
    findings = scan_passes(conn, registry, FLEET_NOW, 5000 // rules._CHUNK + 1)
    got = sorted((f.kind.value, f.household, f.ref) for f in findings)
    deadline = "2026-03-05T02:00:00Z"
    want = sorted(
        [("device_offline", fleet.household(n), f"offline:{fleet.device(n)}:{_text(FLEET_NOW - timedelta(minutes=5))}")
         for n in offline]
        + [("missed_reading", fleet.household(n), f"missed:{fleet.household(n)}:{deadline}") for n in missed]
        + [("welfare_check", fleet.household(n), f"welfare:{fleet.household(n)}:{last_night}") for n in quiet]
        + [("sensor_disagree", fleet.household(n), f"disagree:{fleet.household(n)}:camera:"
            f"{_text(FLEET_NOW - timedelta(minutes=10))}") for n in disagree])
    assert got == want
    by_kind = {f.kind.value: f for f in findings}
    assert by_kind["missed_reading"].detail == "expected by 09:00"
    assert by_kind["missed_reading"].at == datetime(2026, 3, 5, 2, 0, tzinfo=timezone.utc)
    periods = dict(conn.execute("SELECT household, id FROM isolation_periods"))
    assert all(f.isolation_id == periods[f.household] for f in findings)
    # Marked: the next passes find nothing new, and write no mark for a household without door activity.
    marks = conn.execute("SELECT count(*) FROM rule_marks").fetchone()[0]
    assert scan_passes(conn, registry, FLEET_NOW + timedelta(seconds=5), 2) == []
    assert conn.execute("SELECT count(*) FROM rule_marks").fetchone()[0] == marks
    assert conn.execute("SELECT count(*) FROM rule_marks WHERE rule = 'disagree'").fetchone()[0] == 3


def test_a_household_put_in_isolation_after_the_deadline_is_checked_on_the_next_pass(fleet_db):
    fleet, conn, registry = fleet_db
    scan_passes(conn, registry, FLEET_NOW, 5000 // rules._CHUNK + 1)
    assert scan_passes(conn, registry, FLEET_NOW + timedelta(seconds=5), 1) == []
    registry.clock = ManualClock(FLEET_NOW)
    registry.upsert_household(HouseholdIn(household="hh-late", site="site-1", team="team-0"))
    registry.start_isolation(IsolationIn(household="hh-late", start_date=date(2026, 3, 5)), by="test")
    registry.register_device("dev-late", "hh-late", by="test")
    with conn:
        conn.execute("UPDATE devices SET last_seen = ? WHERE device = 'dev-late'", (_text(FLEET_NOW),))
    found = scan_passes(conn, registry, FLEET_NOW + timedelta(seconds=10), 1)
    assert [(f.kind.value, f.household) for f in found] == [("missed_reading", "hh-late")]
    assert scan_passes(conn, registry, FLEET_NOW + timedelta(seconds=15), 1) == []


def test_deadlines_follow_each_sites_timezone(fleet_db):
    fleet, conn, registry = fleet_db
    # site-2 is in London: at 02:00:30 UTC its last deadline is 22:00 yesterday, for the 21:00 reading.
    registry.upsert_site(SiteIn(site="site-2", timezone="Europe/London"))
    with conn:
        conn.execute("DELETE FROM readings WHERE household IN ('hh-000002', 'hh-000005')")  # site-2, site-2
        conn.execute("INSERT INTO readings (id, site, household, device, seq, type, device_time, received_at, "
                     "celsius, subject, method, plausible, payload) VALUES ('r-london', 'site-2', 'hh-000005', "
                     "'dev-000005', 1, 'temperature', '2026-03-04T21:10:00Z', '2026-03-04T21:10:00Z', 36.6, 'body', "
                     "'axillary', 1, '{}')")
    found = [f for f in scan_passes(conn, registry, FLEET_NOW, 5000 // rules._CHUNK + 1)
             if f.kind is AlertKind.MISSED_READING]
    london = [f for f in found if f.site == "site-2"]
    assert [(f.household, f.ref, f.detail) for f in london] == [
        (fleet.household(n), f"missed:{fleet.household(n)}:2026-03-04T22:00:00Z", "expected by 21:00")
        for n in range(2, 5000, 3) if n != 5]
    assert [f.household for f in found if f.site != "site-2"] == []
