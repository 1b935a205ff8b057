"""Delivery: every attempt recorded, fallback to the next URL, backoff, rate limits that never delay the first page,
retries until the alert no longer needs the page, outages said loudly, one id per page in every copy."""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient

from dashboard import accounts
from dashboard.app import create_app
from gateway import alerts
from gateway.inbox import LocalInbox
from gateway.notify import RateLimiter, TokenBucket, after_failure, redact, send, service_key
from gateway.policy import load_policy
from gateway.registry import StaffIn
from isowatch.broker import free_port
from isowatch.clock import ManualClock, parse_iso
from tests.fixtures.world import World
from tests.support import wait_until


@pytest.fixture
def inbox():
    with LocalInbox(fail_paths={"/inbox/down"}) as box:
        yield box


@pytest.fixture
def world(tmp_path, inbox):
    w = World(tmp_path, inbox)
    yield w
    w.close()


def give_social_worker(world, urls: list[str]) -> None:
    world.registry.upsert_staff(StaffIn(staff="chen-social", name="陈社工", role="social", contacts=urls))


def test_failed_url_falls_back_to_the_next_and_every_attempt_is_recorded(world, inbox):
    base = f"json://127.0.0.1:{inbox.port}/inbox"
    give_social_worker(world, [f"{base}/down", f"{base}/chen-social"])
    world.door()
    world.worker.settle()
    assert world.recipients() == ["chen-social"]
    attempts = [(r["attempt"], r["ok"], r["status"]) for r in
                world.rows("SELECT attempt, ok, status FROM delivery_attempts ORDER BY id")]
    assert attempts == [(1, 0, "failure"), (2, 1, "success")]
    (note,) = world.rows("SELECT state, url_index, attempts FROM notifications")
    assert tuple(note) == ("sent", 1, 2)


def test_all_urls_failing_back_off_up_to_the_cap_and_never_give_up_while_the_alert_is_live(world, inbox):
    give_social_worker(world, [f"json://127.0.0.1:{inbox.port}/inbox/down"])
    world.door()
    world.worker.settle()
    (note,) = world.rows("SELECT state, next_attempt_at, attempts FROM notifications")
    assert note["state"] == "pending" and note["attempts"] == 1
    assert note["next_attempt_at"] > world.rows("SELECT created_at FROM notifications")[0][0]
    world.worker.settle()
    assert world.rows("SELECT attempts FROM notifications")[0][0] == 1  # waits out the backoff
    cap = world.policy.delivery.backoff_max_s
    for _ in range(12):  # 36 minutes of outage, far past the five rounds that used to end in 'failed'
        world.clock.advance(cap + 1)
        world.worker.settle()
        (note,) = world.rows("SELECT state, next_attempt_at FROM notifications WHERE step = 1")
        assert note["state"] == "pending"
        assert parse_iso(note["next_attempt_at"]) <= world.clock.now() + timedelta(seconds=cap)
    assert world.rows("SELECT attempts FROM notifications WHERE step = 1")[0][0] >= 12
    # The escalation does not depend on delivery: the leader was paged after five minutes.
    assert "wang-leader" in world.recipients()
    # Acknowledged: the retries stop.
    with world.conn:
        alerts.acknowledge(world.conn, 1, "wang-leader", world.clock.now(), via="test")
    world.clock.advance(cap + 1)
    world.worker.settle()
    assert world.rows("SELECT state FROM notifications WHERE step = 1")[0][0] == "cancelled"


