"""The resident link's library (gateway.resident) with the real store, rules, worker and Apprise, on a
manual clock: announced openings, hospital approval, self-reported temperatures and the missed-reading
rule, help requests routed by kind, limits, and links that stop working."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gateway.inbox import LocalInbox
from gateway.registry import Registry
from gateway.resident import Limited, LinkNotFound, Refused, ResidentDesk, ResidentLinks
from isowatch.clock import ManualClock
from tests.fixtures.world import SECRET, START, World


@pytest.fixture
def world(tmp_path):
    with LocalInbox() as inbox:
        w = World(tmp_path, inbox)
        try:
            yield w
        finally:
            w.close()


def desk_of(world: World) -> tuple[ResidentDesk, str]:
    desk = ResidentDesk(world.db_path, ResidentLinks(SECRET, world.clock, world.policy), "http://gw.example")
    link = desk.issue("hh-3-502", by="test")
    return desk, link.rsplit("/", 1)[1]


def outcome_of(world: World, ref: str) -> str:
    return world.rows("SELECT outcome FROM rule_log WHERE ref = ?", (ref,))[0]["outcome"]


def test_an_opening_inside_the_announced_window_pages_nobody_and_one_after_it_pages(world):
    desk, token = desk_of(world)
    desk.announce(token, 5, "rubbish")
    inside = world.door(at=world.clock.now() + timedelta(minutes=4))
    world.worker.settle()
    assert outcome_of(world, inside.id) == "expected" and world.recipients() == []
    after = world.door(at=world.clock.now() + timedelta(minutes=6))
    world.worker.settle()
    assert outcome_of(world, after.id) == "alert" and world.recipients() == ["chen-social"]


def test_an_exit_suspected_inside_a_rubbish_window_pages_as_usual(world):
    desk, token = desk_of(world)
    desk.announce(token, 10, "delivery")
    exit_ = world.door(exit_suspected=True)
    world.worker.settle()
    assert outcome_of(world, exit_.id) == "alert" and world.recipients() == ["chen-social"]


def test_a_staff_announced_visit_still_covers_an_exit(world):
    """The exit rule applies to what a household announced itself, not to visits staff entered."""
    from gateway.registry import VisitIn

    now = world.clock.now()
    world.registry.add_visit(VisitIn(household="hh-3-502", kind="hospital", starts_at=now,
                                     ends_at=now + timedelta(minutes=30)), by="staff")
    exit_ = world.door(exit_suspected=True)
    world.worker.settle()
    assert outcome_of(world, exit_.id) == "expected"


def test_a_hospital_visit_pages_the_social_worker_to_approve_and_covers_openings_only_once_approved(world):
    from gateway import alerts

    desk, token = desk_of(world)
    announced = desk.announce(token, 30, "hospital")
    assert announced.approval == "waiting"
    world.worker.settle()
    assert world.recipients() == ["chen-social"]  # asked to approve
    (approval,) = world.rows("SELECT id, kind FROM alerts")
    assert approval["kind"] == "visit_approval"
    before = world.door(exit_suspected=True)
    world.worker.settle()
    assert outcome_of(world, before.id) == "alert"  # not approved yet: pages as usual
    alerts.resolve(world.conn, approval["id"], staff="chen-social", verdict="visit_approved", note="", now=world.clock.now())
    world.clock.advance(120)
    approved = world.door(exit_suspected=True)
    world.worker.settle()
    assert outcome_of(world, approved.id) == "expected"
    assert desk.view(token).announcements[0].approval == "approved"


def test_a_self_reported_fever_pages_the_medical_worker_and_an_implausible_one_is_refused(world):
    desk, token = desk_of(world)
    report = desk.temperature(token, "38,9", "oral")
    assert report.fever and report.celsius == 38.9
    world.worker.settle()
    assert world.recipients() == ["li-medical"]
    (row,) = world.rows("SELECT device, method, subject, plausible, celsius FROM readings")
    assert tuple(row) == ("household:hh-3-502", "self_report", "body", 1, 38.9)
    for value in ("45", "31.5", "abc", "nan", True):
        with pytest.raises(Refused):
            desk.temperature(token, value)
    assert len(world.rows("SELECT id FROM readings")) == 1


def test_a_self_reported_temperature_counts_for_the_missed_reading_rule(tmp_path):
    """09:00 local is due with an hour's grace: hh-3-502 reported at 08:30 through its link, hh-7-101 did not."""
    with LocalInbox() as inbox:
        world = World(tmp_path, inbox, clock=ManualClock(START.replace(hour=0, minute=30)))  # 08:30 in Shanghai
        try:
            missed_reading_counts_self_reports(world)
        finally:
            world.close()


