"""Chinese and English for the dashboard, chosen per user (issue 7); a missing key falls back to English."""

from __future__ import annotations

from collections.abc import Callable

EN: dict[str, str] = {
    "alerts": "Alerts", "households": "Households", "events": "Event log", "reports": "Response report",
    "devices": "Devices", "audit": "Audit log", "logout": "Log out", "login": "Log in",
    "username": "Username", "password": "Password", "language": "Language",
    "open_alerts": "Open alerts", "no_open_alerts": "No open alerts.", "household": "Household",
    "kind": "Kind", "age": "Age", "notified": "Notified", "step": "Step", "state": "State",
    "acknowledge": "Acknowledge", "resolve": "Resolve", "verdict": "Verdict", "note": "Note",
    "confirmed_violation": "Confirmed violation", "false_alarm": "False alarm", "authorised_exit": "Authorised exit",
    "device_fault": "Device fault", "seen_by_medical": "Seen by a medical worker",
    "referred": "Referred to hospital or services", "measurement_error": "Measurement error",
    "remeasured": "Measured again: normal", "reading_taken": "Reading taken", "resident_visited": "Resident visited",
    "back_online": "Back online", "camera_fixed": "Camera put right", "resident_well": "Resident is well",
    "help_given": "Help given",
    "acknowledged_by": "Acknowledged by", "resolved_by": "Resolved by", "live": "live",
    "isolation_day": "Isolation day", "day_of": "day {day} of {days}", "not_isolating": "not isolating",
    "door": "Door", "last_temperature": "Last temperature", "device": "Device", "online": "online",
    "offline": "offline", "unknown": "unknown", "timeline": "Timeline",
    "from": "From", "to": "To", "site": "Site", "type": "Type", "alert_kind": "Alert kind", "any": "any",
    "filter": "Filter", "export_csv": "Export CSV", "older": "Older", "newest": "Newest", "time": "Time",
    "detail": "Detail", "team": "Team", "role": "Role", "alerts_count": "Alerts",
    "ack_median": "Ack median (min)", "ack_p90": "Ack p90 (min)", "escalations": "Escalations",
    "unacknowledged": "Unacknowledged", "false_alarm_share": "False alarms", "pages": "Pages received",
    "acks": "Acknowledged", "period": "Period", "last_heartbeat": "Last heartbeat", "outbox": "Outbox",
    "camera": "Camera", "config": "Config", "push_config": "Push config", "who": "Who", "action": "Action",
    "object": "Object", "welcome": "Signed in as", "nothing": "Nothing here.", "open": "open",
    "closed": "closed", "snapshot": "Snapshot", "status": "Status", "ago_min": "{n} min ago",
    "ago_h": "{h} h {m} min ago", "ago_d": "{d} d ago", "by_team": "By team", "by_role": "By role",
    "leader": "Team leader", "medical": "Medical worker", "police": "Police officer", "social": "Social worker",
    "admin": "Admin", "auditor": "Auditor", "login_failed": "Wrong username or password.",
    "login_limited": "Too many failed logins from here. Wait a minute and try again.", "done": "Done.",
    "door_opened": "Door opened", "repeated_door": "Repeated door violation", "fever": "Fever",
    "missed_reading": "Missed reading", "device_offline": "Device offline", "camera_tampered": "Camera tampered",
    "welfare_check": "Welfare check", "implausible_reading": "Implausible reading",
    "sensor_disagree": "Sensors disagree", "acknowledged": "acknowledged", "notified_state": "notified",
    "resolved": "resolved", "escalated": "escalated", "address": "Address",
    # issue 16: local times, the chart, the no-team notice, the audit log in words
    "just_now": "just now", "no_team": "You are on no team, so no alerts or households reach you here. Ask an admin to add you to a team.",
    "body_temperature": "Body temperature", "room_temperature": "Room temperature", "fever_line": "fever from {c:.1f} °C",
    "hours_local": "hours, {label}", "no_readings": "No readings in this period.",
    "what_event": "event", "what_reading": "reading", "what_alert": "alert", "what_acknowledged": "acknowledged",
    "what_resolved": "resolved", "what_notification": "page", "tamper": "Camera tamper", "contact": "Door contact",
    "temperature": "Temperature",
    "snapshots_seen": "{n} snapshots",
    "household.view": "Viewed household", "snapshot.view": "Viewed snapshot", "events.export": "Exported the event log",
    "alert.acknowledge": "Acknowledged alert", "alert.resolve": "Resolved alert", "alert.ack_again": "Acknowledged again",
    "auth.login": "Logged in", "auth.logout": "Logged out", "auth.login_failed": "Failed login",
    "user.create": "Created user", "user.password": "Changed password", "device.config_push": "Pushed config",
    "alert.escalation_exhausted": "Escalation ran out", "alert.no_recipient": "Nobody to page",
    "auth.login_refused": "Login refused (too many)", "retention.orphan_snapshots": "Orphan snapshots removed",
    "retention.purge": "Data purged", "device.register": "Registered device", "isolation.start": "Isolation started",
    "isolation.extend": "Isolation extended", "isolation.end": "Isolation ended",
    "isolation.end_signoff": "Signed the isolation end", "visit.announce": "Visit announced",
    "registry.import": "Registry imported",
}

