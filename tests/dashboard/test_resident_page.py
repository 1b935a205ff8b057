"""The household's page and JSON API through the dashboard app: both languages complete, only the page's own
forms act, the JSON API refuses what is not JSON, the household page issues and revokes the link for its
team (not for auditors or other teams), and the QR code printed for the notice reads back as the link.
The walk through the real gateway is in test_resident_browser.py and tests/gateway/test_resident_e2e.py."""

from __future__ import annotations

import re
import sqlite3
from datetime import datetime, timezone

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from dashboard import resident_text
from dashboard.app import create_app
from gateway.policy import load_policy
from gateway.resident import ResidentDesk, ResidentLinks
from isowatch.clock import ManualClock
from tests.dashboard.world import login


@pytest.fixture
def world(seeded):
    clock = ManualClock(datetime.now(timezone.utc))
    desk = ResidentDesk(seeded.db_path, ResidentLinks("test-secret", clock, load_policy()), "http://testserver")
    client = TestClient(create_app(seeded.db_path, resident_desk=desk, clock=clock))
    link = desk.issue("hh-3-502", by="test").removeprefix("http://testserver")
    return desk, client, link, seeded


def form_token(page: str) -> str:
    return re.search(r'name="form" value="([0-9a-f]+)"', page).group(1)


def test_both_languages_have_every_phrase():
    assert set(resident_text.PAGE["zh"]) == set(resident_text.PAGE["en"])


@pytest.mark.parametrize(("language", "words"), [("zh", ["隔离第 6 天（共 14 天）", "报备短暂开门", "报告体温", "求助"]),
                                                 ("en", ["Isolation day 6 of 14", "Announce a short opening",
                                                         "Report a temperature", "Ask for help"])])
def test_the_page_is_in_the_households_language_with_a_switch(world, language, words):
    desk, client, link, seeded = world
    conn = sqlite3.connect(seeded.db_path)
    with conn:
        conn.execute("UPDATE households SET language = ? WHERE household = 'hh-3-502'", (language,))
    conn.close()
    page = client.get(link)
    assert page.status_code == 200 and all(w in page.text for w in words)
    assert page.headers["cache-control"] == "no-store" and page.headers["referrer-policy"] == "no-referrer"
    assert "<script" not in page.text and "style=" not in page.text  # strict CSP: nothing inline
    other = "en" if language == "zh" else "zh"
    assert client.get(link, params={"lang": other}).text != page.text
    client.post(f"{link}/help", json={"kind": "supplies", "text": "rice"})
    client.post(f"{link}/announce", json={"minutes": 5, "reason": "delivery"})
    if language == "en":  # no Chinese but the registry's own names and the switch link
        text = re.sub(r"<[^>]+>", " ", client.get(link).text)
        leftovers = re.findall(r"[\u3000-\u9fff\uff00-\uffef]+", text)
        assert set(leftovers) <= {"幸福里", "号楼", "王队长", "赵警官", "陈社工", "中文"}, leftovers


