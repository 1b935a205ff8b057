"""Chinese is whole: every page, error page and notification kind rendered in zh, with no
missing key, no English fragment and no raw code; one name per alert kind on the board, the phone page and
in the message."""

from __future__ import annotations

import re
import sqlite3
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from dashboard import accounts, ack_text, resident_text
from dashboard.app import create_app
from dashboard.i18n import EN, ZH, translator
from dashboard.routes.alerts import age_text
from gateway import alerts
from gateway.alerts import OUTCOMES, VERDICTS
from gateway.messages import AlertFacts
from gateway.messages import render as render_message
from gateway.policy import AlertKind
from gateway.vocabulary import KINDS, detail_text, kind_name
from tests.dashboard.world import login

TEMPLATES = Path(__file__).parents[2] / "dashboard" / "templates"
# Latin a Chinese page may show: the product, the other language's switch, data formats, units, zones.
ALLOWED = re.compile(r"isowatch|English|CSV|API|JSON|UTC|CST|Asia/Shanghai|°C|https?://\S+")
ENGLISH = re.compile(r"[A-Za-z]{3,}")
# Details as the rules write them (gateway/rules.py), one per shape.
DETAILS = {
    "door_opened": "camera, exit suspected", "repeated_door": "3 openings in 24 h", "fever": "38.6 °C (axillary)",
    "implausible_reading": "45.1 °C (unknown)", "missed_reading": "expected by 09:00",
    "device_offline": "cam-3502 silent since 2026-11-25T20:42:00.000Z", "camera_tampered": "covered",
    "welfare_check": "no activity since 2026-11-25T08:00:00.000Z", "sensor_disagree": "only the camera saw the door open",
    "help_request": "supplies: 需要大米和蔬菜", "visit_approval": "hospital visit announced for 20 min",
}


