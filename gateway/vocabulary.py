"""The one vocabulary of alerts, in Chinese and English: the alert kinds (name, severity, the outcomes that
close each, what to do), the outcomes' names, the staff roles an alert pages, the words for the codes
devices and rules use (door sources, measuring methods, tamper reasons, what a household asks for), and
the alert details.

A new kind is an `AlertKind` member and a row in each table keyed by kind here, steps in the policy's
`kinds` and a line in docs/alerts.md; tests/test_vocabulary.py fails on any of them left out. Everything
else takes it from here: the policy and the rules (`AlertKind`, `Role`), alert resolution (`OUTCOMES`),
notifications (gateway/messages.py), the board, the event log and the pages (dashboard/i18n.py,
dashboard/ack_text.py), so a kind reads the same on the phone, in the message and on the board. Rules
write an alert's `detail` as short English; `detail_text` renders each shape they write in the reader's
language.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from enum import StrEnum

LANGUAGES = ("zh", "en")


class AlertKind(StrEnum):
    DOOR_OPENED = "door_opened"
    REPEATED_DOOR = "repeated_door"
    FEVER = "fever"
    IMPLAUSIBLE_READING = "implausible_reading"
    MISSED_READING = "missed_reading"
    DEVICE_OFFLINE = "device_offline"
    CAMERA_TAMPERED = "camera_tampered"
    WELFARE_CHECK = "welfare_check"
    SENSOR_DISAGREE = "sensor_disagree"
    HELP_REQUEST = "help_request"  # a household asked for help through its resident link (gateway/resident.py)
    VISIT_APPROVAL = "visit_approval"  # a household announced a hospital visit: staff approve or refuse it


class Role(StrEnum):
    """The four members of a household's team: who an alert pages (policy steps, registry team slots)."""

    LEADER = "leader"
    MEDICAL = "medical"
    POLICE = "police"
    SOCIAL = "social"


STAFF_ROLES: tuple[str, ...] = tuple(role.value for role in Role)

# Severity 1 is handled first: a person may be at risk or out of the door. 2: something is odd and a
# person should look soon. 3: the watch has a gap (device, missed reading).
KINDS: dict[str, dict[str, str | int]] = {
    "door_opened": {"zh": "隔离期间开门", "en": "Door opened during isolation", "severity": 1},
    "repeated_door": {"zh": "多次开门", "en": "Repeated door openings", "severity": 1},
    "fever": {"zh": "发热", "en": "Fever", "severity": 1},
    "welfare_check": {"zh": "关怀探视", "en": "Welfare check", "severity": 1},
    "camera_tampered": {"zh": "摄像头被遮挡或移动", "en": "Camera covered or moved", "severity": 2},
    "implausible_reading": {"zh": "体温读数异常", "en": "Implausible temperature reading", "severity": 2},
    "sensor_disagree": {"zh": "摄像头与门磁不一致", "en": "Camera and door contact disagree", "severity": 2},
    "missed_reading": {"zh": "漏测体温", "en": "Missed temperature reading", "severity": 3},
    "device_offline": {"zh": "设备离线", "en": "Device offline", "severity": 3},
    "help_request": {"zh": "住户求助", "en": "Household asks for help", "severity": 1},
    "visit_approval": {"zh": "住户申请外出就医", "en": "Hospital visit to approve", "severity": 2},
}
UNKNOWN_SEVERITY = 9  # a kind stored by a newer version sorts last

_DOOR = ("confirmed_violation", "false_alarm", "authorised_exit")
# How an alert may be closed, per kind: the one table the dashboard, the API, the ack page, the report and
# the docs (docs/alerts.md, checked by tests) use. `false_alarm` means "nothing happened" wherever it
# appears, so the report's false-alarm share counts only that.
OUTCOMES: dict[str, tuple[str, ...]] = {
    "door_opened": _DOOR,
    "repeated_door": _DOOR,
    "sensor_disagree": ("confirmed_violation", "false_alarm", "device_fault"),
    "fever": ("seen_by_medical", "referred", "measurement_error"),
    "implausible_reading": ("remeasured", "measurement_error", "device_fault"),
    "missed_reading": ("reading_taken", "resident_visited", "device_fault"),
    "device_offline": ("back_online", "device_fault", "resident_visited"),
    "camera_tampered": ("confirmed_violation", "camera_fixed", "false_alarm"),
    "welfare_check": ("resident_well", "help_given", "referred"),
    "help_request": ("help_given", "referred", "no_help_needed"),
    # Resolving with `visit_approved` is the approval: the announced hospital visit then excuses its openings.
    "visit_approval": ("visit_approved", "visit_refused"),
}
VERDICTS: tuple[str, ...] = tuple(dict.fromkeys(v for outcomes in OUTCOMES.values() for v in outcomes))

