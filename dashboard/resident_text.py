"""Words of the household's phone page (the resident link), in Chinese and English.

Plain, short sentences for residents who may be unwell, elderly or anxious: what they can do, what
happens next, who will call. Role names come from dashboard.i18n so staff and residents read the same
words. A key missing in one language is a test failure (tests/dashboard/test_resident_page.py).
"""

from __future__ import annotations

from collections.abc import Callable

from dashboard.i18n import MESSAGES

PAGE: dict[str, dict[str, str]] = {
    "zh": {
        "title": "居家隔离", "switch": "English", "day": "隔离第 {day} 天（共 {days} 天）",
        "until": "隔离至 {date}（含当天）", "privacy": "此页面只显示您家的信息，请勿转发链接。",
        "announce": "报备短暂开门", "announce_text": "开门前先报备，报备时间内开门不会通知工作人员。",
        "reason": "原因", "reason_rubbish": "倒垃圾", "reason_delivery": "取快递/物资", "reason_hospital": "去医院",
        "reason_other": "其他", "minutes": "需要几分钟（1-{max}）", "announce_button": "报备开门",
        "announce_left": "今天还可报备 {n} 次。", "hospital_note": "去医院需工作人员批准，批准前开门仍会通知工作人员。",
        "temperature": "报告体温", "celsius": "体温（°C）", "method": "测量方式", "temperature_button": "提交体温",
        "method_unknown": "不确定", "method_axillary": "腋下", "method_oral": "口腔", "method_forehead": "额头",
        "method_tympanic": "耳温", "method_rectal": "肛温",
        "help": "求助", "help_kind": "需要什么帮助", "help_supplies": "生活物资", "help_medicine": "药品",
        "help_symptoms": "身体不适", "help_mental_health": "心理支持", "help_other": "其他",
        "help_text": "简单说明（可不填）", "help_button": "发送求助",
        "mine": "我的报备和求助", "none_yet": "暂无。",
        "announced": "{reason}：{start}–{end}", "request": "{kind}：{text}", "approval_waiting": "等待批准", "approval_approved": "已批准",
        "approval_refused": "未批准，请联系工作人员",
        "status_received": "已收到", "status_on_it": "工作人员正在处理", "status_done": "已处理完毕",
        "team": "您的工作小组", "call": "拨打", "no_phone": "未公开电话",
        "done_announce": "已报备：{end} 前开门不会通知工作人员。",
        "done_hospital": "已申请：工作人员批准后即可外出就医。",
        "done_temperature": "体温已记录，谢谢。", "done_fever": "体温偏高，已通知医务人员，请留意电话。",
        "done_help": "求助已发送，工作人员会尽快联系您。",
        "error_title": "未能提交",
        "bad_reason": "请选择开门原因。", "bad_minutes": "请填写 1 到 {max} 之间的分钟数。",
        "bad_celsius": "请填写体温数字，例如 36.8。",
        "implausible": "这个体温不太可能（应在 {low}–{high} °C 之间），请重新测量后再填写。",
        "bad_method": "请选择测量方式。", "bad_kind": "请选择需要什么帮助。", "too_long": "说明最多 {n} 个字。",
        "limited": "操作太频繁（每小时最多 {n} 次），请稍后再试；紧急情况请直接打电话。",
        "daily_limit": "今天的报备次数已用完（每天 {n} 次）；如需开门请先打电话联系工作人员。",
        "too_many_open": "您已有 {n} 个求助尚未处理完，工作人员会联系您；紧急情况请直接打电话。",
        "invalid_title": "链接无效", "invalid_text": "此链接无效、已停用或隔离已结束。如有需要请联系社区工作人员。",
        "bad_form_title": "页面已过时", "bad_form_text": "请重新打开链接后再操作。",
        "zone": "{zone} 时间",
    },
    "en": {
        "title": "Home isolation", "switch": "中文", "day": "Isolation day {day} of {days}",
        "until": "Isolation until {date} (inclusive)",
        "privacy": "This page shows only your household. Please do not share the link.",
        "announce": "Announce a short opening",
        "announce_text": "Announce first: opening the door within the announced time alerts nobody.",
        "reason": "Reason", "reason_rubbish": "Rubbish", "reason_delivery": "Delivery / supplies",
        "reason_hospital": "Hospital visit", "reason_other": "Other", "minutes": "How many minutes (1-{max})",
        "announce_button": "Announce", "announce_left": "{n} announcements left today.",
        "hospital_note": "A hospital visit needs staff approval; until then an opening still alerts the team.",
        "temperature": "Report a temperature", "celsius": "Temperature (°C)", "method": "How it was taken",
        "temperature_button": "Send temperature", "method_unknown": "Not sure", "method_axillary": "Under the arm",
        "method_oral": "Mouth", "method_forehead": "Forehead", "method_tympanic": "Ear", "method_rectal": "Rectal",
        "help": "Ask for help", "help_kind": "What do you need", "help_supplies": "Supplies",
        "help_medicine": "Medicine", "help_symptoms": "I feel unwell", "help_mental_health": "Someone to talk to",
        "help_other": "Other", "help_text": "A few words (optional)", "help_button": "Send request",
        "mine": "My announcements and requests", "none_yet": "None yet.",
        "announced": "{reason}: {start}–{end}", "request": "{kind}: {text}", "approval_waiting": "waiting for approval",
        "approval_approved": "approved", "approval_refused": "not approved, please call the team",
        "status_received": "received", "status_on_it": "someone is on it", "status_done": "done",
        "team": "Your team", "call": "Call", "no_phone": "number not shared",
        "done_announce": "Announced: opening the door until {end} alerts nobody.",
        "done_hospital": "Requested: you may go once staff approve it.",
        "done_temperature": "Temperature recorded. Thank you.",
        "done_fever": "Your temperature is high: the medical worker has been told and will call you.",
        "done_help": "Request sent. Someone will contact you soon.",
        "error_title": "Not sent",
        "bad_reason": "Choose a reason.", "bad_minutes": "Enter a number of minutes from 1 to {max}.",
        "bad_celsius": "Enter the temperature as a number, for example 36.8.",
        "implausible": "That temperature is not likely (it should be {low}–{high} °C). Please measure again.",
        "bad_method": "Choose how it was taken.", "bad_kind": "Choose what you need.",
        "too_long": "At most {n} characters, please.",
        "limited": "Too many actions (at most {n} an hour). Try again later; in an emergency, call.",
        "daily_limit": "No announcements left today ({n} a day). Call the team before opening the door.",
        "too_many_open": "You have {n} requests still open; the team will contact you. In an emergency, call.",
        "invalid_title": "Invalid link",
        "invalid_text": "This link is not valid, was revoked, or the isolation has ended. Contact your community team.",
        "bad_form_title": "This page is out of date", "bad_form_text": "Open the link again.",
        "zone": "{zone} time",
    },
}


def page_translator(lang: str) -> Callable[..., str]:
    page, shared = PAGE[lang], MESSAGES[lang]

    def t(key: str, **values: object) -> str:
        text = page.get(key) or shared.get(key) or key
        return text.format(**values) if values else text

    return t