ZH: dict[str, str] = {
    "alerts": "告警", "households": "隔离户", "events": "事件日志", "reports": "响应报告", "devices": "设备",
    "audit": "审计日志", "logout": "退出", "login": "登录", "username": "用户名", "password": "密码",
    "language": "语言", "open_alerts": "未关闭告警", "no_open_alerts": "没有未关闭的告警。", "household": "住户",
    "kind": "类型", "age": "时长", "notified": "已通知", "step": "升级步骤", "state": "状态",
    "acknowledge": "确认", "resolve": "处理完毕", "verdict": "结论", "note": "备注",
    "confirmed_violation": "属实违规", "false_alarm": "误报", "authorised_exit": "获准外出",
    "device_fault": "设备故障", "seen_by_medical": "医务人员已诊视", "referred": "已转诊或转介",
    "measurement_error": "测量有误", "remeasured": "复测正常", "reading_taken": "已补测体温",
    "resident_visited": "已上门查看", "back_online": "设备已恢复在线", "camera_fixed": "摄像头已复位",
    "resident_well": "住户安好", "help_given": "已提供帮助",
    "acknowledged_by": "确认人", "resolved_by": "处理人", "live": "实时",
    "isolation_day": "隔离天数", "day_of": "第 {day} 天（共 {days} 天）", "not_isolating": "未在隔离",
    "door": "门", "last_temperature": "最近体温", "device": "设备", "online": "在线", "offline": "离线",
    "unknown": "未知", "timeline": "时间线", "from": "从", "to": "到",
    "site": "街道", "type": "类别", "alert_kind": "告警类型", "any": "全部", "filter": "筛选",
    "export_csv": "导出 CSV", "older": "更早", "newest": "最新", "time": "时间", "detail": "详情",
    "team": "小组", "role": "角色", "alerts_count": "告警数", "ack_median": "确认中位数（分钟）",
    "ack_p90": "确认 90 分位（分钟）", "escalations": "升级次数", "unacknowledged": "未确认",
    "false_alarm_share": "误报比例", "pages": "收到通知", "acks": "确认次数", "period": "时段",
    "last_heartbeat": "最近心跳", "outbox": "待发队列", "camera": "摄像头", "config": "配置",
    "push_config": "下发配置", "who": "操作人", "action": "操作", "object": "对象", "welcome": "当前用户",
    "nothing": "暂无内容。", "open": "开", "closed": "关", "snapshot": "抓拍", "status": "状态",
    "ago_min": "{n} 分钟前", "ago_h": "{h} 小时 {m} 分钟前", "ago_d": "{d} 天前", "by_team": "按小组",
    "by_role": "按角色", "leader": "组长", "medical": "医务人员", "police": "社区民警", "social": "社工",
    "admin": "管理员", "auditor": "审计员", "login_failed": "用户名或密码错误。",
    "login_limited": "此处登录失败次数过多，请稍等一分钟再试。", "done": "完成。", "door_opened": "开门",
    "repeated_door": "多次开门", "fever": "发热", "missed_reading": "漏报体温", "device_offline": "设备离线",
    "camera_tampered": "摄像头被遮挡", "welfare_check": "关怀探视", "implausible_reading": "体温读数异常",
    "sensor_disagree": "传感器不一致", "acknowledged": "已确认", "notified_state": "已通知", "resolved": "已处理",
    "escalated": "已升级", "address": "地址",
    "just_now": "刚刚", "no_team": "你不在任何小组，因此这里不会显示任何告警或住户。请联系管理员把你加入小组。",
    "body_temperature": "体温", "room_temperature": "室温", "fever_line": "{c:.1f} °C 起为发热",
    "hours_local": "小时，{label}", "no_readings": "此期间没有读数。",
    "what_event": "事件", "what_reading": "读数", "what_alert": "告警", "what_acknowledged": "已确认",
    "what_resolved": "已处理", "what_notification": "通知", "tamper": "摄像头遮挡", "contact": "门磁", "temperature": "温度",
    "snapshots_seen": "{n} 张抓拍",
    "household.view": "查看住户", "snapshot.view": "查看抓拍", "events.export": "导出事件日志",
    "alert.acknowledge": "确认告警", "alert.resolve": "处理告警", "alert.ack_again": "再次确认",
    "auth.login": "登录", "auth.logout": "退出", "auth.login_failed": "登录失败",
    "user.create": "创建用户", "user.password": "修改密码", "device.config_push": "下发配置",
    "alert.escalation_exhausted": "升级已到尽头", "alert.no_recipient": "无人可通知",
    "auth.login_refused": "登录被拒（次数过多）", "retention.orphan_snapshots": "清理无主抓拍",
    "retention.purge": "清除过期数据", "device.register": "登记设备", "isolation.start": "开始隔离",
    "isolation.extend": "延长隔离", "isolation.end": "结束隔离", "isolation.end_signoff": "签署结束隔离",
    "visit.announce": "登记探访", "registry.import": "导入登记表",
}

MESSAGES = {"en": EN, "zh": ZH}


def translator(language: str) -> Callable[..., str]:
    table = MESSAGES.get(language, ZH)

    def t(key: str, **values: object) -> str:
        text = table.get(key) or EN.get(key) or key
        return text.format(**values) if values else text

    return t
