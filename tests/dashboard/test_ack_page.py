"""The notification link's phone page, through the dashboard app: what it shows for every alert kind in both
languages (site-local time, team with call links, what to do, outcomes of the kind), and that only its own
forms act. The browser walk through the real gateway is in test_ack_browser.py."""

from __future__ import annotations

import html
import re
import sqlite3
from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient

from dashboard import ack_text
from dashboard.app import create_app
from dashboard.i18n import EN, ZH
from gateway import alerts
from gateway.ack_links import AckDesk, AckLinks
from gateway.policy import AlertKind
from gateway.vocabulary import LANGUAGES
from isowatch.clock import ManualClock

NOW = datetime(2026, 11, 25, 20, 42, tzinfo=timezone.utc)  # 04:42 the next morning in Shanghai


@pytest.fixture
def desk(seeded):
    clock = ManualClock(NOW)
    links = AckLinks("test-secret", clock, ttl_hours=24)
    desk = AckDesk(seeded.db_path, links, seeded.snapshot_dir)
    client = TestClient(create_app(seeded.db_path, ack_desk=desk, clock=clock))
    return desk, client, clock


def link_for(desk: AckDesk, kind: str, staff: str = "chen-social", *, detail: str = "") -> tuple[int, str]:
    conn = sqlite3.connect(desk.db_path)
    with conn:
        opened = alerts.open_or_attach(conn, site="site-a", household="hh-7-101", kind=kind, at=NOW,
                                       ref=f"ref-{kind}", now=NOW, isolation_id=2, detail=detail)
        token = desk.links.issue(conn, opened.alert_id, staff, 1)
    conn.close()
    return opened.alert_id, token


def form_token(page: str) -> str:
    return re.search(r'name="form" value="([0-9a-f]+)"', page).group(1)


def visible_text(page: str) -> str:
    """What a reader sees: tags, attribute values and the <head> removed."""
    body = page.split("<body>", 1)[1]
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body))


# Latin text a Chinese page may show: ids, names (Li Na is on the team), the product, the zone, units.
ALLOWED_LATIN = re.compile(r"Li Na|isowatch|English|Asia/Shanghai|UTC|hh-\d-\d{3}|°C|#\d+")


@pytest.mark.parametrize("kind", [k.value for k in AlertKind])
def test_every_kind_reads_whole_in_chinese_and_english_with_its_own_outcomes(desk, kind):
    ack, client, _ = desk
    detail = {"fever": "38.9 °C (axillary)", "help_request": "supplies: 需要大米和蔬菜"}.get(kind, "only the camera saw the door open")
    alert_id, token = link_for(ack, kind, detail=detail)
    zh = client.get(f"/ack/{token}")
    assert zh.status_code == 200
    text = visible_text(zh.text)
    assert ZH[kind] in text and kind not in text
    leftovers = re.findall(r"[A-Za-z_]{2,}", ALLOWED_LATIN.sub(" ", text))
    assert not leftovers, f"English or raw codes on the Chinese page: {leftovers}"
    assert "我来处理" in text and ack_text.TODO["zh"][kind][0] in text
    # Handled: the outcomes offered are the kind's own, named, and none shares a word with 我来处理.
    handled = client.post(f"/ack/{token}/acknowledge", data={"form": form_token(zh.text), "lang": "zh"})
    offered = re.findall(r'name="verdict" value="([a-z_]+)"', handled.text)
    assert tuple(offered) == alerts.OUTCOMES[kind]
    for outcome in offered:
        assert ZH[outcome] in handled.text and "处理" not in ZH[outcome]
    en = client.get(f"/ack/{token}", params={"lang": "en"})
    assert EN[kind] in en.text and "I&#39;m handling it" not in en.text  # handled already: outcomes, not the button
    assert all(EN[outcome] in en.text for outcome in offered)
    assert ack_text.TODO["en"][kind][0] in html.unescape(en.text)


def test_page_shows_site_local_time_labelled_team_with_call_links_and_the_way_to_the_dashboard(desk):
    ack, client, _ = desk
    alert_id, token = link_for(ack, "fever", detail="38.9 °C (axillary)")
    page = client.get(f"/ack/{token}").text
    assert "2026-11-26 04:42" in page and "Asia/Shanghai 时间（UTC+08:00）" in page  # the next morning, not UTC
    assert "20:42" not in visible_text(page)
    assert "体温 38.9 °C" in page and "axillary" not in page
    assert '<a class="call" href="tel:+8613800000102">拨打 +86 138 0000 0102</a>' in page  # the medical worker
    assert "陈社工（你）" in page and 'href="tel:+8613800000104"' not in page  # no button to call yourself
    assert f'href="/alerts/{alert_id}"' in page
    assert "幸福里7号楼 101" in page
    # Another site's timezone is honoured.
    conn = sqlite3.connect(ack.db_path)
    with conn:
        conn.execute("UPDATE sites SET timezone = 'Europe/Berlin' WHERE site = 'site-a'")
    berlin = client.get(f"/ack/{token}").text
    assert "2026-11-25 21:42" in berlin and "Europe/Berlin 时间（UTC+01:00）" in berlin


