"""In headless Chromium at 390x844 in Chinese: site-local times on the pages a night shift reads, the compact
phone header, the on-no-team notice, and /api/docs working with no request leaving this machine.

The dashboard runs under uvicorn on the seeded world of test_local_times (clock at 2026-11-25 20:45 UTC,
04:45 the next morning in Shanghai). Screenshots go to test-artifacts/dashboard-times/.
"""

from __future__ import annotations

import sqlite3
import threading
from urllib.parse import urlsplit

import pytest
import uvicorn

from dashboard.app import create_app
from isowatch.clock import ManualClock
from tests.conftest import REPO_ROOT
from tests.dashboard.test_browser import CHROMIUM_ARGS, PHONE, browser, console_errors  # noqa: F401
from tests.dashboard.test_local_times import NOW, world  # noqa: F401
from tests.dashboard.world import PASSWORD
from tests.support import wait_until

pytestmark = [pytest.mark.slow]
ARTIFACTS = REPO_ROOT / "test-artifacts" / "dashboard-times"
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
HEADER_MAX_PX = 70


@pytest.fixture(scope="module")
def server(world):
    seeded, _ = world
    conn = sqlite3.connect(seeded.db_path)
    with conn:
        conn.execute("UPDATE users SET language = 'zh'")  # every screenshot in Chinese
    conn.close()
    app = create_app(seeded.db_path, clock=ManualClock(NOW), snapshot_dir=seeded.snapshot_dir)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=1)
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    wait_until(lambda: running.started, timeout=30, what="uvicorn to start")
    port = running.servers[0].sockets[0].getsockname()[1]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield f"http://127.0.0.1:{port}"
    running.should_exit = True
    thread.join(10)


@pytest.fixture
def phone(browser):
    """A phone-sized context whose every request to another host is refused and recorded."""
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True,
                                  locale="zh-CN")
    outside: list[str] = []

    def guard(route) -> None:  # type: ignore[no-untyped-def]
        if urlsplit(route.request.url).hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", guard)
    page = context.new_page()
    page.outside = outside  # type: ignore[attr-defined]
    yield page
    context.close()


def log_in(page, base: str, username: str) -> None:
    page.goto(f"{base}/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action='/login'] button")
    page.wait_for_url(f"{base}/")


def shot(page, name: str, full_page: bool = True) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=full_page)


def fits_the_phone(page) -> None:
    header = page.evaluate("document.querySelector('body > header').getBoundingClientRect().height")
    assert header <= HEADER_MAX_PX, f"the header takes {header} px of an 844 px screen"
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # no sideways scrolling


def test_api_docs_render_the_operations_with_nothing_loaded_from_outside(server, phone):
    errors = console_errors(phone)
    phone.goto(f"{server}/api/docs")
    phone.locator(".opblock").first.wait_for(timeout=30_000)
    assert phone.locator(".opblock").count() > 25  # every operation of /api/v1
    phone.locator(".opblock-summary", has_text="/api/v1/alerts/{alert_id}/resolve").first.click()
    phone.locator(".opblock-body .model-example").first.wait_for(timeout=10_000)  # its request schema renders
    assert phone.outside == []  # type: ignore[attr-defined]
    assert errors == []  # a script or style the CSP refused shows up here
    shot(phone, "07-api-docs-offline-phone")


def test_night_shift_pages_in_site_time_on_a_phone(server, phone):
    errors = console_errors(phone)
    log_in(phone, server, "chen")
    card = phone.locator("li.alert").first
    assert "2026-11-26 04:42 (UTC+08:00)" in card.inner_text()
    fits_the_phone(phone)
    shot(phone, "01-board-local-time-phone")

    card.locator("a.title").click()
    phone.wait_for_url("**/alerts/*")
    assert "2026-11-26 04:42 (UTC+08:00)" in phone.inner_text("main")
    fits_the_phone(phone)
    shot(phone, "02-alert-local-time-phone")

    phone.goto(f"{server}/households/hh-3-502")
    assert phone.locator("svg.chart.body circle.dot").count() >= 1
    assert phone.locator("svg.chart.room").count() == 1
    timeline = phone.inner_text("ol.timeline")
    assert "体温" in timeline and "室温" in timeline and "(UTC+08:00)" in timeline
    fits_the_phone(phone)
    shot(phone, "03-household-chart-phone", full_page=False)  # what the phone shows first: the charts

    phone.goto(f"{server}/events")
    phone.fill("input[name=since]", "2026-11-25")
    phone.fill("input[name=until]", "2026-11-25")
    phone.select_option("select[name=household]", "hh-7-101")  # a picker by name; the value is the id
    phone.click("#filters button.primary")
    phone.wait_for_url("**/events?*since=2026-11-25*")
    assert "2026-11-25 23:30:00 UTC+08:00" in phone.inner_text("#log")
    assert "2026-11-26 00:30" not in phone.inner_text("#log")
    fits_the_phone(phone)
    shot(phone, "04-event-log-local-day-phone")
    assert phone.outside == [] and errors == []  # type: ignore[attr-defined]


def test_audit_log_reads_as_names_on_a_phone(server, phone):
    errors = console_errors(phone)
    log_in(phone, server, "wang")
    phone.goto(f"{server}/households/hh-3-502")
    phone.context.clear_cookies()
    log_in(phone, server, "admin")
    phone.goto(f"{server}/audit")
    table = phone.inner_text("#audit")
    assert "查看住户" in table and "幸福里3号楼 502" in table and "王队长" in table
    fits_the_phone(phone)
    shot(phone, "05-audit-log-phone")
    phone.goto(f"{server}/reports")
    fits_the_phone(phone)
    shot(phone, "06-report-local-days-phone")
    assert errors == []


def test_a_user_on_no_team_is_told_so_on_a_phone(server, phone):
    log_in(phone, server, "newbie")
    assert "你不在任何小组" in phone.inner_text("main")
    assert "没有未关闭的告警" not in phone.inner_text("main")
    fits_the_phone(phone)
    shot(phone, "08-no-team-phone")
