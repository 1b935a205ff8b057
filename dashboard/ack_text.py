"""Words of the acknowledge link's phone page, in Chinese and English.

Alert kinds, roles and outcomes are named by dashboard.i18n and what to do per kind comes from
gateway.vocabulary, so the phone page and the board use the same words; this module adds the page's own
phrases. A missing key in one language is a test failure (tests/dashboard/test_ack_page.py), not a silent
fallback.
"""

from __future__ import annotations

from collections.abc import Callable

from dashboard.i18n import MESSAGES
from gateway.vocabulary import TODO as TODO  # what to do, per language and alert kind (read from here too)

PAGE: dict[str, dict[str, str]] = {
    "zh": {
        "title": "告警处理", "what": "发生了什么", "where": "住户", "when": "时间",
        "count": "本告警已累计 {n} 次", "temperature": "体温 {value}", "team": "小组成员", "you": "（你）",
        "call": "拨打", "no_phone": "未登记电话", "todo": "该怎么做", "handle": "我来处理",
        "handling_you": "你正在处理（{time} 起）。处理完毕后，选择结果：",
        "handling_other": "{name} 正在处理（{time} 起）。处理完毕后可选择结果：",
        "outcome": "处理结果", "note": "备注（可选）", "resolved": "已处理完毕",
        "resolved_text": "处理结果：{outcome}（{name}，{time}）", "open_dashboard": "在控制台中打开",
        "switch": "English", "expired_title": "链接已过期", "expired_text": "请登录控制台查看告警 #{id}。",
        "invalid_title": "链接无效", "invalid_text": "此链接无效或已停用。",
        "bad_form_title": "页面已过时", "bad_form_text": "请重新打开通知中的链接后再操作。",
        "unfit_title": "无法提交", "unfit_text": "此结果不适用于这类告警，请重新打开链接选择。",
        "snapshot": "现场抓拍", "link_for": "此链接发给 {name}，{time} 前有效。", "zone": "{zone} 时间（UTC{offset}）",
    },
    "en": {
        "title": "Alert", "what": "What happened", "where": "Household", "when": "When",
        "count": "{n} times so far", "temperature": "Temperature {value}", "team": "Team", "you": " (you)",
        "call": "Call", "no_phone": "no phone number on file", "todo": "What to do", "handle": "I'm handling it",
        "handling_you": "You are handling this (since {time}). When done, choose the outcome:",
        "handling_other": "{name} is handling this (since {time}). When done, choose the outcome:",
        "outcome": "Outcome", "note": "Note (optional)", "resolved": "Resolved",
        "resolved_text": "Outcome: {outcome} ({name}, {time})", "open_dashboard": "Open in dashboard",
        "switch": "中文", "expired_title": "This link has expired",
        "expired_text": "Log in to the dashboard to see alert #{id}.",
        "invalid_title": "Invalid link", "invalid_text": "This link is not valid or no longer active.",
        "bad_form_title": "This page is out of date", "bad_form_text": "Open the link in the notification again.",
        "unfit_title": "Not accepted", "unfit_text": "That outcome does not fit this alert; open the link again.",
        "snapshot": "Snapshot", "link_for": "This link is for {name}, valid until {time}.", "zone": "{zone} time (UTC{offset})",
    },
}

# A group's page (a storm's alerts of one kind for one team, gateway/groups.py): its own phrases.
GROUP_PAGE: dict[str, dict[str, str]] = {
    "zh": {"group_no": "组 #{id}", "group_size": "住户", "group_count": "待处理 {live} 户（共 {all} 户）",
           "handle_group": "我来处理（全组）", "group_handle_hint": "点一次即为全组住户确认处理，之后加入本组的住户也由你处理。",
           "group_outcome": "为待处理的 {n} 户选择结果", "group_members": "本组住户",
           "member_taken": "已有人处理", "member_open": "待处理", "group_resolved_text": "全组已处理完毕（{time}）",
           "group_expired_text": "请登录控制台查看告警组 #{id}。"},
    "en": {"group_no": "group #{id}", "group_size": "Households", "group_count": "{live} to handle ({all} in all)",
           "handle_group": "I'm handling it (whole group)",
           "group_handle_hint": "One tap takes every household of the group, and those that join it later.",
           "group_outcome": "Outcome for the {n} households left", "group_members": "Households in this group",
           "member_taken": "being handled", "member_open": "to handle", "group_resolved_text": "All resolved ({time})",
           "group_expired_text": "Log in to the dashboard to see alert group #{id}."},
}
for _language, _phrases in GROUP_PAGE.items():
    PAGE[_language].update(_phrases)
    PAGE[_language]["group_expired_title"] = PAGE[_language]["expired_title"]

def page_translator(language: str) -> Callable[..., str]:
    """Page phrases first, then the dashboard's names (alert kinds, roles, outcomes), in one language."""
    table = {**MESSAGES[language], **PAGE[language]}

    def t(key: str, **values: object) -> str:
        text = table[key]
        return text.format(**values) if values else text

    return t
