"""Rules, alert lifecycle and escalation with a manual clock: no sleeping, real Apprise to a local inbox."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gateway.ack_links import BadForm, BadLink, LinkExpired
from gateway.policy import AlertKind, load_policy
from gateway.registry import HouseholdIn, VisitIn
from gateway.rules import Finding, evaluate_event, evaluate_reading, screen
from isowatch.contract import DoorEvent
from tests.fixtures.world import START, World

POLICY = load_policy()
STAFF_OF_ROLE = {"leader": "wang-leader", "medical": "li-medical", "police": "zhao-police", "social": "chen-social"}


@pytest.fixture
def world(tmp_path, inbox):
    w = World(tmp_path, inbox)
    yield w
    w.close()


def ack_token(body: str) -> str:
    line = next(text for text in body.splitlines() if "/ack/" in text)
    return line.rsplit("/ack/", 1)[1].strip()


def test_door_opening_in_isolation_pages_the_social_worker_once_with_what_to_act_on(world, inbox):
    world.door()
    world.worker.settle()
    world.worker.settle()  # a second pass must not page again
    (message,) = inbox.received()
    assert message.recipient == "chen-social"
    assert "隔离期间开门" in message.title and "幸福里3号楼 502" in message.title
    assert "隔离第 5 天（共 14 天）" in message.body
    assert "2026-03-05 10:00 (UTC+08:00)" in message.body  # site time, labelled as the pages label it
    assert "http://gw.example/ack/" in message.body
    (alert,) = world.rows("SELECT * FROM alerts")
    assert (alert["kind"], alert["state"], alert["count"]) == ("door_opened", "notified", 1)
    (attempt,) = world.rows("SELECT * FROM delivery_attempts")
    assert attempt["ok"] == 1 and attempt["url"] == f"json://127.0.0.1:{inbox.port}/..."


def test_english_speaking_staff_get_english(world, inbox):
    world.temperature(38.2)
    world.worker.settle()
    (message,) = inbox.received()
    assert message.recipient == "li-medical"
    assert message.title.startswith("[isowatch #1] Fever")
    assert "Isolation day 5 of 14" in message.body and "38.2 °C (axillary)" in message.body


def test_door_violation_escalates_to_leader_after_five_minutes_then_reminds_up_to_the_cap(world, inbox):
    world.door()
    world.worker.settle()
    world.clock.advance(5 * 60 - 1)
    world.worker.settle()
    assert world.recipients() == ["chen-social"]
    world.clock.advance(1)
    world.worker.settle()
    world.worker.settle()
    assert world.recipients() == ["chen-social", "wang-leader"]
    # Last step: remind the leader every 10 minutes, at most 3 times.
    for _ in range(3):
        world.clock.advance(10 * 60 - 1)
        world.worker.settle()
        before = len(inbox.received())
        world.clock.advance(1)
        world.worker.settle()
        assert len(inbox.received()) == before + 1
    world.clock.advance(24 * 3600)
    world.worker.settle()
    assert world.recipients() == ["chen-social", "wang-leader", "wang-leader", "wang-leader", "wang-leader"]
    assert "再次提醒（第 3 次）" in inbox.received()[-1].body


@pytest.mark.parametrize("kind", list(AlertKind))
def test_every_step_of_the_default_policy_pages_its_roles_on_time(world, inbox, kind):
    steps = POLICY.kinds[kind].steps
    finding = Finding(kind, "site-a", "hh-3-502", START, f"ref-{kind.value}", 1)
    with world.worker.conn:
        world.worker._raise(finding, world.clock.now())
    world.worker.settle()
    seen = 0
    for number, step in enumerate(steps, start=1):
        expected = sorted(STAFF_OF_ROLE[r.value] for r in step.notify)
        got = sorted(m.recipient for m in inbox.received()[seen:])
        assert got == expected, f"{kind.value} step {number}"
        assert all(f"升级第 {number} 步" in m.body or f"Escalation step {number}" in m.body
                   for m in inbox.received()[seen:])
        seen = len(inbox.received())
        world.clock.advance(step.wait_minutes * 60 - 1)
        world.worker.settle()
        assert len(inbox.received()) == seen, f"{kind.value} step {number} escalated early"
        world.clock.advance(1)
        world.worker.settle()
    # After the last step's wait, the reminders: one round already went out above.
    rounds = POLICY.renotify.max
    last = sorted(STAFF_OF_ROLE[r.value] for r in steps[-1].notify)
    for _ in range(rounds - 1):
        world.clock.advance(POLICY.renotify.every_minutes * 60)
        world.worker.settle()
    world.clock.advance(7 * 24 * 3600)
    world.worker.settle()
    reminders = sorted(m.recipient for m in inbox.received()[seen:])
    assert reminders == sorted(last * rounds)


def test_acknowledge_link_stops_the_escalation_and_serves_acknowledge_then_resolve(world, inbox):
    world.door()
    world.worker.settle()
    token = ack_token(inbox.received()[0].body)
    view = world.links.view(world.conn, token)  # what GET shows: reading changes nothing
    assert (view.kind, view.recipient, view.acknowledged_by) == ("door_opened", "chen-social", None)
    assert view.outcomes == ("confirmed_violation", "false_alarm", "authorised_exit")
    with pytest.raises(BadForm):
        world.links.acknowledge(world.conn, token, "")
    outcome = world.links.acknowledge(world.conn, token, view.form_token)
    assert (outcome.staff, outcome.already_by) == ("chen-social", None)
    again = world.links.acknowledge(world.conn, token, view.form_token)  # a second tap is harmless
    assert again.already_by == "chen-social"
    world.clock.advance(3600)
    world.worker.settle()
    assert world.recipients() == ["chen-social"]
    (alert,) = world.rows("SELECT * FROM alerts")
    assert (alert["state"], alert["acknowledged_by"], alert["next_step_at"]) == ("acknowledged", "chen-social", None)
    world.links.resolve(world.conn, token, view.form_token, "false_alarm", "邻居送菜")
    (alert,) = world.rows("SELECT * FROM alerts")
    assert (alert["state"], alert["resolved_by"], alert["verdict"]) == ("resolved", "chen-social", "false_alarm")
    actions = [r["action"] for r in world.rows("SELECT action FROM audit_log WHERE object = 'alert:1'")]
    assert actions == ["alert.acknowledge", "alert.ack_again", "alert.resolve"]


def test_forged_and_expired_links_are_refused(world, inbox):
    world.door()
    world.worker.settle()
    token = ack_token(inbox.received()[0].body)
    form = world.links.view(world.conn, token).form_token
    with pytest.raises(BadLink):
        world.links.acknowledge(world.conn, token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1], form)
    world.clock.advance(POLICY.ack_link_ttl_hours * 3600)
    with pytest.raises(LinkExpired):
        world.links.view(world.conn, token)
    with pytest.raises(LinkExpired):
        world.links.acknowledge(world.conn, token, form)


def test_door_opening_inside_an_announced_visit_notifies_nobody(world, inbox):
    world.registry.add_visit(VisitIn(household="hh-3-502", kind="supplies", starts_at=START - timedelta(minutes=5),
                                     ends_at=START + timedelta(minutes=15)), by="chen-social")
    event = world.door(at=START + timedelta(minutes=1))
    world.worker.settle()
    world.clock.advance(3600)
    world.worker.settle()
    assert inbox.received() == []
    assert world.rows("SELECT count(*) FROM alerts")[0][0] == 0
    (log,) = world.rows("SELECT * FROM rule_log WHERE ref = ?", (event.id,))
    assert log["outcome"] == "expected" and "announced visit" in log["detail"]
    # The same opening after the window closes is a violation.
    world.door(at=START + timedelta(minutes=20))
    world.worker.settle()
    assert world.recipients() == ["chen-social"]


def test_events_outside_the_isolation_and_from_unregistered_devices_alert_nobody(world, inbox):
    before = world.door(at=START - timedelta(days=5))  # 28 Feb: before the period started
    world.door(at=START + timedelta(days=10))  # 15 Mar: the day after the 14th day
    world.worker.settle()
    stranger = world._stamp(DoorEvent, "hh-3-502", None,
                            type="door", state="open")
    stranger = stranger.model_copy(update={"device": "cam-stranger"})
    world.publish(stranger, "hh-3-502")
    world.worker.settle()
    assert inbox.received() == []
    outcomes = {r["ref"]: r["outcome"] for r in world.rows("SELECT ref, outcome FROM rule_log")}
    assert outcomes[before.id] == "outside_isolation"
    assert outcomes[stranger.id] == "unregistered"
    assert world.rows("SELECT count(*) FROM events")[0][0] == 3  # stored all the same


def test_further_events_attach_and_a_second_violation_pages_police_and_leader(world, inbox):
    first = world.door()
    again = world.door(at=START + timedelta(seconds=20))  # the same opening seen again within the merge window
    world.worker.settle()
    assert world.recipients() == ["chen-social"]
    world.door(at=START + timedelta(minutes=2))
    world.worker.settle()
    assert sorted(world.recipients()) == ["chen-social", "wang-leader", "zhao-police"]
    counts = {r["kind"]: r["count"] for r in world.rows("SELECT kind, count FROM alerts")}
    assert counts == {"door_opened": 2, "repeated_door": 1}  # two openings; the one seen twice counts once
    assert world.rows("SELECT outcome FROM rule_log WHERE ref = ?", (again.id,))[0][0] == "merged"
    assert world.rows("SELECT count(*) FROM alert_events WHERE ref = ?", (again.id,))[0][0] == 1  # linked
    assert world.rows("SELECT first_event_id FROM alerts WHERE kind = 'door_opened'")[0][0] == first.id


def test_duplicate_delivery_of_an_event_never_alerts_twice(world, inbox):
    event = world.door()
    world.worker.settle()
    outcome = world.publish(event)  # the broker redelivers the same id
    assert outcome.duplicates and not outcome.stored
    world.worker.settle()
    assert world.recipients() == ["chen-social"]
    assert world.rows("SELECT count FROM alerts")[0][0] == 1


def test_fever_threshold_depends_on_the_measuring_method(world, inbox):
    world.temperature(37.4, method="oral")  # oral threshold 37.5: no fever
    world.temperature(37.2)
    world.worker.settle()
    assert inbox.received() == []
    world.temperature(37.3, method="axillary")
    world.temperature(33.0)  # implausible: flagged, never a fever
    world.worker.settle()
    kinds = sorted(r["kind"] for r in world.rows("SELECT kind FROM alerts"))
    assert kinds == ["fever", "implausible_reading"]
    assert world.recipients() == ["li-medical", "li-medical"]


def test_camera_tamper_pages_the_social_worker(world, inbox):
    world.tamper()
    world.worker.settle()
    assert world.recipients() == ["chen-social"]
    assert world.rows("SELECT kind, detail FROM alerts")[0][:] == ("camera_tampered", "covered")


def test_resolving_records_the_verdict_and_a_new_violation_opens_a_new_alert(world, inbox):
    from gateway import alerts

    world.door()
    world.worker.settle()
    alerts.resolve(world.conn, 1, staff="chen-social", verdict="authorised_exit", note="hospital trip",
                   now=world.clock.now())
    (alert,) = world.rows("SELECT * FROM alerts")
    assert (alert["state"], alert["verdict"], alert["acknowledged_by"]) == ("resolved", "authorised_exit",
                                                                           "chen-social")
    with pytest.raises(alerts.AlertError):
        alerts.resolve(world.conn, 1, staff="chen-social", verdict="nonsense", note="", now=world.clock.now())
    world.clock.advance(25 * 3600)
    world.door()
    world.worker.settle()
    assert world.rows("SELECT count(*) FROM alerts WHERE kind = 'door_opened'")[0][0] == 2


def test_the_batch_screen_reaches_the_verdicts_the_rules_reach_row_by_row(world):
    world.registry.upsert_household(HouseholdIn(household="hh-9-909", site="site-a", team="team-1"))  # never isolated
    world.registry.register_device("cam-9909", "hh-9-909", by="test")
    world.registry.conn.execute("UPDATE isolation_periods SET ended_at = ? WHERE household = 'hh-7-101'",
                                ("2026-03-05T02:00:00Z",))  # ended early, at START
    world.registry.conn.commit()
    for at in (START - timedelta(days=5), START, START + timedelta(days=10)):
        world.door(at=at)
    for at in (START - timedelta(hours=1), START, START + timedelta(hours=1)):
        world.door("hh-7-101", at=at)
        world.temperature(38.5, "hh-7-101", at=at)
    world.publish(world._stamp(DoorEvent, "hh-9-909", None, type="door", state="open").model_copy(
        update={"device": "cam-9909"}), "hh-9-909")
    world.publish(world._stamp(DoorEvent, "hh-3-502", None, type="door", state="open").model_copy(
        update={"device": "cam-stranger"}), "hh-3-502")  # stored, but registered nowhere
    conn = world.worker.conn
    for table, evaluate in (("events", evaluate_event), ("readings", evaluate_reading)):
        rows = conn.execute(f"SELECT {world.worker._COLUMNS[table]} FROM {table}").fetchall()
        screened = screen(conn, rows)
        for row in rows:
            if row["rowid"] in screened:
                assert screened[row["rowid"]] == evaluate(conn, world.registry, world.policy, row), dict(row)
        decided = sorted(v.outcome for v in screened.values())
        if table == "events":  # 28 Feb (before the start) and 15 Mar are left to the row-by-row rules
            assert decided == ["outside_isolation"] * 3 + ["unregistered"]
        else:
            assert decided == ["outside_isolation"] * 2


def test_a_door_contact_repeating_open_while_the_door_stays_open_is_one_opening(world, inbox):
    """Sensors report their state again (a battery update, a periodic report): only a change to open is an
    opening, or a door left open would page the police as a repeated violation."""
    first = world.contact(True)
    world.clock.advance(300)
    again = world.contact(True)  # still open, 5 minutes later
    world.worker.settle()
    assert world.recipients() == ["chen-social"]
    world.clock.advance(60)
    world.contact(False)
    world.clock.advance(60)
    world.contact(True)  # a second opening
    world.worker.settle()
    assert sorted(world.recipients()) == ["chen-social", "wang-leader", "zhao-police"]
    outcomes = dict(world.rows("SELECT ref, outcome FROM rule_log"))
    assert outcomes[first.id] == "alert" and outcomes[again.id] == "no_alert"
    assert world.rows("SELECT count(*) FROM door_violations")[0][0] == 2
