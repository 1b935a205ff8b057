"""The one vocabulary of alerts, in Chinese and English: each kind's name and severity, the words for the
codes devices and rules use (door sources, measuring methods, tamper reasons), and the alert details.

Notifications (gateway/messages.py), the board and the pages (dashboard/i18n.py) and the phone page
(dashboard/ack_text.py, through i18n) all take alert names from here, so a kind reads the same on the
phone, in the message and on the board. Rules write an alert's `detail` as short English; `detail_text`
renders each shape they write in the reader's language (tests/dashboard/test_chinese.py covers every one).
"""

from __future__ import annotations

import re
from collections.abc import Callable

LANGUAGES = ("zh", "en")

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
    # Raised by the household itself through its own link (gateway/resident.py).
    "help_request": {"zh": "住户求助", "en": "Household asks for help", "severity": 1},
    "visit_approval": {"zh": "住户申请外出就医", "en": "Hospital visit to approve", "severity": 2},
}
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


UNKNOWN_SEVERITY = 9  # a kind added to the rules but not here sorts last and fails the vocabulary test

# Codes of the wire contract and the rules that reach a reader.
VALUES: dict[str, dict[str, str]] = {
    "camera": {"zh": "摄像头", "en": "camera"}, "contact": {"zh": "门磁", "en": "door contact"},
    "oral": {"zh": "口腔", "en": "oral"}, "axillary": {"zh": "腋下", "en": "axillary"},
    "tympanic": {"zh": "耳温", "en": "tympanic"}, "forehead": {"zh": "额温", "en": "forehead"},
    "rectal": {"zh": "肛温", "en": "rectal"}, "unknown": {"zh": "未知方式", "en": "method unknown"},
    "covered": {"zh": "镜头被遮挡", "en": "lens covered"}, "defocus": {"zh": "画面模糊", "en": "out of focus"},
    "moved": {"zh": "摄像头被移动", "en": "camera moved"}, "no_signal": {"zh": "无画面信号", "en": "no picture"},
    # What a household asks for through its own link (gateway/resident.py, policy HELP_KINDS).
    "supplies": {"zh": "生活物资", "en": "Supplies"}, "medicine": {"zh": "药品", "en": "Medicine"},
    "symptoms": {"zh": "身体症状", "en": "Symptoms"}, "mental_health": {"zh": "心理支持", "en": "Mental health"},
    "other": {"zh": "其他", "en": "Other"},
}


def kind_name(kind: str, language: str) -> str:
    names = KINDS.get(kind)
    return str(names[_lang(language)]) if names else kind


def severity(kind: str) -> int:
    return int(KINDS.get(kind, {}).get("severity", UNKNOWN_SEVERITY))


def value_name(code: str, language: str) -> str:
    return VALUES.get(code, {}).get(_lang(language), code)


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
    (re.compile(r"^(supplies|medicine|symptoms|mental_health|other)(?:: (.*))?$", re.S), {
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