def missed_reading_counts_self_reports(world: World) -> None:
    desk, token = desk_of(world)
    desk.temperature(token, 36.6, "axillary")
    world.worker.settle()
    world.clock.advance(timedelta(minutes=96).total_seconds())  # 10:06
    world.worker.tick()
    missed = {r["household"] for r in world.rows("SELECT household FROM alerts WHERE kind = 'missed_reading'")}
    assert missed == {"hh-7-101"}


@pytest.mark.parametrize(("kind", "paged"), [("supplies", "chen-social"), ("mental_health", "chen-social"),
                                             ("medicine", "li-medical"), ("symptoms", "li-medical")])
def test_a_help_request_pages_the_role_its_kind_routes_to_then_escalates_to_the_leader(world, kind, paged):
    desk, token = desk_of(world)
    desk.help(token, kind, "please")
    world.worker.settle()
    assert world.recipients() == [paged]
    assert desk.view(token).requests[0].status == "received"
    world.clock.advance(16 * 60)
    world.worker.settle()
    assert world.recipients() == [paged, "wang-leader"]


def test_each_help_request_has_its_own_alert_and_status(world):
    from gateway import alerts

    desk, token = desk_of(world)
    first = desk.help(token, "supplies", "rice")
    desk.help(token, "medicine", "insulin")
    world.worker.settle()
    assert sorted(world.recipients()) == ["chen-social", "li-medical"]
    (alert_id,) = world.rows("SELECT alert_id FROM resident_requests WHERE id = ?", (first.id,))[0]
    alerts.acknowledge(world.conn, alert_id, "chen-social", world.clock.now(), via="test")
    world.conn.commit()
    statuses = {r.kind: r.status for r in desk.view(token).requests}
    assert statuses == {"supplies": "on_it", "medicine": "received"}
    alerts.resolve(world.conn, alert_id, staff="chen-social", verdict="help_given", note="", now=world.clock.now())
    assert {r.kind: r.status for r in desk.view(token).requests}["supplies"] == "done"


def test_actions_are_limited_per_hour_and_announcements_per_day(world):
    desk, token = desk_of(world)
    limit = world.policy.resident.announcements_per_day
    for _ in range(limit):
        desk.announce(token, 1, "other")
    with pytest.raises(Limited) as daily:
        desk.announce(token, 1, "other")
    assert daily.value.key == "daily_limit"
    with pytest.raises(Refused):
        desk.announce(token, world.policy.resident.announce_max_minutes + 1, "rubbish")
    for _ in range(world.policy.resident.actions_per_hour - limit):
        desk.temperature(token, 36.5)
    with pytest.raises(Limited) as hourly:
        desk.temperature(token, 36.5)
    assert hourly.value.key == "limited"
    world.clock.advance(3601)
    desk.temperature(token, 36.5)
    actions = world.rows("SELECT count(*) FROM audit_log WHERE who = 'resident:hh-3-502' AND action LIKE 'resident.%'")
    assert actions[0][0] == world.policy.resident.actions_per_hour + 1


def test_open_help_requests_are_capped(world):
    desk, token = desk_of(world)
    for _ in range(world.policy.resident.open_requests):
        desk.help(token, "other", "")
    with pytest.raises(Limited):
        desk.help(token, "other", "")


