"""A storm's group on the dashboard: one row on the board, its page, acknowledge and resolve for all."""

from __future__ import annotations

import re
import sqlite3
from datetime import datetime, timedelta, timezone

from gateway import alerts, groups
from tests.dashboard.test_who_and_next import client_for, open_alert


def grouped_storm(db_path) -> int:
    """Both team-1 households' devices offline two minutes ago, as one group (as the alert worker forms it)."""
    ids = [open_alert(db_path, "device_offline", 2, household) for household in ("hh-3-502", "hh-7-101")]
    conn = sqlite3.connect(db_path, timeout=30)
    with conn:
        group = groups.form(conn, "team-1", "device_offline", ids, datetime.now(timezone.utc))
        conn.execute("UPDATE alert_groups SET step = 1 WHERE id = ?", (group,))
        conn.execute("INSERT INTO notifications (group_id, step, round, staff, role, language, title, body, urls, "
                     "url_index, state, attempts, created_at, sent_at) VALUES (?, 1, 0, 'chen-social', 'social', "
                     "'zh', 't', 'b', '[]', 0, 'sent', 1, ?, ?)",
                     (group, alerts.iso(datetime.now(timezone.utc)), alerts.iso(datetime.now(timezone.utc))))
    conn.close()
    return group


def test_the_board_shows_a_group_as_one_row_and_the_api_lists_its_members(seeded):
    group = grouped_storm(seeded.db_path)
    chen = client_for(seeded, "chen")
    board = chen.get("/").text
    assert board.count(f'data-group="{group}"') == 1
    assert "Xingfu Street 2 户设备离线" in board and f'href="/groups/{group}"' in board
    assert "陈社工 (社工)" in board[board.index(f'data-group="{group}"'):]  # the group's page went to chen
    offline = [a for a in chen.get("/api/v1/alerts").json() if a["kind"] == "device_offline"]
    assert len(offline) == 2 and {a["group_id"] for a in offline} == {group}
    mine = chen.get("/?mine=1").text
    assert f'data-group="{group}"' in mine  # paged to chen as a group
    member = offline[0]["id"]
    assert f'href="/groups/{group}"' in chen.get(f"/alerts/{member}").text


def test_the_group_page_acknowledges_and_resolves_every_member_and_other_teams_do_not_see_it(seeded):
    group = grouped_storm(seeded.db_path)
    assert client_for(seeded, "zheng").get(f"/groups/{group}").status_code == 404  # team-2
    wang = client_for(seeded, "wang")
    page = wang.get(f"/groups/{group}")
    assert page.status_code == 200 and "Devices offline in 2 households in Xingfu Street" in page.text
    assert page.text.count('data-alert="') == 2
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    done = wang.post(f"/groups/{group}/acknowledge", data={"csrf": csrf}, follow_redirects=False)
    assert done.status_code == 303
    conn = sqlite3.connect(seeded.db_path)
    assert conn.execute("SELECT acknowledged_by FROM alerts WHERE group_id = ?", (group,)).fetchall() == [
        ("wang-leader",), ("wang-leader",)]
    assert conn.execute("SELECT count(*) FROM audit_log WHERE action = 'alert.acknowledge' AND who = 'wang-leader' "
                        "AND detail LIKE ?", (f'%"group": {group}%',)).fetchone()[0] == 2
    refused = wang.post(f"/groups/{group}/resolve", data={"csrf": csrf, "verdict": "false_alarm"})
    assert refused.status_code == 409  # not an outcome of device_offline
    wang.post(f"/groups/{group}/resolve", data={"csrf": csrf, "verdict": "back_online", "note": "来电了"})
    assert conn.execute("SELECT verdict, note FROM alerts WHERE group_id = ?", (group,)).fetchall() == [
        ("back_online", "来电了"), ("back_online", "来电了")]
    assert conn.execute("SELECT resolved_at IS NOT NULL FROM alert_groups").fetchone() == (1,)
    conn.close()
    assert f'data-group="{group}"' not in wang.get("/").text
    assert wang.get(f"/groups/{group}").status_code == 200  # still readable, resolved
    assert wang.post(f"/groups/{group}/acknowledge", data={"csrf": "wrong"}).status_code == 403
    assert client_for(seeded, "auditor").post(f"/groups/{group}/acknowledge", data={"csrf": csrf}).status_code == 403


def test_time_of_a_group_is_the_first_members_in_site_time(seeded):
    group = grouped_storm(seeded.db_path)
    first = datetime.now(timezone.utc) - timedelta(minutes=2)
    local = first.astimezone(timezone(timedelta(hours=8)))
    text = client_for(seeded, "li").get(f"/groups/{group}").text
    assert f"since {local:%H:%M}" in text or f"since {(local - timedelta(minutes=1)):%H:%M}" in text


def test_the_group_link_reads_on_get_refuses_other_links_and_expires_with_a_way_to_the_dashboard(tmp_path):
    from fastapi.testclient import TestClient

    from dashboard.app import create_app
    from gateway.ack_links import AckDesk
    from gateway.inbox import LocalInbox
    from tests.gateway.test_alert_groups import link_token, new_world, offline_pages, storm

    with LocalInbox() as inbox:
        world = new_world(tmp_path, inbox)
        try:
            storm(world, 3)
            token = link_token(offline_pages(inbox)[0].body)
            desk = AckDesk(world.db_path, world.links, tmp_path / "snapshots")
            client = TestClient(create_app(world.db_path, ack_desk=desk, clock=world.clock))
            page = client.get(f"/ack/group/{token}")
            assert page.status_code == 200 and "Xingfu Street 5 户设备离线（10:01 起）" in page.text
            assert page.headers["cache-control"] == "no-store"
            english = client.get(f"/ack/group/{token}?lang=en").text
            assert "Devices offline in 5 households in Xingfu Street since 10:01" in english
            assert client.get(f"/ack/{token}").status_code == 404  # a group's link is no alert's
            assert client.get(f"/ack/group/{token}x").status_code == 404
            assert client.post(f"/ack/group/{token}/acknowledge", data={"form": "0" * 32}).status_code == 403
            assert world.rows("SELECT count(*) FROM alerts WHERE acknowledged_at IS NOT NULL")[0][0] == 0
            world.clock.advance(24 * 3600)
            expired = client.get(f"/ack/group/{token}")
            assert expired.status_code == 410 and "告警组 #1" in expired.text and 'href="/groups/1"' in expired.text
        finally:
            world.close()


def test_the_response_report_counts_a_group_page_once_for_its_team_and_role(seeded):
    from dashboard import response_report
    from dashboard.deps import Scope

    def pages() -> tuple[int, int]:
        conn = sqlite3.connect(seeded.db_path)
        conn.row_factory = sqlite3.Row
        now = datetime.now(timezone.utc)
        report = response_report.report(conn, Scope(None, None), now - timedelta(hours=1), now + timedelta(minutes=1))
        conn.close()
        social = next(r for r in report.roles if r.role == "social")
        team = next(t for t in report.teams if t.team == "team-1")
        return social.pages, team.pages

    before = pages()  # the seeded door alert's page
    grouped_storm(seeded.db_path)
    assert pages() == (before[0] + 1, before[1] + 1)
