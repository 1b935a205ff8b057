"""Small helpers the tests share: waiting for a condition, reading the gateway database."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def wait_until(probe: Callable[[], T], timeout: float = 30.0, interval: float = 0.05, what: str = "condition") -> T:
    """Poll until `probe()` is truthy; fail with `what` after `timeout` seconds (a wait, not a timing check)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def query(db_path: Path, sql: str, params: tuple = ()) -> list[tuple]:
    """Read the gateway database from outside, as the dashboard does."""
    if not Path(db_path).exists():
        return []
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError:  # not migrated yet
        return []
    finally:
        conn.close()


def scalar(db_path: Path, sql: str, params: tuple = ()) -> int:
    rows = query(db_path, sql, params)
    return rows[0][0] if rows else 0


def stop_process(process, timeout: float = 15.0) -> None:
    """SIGTERM (the clean-shutdown path under test), then SIGKILL if it does not exit in time."""
    import subprocess

    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
