"""The gateway database's health: a check before it is opened, online backups, restore, and a periodic
integrity check, all off the ingest path. What to do when one of them complains: docs/operations.md.

The start check comes before SQLite opens the file, because opening it repairs silently: a write-ahead
log whose frames fail their checksum is cut at the first bad frame, committed rows after it and all.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self
from urllib.parse import quote

from isowatch.log_limit import RateLimitedLog
from isowatch.periodic import Periodic
from isowatch.sqlite_files import check_wal, fsync_directory

log = logging.getLogger(__name__)

BACKUP_GLOB = "isowatch-*.db"


class DatabaseDamaged(RuntimeError):
    """The database (or its write-ahead log) is damaged; the message says what and what to run."""


class DiskFull(RuntimeError):
    pass


class BackupFailed(RuntimeError):
    pass


def remedy(db_path: Path) -> str:
    return (f"Nothing was changed. Restore the latest verified backup with `isowatch gateway restore --db {db_path}` "
            f"(it keeps the damaged files beside it), or see docs/operations.md to salvage it with "
            f"`sqlite3 {db_path} .recover`.")


def check_at_start(db_path: Path) -> None:
    """Refuse a damaged database before anything opens it: its log first, then `PRAGMA quick_check`."""
    if not db_path.exists():
        if Path(f"{db_path}-wal").exists():
            raise DatabaseDamaged(f"{db_path} is missing but its write-ahead log {db_path}-wal is there. "
                                  + remedy(db_path))
        return
    wal = check_wal(db_path)
    if wal.problem:
        raise DatabaseDamaged(f"the write-ahead log of {db_path} is damaged: {wal.problem}. Opening it would "
                              f"silently lose those committed rows. " + remedy(db_path))
    try:
        findings = quick_check(db_path)
    except sqlite3.DatabaseError as exc:
        if is_disk_full(exc, db_path):
            raise disk_full(db_path) from None
        raise DatabaseDamaged(f"{db_path} cannot be read: {exc}. " + remedy(db_path)) from None
    if findings != ["ok"]:
        raise DatabaseDamaged(f"{db_path} failed its integrity check: {'; '.join(findings[:5])}. " + remedy(db_path))


def quick_check(db_path: Path, full: bool = False) -> list[str]:
    """Read-only, so that closing it leaves the log as it was (a read-write close checkpoints it)."""
    conn = sqlite3.connect(f"file:{quote(str(db_path))}?mode=ro", uri=True, timeout=30)
    try:
        return [row[0] for row in conn.execute(f"PRAGMA {'integrity_check' if full else 'quick_check'}(20)")]
    finally:
        conn.close()


def is_disk_full(exc: BaseException, db_path: Path) -> bool:
    """SQLITE_FULL, ENOSPC, or an I/O error on a disk with (almost) no room left: SQLite reports a full
    disk while it creates the -shm index as a bare `disk I/O error`."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    if code == sqlite3.SQLITE_FULL or getattr(exc, "errno", None) == errno.ENOSPC:
        return True
    if code == sqlite3.SQLITE_IOERR or isinstance(exc, OSError):
        return shutil.disk_usage(db_path.parent).free < 1024 * 1024
    return False


def disk_full(db_path: Path) -> DiskFull:
    free = shutil.disk_usage(db_path.parent).free
    return DiskFull(f"The disk holding {db_path} is full ({free} bytes free): free some space on it and start "
                    "the gateway again; nothing was lost or changed.")


# -- backups ----------------------------------------------------------------------------------------

def backup(db_path: Path, directory: Path, keep: int = 7) -> Path:
    """An online copy through SQLite's backup API (writers carry on), verified with quick_check before
    it takes its final name; the newest `keep` verified copies are kept."""
    directory.mkdir(parents=True, exist_ok=True)
    now = time.time()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"  # sorts by time
    target = directory / f"isowatch-{stamp}.db"
    partial = target.with_suffix(".db.part")
    source = sqlite3.connect(str(db_path), timeout=30)
    try:
        copy = sqlite3.connect(str(partial))
        try:
            source.backup(copy, pages=4096, sleep=0.005)  # steps, so writers get the lock between them
            copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            findings = [row[0] for row in copy.execute("PRAGMA quick_check(20)")]
        finally:
            copy.close()
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        source.close()
    if findings != ["ok"]:
        partial.unlink(missing_ok=True)
        raise BackupFailed(f"backup of {db_path} failed its check ({'; '.join(findings[:3])}): the database itself "
                           "is probably damaged, run `isowatch gateway check --full`")
    with partial.open("rb+") as f:
        os.fsync(f.fileno())
    os.replace(partial, target)
    fsync_directory(directory)
    for old in backups(directory)[:-keep] if keep > 0 else []:
        old.unlink()
    return target


