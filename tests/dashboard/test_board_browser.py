"""The live board in real Chromium at 390x844 in Chinese: the dashboard stops, the board
says so within 5 s, an alert opens meanwhile, the dashboard comes back on the same address and the board
catches up without a reload; then a logout in another tab ends the stream, and an acknowledge pressed on
the stale board is kept through the login and done with one more tap. Screenshots in test-artifacts/."""

from __future__ import annotations

import sqlite3

import pytest

from tests.dashboard.live import LiveDashboard
from tests.dashboard.test_board_health import open_alert
from tests.dashboard.test_browser import ARTIFACTS, PHONE, browser, console_errors  # noqa: F401 - fixture
from tests.dashboard.world import PASSWORD
from tests.support import query

pytestmark = [pytest.mark.slow]


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=False)


def log_in(page, next_url: str) -> None:
    page.fill("input[name=username]", "chen")
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action='/login'] button")
    page.wait_for_url(next_url)


def test_the_board_says_when_it_stops_catches_up_and_keeps_an_action_through_the_login(browser, seeded):
    live = LiveDashboard(seeded.db_path, seeded.snapshot_dir).start()
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    page = context.new_page()
    errors = console_errors(page)
    try:
        page.goto(f"{live.base}/")
        log_in(page, f"{live.base}/")
        page.wait_for_selector("#live:not([hidden])")
        page.wait_for_selector("#stream-banner", state="hidden")
        # The sound is opt-in and the choice survives a reload.
        sound = page.locator("#sound")
        assert sound.get_attribute("aria-pressed") == "false" and "关" in sound.inner_text()
        sound.click()
        assert sound.get_attribute("aria-pressed") == "true" and "开" in sound.inner_text()
        page.reload()
        page.wait_for_selector("#live:not([hidden])")
        assert page.locator("#sound").get_attribute("aria-pressed") == "true"
        page.evaluate("window.__notReloaded = true")

        live.stop()  # every stream it served is closed when this returns
        page.wait_for_selector("#stream-banner[data-state=lost]", timeout=5_000)
        assert "实时更新已中断" in page.inner_text("#stream-banner")
        assert page.locator("#live").is_hidden()
        shot(page, "10-board-stream-lost-phone")

        fever = open_alert(seeded.db_path, kind="fever")  # raised while the board is disconnected
        live.start()
        card = page.locator(f"li.alert[data-alert='{fever}']")
        card.wait_for(timeout=30_000)
        assert "发热" in card.inner_text()
        assert f"#{fever} 发热" in page.inner_text("#missed")
        assert page.evaluate("window.__notReloaded") is True  # caught up over the stream, not by a reload
        page.wait_for_selector("#live:not([hidden])")
        assert int(page.get_attribute("#board", "data-chimes") or 0) >= 1  # the opted-in sound was played
        shot(page, "11-board-caught-up-phone")

        other_tab = context.new_page()
        other_tab.goto(f"{live.base}/households")
        other_tab.click("form[action='/logout'] button")
        other_tab.wait_for_url(f"{live.base}/login")
        other_tab.close()
        page.wait_for_selector("#stream-banner[data-state=ended]", timeout=10_000)
        assert "登录已失效" in page.inner_text("#stream-banner")
        assert page.locator("#stream-banner .login-again").is_visible()
        shot(page, "12-board-session-ended-phone")

        card.locator("form[action$='/acknowledge'] button").click()  # pressed on the stale board
        page.wait_for_url("**/login?**")
        assert "登录后将回到该告警" in page.inner_text("main")
        log_in(page, f"{live.base}/alerts/{fever}?pending=acknowledge#act")
        assert "尚未生效" in page.inner_text("#pending")
        shot(page, "13-alert-pending-acknowledge-phone")
        assert query(seeded.db_path, "SELECT acknowledged_by FROM alerts WHERE id = ?", (fever,)) == [(None,)]
        page.click("form.pending-action button")
        page.wait_for_url(f"{live.base}/alerts/{fever}?done=acknowledged")
        assert query(seeded.db_path, "SELECT acknowledged_by FROM alerts WHERE id = ?",
                     (fever,)) == [("chen-social",)]
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"the alert page scrolls sideways on a phone ({width}px)"
        # Refused loads while the server was down or the session over are expected; a CSP refusal is not.
        assert [e for e in errors if "Content Security Policy" in e or not e.startswith("Failed to load")] == []
    finally:
        context.close()
        live.stop()


def test_the_new_pages_fit_a_phone_in_chinese(browser, seeded):
    """Mine, the alert's steps, the resident's call button, user management and the password page, at 390 px."""
    conn = sqlite3.connect(seeded.db_path)
    with conn:
        conn.execute("UPDATE users SET language = 'zh'")
    conn.close()
    live = LiveDashboard(seeded.db_path, seeded.snapshot_dir).start()
    fever = open_alert(seeded.db_path, kind="fever")
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    page = context.new_page()
    errors = console_errors(page)
    try:
        for username, walk in (
                ("chen", [("/?mine=1", "20-board-mine-phone"), (f"/alerts/{fever}", "21-alert-steps-phone"),
                          ("/households/hh-3-502", "22-household-resident-phone"),
                          ("/me/password", "23-change-password-phone")]),
                ("admin", [("/users", "24-users-phone"), ("/events", "25-event-filters-phone")])):
            page.goto(f"{live.base}/login")
            page.fill("input[name=username]", username)
            page.fill("input[name=password]", PASSWORD)
            page.click("form[action='/login'] button")
            page.wait_for_url(f"{live.base}/")
            for path, name in walk:
                page.goto(f"{live.base}{path}")
                width = page.evaluate("document.documentElement.scrollWidth")
                assert width <= PHONE["width"], f"{path} scrolls sideways on a phone ({width}px)"
                shot(page, name)
            page.click("form[action='/logout'] button")
            page.wait_for_url(f"{live.base}/login")
        assert [e for e in errors if "Content Security Policy" in e or not e.startswith("Failed to load")] == []
    finally:
        context.close()
        live.stop()