def test_an_undelivered_page_is_said_once_loudly_and_the_escalation_moves_on_on_time(world, inbox, caplog):
    """A page failing for minutes must not end as 'failed' with a WARNING per attempt and nothing else."""
    give_social_worker(world, [f"json://127.0.0.1:{inbox.port}/inbox/down"])
    with world.conn:
        for username, role, staff, language in (("wang", "leader", "wang-leader", "en"),
                                                ("chen", "social", "chen-social", "zh")):
            accounts.create_user(world.conn, accounts.UserCreate(
                username=username, display_name=username, role=role, language=language, password="night-shift-7Q2",
                staff=staff), by="test", now=world.clock.now())
    caplog.set_level(logging.INFO, logger="gateway")
    world.door()
    world.worker.settle()
    (alert_id, deadline), = world.rows("SELECT id, next_step_at FROM alerts")
    undelivered_after = world.policy.delivery.undelivered_after_s
    while world.clock.now() < parse_iso(deadline):
        world.clock.advance(10)
        world.worker.settle()
        reported = world.rows("SELECT count(*) FROM audit_log WHERE action = 'alert.page_undelivered'")[0][0]
        waited = (world.clock.now() - parse_iso(world.rows("SELECT created_at FROM notifications")[0][0]))
        assert reported == (1 if waited.total_seconds() >= undelivered_after else 0)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "page not delivered" in errors[0].getMessage()
    assert "staff=chen-social" in errors[0].getMessage()
    (audit,) = world.rows("SELECT object, detail FROM audit_log WHERE action = 'alert.page_undelivered'")
    assert audit["object"] == f"alert:{alert_id}" and json.loads(audit["detail"])["staff"] == "chen-social"
    # The next step went out at its deadline, to a leader whose URL works.
    (leader,) = world.rows("SELECT created_at, state FROM notifications WHERE staff = 'wang-leader'")
    assert parse_iso(leader["created_at"]) == parse_iso(deadline) and leader["state"] == "sent"
    # The board and the alert page show it, in both languages.
    client = TestClient(create_app(world.db_path, clock=world.clock))
    assert client.post("/api/v1/session", json={"username": "wang", "password": "night-shift-7Q2"}).status_code == 200
    (shown,) = [a for a in client.get("/api/v1/alerts").json() if a["id"] == alert_id]
    assert {n["staff"]: n["undelivered"] for n in shown["notified"]} == {"chen-social": True, "wang-leader": False}
    assert "Page not delivered" in client.get("/").text
    client = TestClient(create_app(world.db_path, clock=world.clock))
    assert client.post("/api/v1/session", json={"username": "chen", "password": "night-shift-7Q2"}).status_code == 200
    assert "通知未送达" in client.get(f"/alerts/{alert_id}").text
    # The provider comes back: the page gets through, once, and the board mark goes away.
    inbox.fail_paths.clear()
    world.clock.advance(world.policy.delivery.backoff_max_s)
    world.worker.settle()
    assert len(inbox.received("down")) == 1
    assert world.rows("SELECT count(*) FROM audit_log WHERE action = 'alert.page_delivered_late'")[0][0] == 1
    (shown,) = [a for a in client.get("/api/v1/alerts").json() if a["id"] == alert_id]
    assert not any(n["undelivered"] for n in shown["notified"])
    assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) == 1


def test_staff_without_contact_urls_are_recorded_as_undeliverable(world, inbox):
    give_social_worker(world, [])
    world.door()
    world.worker.settle()
    assert world.rows("SELECT state FROM notifications")[0][0] == "undeliverable"
    # Nobody can be reached: said at once, not after the delivery timeout.
    assert world.rows("SELECT count(*) FROM audit_log WHERE action = 'alert.page_undelivered'")[0][0] == 1


