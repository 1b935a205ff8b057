"""A damaged outbox at start: find out, move it aside as evidence, and rescue every row still readable.

`problem` decides whether the file can be used (its write-ahead log is checked by hand before SQLite
opens it, because SQLite would silently drop frames after a bad one; then `PRAGMA quick_check`).
`salvage` reads rows straight from the file's pages (isowatch.sqlite_files), so rows survive a broken
schema page, a broken b-tree page or a truncated file. Every rescued row is checked: a message must
still parse and carry its own seq, a snapshot must still match its hash.

Rows the gateway had acknowledged stay behind on free pages and in older copies of pages; the scan
skips those (isowatch.sqlite_files.table_records), except when the header page that lists the free
pages is itself damaged: then such a row may go out again, and the gateway, storing each id once,
answers with another ack.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from isowatch.contract import KIND_OF_TYPE, TopicKind
from isowatch.sqlite_files import ScanReport, check_wal, fsync_directory, table_records

log = logging.getLogger(__name__)

ROW_COLUMNS = 9  # pos (NULL: the rowid), seq, kind, type, priority, event_id, sha256, payload, created_at


@dataclass
class Salvage:
    reason: str
    moved_to: Path | None = None
    rows: list[tuple] = field(default_factory=list)  # outbox rows, ROW_COLUMNS values with pos filled in
    counters: dict[str, int] = field(default_factory=dict)  # the largest value found of each
    scan: ScanReport = field(default_factory=ScanReport)
    refused: int = 0  # rows that decoded but failed their own checks (damaged payload)

    @property
    def unreadable(self) -> int:
        """Pages and cells that could not be read: each may have held rows now lost."""
        return self.scan.bad_pages + self.scan.bad_cells + self.refused

    def max_seq(self) -> int:
        return max((row[1] for row in self.rows if row[1] is not None), default=0)


def problem(path: Path) -> str | None:
    """Why the outbox file at `path` cannot be trusted, or None when it can (or does not exist)."""
    if not path.exists():
        return None
    if path.stat().st_size == 0:
        return "the file is empty"
    wal = check_wal(path)
    if wal.problem:
        return f"its write-ahead log is damaged: {wal.problem}"
    try:
        conn = sqlite3.connect(str(path), timeout=30)
        try:
            findings = [row[0] for row in conn.execute("PRAGMA quick_check(20)")]
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return f"SQLite cannot read it: {exc}"
    if findings != ["ok"]:
        return "quick_check: " + "; ".join(findings[:5])
    if not {"outbox", "counters"} <= tables:
        return "it has no outbox tables"
    return None


def salvage(path: Path, reason: str) -> Salvage:
    """Read every intact row of the damaged outbox at `path`, then move it (and its -wal, -shm) aside."""
    result = Salvage(reason)
    found: dict[object, tuple] = {}
    for rowid, values in table_records(path, result.scan):
        if len(values) == ROW_COLUMNS and values[0] is None:
            row = _checked_row(rowid, values)
            if row is None:
                result.refused += 1
            else:
                found.setdefault(row[1] if row[1] is not None else row[6], row)
        elif len(values) == 2 and values[0] in ("next_seq", "dropped") and isinstance(values[1], int):
            result.counters[values[0]] = max(result.counters.get(values[0], 0), values[1])
    result.rows = sorted(found.values(), key=lambda row: row[0])
    result.moved_to = move_aside(path)
    return result


def _checked_row(rowid: int, values: tuple) -> tuple | None:
    _pos, seq, kind, type_, priority, event_id, sha256, payload, created_at = values
    if not isinstance(payload, bytes) or not isinstance(priority, int) or not isinstance(created_at, (int, float)):
        return None
    try:
        TopicKind(kind)
    except ValueError:
        return None
    if type_ == "snapshot":
        if seq is not None or sha256 != hashlib.sha256(payload).hexdigest():
            return None
    else:
        if not isinstance(seq, int) or KIND_OF_TYPE.get(type_, None) != kind:
            return None
        try:
            message = json.loads(payload)
        except ValueError:
            return None
        if not isinstance(message, dict) or message.get("seq") != seq or message.get("type") != type_:
            return None
    return (rowid, seq, kind, type_, priority, event_id, sha256, payload, created_at)


def move_aside(path: Path) -> Path | None:
    """Rename the file and its -wal/-shm to `NAME.damaged-UTCSTAMP` (never deleted: it is evidence)."""
    sources = [Path(f"{path}{suffix}") for suffix in ("", "-wal", "-shm")]
    if not any(source.exists() for source in sources):
        return None
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
    for suffix, source in zip(("", "-wal", "-shm"), sources):
        if source.exists():
            os.replace(source, f"{target}{suffix}")
    fsync_directory(path.parent)
    return target


def damaged_copies(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{path.name}.damaged-*[!lm]"))  # not their -wal / -shm
