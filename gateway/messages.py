"""Alert message texts in the recipient's language (zh, en): what, where, when, which isolation day, links."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from gateway.resident import help_detail
from isowatch.localtime import stamp

KIND_TEXT: dict[str, dict[str, str]] = {
    "door_opened": {"zh": "隔离期间开门", "en": "Door opened during isolation"},
    "repeated_door": {"zh": "多次开门违规", "en": "Repeated door violation"},
    "fever": {"zh": "体温异常（发热）", "en": "Fever"},
    "implausible_reading": {"zh": "体温读数不可信", "en": "Implausible temperature reading"},
    "missed_reading": {"zh": "未按时测量体温", "en": "Temperature reading missed"},
    "device_offline": {"zh": "设备离线", "en": "Device offline"},
    "camera_tampered": {"zh": "摄像头被遮挡或移动", "en": "Camera tampered"},
    "welfare_check": {"zh": "需要上门探视（长时间无活动）", "en": "Welfare check: no sign of activity"},
    "sensor_disagree": {"zh": "摄像头与门磁不一致", "en": "Camera and door contact disagree"},
    "help_request": {"zh": "住户求助", "en": "Household asks for help"},
    "visit_approval": {"zh": "住户申请外出就医（请批准或拒绝）", "en": "Hospital visit announced: approve or refuse"},
}

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
    text, label = KIND_TEXT[facts.kind][lang], LABELS[lang]
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
        detail = help_detail(facts.detail, lang) if facts.kind == "help_request" else facts.detail
        lines.append(f"{label['detail']}: {detail}")
    lines.append(label["renotify"].format(round=facts.round) if facts.round else label["step"].format(step=facts.step))
    if facts.snapshot_url:
        lines.append(f"{label['snapshot']}: {facts.snapshot_url}")
    lines.append(f"{label['ack']}: {facts.ack_url}")
    if facts.notification_id:
        lines.append(f"{label['id']}: {facts.notification_id}")
    return title, "\n".join(lines)
