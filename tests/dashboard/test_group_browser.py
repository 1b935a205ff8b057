"""A storm's group page on a phone, in real headless Chromium: a street's devices fall silent over a
real Mosquitto, the gateway pages the group through Apprise to the local receiver, and the social worker
opens the link at 390x844 in Chinese: the count, the street and the site time, every household listed,
"我来处理（全组）" within the first screen, then one outcome for all. Screenshots in test-artifacts/group/.
"""

from __future__ import annotations

import re

import pytest

from gateway.inbox import LocalInbox
from isowatch_app.site import SiteService
from tests.conftest import REPO_ROOT
from tests.dashboard import test_browser
from tests.gateway.test_storm_e2e import POLICY, Street, group_pages
from tests.support import query, wait_until

pytestmark = [pytest.mark.broker, pytest.mark.slow]
PHONE = test_browser.PHONE
browser = test_browser.browser  # the shared Chromium (a module-scoped fixture)

ARTIFACTS = REPO_ROOT / "test-artifacts" / "group"


def test_the_group_page_on_a_phone_in_chinese_takes_and_closes_the_whole_storm(browser, mosquitto, tmp_path):
    db = tmp_path / "gw.db"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with LocalInbox() as inbox:
        street = Street(mosquitto, db, inbox, 12)
        service = SiteService(db, mosquitto.url(), http_port=0, policy=POLICY).start()
        context = browser.new_context(viewport=PHONE, device_scale_factor=1, is_mobile=True, has_touch=True,
                                      locale="zh-CN", timezone_id="Asia/Shanghai")
        try:
            street.heartbeat(list(street.devices))
            (message,) = wait_until(lambda: group_pages(inbox), timeout=60, what="the group page")
            link = re.search(r"(http://127\.0\.0\.1:\d+/ack/group/\S+)", message.body).group(1)
            wait_until(lambda: query(db, "SELECT count(group_id) FROM alerts WHERE kind = 'device_offline'") == [(12,)],
                       timeout=60, what="every household in the group")
            page = context.new_page()
            page.goto(link)
            text = page.inner_text("main")
            assert re.search(r"Xingfu Street 12 户设备离线（\d\d:\d\d 起）", text)
            assert "Asia/Shanghai 时间（UTC+08:00）" in text and "待处理 12 户（共 12 户）" in text
            assert page.locator("li.member").count() == 12 and "幸福里10号楼 101" in text
            assert "device_offline" not in text and "请住户检查设备电源和网络" in text  # what to do, in Chinese
            assert re.search(r"设备 dev-s-000 自 \d{4}-\d\d-\d\d \d\d:\d\d 起无信号", text)  # site time, not UTC
            assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], "scrolls sideways"
            handle = page.locator("#handle")
            box = handle.bounding_box()
            assert handle.is_visible() and box["y"] + box["height"] <= PHONE["height"]  # on the first screen
            page.screenshot(path=str(ARTIFACTS / "01-group-zh.png"), full_page=True)

            handle.tap()
            page.wait_for_url("**done=handling#act")
            assert "你正在处理" in page.inner_text("#act")
            assert query(db, "SELECT DISTINCT acknowledged_by FROM alerts WHERE kind = 'device_offline'") == [
                ("chen-social",)]
            outcomes = page.locator("button[name=verdict]").all_inner_texts()
            assert outcomes == ["设备已恢复在线", "设备故障", "已上门查看"]
            page.screenshot(path=str(ARTIFACTS / "02-handling-zh.png"), full_page=True)

            page.fill("textarea[name=note]", "小区停电，已恢复")
            page.locator("button[name=verdict][value=back_online]").tap()
            page.wait_for_url("**done=resolved#act")
            assert "全组已处理完毕" in page.inner_text("#act")
            closed = query(db, "SELECT DISTINCT verdict, note, resolved_by FROM alerts WHERE kind = 'device_offline'")
            assert closed == [("back_online", "小区停电，已恢复", "chen-social")]
            assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
            page.screenshot(path=str(ARTIFACTS / "03-resolved-zh.png"), full_page=True)

            page.click("a.switch")
            page.wait_for_url("**lang=en")
            assert "All resolved" in page.inner_text("#act") and "Back online" in page.inner_text("main")
            page.screenshot(path=str(ARTIFACTS / "04-resolved-en.png"), full_page=True)
        finally:
            context.close()
            street.close()
            service.stop()