class Visible(HTMLParser):
    """The text a reader sees or hears: text outside head/script/style, and titles, alt texts, labels."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("head", "script", "style", "textarea"):  # a textarea holds editable data (device config JSON)
            self.hidden += 1
        for name, value in attrs:
            if name in ("title", "alt", "aria-label", "placeholder") or name.startswith("data-") and name not in (
                    "data-alert", "data-cursor"):
                self.parts.append(value or "")

    def handle_endtag(self, tag):
        if tag in ("head", "script", "style", "textarea"):
            self.hidden -= 1

    def handle_data(self, data):
        if not self.hidden:
            self.parts.append(data)


def identifiers(db_path: Path) -> list[str]:
    """Names and ids that are data, not words: households, devices, users, staff, teams, sites."""
    conn = sqlite3.connect(db_path)
    found: set[str] = set()
    for sql in ("SELECT household FROM households", "SELECT device FROM devices", "SELECT username FROM users",
                "SELECT display_name FROM users", "SELECT staff FROM staff", "SELECT name FROM staff",
                "SELECT team FROM teams", "SELECT site FROM sites", "SELECT name FROM teams", "SELECT name FROM sites"):
        try:
            found |= {r[0] for r in conn.execute(sql) if r[0]}
        except sqlite3.OperationalError:
            pass
    conn.close()
    return sorted(found, key=len, reverse=True)


def english_in(text: str, known: list[str]) -> list[str]:
    text = ALLOWED.sub(" ", text)
    for name in known:
        text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(name)}(?![A-Za-z0-9])", " ", text)
    text = re.sub(r"\b[0-9a-f]{16,}\b", " ", text)  # hashes in snapshot names
    return ENGLISH.findall(text)


def visible(html: str) -> str:
    parser = Visible()
    parser.feed(html)
    return " ".join(parser.parts)


@pytest.fixture
def world(seeded):
    """Every alert kind open with a detail as the rules write it, one of them resolved, admin in Chinese."""
    now = datetime.now(timezone.utc)
    conn = sqlite3.connect(seeded.db_path, timeout=30)
    conn.row_factory = sqlite3.Row
    with conn:
        ids = {}
        for n, kind in enumerate(KINDS):
            ids[kind] = alerts.open_or_attach(conn, site="site-a", household="hh-3-502", kind=kind,
                                              at=now - timedelta(minutes=n), ref=f"zh-{kind}", now=now, isolation_id=1,
                                              detail=DETAILS[kind]).alert_id
        conn.execute("UPDATE users SET language = 'zh'")
    alerts.acknowledge(conn, ids["fever"], "li-medical", now, via="dashboard")
    alerts.resolve(conn, ids["fever"], staff="li-medical", verdict="seen_by_medical", note="", now=now)
    conn.close()
    return seeded, ids


def pages(seeded, ids) -> list[str]:
    # /audit lists stored records (actions, JSON details) as they are; its readable rendering has tests of its
    # own (test_local_times.py), so only its frame is checked here, through the error pages' nav.
    return ["/", "/?mine=1", "/households", "/households/hh-3-502", "/households/hh-7-101", "/events", "/reports",
            "/devices", "/login", "/users", "/me/password",
            *(f"/alerts/{i}" for i in ids.values()), "/events?type=door", "/reports?period=30"]


def test_every_page_reads_in_chinese(world):
    seeded, ids = world
    known = identifiers(seeded.db_path)
    found = {}
    with TestClient(create_app(seeded.db_path, snapshot_dir=seeded.snapshot_dir)) as client:
        login(client, "admin")
        for path in pages(seeded, ids):
            answer = client.get(path)
            assert answer.status_code == 200, path
            words = english_in(visible(answer.text), known)
            if words:
                found[path] = words
    assert found == {}, "\n".join(f"{p}: {w}" for p, w in found.items())


def test_error_pages_read_in_chinese(world):
    seeded, ids = world
    known = identifiers(seeded.db_path)
    with TestClient(create_app(seeded.db_path, snapshot_dir=seeded.snapshot_dir)) as client:
        login(client, "zheng")  # team-2: hh-3-502 is not theirs
        refused = {path: client.get(path) for path in ("/households/hh-3-502", f"/alerts/{ids['door_opened']}",
                                                        "/audit", "/no-such-page")}
        csrf = login(client, "auditor")
        refused["auditor acknowledges"] = client.post(f"/alerts/{ids['door_opened']}/acknowledge",
                                                      data={"csrf": csrf})
        login(client, "chen")
        refused["resolved again"] = client.post(f"/alerts/{ids['fever']}/resolve",
                                                data={"csrf": login(client, "chen"), "verdict": "false_alarm"})
    statuses = {path: answer.status_code for path, answer in refused.items()}
    assert statuses == {"/households/hh-3-502": 404, f"/alerts/{ids['door_opened']}": 404, "/audit": 403,
                        "/no-such-page": 404, "auditor acknowledges": 403, "resolved again": 409}
    english = {path: english_in(visible(answer.text), known) for path, answer in refused.items()}
    assert english == {path: [] for path in refused}


@pytest.mark.parametrize("kind", [k.value for k in AlertKind])
def test_every_notification_kind_reads_in_chinese(kind):
    facts = AlertFacts(alert_id=7, kind=kind, household="hh-3-502", address="幸福里3号楼", unit="502",
                       at_local=datetime(2026, 11, 26, 4, 42, tzinfo=timezone(timedelta(hours=8), "CST")),
                       day=5, days=14, count=2, detail=DETAILS[kind], step=1, round=0,
                       snapshot_url="http://gw.example/s/abc", ack_url="http://gw.example/ack/xyz")
    title, body = render_message(facts, "zh")
    assert kind_name(kind, "zh") in title
    assert english_in(f"{title}\n{body}", ["hh-3-502", "cam-3502"]) == []
    english_title, english_body = render_message(facts, "en")
    assert kind_name(kind, "en") in english_title and detail_text(DETAILS[kind], "en") in english_body


def test_one_name_per_kind_on_board_phone_page_and_message():
    for kind in (k.value for k in AlertKind):
        for lang in ("zh", "en"):
            assert translator(lang)(kind) == ack_text.page_translator(lang)(kind) == kind_name(kind, lang)
        assert KINDS[kind]["zh"] != KINDS[kind]["en"]


def test_no_key_is_missing_in_either_language():
    assert set(EN) == set(ZH)
    assert set(ack_text.PAGE["zh"]) == set(ack_text.PAGE["en"])
    def used(paths) -> set[str]:
        return {m for path in paths for m in re.findall(r"\bt\('([a-z0-9_]+)'\)", path.read_text())}

    phone = list(TEMPLATES.glob("ack*.html"))  # the phone page: its own phrases, then the dashboard's names
    household = list(TEMPLATES.glob("resident*.html"))  # the household's page, likewise
    assert used(set(TEMPLATES.glob("*.html")) - set(phone) - set(household)) - set(ZH) == set()
    assert used(phone) - set(ZH) - set(ack_text.PAGE["zh"]) == set()
    assert set(resident_text.PAGE["zh"]) == set(resident_text.PAGE["en"])
    assert used(household) - set(ZH) - set(resident_text.PAGE["zh"]) == set()
    for status in (403, 404, 409, 422, 429, 502, 503):  # error.html builds these keys
        assert {f"error_title_{status}", f"error_text_{status}"} <= set(ZH)
    assert set(VERDICTS) - set(ZH) == set()
    assert {k.value for k in AlertKind} == set(KINDS) == set(OUTCOMES)
    roles = set(accounts.ROLES)
    assert roles - set(ZH) == set()


def test_just_now_instead_of_zero_minutes():
    zh, en = translator("zh"), translator("en")
    assert age_text(zh, 20) == "刚刚" and age_text(en, 20) == "just now"
    assert age_text(zh, 61) == "1 分钟前"


def test_the_login_page_speaks_the_browsers_last_language(seeded):
    with TestClient(create_app(seeded.db_path)) as client:
        first = client.get("/login").text
        assert "用户名" in first and "Username" not in first and 'hreflang="en"' in first
        switched = client.get("/login?lang=en&next=/households").text
        assert "Username" in switched and "用户名" not in switched and 'value="/households"' in switched
        assert "Username" in client.get("/login").text  # remembered in the browser
        login(client, "chen")  # chen reads Chinese: the next login page is in Chinese
        client.cookies.delete("isowatch_session")
        assert "用户名" in client.get("/login").text