OUTCOME_NAMES: dict[str, dict[str, str]] = {
    "confirmed_violation": {"zh": "属实违规", "en": "Confirmed violation"},
    "false_alarm": {"zh": "误报", "en": "False alarm"},
    "authorised_exit": {"zh": "获准外出", "en": "Authorised exit"},
    "device_fault": {"zh": "设备故障", "en": "Device fault"},
    "seen_by_medical": {"zh": "医务人员已诊视", "en": "Seen by a medical worker"},
    "referred": {"zh": "已转诊或转介", "en": "Referred to hospital or services"},
    "measurement_error": {"zh": "测量有误", "en": "Measurement error"},
    "remeasured": {"zh": "复测正常", "en": "Measured again: normal"},
    "reading_taken": {"zh": "已补测体温", "en": "Reading taken"},
    "resident_visited": {"zh": "已上门查看", "en": "Resident visited"},
    "back_online": {"zh": "设备已恢复在线", "en": "Back online"},
    "camera_fixed": {"zh": "摄像头已复位", "en": "Camera put right"},
    "resident_well": {"zh": "住户安好", "en": "Resident is well"},
    "help_given": {"zh": "已提供帮助", "en": "Help given"},
    "no_help_needed": {"zh": "无需帮助", "en": "No help needed"},
    "visit_approved": {"zh": "批准外出就医", "en": "Visit approved"},
    "visit_refused": {"zh": "不批准外出", "en": "Visit refused"},
}
# What a hospital visit's approval alert says about the visit, by the verdict that closed it.
VISIT_DECISIONS = {"visit_approved": "approved", "visit_refused": "refused"}

ROLE_NAMES: dict[str, dict[str, str]] = {
    "leader": {"zh": "组长", "en": "Team leader"},
    "medical": {"zh": "医务人员", "en": "Medical worker"},
    "police": {"zh": "社区民警", "en": "Police officer"},
    "social": {"zh": "社工", "en": "Social worker"},
}

# What a household may ask for through its own link (gateway/resident.py, policy resident.help_routes).
HELP_KINDS = ("supplies", "medicine", "symptoms", "mental_health", "other")

# A group of alerts of one kind (a storm: a building's power cut, a broker restart) in one line: the page's
# title, the board's row and the group page's heading (docs/alerts.md, "Storms").
GROUP_TEXTS: dict[str, dict[str, str]] = {
    "device_offline": {"zh": "{place} {n} 户设备离线（{since} 起）",
                       "en": "Devices offline in {n} households in {place} since {since}"},
    "camera_tampered": {"zh": "{place} {n} 户摄像头被遮挡或移动（{since} 起）",
                        "en": "Cameras covered or moved in {n} households in {place} since {since}"},
    "missed_reading": {"zh": "{place} {n} 户漏测体温（{since} 起）",
                       "en": "Temperature readings missed in {n} households in {place} since {since}"},
}
GROUP_FALLBACK = {"zh": "{place} {n} 户{kind}（{since} 起）", "en": "{kind} in {n} households in {place} since {since}"}
OTHER_PLACES = {"zh": "{place}等 {n} 处", "en": "{place} and {others} other sites"}


def group_text(kind: str, count: int, places: list[str], since: str, language: str) -> str:
    """"Devices offline in 37 households in Xingfu Street since 02:14": `places` are the members' site names,
    the first member's first; `since` is its local time as the reader should see it."""
    lang = _lang(language)
    place = places[0] if places else "?"
    if len(places) > 1:
        place = OTHER_PLACES[lang].format(place=place, n=len(places), others=len(places) - 1)
    template = GROUP_TEXTS.get(kind, {}).get(lang) or GROUP_FALLBACK[lang]
    return template.format(n=count, place=place, since=since, kind=kind_name(kind, lang))


# Codes of the wire contract and the rules that reach a reader.
VALUES: dict[str, dict[str, str]] = {
    "camera": {"zh": "摄像头", "en": "camera"}, "contact": {"zh": "门磁", "en": "door contact"},
    "oral": {"zh": "口腔", "en": "oral"}, "axillary": {"zh": "腋下", "en": "axillary"},
    "tympanic": {"zh": "耳温", "en": "tympanic"}, "forehead": {"zh": "额温", "en": "forehead"},
    "rectal": {"zh": "肛温", "en": "rectal"}, "unknown": {"zh": "未知方式", "en": "method unknown"},
    "covered": {"zh": "镜头被遮挡", "en": "lens covered"}, "defocus": {"zh": "画面模糊", "en": "out of focus"},
    "moved": {"zh": "摄像头被移动", "en": "camera moved"}, "no_signal": {"zh": "无画面信号", "en": "no picture"},
    "supplies": {"zh": "生活物资", "en": "Supplies"}, "medicine": {"zh": "药品", "en": "Medicine"},
    "symptoms": {"zh": "身体症状", "en": "Symptoms"}, "mental_health": {"zh": "心理支持", "en": "Mental health"},
    "other": {"zh": "其他", "en": "Other"},
}

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
        "welfare_check": ("独居或行动不便的住户长时间无动静：立即电话联系。",
                          "无人接听：立即上门，必要时联系医务人员。"),
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


