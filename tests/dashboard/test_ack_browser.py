"""The night shift on a phone, in real headless Chromium against the real gateway over a real Mosquitto.

A door opening is paged through Apprise to the local receiver; the social worker taps the link in the
message, reads the phone page (Chinese, site-local time, team with call links, what to do), taps
"我来处理" and then an outcome that fits a door: three taps from the message to resolved, no login.
A preview bot fetching the link first changes nothing. Screenshots in test-artifacts/ack/.
"""

from __future__ import annotations

import hashlib
import re

import cv2
import httpx
import numpy as np
import pytest

from isowatch.contract import DoorEvent, SnapshotMeta, TopicKind
from tests.conftest import REPO_ROOT
from tests.dashboard.test_browser import PHONE, browser, gateway  # noqa: F401 - the shared Chromium and gateway
from tests.support import query, wait_until

pytestmark = [pytest.mark.broker, pytest.mark.slow]

ARTIFACTS = REPO_ROOT / "test-artifacts" / "ack"


def door_snapshot() -> bytes:
    """A small JPEG of a half-open door, as the edge camera would send with the event."""
    image = np.full((240, 320, 3), (214, 222, 228), np.uint8)
    cv2.rectangle(image, (110, 30), (210, 235), (60, 90, 130), -1)
    cv2.fillPoly(image, [np.array([(110, 30), (160, 45), (160, 225), (110, 235)])], (40, 60, 90))
    cv2.circle(image, (150, 140), 5, (0, 190, 230), -1)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    return data.tobytes()


def unacknowledged(db_path) -> bool:
    return query(db_path, "SELECT acknowledged_by FROM alerts WHERE kind = 'door_opened'") == [(None,)]


def test_from_the_page_to_resolved_in_three_taps_on_a_phone_and_a_preview_bot_changes_nothing(browser, gateway):
    service, uplink, inbox = gateway
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    jpeg = door_snapshot()
    door = uplink.stamp(DoorEvent, type="door", state="open", exit_suspected=True)
    meta = SnapshotMeta(role="opened", sha256=hashlib.sha256(jpeg).hexdigest(), bytes=len(jpeg), width=320,
                        height=240, taken_at=door.device_time)
    door = door.model_copy(update={"snapshots": [meta]})
    uplink.send_raw(TopicKind.SNAPSHOT, jpeg, event_id=door.id)
    uplink.send(door)
    (message,) = wait_until(lambda: inbox.received("chen-social"), timeout=30, what="the page at the receiver")
    (link,) = [url for url in re.findall(r"http://127\.0\.0\.1:\d+/ack/\S+", message.body)
               if not url.endswith("/snapshot")]

    # A chat app's preview bot fetches the link (and its snapshot) before the person sees it.
    for _ in range(3):
        preview = httpx.get(link, headers={"User-Agent": "TelegramBot (like TwitterBot)"}, timeout=10)
        assert preview.status_code == 200
    assert unacknowledged(service.db_path), "the preview bot acknowledged for the person"

    context = browser.new_context(viewport=PHONE, device_scale_factor=1, is_mobile=True, has_touch=True,
                                  locale="zh-CN", timezone_id="Asia/Shanghai")
    page = context.new_page()
    taps = 0
    try:
        page.goto(inbox.page)  # the message as the chat app shows it
        page.screenshot(path=str(ARTIFACTS / "00-message-in-chat.png"))
        page.click(f"a[href='{link}']")
        taps += 1
        page.wait_for_url(link)
        page.locator("img.snapshot").evaluate("img => img.complete || new Promise(r => img.onload = r)")
        text = page.inner_text("main")
        assert "开门" in text and "door_opened" not in text
        assert "幸福里7号楼 101" in text and "Asia/Shanghai 时间（UTC+08:00）" in text
        assert "拨打 +86 138 0000 0101" in text  # the team leader, one tap away
        assert page.locator("a.call[href^='tel:']").count() == 3  # everyone on the team but the reader
        assert "电话联系住户" in text  # what to do for a door opening
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], "scrolls sideways"
        handle = page.locator("#handle")
        assert handle.is_visible() and handle.bounding_box()["y"] + handle.bounding_box()["height"] <= PHONE["height"]
        page.screenshot(path=str(ARTIFACTS / "01-ack-page-zh.png"), full_page=True)
        assert unacknowledged(service.db_path)

        handle.tap()
        taps += 1
        page.wait_for_url("**done=handling#act")
        assert query(service.db_path, "SELECT acknowledged_by, next_step_at FROM alerts") == [("chen-social", None)]
        assert "你正在处理" in page.inner_text("#act")
        offered = page.locator("button[name=verdict]").all_inner_texts()
        assert offered == ["属实违规", "误报", "获准外出"]
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        page.screenshot(path=str(ARTIFACTS / "02-handling-zh.png"), full_page=True)

        page.locator("button[name=verdict][value=authorised_exit]").tap()
        taps += 1
        page.wait_for_url("**done=resolved#act")
        assert "获准外出" in page.inner_text("#act") and "陈社工" in page.inner_text("#act")
        page.screenshot(path=str(ARTIFACTS / "03-resolved-zh.png"), full_page=True)
        assert taps <= 3
        assert query(service.db_path, "SELECT state, verdict, resolved_by FROM alerts") == [
            ("resolved", "authorised_exit", "chen-social")]
        trail = query(service.db_path, "SELECT who, action FROM audit_log WHERE action LIKE 'alert.%' ORDER BY id")
        assert trail == [("chen-social", "alert.acknowledge"), ("chen-social", "alert.resolve")]

        page.click("a.switch")  # the same page in English, for a reader who needs it
        page.wait_for_url("**lang=en")
        assert "Outcome: Authorised exit (陈社工" in page.inner_text("#act")
        assert "Call +86 138 0000 0101" in page.inner_text("main")
        page.screenshot(path=str(ARTIFACTS / "04-resolved-en.png"), full_page=True)

        page.click("a.dashboard")  # "open in dashboard": the login, then the alert itself
        page.wait_for_url("**/login?next=/alerts/*")
    finally:
        context.close()
