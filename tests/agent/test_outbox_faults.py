"""The outbox under disk faults: a full filesystem, a damaged file, a deleted file.

The full disk is real: a 16 MiB tmpfs mounted for the test (root only; elsewhere these tests skip),
filled to the last byte by a file, so SQLite fails with SQLITE_FULL exactly as on an edge box's SD card.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge.agent import EdgeAgent
from edge.config import DeviceSection, EdgeConfig, HeartbeatSection, OutboxSection, UplinkSection
from edge.outbox import Outbox
from edge.seq_mark import LEASE
from edge.uplink import STATUS_SEQ
from gateway.service import GatewayService
from isowatch.contract import DoorEvent, TemperatureReading
from isowatch.stamper import Stamper
from tests.support import query, wait_until


def reading(stamper: Stamper):
    return lambda seq: stamper.make(TemperatureReading, seq, type="temperature", celsius=36.6, subject="body")


def door(stamper: Stamper):
    return lambda seq: stamper.make(DoorEvent, seq, type="door", state="open")


@pytest.fixture
def small_fs(tmp_path):
    """A filesystem of its own, so filling it does not fill the machine's. 16 MiB: the outbox's log
    alone may grow to 4 MiB before it is checkpointed."""
    mount = tmp_path / "fs"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


class Filler:
    """Takes every free byte of a filesystem, and gives it back."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "filler"

    def fill(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            for size in (65536, 4096, 512, 1):
                try:
                    while True:
                        os.write(fd, b"\0" * size)
                except OSError:
                    pass
        finally:
            os.close(fd)
        assert os.statvfs(self.path.parent).f_bavail == 0

    def free(self) -> None:
        self.path.unlink()


def test_full_disk_drops_are_numbered_counted_and_flagged(small_fs):
    stamper = Stamper("cam-1")
    outbox = Outbox(small_fs / "outbox.db")
    disk = Filler(small_fs)
    assert [m.seq for m in outbox.add_many([reading(stamper)] * 10)] == list(range(1, 11))
    disk.fill()
    lost = [outbox.add(reading(stamper)).seq for _ in range(30)]  # the agent's inputs go on recording
    assert lost == list(range(11, 41)), "a message that cannot be written still takes its number"
    assert outbox.dropped() == 30 and outbox.flags["disk_full"] == 30 and outbox.write_failing
    assert [p.seq for p in outbox.pending()] == list(range(1, 11))
    outbox.acknowledge([(1, 5)])  # may or may not fit on the full disk; it must not raise

    restarted = Outbox(small_fs / "outbox.db")  # a crash and restart while the disk is still full
    assert restarted.next_seq() == 41 and restarted.dropped() == 30, "numbers used while full are not reused"
    restarted.close()

    disk.free()
    assert [m.seq for m in outbox.add_many([reading(stamper)] * 10)] == list(range(41, 51))
    assert not outbox.write_failing and "disk_full" not in outbox.flags
    assert [p.seq for p in outbox.pending()][-10:] == list(range(41, 51))
    outbox.close()
    reopened = Outbox(small_fs / "outbox.db")
    assert reopened.dropped() == 30 and reopened.next_seq() == 51


def agent_config(tmp_path: Path, broker_url, outbox: Path) -> EdgeConfig:
    (tmp_path / "device.secret").write_text(broker_url.password)
    return EdgeConfig(
        device=DeviceSection(site="site-a", household="hh-1", id=broker_url.username),
        uplink=UplinkSection(broker=f"mqtt://{broker_url.host}:{broker_url.port}",
                             password_file=tmp_path / "device.secret", resend_after_s=2, reconnect_max_s=2),
        outbox=OutboxSection(path=outbox),
        heartbeat=HeartbeatSection(interval_s=1),
    )


def last_heartbeat(db) -> dict:
    rows = query(db, "SELECT heartbeat FROM devices WHERE device = 'cam-1'")
    return json.loads(rows[0][0]) if rows and rows[0][0] else {}


@pytest.mark.broker
@pytest.mark.slow
def test_full_disk_shows_at_the_gateway_as_counted_gaps(mosquitto, tmp_path, small_fs):
    db = tmp_path / "gw.db"
    gateway = GatewayService(db, mosquitto.url(), alerts=False).start()
    acked: set[int] = set()  # every numbered message the gateway stored or applied
    gateway.ingest.listeners.append(lambda summary: acked.update(
        seq for lo, hi in summary.acked.get("cam-1", ()) for seq in range(lo, hi + 1) if seq != STATUS_SEQ))
    agent = EdgeAgent(agent_config(tmp_path, mosquitto.add_user("cam-1"), small_fs / "outbox.db")).start(10)
    disk = Filler(small_fs)
    rec = agent.recorder
    try:
        def record(n: int) -> list[int]:
            return [rec.send(rec.stamp(TemperatureReading, type="temperature", celsius=36.6, subject="body")).seq
                    for _ in range(n)]

        before = record(20)
        wait_until(lambda: set(before) <= acked, timeout=30, what="first readings stored")
        disk.fill()
        during = record(30)
        assert agent.outbox.dropped() >= 30
        beat = wait_until(lambda: last_heartbeat(db).get("flags", {}).get("disk_full") and last_heartbeat(db),
                          timeout=30, what="a live heartbeat with the disk_full flag")
        assert beat["outbox_dropped"] >= 30
        disk.free()
        after = record(20)
        wait_until(lambda: set(after) <= acked, timeout=60, what="readings after the disk has room again")
        wait_until(lambda: "disk_full" not in last_heartbeat(db).get("flags", {}), timeout=30,
                   what="the flag down again")

        stored = {s for (s,) in query(db, "SELECT seq FROM readings WHERE device = 'cam-1'")}
        assert set(before) | set(after) <= stored and not set(during) & stored
        assert max(before) < min(during) and max(during) < min(after), "the lost readings are a gap"
        # Every number the agent handed out either reached the gateway or is a counted drop.
        handed_out = set(range(1, agent.outbox.next_seq()))
        wait_until(lambda: agent.outbox.depth() == 0, timeout=30, what="outbox drained")
        gaps = handed_out - acked
        assert set(during) <= gaps
        wait_until(lambda: last_heartbeat(db).get("outbox_dropped") == agent.outbox.dropped() == len(gaps),
                   timeout=30, what="the heartbeat's drop count to equal the gaps the gateway sees")
    finally:
        if disk.path.exists():
            disk.free()
        agent.stop(flush_timeout=1)
        gateway.stop()


# -- damaged and missing outbox ------------------------------------------------------------------

def filled_outbox(path: Path, rows: int = 300, acked: int = 50) -> list[int]:
    """An outbox that has sent and forgotten some rows and holds the rest; returns the seqs it holds."""
    stamper = Stamper("cam-1")
    outbox = Outbox(path)
    # SQLite's default, which Debian's build changes: deleted rows stay behind on free pages.
    outbox._conn.execute("PRAGMA secure_delete=OFF")
    for _ in range(rows // 10):
        outbox.add_many([door(stamper)] * 10)
    outbox.acknowledge([(1, acked)])
    outbox.close()
    return list(range(acked + 1, rows + 1))


def flip_page(path: Path, page: int, page_size: int = 4096) -> None:
    data = bytearray(path.read_bytes())
    start = (page - 1) * page_size
    data[start:start + page_size] = bytes(b ^ 0x5A for b in data[start:start + page_size])
    path.write_bytes(bytes(data))


def test_outbox_with_flipped_pages_is_salvaged_and_kept_as_evidence(tmp_path, caplog):
    path = tmp_path / "outbox.db"
    held = filled_outbox(path)
    flip_page(path, 1)  # the schema page: SQLite itself reads nothing any more
    flip_page(path, 5)  # and one page of rows
    with pytest.raises(sqlite3.DatabaseError):
        sqlite3.connect(path).execute("SELECT count(*) FROM outbox").fetchone()
    caplog.set_level(logging.ERROR, "edge.outbox")
    outbox = Outbox(path)
    rescued = [p.seq for p in outbox.pending()]
    # With the header page gone the free list is unknown: rows acknowledged earlier may come back
    # (the gateway stores each id once); test_salvage_does_not_bring_back_acknowledged_rows has it intact.
    assert set(rescued) <= set(range(1, 301))
    assert len(set(rescued) & set(held)) >= len(held) - 30, "only the rows on the damaged page are lost"
    assert outbox.flags["outbox_salvaged"] == len(rescued) and outbox.flags["outbox_unreadable"] >= 1
    # Above every number handed out: the mark's lease, since the damaged file's own counter may be stale.
    assert 301 <= outbox.next_seq() <= 301 + LEASE
    assert outbox.add(door(Stamper("cam-1"))).seq > 300
    damaged = list(tmp_path.glob("outbox.db.damaged-*"))
    assert damaged, "the damaged file is kept"
    assert "was damaged" in caplog.text and "salvaged" in caplog.text


def test_truncated_outbox_is_salvaged(tmp_path):
    path = tmp_path / "outbox.db"
    held = filled_outbox(path)
    size = path.stat().st_size
    os.truncate(path, size // 2 + 1000)  # mid-page
    outbox = Outbox(path)
    rescued = {p.seq for p in outbox.pending()}
    assert rescued and rescued <= set(held) and len(rescued) >= 40
    assert outbox.next_seq() >= 301


def test_outbox_with_damaged_log_is_salvaged_not_silently_cut(tmp_path):
    """A WAL frame that fails its checksum makes SQLite drop every frame after it, without a word."""
    path = tmp_path / "outbox.db"
    code = (f"import sys, os; sys.path.insert(0, {str(Path.cwd())!r})\n"
            "from edge.outbox import Outbox\n"
            "from tests.agent.test_outbox_faults import door, Stamper\n"
            f"outbox = Outbox({str(path)!r})\n"
            "for _ in range(30): outbox.add_many([door(Stamper('cam-1'))] * 10)\n"
            "os._exit(0)\n")  # dies without closing: the log is left unmerged, as after a power cut
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ})
    wal = Path(f"{path}-wal")
    assert wal.stat().st_size > 100_000
    data = bytearray(wal.read_bytes())
    data[32 + 24 + 4120 * 3 + 100] ^= 0xFF  # inside the 4th frame
    wal.write_bytes(bytes(data))
    outbox = Outbox(path)
    rescued = {p.seq for p in outbox.pending()}
    assert len(rescued) >= 200, "rows after the damaged frame were rescued from the log itself"
    assert outbox.next_seq() >= 301 and "outbox_salvaged" in outbox.flags


def test_deleted_outbox_keeps_numbering_monotonic(tmp_path, caplog):
    path = tmp_path / "outbox.db"
    filled_outbox(path)
    path.unlink()
    caplog.set_level(logging.ERROR, "edge.outbox")
    outbox = Outbox(path)
    seq = outbox.add(door(Stamper("cam-1"))).seq
    assert seq > 300, "a lost outbox must not restart numbering at 1"
    assert outbox.flags["outbox_lost"] == 1 and "was missing" in caplog.text


def test_outbox_and_mark_both_lost_continue_from_the_clock(tmp_path):
    path = tmp_path / "outbox.db"
    filled_outbox(path)
    flip_page(path, 1)
    Path(f"{path}.seq").unlink()
    before = time.time_ns() // 1000
    outbox = Outbox(path)
    assert outbox.next_seq() >= before > 300


def test_a_new_box_starts_at_one(tmp_path):
    outbox = Outbox(tmp_path / "outbox.db")
    assert outbox.next_seq() == 1 and not outbox.flags


@pytest.mark.parametrize("damage", ["zeroed", "emptied"])
def test_damaged_mark_and_damaged_outbox_still_never_go_back(tmp_path, damage):
    path = tmp_path / "outbox.db"
    filled_outbox(path)
    flip_page(path, 1)
    mark = Path(f"{path}.seq")
    mark.write_bytes(bytes(mark.stat().st_size) if damage == "zeroed" else b"")
    outbox = Outbox(path)
    assert outbox.next_seq() >= time.time_ns() // 1000 - 60_000_000


def test_mark_survives_a_torn_write(tmp_path):
    """A power cut in the middle of writing one slot leaves the other, one write older."""
    from edge.seq_mark import Mark, SeqMark

    mark = SeqMark(tmp_path / "m")
    mark.write(Mark(lease=1000))
    mark.write(Mark(lease=2000))
    mark.close()
    data = (tmp_path / "m").read_bytes()
    half = len(data) // 2
    found = []
    for torn in (0, 1):
        copy = bytearray(data)
        copy[torn * half + 10] ^= 0xFF
        (tmp_path / "m").write_bytes(bytes(copy))
        reread = SeqMark(tmp_path / "m")
        reread.close()
        assert reread.found
        found.append(reread.mark.lease)
    assert sorted(found) == [1000, 2000]


def test_salvage_does_not_bring_back_acknowledged_rows(tmp_path):
    """Free pages still hold rows the gateway acknowledged: they must not be sent again (the gateway may
    have purged them since, and would store them as new)."""
    path = tmp_path / "outbox.db"
    held = filled_outbox(path, rows=300, acked=250)
    data = path.read_bytes()
    page = data.index(b'"seq":299,') // 4096 + 1
    flip_page(path, page)
    outbox = Outbox(path)
    rescued = {p.seq for p in outbox.pending()}
    assert rescued <= set(held), f"acknowledged rows came back: {sorted(rescued - set(held))[:10]}"
    assert 299 not in rescued and len(rescued) >= len(held) - 30