def test_only_the_pages_own_forms_act_and_the_api_takes_json_only(world):
    desk, client, link, seeded = world
    forged = client.post(f"{link}/help", data={"kind": "supplies", "form": "0" * 32}, follow_redirects=False)
    assert forged.status_code == 403
    missing = client.post(f"{link}/help", data={"kind": "supplies"}, follow_redirects=False)
    assert missing.status_code == 403
    plain = client.post(f"{link}/help", content=b'{"kind": "supplies"}', headers={"Content-Type": "text/plain"})
    assert plain.status_code == 415  # what a form on another site could send
    assert client.post(f"{link}/help", content=b"{nope", headers={"Content-Type": "application/json"}).status_code == 422
    assert client.post(f"{link}/help", json=["supplies"]).status_code == 422
    huge = client.post(f"{link}/help", json={"kind": "other", "text": "x" * 5000})
    assert huge.status_code == 413
    assert client.post(f"{link}/help", json={"kind": "other", "text": "x" * 501}).json()["error"] == "too_long"
    assert client.post(f"{link}/help", json={"kind": "pizza"}).json()["error"] == "bad_kind"
    assert client.post(f"{link}/announce", json={"minutes": 31, "reason": "rubbish"}).json()["error"] == "bad_minutes"
    assert client.post(f"{link}/announce", json={"minutes": 2.5, "reason": "rubbish"}).json()["error"] == "bad_minutes"
    assert client.post(f"{link}/temperature", json={"celsius": 36.6, "method": "x"}).json()["error"] == "bad_method"
    assert sqlite3.connect(seeded.db_path).execute("SELECT count(*) FROM resident_requests").fetchone()[0] == 0
    page = client.get(link).text
    done = client.post(f"{link}/help", data={"kind": "supplies", "text": "米", "form": form_token(page), "lang": "zh"},
                       follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"].startswith(f"{link}?lang=zh&done=help")
    assert "求助已发送" in client.get(done.headers["location"]).text


def test_a_refused_form_keeps_what_was_typed_and_says_why_in_the_section(world):
    desk, client, link, _ = world
    page = client.get(link).text
    refused = client.post(f"{link}/temperature", data={"celsius": "3.68", "form": form_token(page), "lang": "en"})
    assert refused.status_code == 422
    section = refused.text.split('id="temperature"')[1].split("</section>")[0]
    assert "That temperature is not likely" in section and 'value="3.68"' in section


def test_the_household_page_issues_and_revokes_the_link_for_its_team_only(world):
    desk, client, link, seeded = world
    csrf = login(client, "chen")
    page = client.get("/households/hh-3-502").text
    assert f"http://testserver{link}" in page
    revoked = client.post("/households/hh-3-502/resident-link/revoke", data={"csrf": csrf}, follow_redirects=False)
    assert revoked.status_code == 303 and client.get(link).status_code == 404
    assert "发放链接" in client.get("/households/hh-3-502").text  # chen reads Chinese
    assert client.post("/households/hh-3-502/resident-link", data={"csrf": "guess"}).status_code == 403
    client.post("/households/hh-3-502/resident-link", data={"csrf": csrf})
    new = desk.current_url("hh-3-502")
    assert new and not new.endswith(link)
    assert client.post("/households/hh-9-301/resident-link", data={"csrf": csrf}).status_code == 404  # team-2
    auditor = TestClient(client.app)
    auditor_csrf = login(auditor, "auditor")
    assert auditor.post("/households/hh-3-502/resident-link/revoke", data={"csrf": auditor_csrf}).status_code == 403
    assert desk.current_url("hh-3-502") == new


def test_the_qr_code_for_the_notice_reads_back_as_the_link(seeded, tmp_path):
    cv2 = pytest.importorskip("cv2")
    from isowatch_app.cli import cli

    qr = tmp_path / "notice.png"
    result = CliRunner().invoke(cli, ["admin", "resident-link", "hh-3-502", "--db", str(seeded.db_path),
                                      "--public-url", "https://iso.example.org/", "--qr", str(qr)])
    assert result.exit_code == 0, result.output
    link = result.output.strip().splitlines()[-1]
    assert re.fullmatch(r"https://iso\.example\.org/r/[A-Za-z0-9_.-]+", link)
    # OpenCV's classic QR detector misreads about 2 % of valid codes that the ArUco-based detector reads;
    # a test must not fail on the reader's flakiness.
    decoded, _, _ = cv2.QRCodeDetectorAruco().detectAndDecode(cv2.imread(str(qr)))
    assert decoded == link
    unknown = CliRunner().invoke(cli, ["admin", "resident-link", "nobody", "--db", str(seeded.db_path),
                                       "--public-url", "https://iso.example.org"])
    assert unknown.exit_code != 0 and "no such household" in unknown.output