def test_a_link_works_only_while_live_and_during_isolation(world):
    desk, token = desk_of(world)
    assert desk.view(token).day == 5
    for bad in (token[:-2] + "xx", "", "not.a.token"):
        with pytest.raises(LinkNotFound):
            desk.view(bad)
    # Same link on a reprint; revoked, it is gone for good and the next one differs.
    assert desk.issue("hh-3-502", by="again").endswith(token)
    assert desk.revoke("hh-3-502", by="test")
    with pytest.raises(LinkNotFound):
        desk.view(token)
    with pytest.raises(LinkNotFound):
        desk.announce(token, 5, "rubbish")
    new = desk.issue("hh-3-502", by="test").rsplit("/", 1)[1]
    assert new != token and desk.view(new).household == "hh-3-502"
    # A link of another household's token with this one's claims is refused (signature binds both).
    world.clock.advance(timedelta(days=10).total_seconds())  # past day 14: no active isolation
    with pytest.raises(LinkNotFound):
        desk.view(new)


def test_the_page_shows_only_staff_numbers_shared_by_consent(world):
    from gateway.registry import StaffIn

    registry = Registry(world.conn, world.clock)
    registry.upsert_staff(StaffIn(staff="li-medical", name="Li Na", role="medical", language="en",
                                  phone="+86 139 0000 0001", share_phone=True))
    registry.upsert_staff(StaffIn(staff="chen-social", name="陈社工", role="social", phone="+86 139 0000 0002"))
    desk, token = desk_of(world)
    phones = {m.role: m.phone for m in desk.view(token).team}
    assert phones == {"leader": "", "medical": "+86 139 0000 0001", "police": "", "social": ""}


def door_alerts(world: World) -> list:
    return world.rows("SELECT id, detail, first_event_id, count FROM alerts WHERE kind = 'door_opened'")


def test_a_door_left_open_past_the_announced_window_pages_once_and_one_closed_in_time_does_not(world):
    desk, token = desk_of(world)
    desk.announce(token, 5, "delivery")
    world.door()  # opened inside the window: expected
    world.clock.advance(60)
    world.door(state="closed")
    world.clock.advance(6 * 60)
    world.worker.tick()  # every scan runs (offline cameras page too): only door alerts matter here
    assert door_alerts(world) == []  # closed in time
    desk.announce(token, 3, "rubbish")
    world.door()
    world.worker.settle()
    world.clock.advance(3 * 60 + 10)
    world.worker.tick()
    assert door_alerts(world) == []  # the closing event still has its grace
    world.clock.advance(30)
    world.worker.tick()
    (alert,) = door_alerts(world)
    assert "3 min" in alert["detail"] and alert["first_event_id"].startswith("overstay:")
    from gateway import alerts

    alerts.resolve(world.conn, alert["id"], staff="chen-social", verdict="false_alarm", note="", now=world.clock.now())
    world.clock.advance(60)
    world.worker.tick()
    assert len(door_alerts(world)) == 1  # once, even after it was resolved


def test_the_migration_upgrades_a_database_with_visits_staff_and_live_alerts(tmp_path, monkeypatch):
    """A gateway database from before the resident link: its visits stay staff visits that cover exits,
    its staff do not share their numbers, and one live alert per household and kind still holds."""
    import sqlite3 as sql

    from sqlite_utils import Database

    from gateway import migrations

    path = tmp_path / "old.db"
    db = Database(sql.connect(path))
    monkeypatch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:-1])
    migrations.migrate(db)
    db.execute("INSERT INTO visits (household, kind, starts_at, ends_at, note, created_by, created_at) "
               "VALUES ('h', 'supplies', '2026-03-05T02:00:00Z', '2026-03-05T03:00:00Z', '', 'x', 'x')")
    db.execute("INSERT INTO staff (staff, name, role, language, contacts, active, phone) "
               "VALUES ('s', 'S', 'social', 'zh', '[]', 1, '+86 1')")
    db.execute("INSERT INTO alerts (household, kind, opened_at) VALUES ('h', 'door_opened', 'x')")
    db.conn.commit()
    monkeypatch.undo()
    migrations.migrate(db)
    assert db.execute("SELECT source, approval_alert FROM visits").fetchall() == [("staff", None)]
    assert db.execute("SELECT share_phone FROM staff").fetchall() == [(0,)]
    with pytest.raises(sql.IntegrityError):
        db.execute("INSERT INTO alerts (household, kind, opened_at) VALUES ('h', 'door_opened', 'y')")
    for _ in range(2):  # help requests: one alert each
        db.execute("INSERT INTO alerts (household, kind, opened_at) VALUES ('h', 'help_request', 'y')")