def kind_name(kind: str, language: str) -> str:
    named = KINDS.get(kind)
    return str(named[_lang(language)]) if named else kind


def severity(kind: str) -> int:
    return int(KINDS.get(kind, {}).get("severity", UNKNOWN_SEVERITY))


def outcomes_for(kind: str) -> tuple[str, ...]:
    """The verdicts that fit this alert kind (all of them for a kind this table does not know yet)."""
    return OUTCOMES.get(kind, VERDICTS)


def visit_decision(verdict: str | None) -> str:
    """approved, refused, or waiting (not resolved yet) for a hospital visit's approval alert."""
    return VISIT_DECISIONS.get(verdict or "", "waiting")


def value_name(code: str, language: str) -> str:
    return VALUES.get(code, {}).get(_lang(language), code)


def names(language: str) -> Mapping[str, str]:
    """Every name above in one language, by code: kinds, outcomes, roles (the pages' translators start here)."""
    lang = _lang(language)
    return {**{k: str(v[lang]) for k, v in KINDS.items()},
            **{k: v[lang] for k, v in OUTCOME_NAMES.items()},
            **{k: v[lang] for k, v in ROLE_NAMES.items()}}


def _lang(language: str) -> str:
    return language if language in LANGUAGES else "zh"


def _v(code: str, lang: str) -> str:
    return value_name(code, lang)


# (shape the rules write, rendering per language); the groups are the variable parts.
_DETAILS: tuple[tuple[re.Pattern[str], dict[str, Callable[..., str]]], ...] = (
    (re.compile(r"^(camera|contact)(, exit suspected)?$"), {
        "zh": lambda src, exit_: f"{_v(src, 'zh')}发现开门" + ("，疑似外出" if exit_ else ""),
        "en": lambda src, exit_: f"seen by the {_v(src, 'en')}" + (", exit suspected" if exit_ else "")}),
    (re.compile(r"^(\d+) openings in ([\d.]+) h$"), {
        "zh": lambda n, h: f"{h} 小时内开门 {n} 次", "en": lambda n, h: f"{n} openings in {h} h"}),
    (re.compile(r"^(-?[\d.]+) °C \((\w+)\)$"), {
        "zh": lambda c, m: f"{c} °C（{_v(m, 'zh')}）", "en": lambda c, m: f"{c} °C ({_v(m, 'en')})"}),
    (re.compile(r"^(covered|defocus|moved|no_signal)$"), {
        "zh": lambda r: _v(r, "zh"), "en": lambda r: _v(r, "en")}),
    (re.compile(r"^(\S+) silent since (\S+)$"), {
        "zh": lambda d, t: f"设备 {d} 自 {t} 起无信号", "en": lambda d, t: f"{d} silent since {t}"}),
    (re.compile(r"^expected by (\d\d:\d\d)$"), {
        "zh": lambda t: f"应在 {t} 前测量", "en": lambda t: f"expected by {t}"}),
    (re.compile(r"^no activity since (\S+)$"), {
        "zh": lambda t: f"自 {t} 起无活动", "en": lambda t: f"no activity since {t}"}),
    # A help request: what was asked, then the household's own words (data: shown as written).
    (re.compile(rf"^({'|'.join(HELP_KINDS)})(?:: (.*))?$", re.S), {
        "zh": lambda k, words: _v(k, "zh") + (f": {words}" if words else ""),
        "en": lambda k, words: _v(k, "en") + (f": {words}" if words else "")}),
    (re.compile(r"^hospital visit announced for (\d+) min$"), {
        "zh": lambda m: f"住户报备外出就医 {m} 分钟", "en": lambda m: f"hospital visit announced for {m} min"}),
    (re.compile(r"^only the (camera|contact) saw the door open$"), {
        "zh": lambda s: f"只有{_v(s, 'zh')}发现开门", "en": lambda s: f"only the {_v(s, 'en')} saw the door open"}),
)


def detail_text(detail: str | None, language: str) -> str:
    """An alert's detail in the reader's language; a shape no rule writes is shown as it is (it is data)."""
    if not detail:
        return ""
    for pattern, render in _DETAILS:
        match = pattern.match(detail)
        if match:
            return render[_lang(language)](*match.groups())
    return detail
