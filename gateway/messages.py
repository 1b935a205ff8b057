"""Alert message texts in the recipient's language (zh, en): what, where, when, which isolation day, links.
Alert names and details come from gateway.vocabulary, as on the board and the phone page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from gateway.vocabulary import detail_text, group_text, kind_name
from isowatch.localtime import stamp

LABELS = {
    "zh": {"household": "住户", "when": "时间", "day": "隔离第 {day} 天（共 {days} 天）", "count": "本告警已累计 {count} 次",
           "detail": "详情", "snapshot": "现场照片", "ack": "处理（打开后点“我来处理”，无需登录）",
           "step": "升级第 {step} 步",
           "renotify": "再次提醒（第 {round} 次）", "id": "通知编号"},
    "en": {"household": "Household", "when": "When", "day": "Isolation day {day} of {days}", "count": "Occurrences so far: {count}",
           "detail": "Detail", "snapshot": "Snapshot", "ack": "Handle it (open, then tap \"I'm handling it\"; no login)",
           "step": "Escalation step {step}",
           "renotify": "Reminder {round}", "id": "Notification id"},
}


@dataclass(frozen=True)
class AlertFacts:
    alert_id: int
    kind: str
    household: str
    address: str
    unit: str
    at_local: datetime
    day: int | None
    days: int | None
    count: int
    detail: str
    step: int
    round: int
    snapshot_url: str | None
    ack_url: str
    notification_id: str = ""  # the idempotency key: the same in every copy of this page


def render(facts: AlertFacts, language: str) -> tuple[str, str]:
    """(title, body) for one recipient; unknown languages fall back to Chinese, the staff default."""
    lang = language if language in LABELS else "zh"
    text, label = kind_name(facts.kind, lang), LABELS[lang]
    place = " ".join(p for p in (facts.address, facts.unit) if p) or facts.household
    title = f"[isowatch #{facts.alert_id}] {text} - {place}"
    lines = [
        f"{label['household']}: {place} ({facts.household})",
        f"{label['when']}: {stamp(facts.at_local, facts.at_local.tzinfo)}",  # as the pages write it
    ]
    if facts.day is not None and facts.days is not None:
        lines.append(label["day"].format(day=facts.day, days=facts.days))
    if facts.count > 1:
        lines.append(label["count"].format(count=facts.count))
    if facts.detail:
        lines.append(f"{label['detail']}: {detail_text(facts.detail, lang)}")
    lines.append(label["renotify"].format(round=facts.round) if facts.round else label["step"].format(step=facts.step))
    if facts.snapshot_url:
        lines.append(f"{label['snapshot']}: {facts.snapshot_url}")
    lines.append(f"{label['ack']}: {facts.ack_url}")
    if facts.notification_id:
        lines.append(f"{label['id']}: {facts.notification_id}")
    return title, "\n".join(lines)


# -- a group's page (docs/alerts.md, "Storms") -----------------------------------------------------

GROUP_LABELS = {
    "zh": {"group": "组", "members": "住户", "more": "等共 {n} 户", "since": "开始时间",
           "list": "名单与处理（打开后点“我来处理”，全组一起处理，无需登录）"},
    "en": {"group": "group", "members": "Households", "more": "{n} in all", "since": "Since",
           "list": "List and handle (open, then tap \"I'm handling it\" for the whole group; no login)"},
}
MEMBERS_SHOWN = 5  # the page names a few; the link lists them all


@dataclass(frozen=True)
class GroupFacts:
    group_id: int
    kind: str
    count: int  # members when paged; later ones are listed on the group's page, not paged again
    places: list[str]  # the members' site names, the first member's first
    since_local: datetime  # the first member's opening, in its site's time
    members: list[str]  # "address unit (household)" of the first few members
    step: int
    round: int
    url: str
    notification_id: str = ""


def render_group(facts: GroupFacts, language: str) -> tuple[str, str]:
    """(title, body) of one page for a whole group, in the recipient's language."""
    lang = language if language in LABELS else "zh"
    label, group = LABELS[lang], GROUP_LABELS[lang]
    headline = group_text(facts.kind, facts.count, facts.places, f"{facts.since_local:%H:%M}", lang)
    title = f"[isowatch {group['group']} #{facts.group_id}] {headline}"
    names = ", ".join(facts.members[:MEMBERS_SHOWN])
    if facts.count > MEMBERS_SHOWN:
        names += " … " + group["more"].format(n=facts.count)
    lines = [
        headline,
        f"{group['members']}: {names}",
        f"{group['since']}: {stamp(facts.since_local, facts.since_local.tzinfo)}",
        label["renotify"].format(round=facts.round) if facts.round else label["step"].format(step=facts.step),
        f"{group['list']}: {facts.url}",
    ]
    if facts.notification_id:
        lines.append(f"{label['id']}: {facts.notification_id}")
    return title, "\n".join(lines)
