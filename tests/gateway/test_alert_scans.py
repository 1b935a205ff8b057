"""Time-driven rules, scanned with a manual clock: device offline, missed reading, welfare check, sensors disagree."""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone

import pytest

from gateway.rules import count_openings, disagreements, reading_deadline
from isowatch.contract import Heartbeat
from tests.fixtures.world import START, World


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
