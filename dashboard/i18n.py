"""Chinese and English for the dashboard, chosen per user; a missing key falls back to English."""

from __future__ import annotations

from collections.abc import Callable

from gateway.vocabulary import LANGUAGES, VALUES, names, value_name

EN: dict[str, str] = {
    "alerts": "Alerts", "households": "Households", "events": "Event log", "reports": "Response report",
    "devices": "Devices", "audit": "Audit log", "logout": "Log out", "login": "Log in",
    "username": "Username", "password": "Password", "language": "Language",
    "open_alerts": "Open alerts", "no_open_alerts": "No open alerts.", "household": "Household",
    "kind": "Kind", "age": "Age", "notified": "Notified", "step": "Step", "state": "State",
    "acknowledge": "Acknowledge", "resolve": "Resolve", "verdict": "Verdict", "note": "Note",
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
    "dropped": "Dropped", "flag_disk_full": "Disk full", "flag_outbox_write_failed": "Outbox write failing",
    "flag_outbox_salvaged": "Outbox salvaged", "flag_outbox_unreadable": "Outbox rows lost",
    "flag_outbox_lost": "Outbox lost",
    "camera": "Camera", "config": "Config", "push_config": "Push config", "who": "Who", "action": "Action",
    "object": "Object", "welcome": "Signed in as", "nothing": "Nothing here.", "open": "open",
    "closed": "closed", "snapshot": "Snapshot", "status": "Status", "just_now": "just now", "ago_min": "{n} min ago",
    "ago_h": "{h} h {m} min ago", "ago_d": "{d} d ago", "by_team": "By team", "by_role": "By role",
    "admin": "Admin", "auditor": "Auditor", "login_failed": "Wrong username or password.",
    "login_limited": "Too many failed logins from here. Wait a minute and try again.", "done": "Done.",
                "acknowledged": "acknowledged", "notified_state": "notified",
    "stream_lost": "Live updates stopped: this board may be out of date. Reconnecting…",
    "stream_back": "Live updates are back.", "session_ended": "Your session has ended: this board no longer updates.",
    "login_again": "Log in again", "missed": "While disconnected: {n} new alert(s)", "missed_resolved": "already resolved",
    "sound_on": "Sound for new alerts: on", "sound_off": "Sound for new alerts: off",
    "pending_acknowledge": "You pressed Acknowledge while logged out; it was not done yet. Press it again below.",
    "pending_resolve": "You sent a resolution while logged out; it was not saved yet. Check it and press Resolve below.",
    "pending_acknowledged_meanwhile": "You pressed Acknowledge while logged out; someone acknowledged it meanwhile.",
    "pending_resolved_meanwhile": "You acted on this alert while logged out; it was resolved meanwhile.",
    "login_keeps_action": "After you log in you return to the alert with your action waiting.",
    "error_title": "Something went wrong", "error_text": "The request could not be completed.",
    "error_title_403": "Not allowed", "error_text_403": "Your role may not do this, or the form was out of date: go back and try again.",
    "error_title_404": "Not found", "error_text_404": "This page does not exist, or it belongs to another team.",
    "error_title_409": "Already changed", "error_text_409": "Someone changed this meanwhile (for example, the alert is already resolved). Reload to see it as it is now.",
    "error_title_422": "Not accepted", "error_text_422": "Some of what was sent is not valid. Go back, check it and try again.",
    "error_title_429": "Too many attempts", "error_text_429": "Too many failed logins from here. Wait a minute and try again.",
    "error_title_502": "Not delivered", "error_text_502": "The device could not be reached. Try again later.",
    "error_title_503": "Not available", "error_text_503": "This is not available at the moment. Try again later.",
    "resident_phone": "Resident", "call": "Call", "no_phone": "no phone number on file",
    "alert_open": "open", "alert_notified": "notified", "alert_acknowledged": "acknowledged",
    "alert_resolved": "resolved", "alert_escalated": "escalated", "what_to_do": "What to do",
    "all_alerts": "All", "mine": "Paged to me or my role", "no_open_alerts_mine": "No open alerts paged to you or your role.",
    "users": "Users", "display_name": "Name", "user_active": "active", "user_disabled": "disabled",
    "manage": "Manage", "user_disable": "Disable", "user_enable": "Enable", "new_password": "New password",
    "reset_password": "Reset password", "extra_teams": "Extra teams", "save_teams": "Save teams",
    "new_user": "New user", "staff_member": "Staff member (registry)", "create_user": "Create user",
    "password_rules": "At least 10 characters; not a common password, a repeated character or simple sequence, nor the username.",
    "user_done_created": "User {who} created.", "user_done_disabled": "User {who} disabled; their sessions ended.",
    "user_done_enabled": "User {who} enabled.", "user_done_password": "Password of {who} reset; their sessions ended.",
    "user_done_teams": "Teams of {who} saved.", "user_exists": "This username is taken:",
    "user_invalid": "Please check:", "user_reference": "Not accepted:",
    "change_password": "Change password", "current_password": "Current password",
    "password_changed": "Password changed. Your other sessions have ended.",
    "current_password_wrong": "The current password is wrong.",
    "back_to_board": "Back to the alert board", "main_nav": "Main", "switch_language": "中文",
    "resolved": "resolved", "escalated": "escalated", "address": "Address",
    "clock_skew": "clock off by {s} s", "clock_skew_devices": "{n} with a wrong clock",
    "page_undelivered": "Page not delivered",
    "resident_link": "Resident link", "resident_link_none": "No link issued.", "resident_link_issue": "Issue link",
    "resident_link_revoke": "Revoke link", "resident_link_note": "Works only during an active isolation period.",
    "announced_openings": "Announced by households", "reason_rubbish": "rubbish", "reason_delivery": "delivery",
    "reason_hospital": "hospital visit", "reason_other": "other", "approval_waiting": "waiting for approval",
    "approval_approved": "approved", "approval_refused": "refused",
    # local times, the chart, the no-team notice, the audit log in words
    "no_team": "You are on no team, so no alerts or households reach you here. Ask an admin to add you to a team.",
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
    "acknowledged_by": "确认人", "resolved_by": "处理人", "live": "实时",
    "isolation_day": "隔离天数", "day_of": "第 {day} 天（共 {days} 天）", "not_isolating": "未在隔离",
    "door": "门", "last_temperature": "最近体温", "device": "设备", "online": "在线", "offline": "离线",
    "unknown": "未知", "timeline": "时间线", "from": "从", "to": "到",
    "site": "街道", "type": "类别", "alert_kind": "告警类型", "any": "全部", "filter": "筛选",
    "export_csv": "导出 CSV", "older": "更早", "newest": "最新", "time": "时间", "detail": "详情",
    "team": "小组", "role": "角色", "alerts_count": "告警数", "ack_median": "确认中位数（分钟）",
    "ack_p90": "确认 90 分位（分钟）", "escalations": "升级次数", "unacknowledged": "未确认",
    "false_alarm_share": "误报比例", "pages": "收到通知", "acks": "确认次数", "period": "时段",
    "last_heartbeat": "最近心跳", "outbox": "待发队列",
    "dropped": "已丢弃", "flag_disk_full": "磁盘已满", "flag_outbox_write_failed": "待发队列写入失败",
    "flag_outbox_salvaged": "待发队列已抢救", "flag_outbox_unreadable": "待发队列记录丢失",
    "flag_outbox_lost": "待发队列丢失", "camera": "摄像头", "config": "配置",
    "push_config": "下发配置", "who": "操作人", "action": "操作", "object": "对象", "welcome": "当前用户",
    "nothing": "暂无内容。", "open": "开", "closed": "关", "snapshot": "抓拍", "status": "状态",
    "just_now": "刚刚", "ago_min": "{n} 分钟前", "ago_h": "{h} 小时 {m} 分钟前", "ago_d": "{d} 天前", "by_team": "按小组",
    "by_role": "按角色", "admin": "管理员", "auditor": "审计员", "login_failed": "用户名或密码错误。",
    "login_limited": "此处登录失败次数过多，请稍等一分钟再试。", "done": "完成。",             "acknowledged": "已确认", "notified_state": "已通知", "resolved": "已处理",
    "stream_lost": "实时更新已中断，当前页面可能已过时。正在重新连接…",
    "stream_back": "实时更新已恢复。", "session_ended": "登录已失效，告警不再更新。",
    "login_again": "重新登录", "missed": "断线期间新增 {n} 条告警", "missed_resolved": "已处理",
    "sound_on": "新告警提示音：开", "sound_off": "新告警提示音：关",
    "pending_acknowledge": "你在登录失效时按了“确认”，尚未生效。请在下方再按一次。",
    "pending_resolve": "你在登录失效时提交了处理结果，尚未保存。请核对后在下方再次提交。",
    "pending_acknowledged_meanwhile": "你在登录失效时按了“确认”；此间已有人确认。",
    "pending_resolved_meanwhile": "你在登录失效时操作了此告警；此间已处理完毕。",
    "login_keeps_action": "登录后将回到该告警，你的操作仍待完成。",
    "error_title": "出错了", "error_text": "请求未能完成。",
    "error_title_403": "无权操作", "error_text_403": "你的角色不能执行此操作，或页面已过时：请返回后重试。",
    "error_title_404": "未找到", "error_text_404": "该页面不存在，或不属于你的小组。",
    "error_title_409": "已有变化", "error_text_409": "此间已有人更改（例如告警已处理完毕）。请刷新查看最新状态。",
    "error_title_422": "无法接受", "error_text_422": "提交的内容有误，请返回检查后重试。",
    "error_title_429": "尝试次数过多", "error_text_429": "此处登录失败次数过多，请稍等一分钟再试。",
    "error_title_502": "未能送达", "error_text_502": "无法连接到设备，请稍后再试。",
    "error_title_503": "暂不可用", "error_text_503": "此功能暂时不可用，请稍后再试。",
    "resident_phone": "住户电话", "call": "拨打", "no_phone": "未登记电话",
    "alert_open": "待处理", "alert_notified": "已通知", "alert_acknowledged": "已确认",
    "alert_resolved": "已处理", "alert_escalated": "已升级", "what_to_do": "该怎么做",
    "all_alerts": "全部", "mine": "发给我或我的角色", "no_open_alerts_mine": "没有发给你或你的角色的未关闭告警。",
    "users": "用户", "display_name": "姓名", "user_active": "启用", "user_disabled": "已停用",
    "manage": "管理", "user_disable": "停用", "user_enable": "启用", "new_password": "新密码",
    "reset_password": "重置密码", "extra_teams": "额外小组", "save_teams": "保存小组",
    "new_user": "新建用户", "staff_member": "对应工作人员（名册）", "create_user": "创建用户",
    "password_rules": "至少 10 个字符；不能是常用密码、重复字符或简单序列，也不能与用户名相同。",
    "user_done_created": "已创建用户 {who}。", "user_done_disabled": "已停用用户 {who}，其登录已结束。",
    "user_done_enabled": "已启用用户 {who}。", "user_done_password": "已重置 {who} 的密码，其登录已结束。",
    "user_done_teams": "已保存 {who} 的小组。", "user_exists": "用户名已被使用：",
    "user_invalid": "请检查：", "user_reference": "无法接受：",
    "change_password": "修改密码", "current_password": "当前密码",
    "password_changed": "密码已修改。你在其他设备上的登录已结束。",
    "current_password_wrong": "当前密码不正确。",
    "back_to_board": "返回告警看板", "main_nav": "主菜单", "switch_language": "English",
    "escalated": "已升级", "address": "地址",
    "clock_skew": "时钟偏差 {s} 秒", "clock_skew_devices": "{n} 台时钟不准",
    "page_undelivered": "通知未送达",
    "resident_link": "住户链接", "resident_link_none": "尚未发放链接。", "resident_link_issue": "发放链接",
    "resident_link_revoke": "停用链接", "resident_link_note": "仅在隔离期内有效。",
    "announced_openings": "住户报备的开门", "reason_rubbish": "倒垃圾", "reason_delivery": "取快递/物资",
    "reason_hospital": "去医院", "reason_other": "其他", "approval_waiting": "待批准", "approval_approved": "已批准",
    "approval_refused": "未批准",
    "no_team": "你不在任何小组，因此这里不会显示任何告警或住户。请联系管理员把你加入小组。",
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

# One name per alert kind, outcome and staff role everywhere: the gateway's vocabulary (device codes:
# vocabulary.value_name). A page word under one of its codes would be overwritten: refused here.
if _clash := (set(EN) | set(ZH)) & set(names("en")):
    raise ValueError(f"dashboard words under codes the vocabulary names: {sorted(_clash)}")
EN.update(names("en"))
ZH.update(names("zh"))

# Codes stored in the database that pages show: event and reading types, states, timeline entries,
# page delivery states, camera health. Device codes (door source, measuring method, tamper reason) come
# from gateway.vocabulary.VALUES.
CODES: dict[str, tuple[str, str]] = {  # code: (zh, en)
    "door": ("门", "door"), "tamper": ("摄像头异常", "camera tamper"), "temperature": ("体温", "temperature"),
    "contact": ("门磁", "door contact"), "open": ("开", "open"), "closed": ("关", "closed"),
    "start": ("开始", "start"), "end": ("结束", "end"), "body": ("人体", "body"), "ambient": ("室温", "room"),
    "event": ("事件", "event"), "reading": ("读数", "reading"), "alert": ("告警", "alert"),
    "acknowledged": ("已确认", "acknowledged"), "resolved": ("已处理", "resolved"),
    "notification": ("通知", "page"), "pending": ("待发送", "pending"), "sending": ("发送中", "sending"),
    "sent": ("已送达", "delivered"), "failed": ("发送失败", "failed"), "cancelled": ("已取消", "cancelled"),
    "ok": ("正常", "ok"), "tampered": ("被遮挡或移动", "tampered"), "absent": ("未接摄像头", "no camera"),
    "notified": ("已通知", "notified"), "escalated": ("已升级", "escalated"),
}
for _code, (_zh, _en) in CODES.items():
    EN.setdefault("code_" + _code, _en)
    ZH.setdefault("code_" + _code, _zh)

# Storms: a group of alerts on the board, on its page and in the audit log.
GROUP_WORDS: dict[str, tuple[str, str]] = {  # key: (zh, en)
    "group_of": ("组 #{id}", "Group #{id}"), "group_members": ("本组告警", "Alerts in this group"),
    "group_live": ("待处理 {live} 条（共 {all} 条）", "{live} open ({all} in all)"),
    "group_acknowledge": ("全组确认处理", "Acknowledge the whole group"),
    "group_resolve": ("为未关闭的 {n} 条选择结果", "Resolve the {n} still open"),
    "group_list": ("查看名单", "List"), "in_group": ("属于告警组 #{id}", "Part of alert group #{id}"),
    "group_since": ("开始", "Since"), "group_done_acknowledged": ("已为全组确认处理", "Acknowledged for the whole group"),
    "group_done_resolved": ("全组已处理", "Resolved for the whole group"),
    "group.open": ("告警合并为组", "Alerts grouped"), "group.acknowledge": ("确认处理告警组", "Acknowledged group"),
    "group.ack_again": ("再次确认告警组", "Acknowledged group again"), "group.resolve": ("处理完告警组", "Resolved group"),
}
for _key, (_zh, _en) in GROUP_WORDS.items():
    EN.setdefault(_key, _en)
    ZH.setdefault(_key, _zh)

MESSAGES = {"en": EN, "zh": ZH}


def code_namer(language: str) -> Callable[[str | None], str]:
    """A stored code (or a short run of them, such as '38.6 °C body') in the reader's language; numbers,
    units and unknown words (ids, names) pass through."""
    table = MESSAGES.get(language, ZH)
    lang = language if language in MESSAGES else "zh"

    def name(text: str | None) -> str:
        if not text:
            return ""
        words = []
        for word in str(text).split(" "):
            core = word.strip("()")
            named = table.get("code_" + core) or (value_name(core, lang) if core in VALUES else None)
            words.append(word.replace(core, named) if named else word)
        return " ".join(words)

    return name


def translator(language: str) -> Callable[..., str]:
    table = MESSAGES.get(language, ZH)

    def t(key: str, **values: object) -> str:
        text = table.get(key) or EN.get(key) or key
        return text.format(**values) if values else text

    return t


def language_of(*choices: str | None) -> str:
    """The first of `choices` that is a language we speak (a switch link's choice, then a person's or a
    household's registry language), else Chinese."""
    for choice in choices:
        if choice in LANGUAGES:
            return choice
    return "zh"
