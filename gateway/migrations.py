"""Schema migrations for the gateway database: append new steps, never edit or reorder old ones."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timezone

from sqlite_utils import Database

Migration = Callable[[Database], None]


def _001_ingest(db: Database) -> None:
    db["devices"].create(
        {
            "device": str,
            "site": str,
            "household": str,
            "first_seen": str,
            "last_seen": str,
            "status": str,  # online / offline, from the retained status topic
            "status_time": str,
            "firmware": str,
            "config_version": str,
            "camera": str,
            "last_heartbeat": str,
            "heartbeat": str,  # the last heartbeat's JSON: uptime, outbox depth, fps, CPU temperature
            "max_seq": int,
        },
        pk="device",
    )
    common = {
        "id": str,
        "site": str,
        "household": str,
        "device": str,
        "seq": int,
        "type": str,
        "device_time": str,
        "received_at": str,
    }
    db["events"].create({**common, "state": str, "payload": str}, pk="id")
    db["events"].create_index(["household", "device_time"])
    db["events"].create_index(["site", "device_time"])
    db["events"].create_index(["type", "device_time"])
    db["events"].create_index(["device_time"])
    db["events"].create_index(["device", "seq"])
    db["readings"].create(
        {**common, "celsius": float, "subject": str, "method": str, "plausible": int, "open": int, "payload": str},
        pk="id",
    )
    db["readings"].create_index(["household", "device_time"])
    db["readings"].create_index(["device", "seq"])
    db["rejects"].create(
        {
            "id": int,
            "received_at": str,
            "topic": str,
            "reason": str,
            "detail": str,
            "payload_size": int,
            "payload": bytes,
        },
        pk="id",
    )
    db["rejects"].create_index(["reason"])
    db["snapshots"].create(
        {
            "sha256": str,
            "event_id": str,
            "site": str,
            "household": str,
            "device": str,
            "bytes": int,
            "path": str,
            "received_at": str,
        },
        pk=("event_id", "sha256"),
    )
    db["snapshots"].create_index(["sha256"])


def _002_registry_alerts(db: Database) -> None:
    """Registry (sites, households, isolation periods, staff, teams, device registration),
    announced visits, alerts with escalation state, notifications and delivery attempts, the audit log."""
    db["sites"].create({"site": str, "name": str, "timezone": str}, pk="site")
    db["staff"].create(
        {"staff": str, "name": str, "role": str, "language": str, "contacts": str, "active": int}, pk="staff"
    )  # contacts: JSON list of Apprise URLs, tried in order
    db["teams"].create(
        {"team": str, "name": str, "leader": str, "medical": str, "police": str, "social": str}, pk="team"
    )
    db["households"].create(
        {"household": str, "site": str, "address": str, "unit": str, "residents": int, "elderly_alone": int,
         "disabled": int, "language": str, "team": str, "created_at": str},
        pk="household",
    )
    db["households"].create_index(["team"])
    db["isolation_periods"].create(
        {"id": int, "household": str, "start_date": str, "days": int, "created_by": str, "created_at": str,
         "ended_at": str, "end_reason": str, "end_medical_by": str, "end_medical_at": str,
         "end_leader_by": str, "end_leader_at": str},
        pk="id",
    )
    db["isolation_periods"].create_index(["household"])
    for column, kind in (("registered_at", str), ("registered_by", str), ("password_hash", str)):
        db["devices"].add_column(column, kind)
    db["visits"].create(
        {"id": int, "household": str, "kind": str, "starts_at": str, "ends_at": str, "note": str,
         "created_by": str, "created_at": str},
        pk="id",
    )
    db["visits"].create_index(["household", "starts_at"])
    db["alerts"].create(
        {"id": int, "site": str, "household": str, "kind": str, "state": str, "opened_at": str,
         "first_event_id": str, "last_event_at": str, "count": int, "isolation_id": int, "detail": str,
         "snapshot": str, "step": int, "next_step_at": str, "renotified": int, "notified_at": str,
         "acknowledged_by": str, "acknowledged_at": str, "resolved_by": str, "resolved_at": str,
         "verdict": str, "note": str},
        pk="id",
    )
    # One live alert per household and kind: further events attach to it instead of paging again.
    db.execute("CREATE UNIQUE INDEX alerts_one_live ON alerts (household, kind) WHERE resolved_at IS NULL")
    db.execute("CREATE INDEX alerts_due ON alerts (next_step_at) WHERE next_step_at IS NOT NULL")
    db["alert_events"].create({"alert_id": int, "ref": str, "at": str}, pk=("alert_id", "ref"))
    db["rule_log"].create(
        {"ref": str, "household": str, "outcome": str, "kind": str, "detail": str, "at": str}, pk="ref"
    )  # what the rules made of each event/reading: alert, expected (visit), outside_isolation, ...
    db["door_violations"].create({"event_id": str, "household": str, "at": str}, pk="event_id")
    db["door_violations"].create_index(["household", "at"])
    db["rule_marks"].create({"household": str, "rule": str, "mark": str}, pk=("household", "rule"))
    db["worker_cursors"].create({"name": str, "position": int}, pk="name")
    db["notifications"].create(
        {"id": int, "alert_id": int, "step": int, "round": int, "staff": str, "role": str, "language": str,
         "title": str, "body": str, "urls": str, "url_index": int, "state": str, "attempts": int,
         "next_attempt_at": str, "created_at": str, "sent_at": str, "last_error": str},
        pk="id",
    )
    # A step's page to one person is made once, even if the escalation tick runs twice (restart).
    db.execute("CREATE UNIQUE INDEX notifications_once ON notifications (alert_id, step, round, staff)")
    db.execute("CREATE INDEX notifications_due ON notifications (state, next_attempt_at)")
    db["delivery_attempts"].create(
        {"id": int, "notification_id": int, "url": str, "attempt": int, "at": str, "ok": int, "status": str,
         "error": str, "elapsed_ms": float},
        pk="id",
    )
    db["delivery_attempts"].create_index(["notification_id"])
    db["ack_tokens"].create(
        {"jti": str, "alert_id": int, "staff": str, "step": int, "expires_at": str, "used_at": str}, pk="jti"
    )
    db["audit_log"].create(
        {"id": int, "at": str, "who": str, "action": str, "object": str, "detail": str}, pk="id"
    )
    db["audit_log"].create_index(["at"])
    db["readings"].create_index(["household", "type", "device_time"])


def _003_device_config_error(db: Database) -> None:
    """A device reports why it refused a pushed config."""
    db["devices"].add_column("config_error", str)


def _004_dashboard_users(db: Database) -> None:
    """Dashboard users, sessions and login attempts; indexes for keyset paging of the event log."""
    db["users"].create(
        {"username": str, "display_name": str, "role": str, "language": str, "password_hash": str,
         "staff": str, "active": int, "created_at": str},
        pk="username",
    )  # staff: the registry's staff id, so a staff user sees the households of the teams they are on
    db["user_teams"].create({"username": str, "team": str}, pk=("username", "team"))  # extra memberships
    db["sessions"].create(
        {"token_hash": str, "username": str, "csrf": str, "created_at": str, "expires_at": str, "ip": str},
        pk="token_hash",
    )
    db["sessions"].create_index(["username"])
    db["login_attempts"].create({"id": int, "at": str, "username": str, "ip": str, "ok": int}, pk="id")
    db["login_attempts"].create_index(["username", "at"])
    db["login_attempts"].create_index(["ip", "at"])
    # Keyset paging over (device_time, id): the id in the index lets SQLite walk it without sorting.
    for columns in (["device_time", "id"], ["household", "device_time", "id"], ["site", "device_time", "id"],
                    ["type", "device_time", "id"]):
        db["events"].create_index(columns, index_name="events_log_" + "_".join(columns))
    for columns in (["device_time", "id"], ["household", "device_time", "id"], ["site", "device_time", "id"],
                    ["type", "device_time", "id"]):
        db["readings"].create_index(columns, index_name="readings_log_" + "_".join(columns))
    db["alert_events"].create_index(["ref"])
    db["alerts"].create_index(["opened_at"])
    db["alerts"].create_index(["household", "opened_at"])
    db["audit_log"].create_index(["who", "at"])


def _005_devices_by_household(db: Database) -> None:
    """The registry and rules look devices up by household."""
    db["devices"].create_index(["household"], if_not_exists=True)


def _006_set_based_scans(db: Database) -> None:
    """The silence scans (gateway/rules.py) read a few rows per pass instead of every household.

    `registry_changes` logs, by trigger, each household whose isolation periods or site changed (NULL: a
    site's timezone changed, so any household may have): between two reading deadlines the missed-reading
    scan re-checks only those. Triggers, so that writes from every connection count (admin CLI, dashboard,
    bulk imports); AUTOINCREMENT, so that pruning the log never hands a sequence number out again.
    `scan_state` keeps where each scan got to. The partial index finds the vulnerable households.
    """
    db.execute("CREATE INDEX households_vulnerable ON households (household) WHERE elderly_alone = 1 OR disabled = 1")
    db.execute("CREATE TABLE registry_changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, household TEXT)")
    db.execute("CREATE TABLE scan_state (scan TEXT PRIMARY KEY, state TEXT NOT NULL)")
    log = "INSERT INTO registry_changes (household) VALUES"
    db.execute(f"CREATE TRIGGER households_changed_insert AFTER INSERT ON households BEGIN {log} (NEW.household); END")
    db.execute(f"CREATE TRIGGER households_changed_delete AFTER DELETE ON households BEGIN {log} (OLD.household); END")
    db.execute(
        "CREATE TRIGGER households_changed_update AFTER UPDATE OF household, site ON households "
        f"WHEN OLD.household IS NOT NEW.household OR OLD.site IS NOT NEW.site BEGIN {log} (OLD.household), "
        "(NEW.household); END"
    )
    db.execute(f"CREATE TRIGGER isolation_changed_insert AFTER INSERT ON isolation_periods BEGIN {log} "
               "(NEW.household); END")
    db.execute(f"CREATE TRIGGER isolation_changed_delete AFTER DELETE ON isolation_periods BEGIN {log} "
               "(OLD.household); END")
    db.execute(
        "CREATE TRIGGER isolation_changed_update AFTER UPDATE OF household, start_date, days, ended_at "
        "ON isolation_periods WHEN OLD.household IS NOT NEW.household OR OLD.start_date IS NOT NEW.start_date "
        f"OR OLD.days IS NOT NEW.days OR OLD.ended_at IS NOT NEW.ended_at BEGIN {log} (OLD.household), "
        "(NEW.household); END"
    )
    db.execute(f"CREATE TRIGGER sites_changed_insert AFTER INSERT ON sites BEGIN {log} (NULL); END")
    db.execute(f"CREATE TRIGGER sites_changed_delete AFTER DELETE ON sites BEGIN {log} (NULL); END")
    db.execute("CREATE TRIGGER sites_changed_update AFTER UPDATE OF site, timezone ON sites "
               f"WHEN OLD.site IS NOT NEW.site OR OLD.timezone IS NOT NEW.timezone BEGIN {log} (NULL); END")


def _007_drop_covered_indexes(db: Database) -> None:
    """Every index is one more b-tree each stored message updates. These four on events and
    one on readings are prefixes of the keyset-paging indexes of migration 004, which serve the same
    lookups (the id at their end costs nothing to a query that does not use it)."""
    for name in ("idx_events_household_device_time", "idx_events_site_device_time", "idx_events_type_device_time",
                 "idx_events_device_time", "idx_readings_household_device_time"):
        db.execute(f"DROP INDEX IF EXISTS {name}")


def _008_drop_unread_seq_indexes(db: Database) -> None:
    """No query looks events or readings up by (device, seq) (dedupe is by id), and each index is
    one more b-tree every stored message updates."""
    for name in ("idx_events_device_seq", "idx_readings_device_seq"):
        db.execute(f"DROP INDEX IF EXISTS {name}")


def _009_gateway_time(db: Database) -> None:
    """Time is the gateway's. Rules, ordering and "latest" go by `received_at`; a device's own
    clock is kept for display and its skew recorded on the device row.

    `status_time` and `last_heartbeat` become receive times (the device's times move to `*_device_time`),
    and rows a future-dated message froze are capped at `last_seen`, the last receive time. The keyset
    and scan indexes over `device_time` are replaced by the same ones over `received_at`: the same number
    of b-trees for each stored message to update.
    """
    for column, kind in (("status_device_time", str), ("heartbeat_device_time", str), ("clock_skew_s", float),
                         ("clock_skew_at", str), ("clock_skew", int)):
        db["devices"].add_column(column, kind)
    db.execute("UPDATE devices SET status_device_time = status_time, heartbeat_device_time = last_heartbeat, "
               "status_time = CASE WHEN status_time > last_seen THEN last_seen ELSE status_time END, "
               "last_heartbeat = CASE WHEN last_heartbeat > last_seen THEN last_seen ELSE last_heartbeat END")
    for table in ("events", "readings"):
        for columns in (["device_time", "id"], ["household", "device_time", "id"], ["site", "device_time", "id"],
                        ["type", "device_time", "id"]):
            db.execute(f"DROP INDEX IF EXISTS {table}_log_{'_'.join(columns)}")
            by_receipt = ["received_at" if c == "device_time" else c for c in columns]
            db[table].create_index(by_receipt, index_name=f"{table}_log_{'_'.join(by_receipt)}")
    db.execute("DROP INDEX IF EXISTS idx_readings_household_type_device_time")
    db["readings"].create_index(["household", "type", "received_at"])


def _010_pending_snapshots(db: Database) -> None:
    """A snapshot is shown only with an event of the same device and household. One that arrives
    before its event waits in `pending_snapshots` (on no timeline) and moves to `snapshots` when the event
    comes; retention purges those that never meet it. Both are looked up by device and time for the
    per-device hourly quota. Rejects are looked up by topic to record a replayed retained message once."""
    db.execute("CREATE TABLE pending_snapshots (sha256 TEXT NOT NULL, event_id TEXT NOT NULL, site TEXT NOT NULL, "
               "household TEXT NOT NULL, device TEXT NOT NULL, bytes INTEGER NOT NULL, path TEXT NOT NULL, "
               "received_at TEXT NOT NULL, PRIMARY KEY (event_id, sha256))")
    db.execute("CREATE INDEX idx_pending_snapshots_device_received ON pending_snapshots (device, received_at)")
    db.execute("CREATE INDEX idx_pending_snapshots_received ON pending_snapshots (received_at)")
    db.execute("CREATE INDEX idx_pending_snapshots_path ON pending_snapshots (path)")
    db.execute("CREATE INDEX idx_snapshots_device_received ON snapshots (device, received_at)")
    db.execute("CREATE INDEX IF NOT EXISTS idx_snapshots_path ON snapshots (path)")
    # A retained message the broker replays is looked up among the rejects by topic (recorded once).
    db.execute("CREATE INDEX idx_rejects_topic ON rejects (topic)")


def _012_bound_isolation_periods(db: Database) -> None:
    """Registry inputs are bounded (gateway/registry.py). Periods entered without those bounds that lie
    beyond them overflow date arithmetic, and every household page and rule pass that meets them fails:
    days above 365 are cut to 365, and periods starting outside 2000-2099 are removed. Either way the
    audit log keeps the row as it was."""
    at = datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    rows = db.execute("SELECT * FROM isolation_periods WHERE days > 365 OR days < 1 "
                      "OR start_date < '2000-01-01' OR start_date >= '2100-01-01' ORDER BY id").fetchall()
    columns = [c.name for c in db["isolation_periods"].columns]
    for row in rows:
        before = dict(zip(columns, row))
        in_range = "2000-01-01" <= before["start_date"] < "2100-01-01"
        if in_range:
            db.execute("UPDATE isolation_periods SET days = max(1, min(days, 365)) WHERE id = ?", [before["id"]])
        else:
            db.execute("DELETE FROM isolation_periods WHERE id = ?", [before["id"]])
        db.execute("INSERT INTO audit_log (at, who, action, object, detail) VALUES (?, 'migration-012', ?, ?, ?)",
                   [at, "isolation.bounded" if in_range else "isolation.removed", before["household"],
                    json.dumps(before, ensure_ascii=False, sort_keys=True)])


def _013_staff_phone(db: Database) -> None:
    """A phone number per staff member, for the call links on the acknowledge page."""
    db.execute("ALTER TABLE staff ADD COLUMN phone TEXT NOT NULL DEFAULT ''")


def _011_delivery_until_delivered(db: Database) -> None:
    """A page carries an idempotency key (the same in every copy), is retried while its alert is
    live, and is reported once when it has not got through for a while; a send cut off by a stop is
    resumed knowing when it began."""
    db["notifications"].add_column("delivery_key", str)
    db["notifications"].add_column("sending_since", str)
    db["notifications"].add_column("undelivered_at", str)
    db.execute("UPDATE notifications SET delivery_key = 'isowatch-' || lower(hex(randomblob(16)))")
    # Pages given up on before this rule, while their alert is still live and nobody paged the person again.
    db.execute("UPDATE notifications SET state = 'pending', next_attempt_at = created_at WHERE state = 'failed' "
               "AND alert_id IN (SELECT id FROM alerts WHERE acknowledged_at IS NULL AND resolved_at IS NULL) "
               "AND NOT EXISTS (SELECT 1 FROM notifications newer WHERE newer.alert_id = notifications.alert_id "
               "AND newer.staff = notifications.staff AND newer.id > notifications.id)")
    # Pages still to deliver, for the overdue check and the board.
    db.execute("CREATE INDEX notifications_open ON notifications (created_at) "
               "WHERE state IN ('pending', 'sending', 'undeliverable')")


def _014_resident_links(db: Database) -> None:
    """The household's own link (docs/residents.md).

    `resident_links`: one signed, revocable token per household at a time. Visits announced by the
    household say so (`source`, `reason`); a hospital visit counts only once its `approval_alert` is
    resolved as approved. `resident_requests` are the household's help requests, each with its own alert:
    help requests are not merged into one live alert per household, so every request keeps its own
    status, route (`alerts.route`: the role paged first) and acknowledgement. `staff.share_phone`: the
    staff member agreed to have their number shown to the households of their team.
    """
    db.execute("CREATE TABLE resident_links (jti TEXT PRIMARY KEY, household TEXT NOT NULL, created_at TEXT NOT NULL, "
               "created_by TEXT NOT NULL, revoked_at TEXT, revoked_by TEXT)")
    db.execute("CREATE INDEX idx_resident_links_household ON resident_links (household)")
    db.execute("CREATE UNIQUE INDEX resident_links_one_live ON resident_links (household) WHERE revoked_at IS NULL")
    db.execute("ALTER TABLE visits ADD COLUMN source TEXT NOT NULL DEFAULT 'staff'")
    db.execute("ALTER TABLE visits ADD COLUMN reason TEXT")
    db.execute("ALTER TABLE visits ADD COLUMN approval_alert INTEGER")
    # The overstay scan and the board look for households' windows by their end.
    db.execute("CREATE INDEX idx_visits_resident_ends ON visits (ends_at) WHERE source = 'resident'")
    db.execute("CREATE TABLE resident_requests (id INTEGER PRIMARY KEY, household TEXT NOT NULL, kind TEXT NOT NULL, "
               "text TEXT NOT NULL, created_at TEXT NOT NULL, alert_id INTEGER)")
    db.execute("CREATE INDEX idx_resident_requests_household ON resident_requests (household, created_at)")
    db.execute("ALTER TABLE alerts ADD COLUMN route TEXT")
    db.execute("DROP INDEX alerts_one_live")
    db.execute("CREATE UNIQUE INDEX alerts_one_live ON alerts (household, kind) "
               "WHERE resolved_at IS NULL AND kind <> 'help_request'")
    db.execute("ALTER TABLE staff ADD COLUMN share_phone INTEGER NOT NULL DEFAULT 0")


def _015_household_phone(db: Database) -> None:
    """The resident's phone on the household page, so the person paged can call them."""
    db.execute("ALTER TABLE households ADD COLUMN phone TEXT NOT NULL DEFAULT ''")


def _016_alert_groups(db: Database) -> None:
    """Alerts of one kind that open close together for one team page as one group.

    `alert_groups` carries the group's escalation as `alerts` carries an alert's (step, reminders, next
    deadline, acknowledgement); its members point at it (`alerts.group_id`) and stop escalating on their
    own. A group's pages are `notifications` with `group_id` (and no `alert_id`), and its links
    `ack_tokens` with `group_id`. A groupable alert not yet paged nor grouped waits with `step` 0 and
    `next_step_at` as the moment it is decided (docs/alerts.md, "Storms").
    """
    db.execute("CREATE TABLE alert_groups (id INTEGER PRIMARY KEY, team TEXT NOT NULL, kind TEXT NOT NULL, "
               "site TEXT, opened_at TEXT NOT NULL, first_at TEXT NOT NULL, last_member_at TEXT NOT NULL, "
               "step INTEGER NOT NULL DEFAULT 0, renotified INTEGER NOT NULL DEFAULT 0, next_step_at TEXT, "
               "notified_at TEXT, acknowledged_by TEXT, acknowledged_at TEXT, resolved_at TEXT)")
    db.execute("CREATE INDEX alert_groups_live ON alert_groups (team, kind, last_member_at) WHERE resolved_at IS NULL")
    db.execute("CREATE INDEX alert_groups_due ON alert_groups (next_step_at) WHERE next_step_at IS NOT NULL")
    db.execute("ALTER TABLE alerts ADD COLUMN group_id INTEGER")
    db.execute("CREATE INDEX alerts_group ON alerts (group_id) WHERE group_id IS NOT NULL")
    # Live alerts by kind and opening time: whether enough of one team's opened within the window to group.
    db.execute("CREATE INDEX alerts_live_kind ON alerts (kind, opened_at) WHERE resolved_at IS NULL")
    db.execute("ALTER TABLE notifications ADD COLUMN group_id INTEGER")
    db.execute("CREATE UNIQUE INDEX notifications_group_once ON notifications (group_id, step, round, staff) "
               "WHERE group_id IS NOT NULL")
    db.execute("ALTER TABLE ack_tokens ADD COLUMN group_id INTEGER")


MIGRATIONS: list[Migration] = [
    _001_ingest,
    _002_registry_alerts,
    _003_device_config_error,
    _004_dashboard_users,
    _005_devices_by_household,
    _006_set_based_scans,
    _007_drop_covered_indexes,
    _008_drop_unread_seq_indexes,
    _009_gateway_time,
    _010_pending_snapshots,
    _011_delivery_until_delivered,
    _012_bound_isolation_periods,
    _013_staff_phone,
    _014_resident_links,
    _015_household_phone,
    _016_alert_groups,
]


def migrate(db: Database) -> int:
    """Apply pending migrations in order, each in its own transaction; returns the schema version."""
    db.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT, applied_at TEXT)")
    done = {row[0] for row in db.execute("SELECT version FROM schema_migrations").fetchall()}
    for version, step in enumerate(MIGRATIONS, start=1):
        if version in done:
            continue
        # Explicit BEGIN: Python's sqlite3 would run the DDL in autocommit otherwise.
        db.conn.execute("BEGIN")
        try:
            step(db)
            db.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, datetime('now'))",
                [version, step.__name__.lstrip("_")],
            )
        except BaseException:
            db.conn.rollback()
            raise
        db.conn.commit()
    return len(MIGRATIONS)
