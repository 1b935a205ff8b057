"""Schema migrations for the gateway database: append new steps, never edit or reorder old ones."""

from __future__ import annotations

from collections.abc import Callable

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


MIGRATIONS: list[Migration] = [_001_ingest]


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
