"""Storms with a manual clock: alerts of one kind opening together for one team page as one group.

Real store, rules, worker and Apprise to a local inbox; the end-to-end storm over Mosquitto and the
dashboard is tests/gateway/test_storm_e2e.py.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from gateway import groups
from gateway.ack_links import BadForm, BadLink, GroupLinkExpired
from gateway.alerts import AlertError
from gateway.policy import DEFAULT_POLICY, PolicyError, load_policy, parse_policy
from gateway.registry import HouseholdIn, IsolationIn
from tests.fixtures.world import START, World

STORM = 30  # households beyond the fixture's two, all on team-1


def new_world(tmp_path, inbox, **options) -> World:
    world = World(tmp_path, inbox, **options)
    # Both households took their temperature this morning, so the missed-reading scan stays out of the way.
    for household in ("hh-3-502", "hh-7-101"):
        world.temperature(36.5, household=household, at=START - timedelta(hours=2))
    world.worker.settle()
    return world


@pytest.fixture
def world(tmp_path, inbox):
    w = new_world(tmp_path, inbox)
    yield w
    w.close()


def offline_group(world: World) -> int:
    (group,) = world.rows("SELECT id FROM alert_groups WHERE kind = 'device_offline'")
    return group[0]


def add_households(world: World, count: int, *, start: int = 0, team: str = "team-1") -> list[str]:
    """Isolated households of the street, each with a registered device heard from now."""
    names = []
    for n in range(start, start + count):
        household = f"hh-s-{n:03d}"
        world.registry.upsert_household(HouseholdIn(household=household, site="site-a", address=f"幸福里{n}号楼",
                                                    unit="101", team=team))
        world.registry.start_isolation(IsolationIn(household=household, start_date=START.date() - timedelta(days=4)),
                                       by="test")
        world.registry.register_device(f"dev-s-{n:03d}", household, by="test", password="unused")
        names.append(household)
    taken = (START - timedelta(hours=2)).isoformat().replace("+00:00", "Z")
    with world.conn:  # this morning's temperature, as for the fixture's two
        world.conn.executemany(
            "INSERT INTO readings (id, site, household, device, seq, type, device_time, received_at, celsius, "
            "subject, method, plausible, payload) VALUES (?, 'site-a', ?, ?, 1, 'temperature', ?, ?, 36.6, 'body', "
            "'axillary', 1, '{}')", [(f"r-{h}", h, f"dev-{h}", taken, taken) for h in names])
    return names


def heard(world: World, households: list[str]) -> None:
    """Their devices were heard from now (as ingest records a heartbeat)."""
    with world.conn:
        world.conn.execute("UPDATE devices SET last_seen = ? WHERE household IN (SELECT value FROM json_each(?))",
                           (world.clock.now().isoformat().replace("+00:00", "Z"), str(households).replace("'", '"')))


def offline_pages(inbox, recipient: str | None = None) -> list:
    return [m for m in inbox.received(recipient) if "设备离线" in m.title or "Device offline" in m.title
            or "Devices offline" in m.title]


def link_token(body: str, path: str = "/ack/group/") -> str:
    return re.search(re.escape(path) + r"(\S+)", body).group(1)


def storm(world: World, count: int = STORM) -> list[str]:
    """`count` households' devices (and the fixture's two) fall silent together and are found offline."""
    households = add_households(world, count)
    world.clock.advance(91)
    world.worker.tick()
    world.worker.settle()
    return households


def test_a_storm_pages_each_recipient_once_with_the_count_the_street_and_the_local_time(world, inbox):
    storm(world)
    (page,) = offline_pages(inbox)
    assert page.recipient == "chen-social"
    # 32 households: the storm's 30 and the fixture's two (their devices were never heard from either).
    assert "Xingfu Street 32 户设备离线（10:01 起）" in page.title
    assert "2026-03-05 10:01 (UTC+08:00)" in page.body and "等共 32 户" in page.body
    assert "http://gw.example/ack/group/" in page.body
    (group,) = world.rows("SELECT * FROM alert_groups")
    assert (group["kind"], group["team"], group["step"]) == ("device_offline", "team-1", 1)
    assert world.rows("SELECT count(*) FROM alerts")[0][0] == 32  # nothing else: only the storm
    members = world.rows("SELECT group_id, next_step_at, state FROM alerts WHERE kind = 'device_offline'")
    assert len(members) == 32 and {(m["group_id"], m["next_step_at"]) for m in members} == {(group["id"], None)}
    assert {m["state"] for m in members} == {"notified"}  # the group's page notified each of them
    (row,) = world.rows("SELECT alert_id, group_id, state FROM notifications")
    assert (row["alert_id"], row["group_id"], row["state"]) == (None, group["id"], "sent")


def test_english_readers_get_the_group_in_english(world, inbox):
    with world.conn:
        world.conn.execute("UPDATE staff SET language = 'en' WHERE staff = 'chen-social'")
    storm(world, 4)
    (page,) = offline_pages(inbox)
    assert page.title.endswith("Devices offline in 6 households in Xingfu Street since 10:01")
    assert "Escalation step 1" in page.body and "6 in all" in page.body


def test_a_single_alert_pages_alone_and_the_second_within_the_window_groups_both(world, inbox):
    first = add_households(world, 1)
    heard(world, ["hh-3-502", "hh-7-101"])
    world.clock.advance(91)
    heard(world, ["hh-3-502", "hh-7-101"])
    world.worker.tick()
    world.worker.settle()
    (alone,) = offline_pages(inbox)
    assert "[isowatch #" in alone.title and first[0] in alone.body  # below the threshold: its own page
    world.clock.advance(60)
    heard(world, ["hh-7-101"])  # hh-3-502 falls silent a minute later: within the window
    world.clock.advance(31)
    world.worker.tick()
    world.worker.settle()
    pages = offline_pages(inbox, "chen-social")
    assert len(pages) == 2 and "2 户设备离线" in pages[1].title
    group = (offline_group(world),)
    grouped = {r["household"] for r in world.rows("SELECT household FROM alerts WHERE group_id = ?", (group[0],))}
    assert grouped == {first[0], "hh-3-502"}  # the one paged alone is listed too
    # A third joins without a page.
    world.clock.advance(60)
    world.worker.tick()
    world.worker.settle()
    assert len(offline_pages(inbox)) == 2
    assert world.rows("SELECT count(*) FROM alerts WHERE group_id = ?", (group[0],))[0][0] == 3


def test_alerts_further_apart_than_the_window_page_alone(world, inbox):
    heard(world, ["hh-7-101"])
    world.clock.advance(91)
    heard(world, ["hh-7-101"])
    world.worker.tick()
    world.worker.settle()
    world.clock.advance(400)  # beyond window_s (300)
    world.worker.tick()
    world.worker.settle()
    pages = offline_pages(inbox)
    assert [p.title.startswith("[isowatch #") for p in pages] == [True, True]
    assert world.rows("SELECT count(*) FROM alert_groups")[0][0] == 0


def test_the_group_escalates_once_per_step_and_its_members_do_not(world, inbox):
    storm(world)
    world.clock.advance(15 * 60 - 1)
    world.worker.settle()
    assert [p.recipient for p in offline_pages(inbox)] == ["chen-social"]
    world.clock.advance(1)
    world.worker.settle()
    world.worker.settle()
    pages = offline_pages(inbox)
    assert [p.recipient for p in pages] == ["chen-social", "wang-leader"]
    assert "升级第 2 步" in pages[1].body and "32 户设备离线" in pages[1].title
    assert world.rows("SELECT step FROM alert_groups")[0][0] == 2


def test_acknowledging_the_group_acknowledges_each_member_and_later_members_join_it_acknowledged(world, inbox):
    storm(world)
    token = link_token(offline_pages(inbox)[0].body)
    view = world.links.group_view(world.conn, token)  # what GET shows: reading changes nothing
    assert (len(view.group.members), view.group.acknowledged_by) == (32, None)
    assert view.outcomes == ("back_online", "device_fault", "resident_visited")
    with pytest.raises(BadForm):
        world.links.acknowledge_group(world.conn, token, "")
    assert world.links.acknowledge_group(world.conn, token, view.form_token) is None
    assert world.links.acknowledge_group(world.conn, token, view.form_token) == "chen-social"  # again: harmless
    members = world.rows("SELECT acknowledged_by, state FROM alerts WHERE kind = 'device_offline'")
    assert {tuple(m) for m in members} == {("chen-social", "acknowledged")}
    audit = world.rows("SELECT who, action, detail FROM audit_log "
                       "WHERE action LIKE 'alert.ack%' OR action LIKE 'group.%'")
    acks = [a for a in audit if a["action"] == "alert.acknowledge"]
    group = offline_group(world)
    assert len(acks) == 32 and all(f'"group": {group}' in a["detail"] and '"via": "link"' in a["detail"] for a in acks)
    assert [a["action"] for a in audit if a["action"].startswith("group.")] == [
        "group.open", "group.acknowledge", "group.ack_again"]
    # No escalation after that, and a household falling silent now joins the group, acknowledged with it.
    late = add_households(world, 1, start=100)
    world.clock.advance(91)
    world.worker.tick()
    world.clock.advance(3600)
    world.worker.tick()
    assert len(offline_pages(inbox)) == 1
    (joined,) = world.rows("SELECT group_id, acknowledged_by FROM alerts WHERE household = ?", (late[0],))
    assert tuple(joined) == (group, "chen-social")


def test_resolving_the_group_closes_every_member_with_one_outcome(world, inbox):
    storm(world, 3)
    token = link_token(offline_pages(inbox)[0].body)
    form = world.links.group_view(world.conn, token).form_token
    with pytest.raises(AlertError):
        world.links.resolve_group(world.conn, token, form, "false_alarm", "")  # not a device_offline outcome
    # One member is resolved on its own first; the group closes the rest.
    one = world.rows("SELECT id FROM alerts ORDER BY id LIMIT 1")[0][0]
    from gateway import alerts
    alerts.resolve(world.conn, one, staff="li-medical", verdict="device_fault", note="", now=world.clock.now())
    assert world.links.resolve_group(world.conn, token, form, "back_online", "停电恢复") == 4
    rows = world.rows("SELECT verdict, resolved_by FROM alerts ORDER BY id")
    assert [tuple(r) for r in rows] == [("device_fault", "li-medical")] + [("back_online", "chen-social")] * 4
    assert world.rows("SELECT resolved_at IS NOT NULL FROM alert_groups")[0][0] == 1
    with pytest.raises(AlertError):
        world.links.resolve_group(world.conn, token, form, "back_online", "")


def test_a_group_ends_with_its_last_member(world, inbox):
    storm(world, 1)
    from gateway import alerts
    for (alert_id,) in world.rows("SELECT id FROM alerts"):
        alerts.resolve(world.conn, alert_id, staff="chen-social", verdict="back_online", note="",
                       now=world.clock.now())
    (group,) = world.rows("SELECT resolved_at, next_step_at FROM alert_groups")
    assert group["resolved_at"] is not None and group["next_step_at"] is None
    world.clock.advance(3600)
    world.worker.settle()
    assert len(offline_pages(inbox)) == 1


def test_a_door_opening_and_a_fever_during_a_storm_page_at_once_on_their_own(world, inbox):
    add_households(world, STORM)
    world.clock.advance(91)
    world.worker.tick()  # the storm is found ...
    world.door()  # ... and a door opens before its group is decided
    world.temperature(38.6, household="hh-7-101")
    world.worker.settle()
    door = [m for m in inbox.received() if "隔离期间开门" in m.title]
    fever = [m for m in inbox.received() if "Fever" in m.title]
    assert [m.recipient for m in door] == ["chen-social"] and [m.recipient for m in fever] == ["li-medical"]
    assert world.rows("SELECT count(*) FROM alerts WHERE kind IN ('door_opened', 'fever') AND group_id IS NULL "
                      "AND step = 1")[0][0] == 2
    assert len(offline_pages(inbox)) == 1


def test_a_restart_mid_storm_keeps_the_group_and_later_alerts_join_it(world, inbox):
    storm(world)
    world.worker.conn.close()  # crash: only the database survives
    late = add_households(world, 5, start=100)
    world.clock.advance(91)
    world.worker = world.new_worker()
    world.worker.tick()
    world.worker.settle()
    assert len(offline_pages(inbox)) == 1
    assert world.rows("SELECT count(*) FROM alert_groups")[0][0] == 1
    assert {r[0] for r in world.rows("SELECT group_id FROM alerts WHERE household IN (SELECT value FROM json_each(?))",
                                     (str(late).replace("'", '"'),))} == {offline_group(world)}


def test_a_restart_while_alerts_wait_decides_them_once(tmp_path, inbox):
    policy = parse_policy(DEFAULT_POLICY.read_text().replace("hold_s: 0", "hold_s: 30"))
    world = new_world(tmp_path, inbox, policy=policy)
    try:
        add_households(world, 5)
        world.clock.advance(91)
        world.worker.tick()
        assert offline_pages(inbox) == []  # held for 30 s
        world.worker.conn.close()
        world.clock.advance(30)
        world.worker = world.new_worker()
        world.worker.settle()
        world.worker.settle()
        (page,) = offline_pages(inbox)
        assert "7 户设备离线" in page.title
    finally:
        world.close()


def test_a_hold_gathers_a_storm_found_over_several_passes_into_one_page(tmp_path, inbox):
    policy = parse_policy(DEFAULT_POLICY.read_text().replace("hold_s: 0", "hold_s: 20"))
    world = new_world(tmp_path, inbox, policy=policy)
    try:
        add_households(world, 1)
        heard(world, ["hh-3-502", "hh-7-101"])
        world.clock.advance(91)
        world.worker.tick()  # one found alone ...
        world.clock.advance(10)
        world.worker.tick()  # ... the fixture's two ten seconds later
        assert offline_pages(inbox) == []
        world.clock.advance(10)
        world.worker.tick()
        world.worker.settle()
        (page,) = offline_pages(inbox)
        assert "3 户设备离线" in page.title
    finally:
        world.close()


def test_group_links_are_signed_apart_and_expire(world, inbox):
    storm(world, 2)
    token = link_token(offline_pages(inbox)[0].body)
    with pytest.raises(BadLink):
        world.links.view(world.conn, token)  # a group's link is not an alert's
    with pytest.raises(BadLink):
        world.links.group_view(world.conn, token[:-3] + "xyz")
    world.door()
    world.worker.settle()
    door = next(m for m in inbox.received() if "隔离期间开门" in m.title)
    with pytest.raises(BadLink):
        world.links.group_view(world.conn, link_token(door.body, "/ack/"))  # nor the reverse
    world.clock.advance(24 * 3600)
    with pytest.raises(GroupLinkExpired):
        world.links.group_view(world.conn, token)


def test_the_policy_never_groups_doors_fevers_welfare_or_households_requests():
    text = DEFAULT_POLICY.read_text()
    for kind in ("door_opened", "repeated_door", "fever", "welfare_check", "help_request", "visit_approval"):
        with pytest.raises(PolicyError, match="grouping.kinds"):
            parse_policy(text.replace("kinds: [device_offline,", f"kinds: [{kind}, device_offline,"))
    with pytest.raises(PolicyError, match="grouping.threshold"):
        parse_policy(text.replace("threshold: 2", "threshold: 1"))
    assert load_policy().grouping.kinds == ["device_offline", "camera_tampered", "missed_reading"]


def test_grouping_off_pages_every_alert_alone(tmp_path, inbox):
    policy = parse_policy(DEFAULT_POLICY.read_text().replace(
        "kinds: [device_offline, camera_tampered, missed_reading]", "kinds: []"))
    world = new_world(tmp_path, inbox, policy=policy)
    try:
        storm(world, 3)
        for _ in range(3):  # one service takes at most 4 sends at a time; the rest go a second later
            world.clock.advance(1)
            world.worker.settle()
        assert len(offline_pages(inbox)) == 5
        assert world.rows("SELECT count(*) FROM alert_groups")[0][0] == 0
    finally:
        world.close()


def test_tampers_across_the_team_group_too(world, inbox):
    world.tamper("hh-3-502")
    world.tamper("hh-7-101")
    world.worker.settle()
    (page,) = inbox.received()
    assert "2 户摄像头被遮挡或移动" in page.title
    group = groups.load(world.conn, 1)
    assert [m.household for m in group.members] == ["hh-3-502", "hh-7-101"]


def test_the_grouping_keys_and_the_groups_audit_actions_are_documented():
    from gateway.policy import Grouping
    from tests.conftest import REPO_ROOT

    doc = (REPO_ROOT / "docs" / "alerts.md").read_text()
    assert all(f"`grouping.{key}`" in doc for key in Grouping.model_fields)
    sources = "".join(p.read_text() for p in (REPO_ROOT / "gateway").glob("*.py"))
    actions = set(re.findall(r'"(group\.[a-z_]+)"', sources))
    assert actions >= {"group.open", "group.acknowledge", "group.resolve"}
    assert all(f"`{action}`" in doc for action in actions)