def test_group_bot_rate_limit_reschedules_without_blocking_and_the_first_page_goes_at_once(tmp_path, inbox):
    clock = ManualClock()
    limiter = RateLimiter(clock, {"json": (2, 6)})  # burst 2, then one every 10 s
    url = f"json://127.0.0.1:{inbox.port}/inbox/x"
    assert limiter.take(url) == 0 and limiter.take(url) == 0
    assert limiter.take(url) == pytest.approx(10.0)
    assert limiter.take(f"json://127.0.0.2:{inbox.port}/inbox/x") == 0  # another service has its own budget
    clock.advance(10)
    assert limiter.take(url) == 0
    # Through the worker: three alerts to one service with a burst of two; the third waits in the database.
    world = World(tmp_path, inbox, rate_limits={"json": (2, 6)})
    try:
        world.door()
        world.temperature(38.5)
        world.tamper()
        world.worker.settle()
        assert len(inbox.received()) == 2
        (waiting,) = world.rows("SELECT state, next_attempt_at FROM notifications WHERE state = 'pending'")
        assert waiting["next_attempt_at"] > world.rows("SELECT min(created_at) FROM notifications")[0][0]
        world.clock.advance(10)
        world.worker.settle()
        assert len(inbox.received()) == 3
    finally:
        world.close()


def test_wecom_and_dingtalk_bots_stay_under_20_a_minute():
    clock = ManualClock()
    for url in ("wecombot://BOTKEY", "dingtalk://TOKEN/"):
        bucket_sends = 0
        limiter = RateLimiter(clock)
        for _ in range(600):  # a minute in 0.1 s steps, trying to send each step
            if limiter.take(url) == 0:
                bucket_sends += 1
            clock.advance(0.1)
        assert 1 <= bucket_sends <= 20


def test_backoff_and_fallback_decisions():
    now = datetime(2026, 3, 5, tzinfo=timezone.utc)
    assert after_failure(url_index=0, url_count=2, attempts=1, now=now).at == now
    again = after_failure(url_index=1, url_count=2, attempts=2, now=now)
    assert again.url_index == 0 and again.at == now + timedelta(seconds=5)
    assert after_failure(url_index=0, url_count=1, attempts=3, now=now).at == now + timedelta(seconds=20)
    assert after_failure(url_index=0, url_count=1, attempts=500, now=now, max_s=180).at == now + timedelta(seconds=180)
    # No answer: it may have arrived, so not even the next URL gets it before the hold is over.
    held = after_failure(url_index=0, url_count=2, attempts=1, now=now, unknown=True, hold_s=60)
    assert held.url_index == 1 and held.at == now + timedelta(seconds=60)


def test_every_copy_of_a_page_carries_its_id_and_an_unanswered_request_is_unknown_not_failed():
    with LocalInbox(delay_s=3.0) as slow:
        result = send(slow.url("chen"), "title", "body", key="isowatch-k1", timeout_s=1.0)
        assert (result.ok, result.outcome) == (False, "unknown")
        (taken,) = slow.received()  # it did arrive
        assert taken.headers["idempotency-key"] == "isowatch-k1" and taken.payload["notification_id"] == "isowatch-k1"
    with LocalInbox(delay_s=1.5) as patient:
        assert send(patient.url("chen"), "t", "b", key="isowatch-k2", timeout_s=5.0).ok
        assert send(patient.url("chen") + "?rto=0.5", "t", "b", key="isowatch-k3", timeout_s=5.0).unknown
    refused = send(f"json://127.0.0.1:{free_port()}/inbox/x", "t", "b", key="k", timeout_s=5.0)
    assert refused.outcome == "failed"


def test_a_timed_out_page_is_not_resent_within_the_hold_and_the_copies_share_one_id(tmp_path):
    policy = load_policy().model_copy(update={"delivery": load_policy().delivery.model_copy(update={"timeout_s": 1.0})})
    with LocalInbox(delay_s=2.0) as slow:
        world = World(tmp_path, slow, policy=policy)
        try:
            world.door()
            world.worker.settle()
            assert len(slow.received()) == 1
            (attempt,) = world.rows("SELECT status FROM delivery_attempts")
            assert attempt[0] == "unknown"
            world.clock.advance(policy.delivery.unknown_hold_s - 1)
            world.worker.settle()
            assert len(slow.received()) == 1  # not resent blindly: the first copy may be on the phone
            slow.delay_s = 0.0
            world.clock.advance(1)
            world.worker.settle()
            copies = slow.received()
            assert len(copies) == 2 and copies[0].key == copies[1].key != ""
            assert f"通知编号: {copies[0].key}" in copies[1].body
            assert len(slow.unique()) == 1
            assert world.rows("SELECT state FROM notifications")[0][0] == "sent"
        finally:
            world.close()