def test_page_speaks_the_recipients_language_and_offers_the_other(desk):
    ack, client, _ = desk
    _, token = link_for(ack, "fever", staff="li-medical")  # Li Na reads English
    page = client.get(f"/ack/{token}").text
    assert '<html lang="en">' in page and "I&#39;m handling it" in page and "我来处理" not in page
    assert f'href="/ack/{token}?lang=zh"' in page
    chinese = client.get(f"/ack/{token}", params={"lang": "zh"}).text
    assert '<html lang="zh-CN">' in chinese and "我来处理" in chinese


def test_reading_the_link_changes_nothing_and_only_the_pages_form_acts(desk):
    ack, client, _ = desk
    alert_id, token = link_for(ack, "door_opened")
    for _ in range(3):
        assert client.get(f"/ack/{token}").status_code == 200
        assert client.head(f"/ack/{token}").status_code in (200, 405)
    assert client.get(f"/ack/{token}/acknowledge").status_code == 405
    assert client.post(f"/ack/{token}/acknowledge").status_code == 403  # no form token
    _, other_token = link_for(ack, "fever")
    stolen = form_token(client.get(f"/ack/{other_token}").text)
    assert client.post(f"/ack/{token}/acknowledge", data={"form": stolen}).status_code == 403
    conn = sqlite3.connect(ack.db_path)
    state = conn.execute("SELECT state, acknowledged_by FROM alerts WHERE id = ?", (alert_id,)).fetchone()
    assert state[1] is None
    assert conn.execute("SELECT count(*) FROM audit_log WHERE object = ?", (f"alert:{alert_id}",)).fetchone()[0] == 0
    conn.close()


def test_someone_else_handling_is_shown_and_the_recipient_may_still_close_it(desk):
    ack, client, _ = desk
    alert_id, token = link_for(ack, "door_opened")
    conn = sqlite3.connect(ack.db_path)
    with conn:
        alerts.acknowledge(conn, alert_id, "wang-leader", NOW + timedelta(minutes=2), via="dashboard")
    conn.close()
    page = client.get(f"/ack/{token}").text
    assert "王队长 正在处理（2026-11-26 04:44 起）" in page and 'id="handle"' not in page
    done = client.post(f"/ack/{token}/resolve", data={"form": form_token(page), "verdict": "confirmed_violation"})
    assert "处理结果：属实违规（陈社工，2026-11-26 04:42）" in done.text
    again = client.post(f"/ack/{token}/resolve", data={"form": form_token(page), "verdict": "false_alarm"})
    assert again.status_code == 200 and "属实违规" in again.text  # the first outcome stands, shown as such


def test_forged_and_expired_links_say_so_in_both_languages(desk):
    ack, client, clock = desk
    alert_id, token = link_for(ack, "door_opened")
    forged = client.get(f"/ack/{token[:-3]}xyz")
    assert forged.status_code == 404 and "链接无效" in forged.text and "Invalid link" in forged.text
    clock.advance(24 * 3600)
    expired = client.get(f"/ack/{token}")
    assert expired.status_code == 410 and "链接已过期" in expired.text and "This link has expired" in expired.text
    assert f'href="/alerts/{alert_id}"' in expired.text
    late = client.post(f"/ack/{token}/acknowledge", data={"form": "0" * 32})
    assert late.status_code == 410


def test_every_page_phrase_exists_in_both_languages():
    assert set(ack_text.PAGE["zh"]) == set(ack_text.PAGE["en"])
    for language in LANGUAGES:
        assert set(ack_text.TODO[language]) == {k.value for k in AlertKind}
        names = {**ZH, **EN}
        assert all(outcome in names and outcome in ZH and outcome in EN for outcome in alerts.VERDICTS)


def test_an_outcome_of_another_kind_does_not_close_the_alert(desk):
    ack, client, _ = desk
    alert_id, token = link_for(ack, "fever")
    conn = sqlite3.connect(ack.db_path)
    with pytest.raises(alerts.AlertError, match="fever"):
        alerts.resolve(conn, alert_id, staff="li-medical", verdict="confirmed_violation", note="", now=NOW)
    conn.close()
    page = client.get(f"/ack/{token}").text
    refused = client.post(f"/ack/{token}/resolve", data={"form": form_token(page), "verdict": "authorised_exit"})
    assert refused.status_code == 422 and "此结果不适用于这类告警" in refused.text
