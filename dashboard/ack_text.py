"""Words of the acknowledge link's phone page, in Chinese and English, and what to do per alert kind.

Alert kinds, roles and outcomes are named by dashboard.i18n, so the phone page and the board use the
same names; this module adds the page's own phrases. A missing key in one language is a test failure
(tests/dashboard/test_ack_page.py), not a silent fallback.
"""

from __future__ import annotations

from collections.abc import Callable

from dashboard.i18n import MESSAGES


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

# A few short steps per alert kind: what the person who took the page does next.
TODO: dict[str, dict[str, tuple[str, ...]]] = {
    "zh": {
        "door_opened": ("电话联系住户，问清开门原因。", "有人外出或无法联系：通知社区民警，上门核实。",
                        "核实后选择结果；获准外出（就医、送物）请备注原因。"),
        "repeated_door": ("多次开门：上门核实，并提醒隔离要求。", "仍不配合：通知社区民警和组长。"),
        "fever": ("电话询问症状，请医务人员上门复测体温。", "体温 ≥ 38.5 °C 或呼吸困难：立即安排转诊。",
                  "复测正常：选择“测量有误”并备注。"),
        "implausible_reading": ("请住户按说明重新测量（腋下 5 分钟）。", "读数仍异常：检查或更换体温计。"),
        "missed_reading": ("电话提醒住户测量体温。", "联系不上：上门查看住户情况。"),
        "device_offline": ("请住户检查设备电源和网络。", "仍离线：安排上门检修，期间电话确认住户在家。"),
        "camera_tampered": ("查看抓拍，电话询问住户。", "摄像头被遮挡或移动：上门复位并提醒住户。"),
        "welfare_check": ("独居或行动不便的住户长时间无动静：立即电话联系。", "无人接听：立即上门，必要时联系医务人员。"),
        "sensor_disagree": ("摄像头与门磁结果不一致：查看抓拍，电话核实是否开门。", "确认为设备问题：安排检修。"),
        "help_request": ("住户通过自己的链接求助：先点“我来处理”，住户页面会显示“工作人员正在处理”。",
                         "电话联系住户，安排物资、药品或上门。", "办妥后选择结果，住户页面显示“已处理完毕”。"),
        "visit_approval": ("住户报备外出就医：电话核实医院、时间和交通（闭环转运）。",
                           "同意：选择“批准外出就医”，报备时间内开门不再通知；不同意：选择“不批准外出”并告知住户。"),
    },
    "en": {
        "door_opened": ("Call the household and ask why the door opened.",
                        "Someone went out or nobody answers: tell the police officer and check on site.",
                        "Then choose the outcome; for an authorised exit (hospital, supplies) add a note."),
        "repeated_door": ("Repeated openings: visit, and remind them of the isolation rules.",
                          "Still not cooperating: tell the police officer and the team leader."),
        "fever": ("Call about symptoms and ask the medical worker to measure again on site.",
                  "38.5 °C or more, or breathing difficulty: arrange a referral now.",
                  "Normal when measured again: choose \"Measurement error\" and add a note."),
        "implausible_reading": ("Ask the resident to measure again as instructed (armpit, 5 minutes).",
                                "Still implausible: check or replace the thermometer."),
        "missed_reading": ("Call and remind the resident to take a reading.",
                           "Nobody answers: visit and check on the resident."),
        "device_offline": ("Ask the household to check the device's power and network.",
                           "Still offline: arrange a repair visit; meanwhile confirm by phone they are in."),
        "camera_tampered": ("Look at the snapshot and call the household.",
                            "Covered or moved: visit, put it right and remind the household."),
        "welfare_check": ("A resident living alone or with a disability has shown no sign of activity: call now.",
                          "No answer: visit at once; bring in the medical worker if needed."),
        "sensor_disagree": ("Camera and door contact disagree: look at the snapshot and call to confirm.",
                            "A device fault: arrange a repair."),
        "help_request": ("The household asked through its own link: take it first, and their page shows "
                         "\"someone is on it\".", "Call them; arrange the supplies, medicine or a visit.",
                         "When done, choose the outcome: their page shows \"done\"."),
        "visit_approval": ("The household announced a hospital visit: call to confirm hospital, time and transport.",
                           "Agreed: choose \"Visit approved\" (openings in its window then page nobody); "
                           "otherwise \"Visit refused\" and tell them."),
    },
}


def page_translator(language: str) -> Callable[..., str]:
    """Page phrases first, then the dashboard's names (alert kinds, roles, outcomes), in one language."""
    table = {**MESSAGES[language], **PAGE[language]}

    def t(key: str, **values: object) -> str:
        text = table[key]
        return text.format(**values) if values else text

    return t