def test_send_through_apprise_reports_outcomes_and_urls_are_redacted(inbox):
    ok = send(inbox.url("someone"), "title", "body")
    assert ok.ok and ok.status == "success"
    assert json.loads(json.dumps(inbox.received()[0].payload))["title"] == "title"
    assert not send(f"json://127.0.0.1:{inbox.port}/inbox/down", "t", "b").ok
    bad = send("nonsense://", "t", "b")
    assert (bad.ok, bad.status) == (False, "invalid_url")
    assert redact("json://user:SECRET@hooks.example.org:8443/x") == "json://hooks.example.org:8443/..."
    assert "BOTTOKEN" not in redact("tgram://BOTTOKEN/12345") and redact("tgram://BOTTOKEN/1").startswith("tgram://#")
    assert service_key("wecombot://KEY") == "wecombot://key:"


def test_token_bucket_starts_full():
    bucket = TokenBucket(1, 60, ManualClock())
    assert bucket.take() == 0
    assert bucket.take() == pytest.approx(1.0)


@pytest.mark.slow
def test_a_hanging_service_holds_only_part_of_the_pool_so_other_pages_go_at_once(tmp_path, inbox):
    """Attempts now wait 30 s for an answer: a service that never answers must not take every thread."""
    policy = load_policy().model_copy(update={"delivery": load_policy().delivery.model_copy(update={"timeout_s": 20})})
    with LocalInbox(delay_s=25.0) as hung:
        world = World(tmp_path, inbox, policy=policy, pool_size=2)
        try:
            give_social_worker(world, [hung.url("chen-social")])
            world.door()
            world.tamper()
            world.worker.run_once()
            wait_until(lambda: hung.received(), timeout=10, what="the first page at the hanging service")
            world.temperature(38.6)  # fever: the medical worker, whose service answers
            deadline = time.monotonic() + 10
            while not inbox.received("li-medical") and time.monotonic() < deadline:
                world.worker.run_once()
                time.sleep(0.05)
            assert [m.recipient for m in inbox.received()] == ["li-medical"]
            assert len(hung.received()) == 1  # the second page to the hanging service waits its turn
        finally:
            world.close()


def test_upgrading_resumes_pages_given_up_on_while_their_alert_is_live(tmp_path, inbox):
    """Migration 011: a page left 'failed' by the five-round rule is tried again if it still matters."""
    import sqlite_utils

    from gateway.migrations import MIGRATIONS, _011_delivery_until_delivered, migrate

    world = World(tmp_path, inbox)
    world.door()
    world.door(household="hh-7-101")
    world.worker.settle()
    world.worker.stop()
    with world.conn:  # back to the schema before 011, with what the old rule left behind
        world.conn.execute("DROP INDEX notifications_open")
        for column in ("delivery_key", "sending_since", "undelivered_at"):
            world.conn.execute(f"ALTER TABLE notifications DROP COLUMN {column}")
        world.conn.execute("DELETE FROM schema_migrations WHERE version = ?", (MIGRATIONS.index(_011_delivery_until_delivered) + 1,))
        world.conn.execute("UPDATE notifications SET state = 'failed', sent_at = NULL")
        alerts.acknowledge(world.conn, 2, "zheng-social", world.clock.now(), via="test")
    migrate(sqlite_utils.Database(world.conn))
    states = {r["alert_id"]: (r["state"], bool(r["delivery_key"])) for r in
              world.rows("SELECT alert_id, state, delivery_key FROM notifications")}
    assert states == {1: ("pending", True), 2: ("failed", True)}
    world.worker = world.new_worker()
    world.worker.settle()
    assert world.rows("SELECT state FROM notifications WHERE alert_id = 1")[0][0] == "sent"
    world.close()
