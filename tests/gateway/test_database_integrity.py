"""The gateway database damaged while the gateway was stopped: refused at start with what to do, never
opened (opening would silently cut the log); online backups that verify and restore; a full disk."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from gateway import integrity
from gateway.store import open_database
from isowatch.log_limit import RateLimitedLog
from tests.agent.test_outbox_faults import Filler, small_fs  # noqa: F401 - the fixture
from tests.support import wait_until

ROWS = 520


def crashed_gateway_database(db: Path) -> None:
    """A database whose last 520 committed rows are only in its write-ahead log, as after a SIGKILL."""
    code = f"""
import os, sys
sys.path.insert(0, {str(Path.cwd())!r})
from gateway.store import open_database
db = open_database({str(db)!r})
db.execute("PRAGMA wal_autocheckpoint=0")
conn = db.conn
for n in range({ROWS}):
    with conn:
        conn.execute("INSERT INTO rejects (received_at, topic, reason, detail, payload_size, payload) "
                     "VALUES ('2026-01-01T00:00:00Z', 't', 'test', ?, 1, x'00')", ("row %d " % n + "x" * 300,))
os._exit(0)
"""
    subprocess.run([sys.executable, "-c", code], check=True)
    assert Path(f"{db}-wal").stat().st_size > 100_000


def gateway_start(db: Path) -> subprocess.CompletedProcess:
    """The real `isowatch gateway run`, against a broker that is not there: it must stop at the check."""
    return subprocess.run(
        [sys.executable, "-m", "isowatch_app.cli", "gateway", "run", "--broker", "mqtt://127.0.0.1:9", "--db", str(db)],
        capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def rows(db: Path) -> int:
    return sqlite3.connect(db).execute("SELECT count(*) FROM rejects").fetchone()[0]


def test_flipped_wal_frame_refuses_start_and_loses_nothing(tmp_path):
    db = tmp_path / "gw.db"
    crashed_gateway_database(db)
    wal = Path(f"{db}-wal")
    data = bytearray(wal.read_bytes())
    data[32 + 24 + (4096 + 24) * 5 + 200] ^= 0xFF  # inside the 6th frame
    wal.write_bytes(bytes(data))
    untouched = wal.read_bytes()
    done = gateway_start(db)
    assert done.returncode != 0
    assert "write-ahead log" in done.stderr and "isowatch gateway restore" in done.stderr
    assert "Traceback" not in done.stderr
    assert wal.read_bytes() == untouched, "the damaged log is left as it was, for salvage"


def test_truncated_wal_refuses_start(tmp_path):
    db = tmp_path / "gw.db"
    crashed_gateway_database(db)
    os.truncate(f"{db}-wal", 32 + (4096 + 24) * 40)
    done = gateway_start(db)
    assert done.returncode != 0 and "truncated" in done.stderr and "Traceback" not in done.stderr


def test_zeroed_page_in_the_database_refuses_start(tmp_path):
    db = tmp_path / "gw.db"
    crashed_gateway_database(db)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = bytearray(db.read_bytes())
    page = len(data) // 4096 - 3
    data[page * 4096:(page + 1) * 4096] = bytes(4096)
    db.write_bytes(bytes(data))
    done = gateway_start(db)
    assert done.returncode != 0
    assert str(db) in done.stderr and ("integrity check" in done.stderr or "malformed" in done.stderr)
    assert "isowatch gateway restore" in done.stderr and "Traceback" not in done.stderr


def test_backup_is_verified_and_restores(tmp_path):
    db = tmp_path / "gw.db"
    crashed_gateway_database(db)
    backup_dir = tmp_path / "backups"
    cli = [sys.executable, "-m", "isowatch_app.cli", "gateway"]
    made = subprocess.run([*cli, "backup", "--db", str(db), "--backup-dir", str(backup_dir), "--keep", "2"],
                          capture_output=True, text=True, check=True)
    assert "verified" in made.stdout
    for _ in range(2):
        integrity.backup(db, backup_dir, keep=2)
    kept = integrity.backups(backup_dir)
    assert len(kept) == 2 and integrity.quick_check(kept[-1]) == ["ok"]
    assert rows(kept[-1]) == ROWS

    Path(f"{db}-wal").write_bytes(b"garbage" * 100)  # the live database is damaged
    assert gateway_start(db).returncode != 0
    done = subprocess.run([*cli, "restore", "--db", str(db), "--backup-dir", str(backup_dir)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert rows(db) == ROWS and not Path(f"{db}-wal").exists()
    assert list(tmp_path.glob("gw.db.replaced-*")), "the damaged files are kept"
    integrity.check_at_start(db)  # a restored database passes the start check


def test_full_disk_at_start_is_one_clear_sentence(small_fs):
    db = small_fs / "gw.db"
    open_database(db).close()
    Filler(small_fs).fill()
    done = gateway_start(db)
    assert done.returncode != 0
    assert "is full" in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_repeated_errors_are_rate_limited(caplog):
    now = [0.0]
    limited = RateLimitedLog(logging.getLogger("t"), every_s=60, clock=lambda: now[0])
    caplog.set_level(logging.ERROR, "t")
    for _ in range(120):  # a failure every half second for a minute
        limited.log(logging.ERROR, "WAL checkpoint failed (disk I/O error)")
        now[0] += 0.5
    limited.log(logging.ERROR, "WAL checkpoint failed (disk I/O error)")
    assert len(caplog.records) == 2 and "repeated 119 more times" in caplog.records[1].getMessage()


def test_periodic_check_reports_a_page_damaged_while_running(tmp_path, caplog):
    db = tmp_path / "gw.db"
    crashed_gateway_database(db)
    maintenance = integrity.Maintenance(db, tmp_path / "backups", keep=3)
    assert maintenance.run_backup().ok and maintenance.run_check().ok
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    with db.open("r+b") as f:  # a page goes bad under a running gateway
        f.seek(db.stat().st_size - 3 * 4096)
        f.write(bytes(4096))
    caplog.set_level(logging.INFO, "gateway.integrity")
    assert not maintenance.run_check().ok
    assert "integrity check FAILED" in caplog.text and "isowatch gateway restore" in caplog.text
    assert not maintenance.run_backup().ok, "a damaged database gives no backup that passes for good"
    assert len(integrity.backups(tmp_path / "backups")) == 1


def test_a_log_being_written_is_not_taken_for_damage(tmp_path):
    """`isowatch gateway check` next to a running gateway: commits land while the log is read."""
    import threading

    from isowatch.sqlite_files import check_wal

    db = tmp_path / "gw.db"
    writer = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=50")  # the log starts over often, as under the checkpointer
    writer.execute("CREATE TABLE t (x BLOB)")
    stop = threading.Event()

    def write() -> None:
        while not stop.is_set():
            writer.execute("INSERT INTO t VALUES (randomblob(3000))")

    thread = threading.Thread(target=write)
    thread.start()
    try:
        reports = [check_wal(db) for _ in range(200)]
    finally:
        stop.set()
        thread.join()
        writer.close()
    assert [r.problem for r in reports if r.problem] == []
    assert any(r.valid_frames for r in reports)


def test_restore_refuses_a_database_still_open(tmp_path):
    db = tmp_path / "gw.db"
    open_database(db).close()
    backup = integrity.backup(db, tmp_path / "backups")
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import sqlite3, sys; c = sqlite3.connect({str(db)!r}); "
                               "c.execute('SELECT count(*) FROM sqlite_master').fetchone(); print('open', flush=True); "
                               "sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(integrity.BackupFailed, match="open in another process"):
            integrity.restore(backup, db)
    finally:
        holder.stdin.close()
        holder.wait(10)
    integrity.restore(backup, db)  # once it is closed


def test_checkpointer_on_a_full_disk_logs_once_not_every_half_second(small_fs, caplog):
    from gateway.store_process import WalCheckpointer

    db = small_fs / "gw.db"
    open_database(db).close()
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("PRAGMA wal_autocheckpoint=0")
    for _ in range(200):  # log frames that will need new pages in the database file
        writer.execute("INSERT INTO rejects (received_at, topic, reason, detail, payload_size, payload) "
                       "VALUES ('2026-01-01T00:00:00Z', 't', 'test', 'd', 1, randomblob(3000))")
    Filler(small_fs).fill()
    caplog.set_level(logging.ERROR, "gateway.store_process")
    checkpointer = WalCheckpointer(str(db), every_s=0.01).start()
    try:
        wait_until(lambda: checkpointer.failures_since_logged() >= 50, timeout=60, what="50 failed checkpoints")
    finally:
        checkpointer._stop.set()
        checkpointer._thread.join(10)
        writer.close()
    failures = [r for r in caplog.records if "WAL checkpoint failed" in r.getMessage()]
    assert len(failures) == 1 and failures[0].exc_info, "one line with its traceback, not one per attempt"


def test_any_first_opener_refuses_a_damaged_log(tmp_path):
    """Not only the gateway: `isowatch admin ...` opening the database first would cut the log too."""
    db = tmp_path / "gw.db"
    crashed_gateway_database(db)
    wal = Path(f"{db}-wal")
    data = bytearray(wal.read_bytes())
    data[32 + 24 + (4096 + 24) * 5 + 200] ^= 0xFF
    wal.write_bytes(bytes(data))
    with pytest.raises(integrity.DatabaseDamaged, match="write-ahead log"):
        open_database(db)
    assert wal.read_bytes() == bytes(data)


def test_check_command_says_ok_or_what_is_damaged(tmp_path):
    db = tmp_path / "gw.db"
    crashed_gateway_database(db)
    check = [sys.executable, "-m", "isowatch_app.cli", "gateway", "check", "--db", str(db)]
    done = subprocess.run([*check, "--full"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok")
    os.truncate(f"{db}-wal", 32 + (4096 + 24) * 40 + 100)
    done = subprocess.run(check, capture_output=True, text=True)
    assert done.returncode == 1 and "write-ahead log" in done.stderr and "Traceback" not in done.stderr
