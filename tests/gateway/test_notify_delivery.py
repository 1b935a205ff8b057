"""Delivery: every attempt recorded, fallback to the next URL, backoff, rate limits that never delay the first page."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from gateway.inbox import LocalInbox
from gateway.notify import MAX_ROUNDS, RateLimiter, TokenBucket, after_failure, redact, send, service_key
from gateway.registry import StaffIn
from isowatch.clock import ManualClock
from tests.fixtures.world import World


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


def test_all_urls_failing_back_off_then_retry_and_give_up_after_the_cap(world, inbox):
    give_social_worker(world, [f"json://127.0.0.1:{inbox.port}/inbox/down"])
    world.door()
    world.worker.settle()
    (note,) = world.rows("SELECT state, next_attempt_at, attempts FROM notifications")
    assert note["state"] == "pending" and note["attempts"] == 1
    assert note["next_attempt_at"] > world.rows("SELECT created_at FROM notifications")[0][0]
    world.worker.settle()
    assert world.rows("SELECT attempts FROM notifications")[0][0] == 1  # waits out the backoff
    for _ in range(MAX_ROUNDS + 2):
        world.clock.advance(301)
        world.worker.settle()
    (note,) = world.rows("SELECT state, attempts FROM notifications WHERE step = 1")
    assert tuple(note) == ("failed", MAX_ROUNDS)
    assert world.rows("SELECT count(*) FROM delivery_attempts WHERE ok = 0")[0][0] >= MAX_ROUNDS
    # The escalation does not depend on delivery: the leader was paged after five minutes.
    assert "wang-leader" in world.recipients()


def test_staff_without_contact_urls_are_recorded_as_undeliverable(world, inbox):
    give_social_worker(world, [])
    world.door()
    world.worker.settle()
    assert world.rows("SELECT state FROM notifications")[0][0] == "undeliverable"


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
    assert after_failure(url_index=0, url_count=1, attempts=MAX_ROUNDS, now=now).at is None


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
