"""Rules triggered by stored rows declare their trigger once (gateway.rules.ROW_RULES): the worker's candidate
SQL, the wake-up check `may_page_now` and the hand-over to the rule read the same declaration, so a rule
cannot miss its rows on one path and see them on another."""

from __future__ import annotations

import dataclasses

import pytest

from gateway import rules
from gateway.alert_worker import AlertWorker
from gateway.rules import ROW_RULES, Check, RowRule, Verdict, evaluate_event, evaluate_reading, may_page_now
from isowatch.contract import ContactReading, DoorEvent, TamperEvent, TemperatureReading
from tests.fixtures.world import World

EVALUATE = {"events": evaluate_event, "readings": evaluate_reading}


@pytest.fixture
def world(tmp_path, inbox):
    w = World(tmp_path, inbox)
    yield w
    w.close()


def corpus(world: World) -> list:
    """One message of each shape the rules tell apart, triggers and near misses, from an isolated household's
    registered device."""
    def make(model, **fields):
        return world._stamp(model, "hh-3-502", None, **fields)

    body = {"type": "temperature", "subject": "body"}
    return [
        make(DoorEvent, type="door", state="open"),
        make(DoorEvent, type="door", state="open", source="contact", exit_suspected=True),
        make(DoorEvent, type="door", state="closed", duration_s=4),
        make(TamperEvent, type="tamper", reason="covered", state="start"),
        make(TamperEvent, type="tamper", reason="covered", state="end"),
        make(ContactReading, type="contact", open=True),
        make(ContactReading, type="contact", open=False),
        make(TemperatureReading, **body, celsius=36.6, method="axillary"),
        make(TemperatureReading, **body, celsius=38.4, method="axillary"),
        make(TemperatureReading, **body, celsius=37.4, method="oral"),  # at the lowest threshold, not oral's 37.5
        make(TemperatureReading, **body, celsius=45.0, method="unknown", plausible=False),
        make(TemperatureReading, type="temperature", subject="ambient", celsius=39.0),
        make(TemperatureReading, type="temperature", subject="ambient", celsius=22.0),
    ]


def test_each_rule_is_handed_exactly_the_rows_its_trigger_selects_and_wakes_the_worker_for_them(world, monkeypatch):
    handed: list[str] = []

    def recording(rule: RowRule) -> RowRule:
        def evaluate(conn, registry, policy, row):
            handed.append(row["id"])
            return rule.evaluate(conn, registry, policy, row)
        return dataclasses.replace(rule, evaluate=evaluate)

    monkeypatch.setattr(rules, "ROW_RULES", tuple(recording(rule) for rule in ROW_RULES))
    messages = corpus(world)
    woken = {m.id for m in messages if may_page_now(world.publish(m), world.policy)}
    world.worker.settle()  # the worker selects its candidates with the rules' SQL
    triggers = {m.id for m in messages if isinstance(m, (DoorEvent, TamperEvent)) and m.state in ("open", "start")
                or isinstance(m, ContactReading) and m.open
                or isinstance(m, TemperatureReading) and m.subject == "body" and (not m.plausible or m.celsius >= 37.3)}
    assert woken == set(handed) == triggers
    handed.clear()
    conn = world.worker.conn
    for table, rows in (("events", conn.execute("SELECT rowid, * FROM events")),
                        ("readings", conn.execute("SELECT rowid, * FROM readings"))):
        for row in rows:  # row by row, each row is handed to its rule only if it triggers one
            verdict = EVALUATE[table](conn, world.registry, world.policy, row)
            assert verdict is None or row["id"] in triggers
    assert set(handed) == triggers


def test_every_rule_reads_columns_the_worker_selects_of_a_message_type_its_table_stores():
    types = {"events": {"door", "tamper"}, "readings": {"temperature", "contact"}}
    for rule in ROW_RULES:
        assert rule.type in types[rule.table], rule.name
        columns = {c.strip() for c in AlertWorker._COLUMNS[rule.table].split(",")}
        assert {check.column for check in (*rule.all_of, *rule.any_of)} | {"type"} <= columns, rule.name


def test_a_new_row_rule_is_seen_by_the_wake_up_check_and_by_the_worker(world, monkeypatch):
    """A room too hot for a resident: one declaration, and the worker both wakes for it and judges its rows."""

    def room_heat(conn, registry, policy, row) -> Verdict:
        return Verdict("no_alert", detail=f"room at {row['celsius']:.1f} °C")

    def hot_room():
        reading = world._stamp(TemperatureReading, "hh-3-502", None, type="temperature", subject="ambient",
                               celsius=33.0)
        return reading, world.publish(reading)

    before, outcome = hot_room()
    assert not may_page_now(outcome, world.policy)
    world.worker.settle()
    monkeypatch.setattr(rules, "ROW_RULES", (*ROW_RULES, RowRule(
        "room heat", "readings", "temperature", room_heat,
        all_of=(Check("subject", "=", "ambient"), Check("celsius", ">=", 30.0)))))
    after, outcome = hot_room()
    assert may_page_now(outcome, world.policy)
    world.worker.settle()
    logged = {row["ref"]: (row["outcome"], row["detail"]) for row in world.rows("SELECT * FROM rule_log")}
    assert before.id not in logged  # no rule looked at it then
    assert logged[after.id] == ("no_alert", "room at 33.0 °C")