def backups(directory: Path) -> list[Path]:
    """Verified backups in `directory`, oldest first (their names sort by time)."""
    return sorted(directory.glob(BACKUP_GLOB)) if directory.is_dir() else []


def default_backup_dir(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".backups")


def restore(backup_path: Path, db_path: Path) -> Path | None:
    """Put a backup in place of the database, with the gateway stopped. The current files are moved to
    `NAME.replaced-STAMP` (kept: they are evidence and may hold rows newer than the backup). Returns
    where they went."""
    if in_use(db_path):
        raise BackupFailed(f"{db_path} is open in another process: stop the gateway (and the dashboard) first")
    findings = quick_check(backup_path)
    if findings != ["ok"]:
        raise BackupFailed(f"{backup_path} fails its check ({'; '.join(findings[:3])}); choose another backup")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = db_path.with_name(f"{db_path.name}.replaced-{stamp}")
    moved = None
    for suffix in ("", "-wal", "-shm"):
        current = Path(f"{db_path}{suffix}")
        if current.exists():
            os.replace(current, f"{aside}{suffix}")
            moved = aside
    partial = db_path.with_name(db_path.name + ".restoring")
    shutil.copyfile(backup_path, partial)
    with partial.open("rb+") as f:
        os.fsync(f.fileno())
    os.replace(partial, db_path)
    fsync_directory(db_path.parent)
    return moved


def in_use(db_path: Path) -> bool:
    """Whether another process has the database open. Each SQLite connection in WAL mode holds a shared
    lock on byte 128 of the -shm file (the "DMS" slot of SQLite's unix VFS) while it is open; if we
    can lock it exclusively, nobody else has it."""
    try:
        fd = os.open(f"{db_path}-shm", os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 128)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops our lock
    return False


# -- while running ------------------------------------------------------------------------------------

@dataclass
class CheckResult:
    at: float
    ok: bool
    detail: str


class Maintenance(Periodic):
    """A thread of its own: a backup every `backup_every_s`, `PRAGMA integrity_check` every `check_every_s`.

    Both read through their own connection, so ingest goes on (WAL readers do not block the writer).
    Results are logged (ERROR when something is wrong) and kept in `last_backup` / `last_check`.
    """

    def __init__(self, db_path: Path, backup_dir: Path | None, *, backup_every_s: float = 6 * 3600,
                 keep: int = 7, check_every_s: float = 24 * 3600) -> None:
        super().__init__("db-maintenance", 1.0, log)
        self.db_path = db_path
        self.backup_dir = backup_dir
        self.backup_every_s = backup_every_s
        self.keep = keep
        self.check_every_s = check_every_s
        self.last_backup: CheckResult | None = None
        self.last_check: CheckResult | None = None
        self._limited = RateLimitedLog(log, every_s=3600)
        self._next_backup = self._next_check = 0.0

    def start(self) -> Self:
        now = time.monotonic()
        self._next_backup = now + min(60.0, self.backup_every_s)  # a first copy soon after start
        self._next_check = now + self.check_every_s
        return super().start()

    def tick(self) -> None:
        now = time.monotonic()
        if self.backup_dir is not None and now >= self._next_backup:
            self._next_backup = now + self.backup_every_s
            self.run_backup()
        if now >= self._next_check:
            self._next_check = now + self.check_every_s
            self.run_check()

    def run_backup(self) -> CheckResult:
        try:
            assert self.backup_dir is not None  # run() backs up only with a directory to back up to
            path = backup(self.db_path, self.backup_dir, self.keep)
            self.last_backup = CheckResult(time.time(), True, str(path))
            log.info("database backup written and verified: %s", path)
        except (sqlite3.Error, OSError, BackupFailed) as exc:
            self.last_backup = CheckResult(time.time(), False, str(exc))
            self._limited.log(logging.ERROR, f"database backup to {self.backup_dir} failed: {exc}")
        return self.last_backup

    def run_check(self) -> CheckResult:
        try:
            findings = quick_check(self.db_path, full=True)
            ok = findings == ["ok"]
            self.last_check = CheckResult(time.time(), ok, "; ".join(findings[:5]))
        except sqlite3.Error as exc:
            self.last_check = CheckResult(time.time(), False, str(exc))
        if self.last_check.ok:
            log.info("database integrity check: ok")
        else:
            log.error("database integrity check FAILED: %s. %s", self.last_check.detail, remedy(self.db_path))
        return self.last_check
