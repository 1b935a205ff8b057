"""Reading SQLite files byte by byte, per https://www.sqlite.org/fileformat2.html, for what SQLite itself
will not tell us: whether a write-ahead log lost frames, and which rows are still readable in a damaged
database.

SQLite opens a WAL whose frames fail their checksum without a word: it keeps the frames before the
first bad one and discards the rest, committed or not. `check_wal` finds that before the database is
opened. `table_records` reads every table leaf page it can parse, in the main file and in the WAL,
skipping damaged pages and cells, so rows survive a broken schema page, a broken interior page or a
truncated file (the sqlite3 shell's `.recover` does the same, and is not installed everywhere).
Only the standard library, so an edge box and the gateway can both use it.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

WAL_MAGIC = (0x377F0682, 0x377F0683)  # checksums in little-endian / big-endian words
WAL_HEADER = 32
WAL_FRAME_HEADER = 24
SHM_HEADER = 48  # one copy of the wal-index header; the -shm file starts with two

Value = int | float | str | bytes | None  # what an SQLite record holds: NULL, integer, real, text, blob
Record = tuple[Value, ...]


def _checksum(data: bytes, big_endian: bool, s0: int = 0, s1: int = 0) -> tuple[int, int]:
    words = struct.unpack(f"{'>' if big_endian else '<'}{len(data) // 4}I", data)
    for even, odd in zip(words[0::2], words[1::2]):
        s0 = (s0 + even + s1) & 0xFFFFFFFF
        s1 = (s1 + odd + s0) & 0xFFFFFFFF
    return s0, s1


@dataclass
class WalReport:
    """What a database's -wal file holds. `problem` says why SQLite would silently lose committed data."""

    path: Path
    exists: bool = False
    page_size: int = 0
    frames: int = 0  # whole frames in the file
    valid_frames: int = 0  # frames SQLite will use: up to the last commit before the first bad checksum
    expected_frames: int | None = None  # what the -shm file says was committed, when it is trustworthy
    problem: str | None = None


def check_wal(db_path: Path | str) -> WalReport:
    """Validate `db_path`-wal as SQLite will when it next opens the database, without opening it.

    Damage shows three ways: a header that fails its checksum (SQLite ignores the whole log); a frame
    that fails its checksum with committed frames of the same log after it (SQLite drops them); fewer
    valid frames than the -shm index says were committed (the log was truncated or its tail damaged).
    A torn, uncommitted last transaction after a crash is none of these: SQLite is right to drop it.
    """
    report = _check_wal_once(db_path)
    for _ in range(WAL_RECHECKS):
        if not report.problem:
            break
        # A writer at work can restart the log and overwrite a frame while it is being read, which looks
        # like a bad checksum for that one read. Damage on disk stays put and shows again.
        report = _check_wal_once(db_path)
    return report


WAL_RECHECKS = 2


def _check_wal_once(db_path: Path | str) -> WalReport:
    wal = Path(f"{db_path}-wal")
    report = WalReport(wal)
    if not wal.exists():
        return report
    report.exists = True
    # The index before the log: should a writer still be at work, the index can then only lag the log.
    shm_head = _read_shm_header(db_path)
    with wal.open("rb") as f:
        return _check_wal_file(f, wal.stat().st_size, shm_head, report)


def _check_wal_file(f: BinaryIO, size: int, shm_head: bytes, report: WalReport) -> WalReport:
    """Reads the log frame by frame (it may be hundreds of MB when checkpoints could not run)."""
    if size == 0:
        return report
    if size < WAL_HEADER:
        report.problem = f"the log is {size} bytes, shorter than its 32-byte header"
        return report
    header = f.read(WAL_HEADER)
    magic, version, page_size, _ckpt, salt1, salt2, c1, c2 = struct.unpack(">8I", header)
    if magic not in WAL_MAGIC:
        report.problem = "the log's header is not a WAL header (bad magic number)"
        return report
    big = magic == WAL_MAGIC[1]
    if _checksum(header[:24], big) != (c1, c2) or version != 3007000 or not _valid_page_size(page_size):
        report.problem = "the log's header fails its checksum: SQLite would ignore every frame in it"
        return report
    report.page_size = page_size
    frame_size = WAL_FRAME_HEADER + page_size
    report.frames = (size - WAL_HEADER) // frame_size
    s0, s1 = c1, c2
    broken_at: int | None = None
    for n in range(report.frames):
        frame = f.read(frame_size)
        _pgno, commit_size, f_salt1, f_salt2, f_c1, f_c2 = struct.unpack(">6I", frame[:WAL_FRAME_HEADER])
        if (f_salt1, f_salt2) != (salt1, salt2):
            break  # left over from an earlier log generation: the end of this one
        s0, s1 = _checksum(frame[:8], big, s0, s1)
        s0, s1 = _checksum(frame[WAL_FRAME_HEADER:], big, s0, s1)
        if (s0, s1) != (f_c1, f_c2):
            broken_at = n
            break
        if commit_size:
            report.valid_frames = n + 1
    if broken_at is not None:
        last_commit = None
        for m in range(broken_at + 1, report.frames):
            f.seek(WAL_HEADER + m * frame_size)
            _pgno, commit_size, f_salt1, f_salt2 = struct.unpack(">4I", f.read(16))
            if (f_salt1, f_salt2) == (salt1, salt2) and commit_size:
                last_commit = m
        if last_commit is not None and not _restarted(f, header):
            report.problem = (f"frame {broken_at + 1} of {report.frames} fails its checksum and committed frames "
                              f"follow it: SQLite would drop frames {broken_at + 1}-{last_commit + 1}")
            return report
    report.expected_frames = _shm_committed_frames(shm_head, (salt1, salt2))
    if (report.expected_frames is not None and report.valid_frames < report.expected_frames
            and not _restarted(f, header)):
        report.problem = (f"the log holds {report.valid_frames} valid frames but {report.expected_frames} were "
                          "committed (its -shm index says so): it was truncated or its end is damaged")
    return report


def _restarted(f: BinaryIO, header: bytes) -> bool:
    """A checkpoint started the log over while we read it (a running database): not damage."""
    f.seek(0)
    return f.read(WAL_HEADER) != header


def _valid_page_size(size: int) -> bool:
    return 512 <= size <= 65536 and size & (size - 1) == 0


def _read_shm_header(db_path: Path | str) -> bytes:
    try:
        with Path(f"{db_path}-shm").open("rb") as f:
            return f.read(2 * SHM_HEADER)
    except OSError:
        return b""


def _shm_committed_frames(head: bytes, salts: tuple[int, int]) -> int | None:
    """mxFrame from the -shm wal-index header, if both copies agree, pass their checksum and belong to
    this log (same salts). The -shm file is not synced to disk: after a power cut it proves nothing, so
    an untrustworthy one is ignored rather than held against the log."""
    if len(head) < 2 * SHM_HEADER or head[:SHM_HEADER] != head[SHM_HEADER:]:
        return None
    order = "<" if struct.pack("=I", 1) == struct.pack("<I", 1) else ">"  # the wal-index is in native order
    version, _unused, _change, is_init, _big, _page = struct.unpack(f"{order}3I2BH", head[:16])
    mx_frame, _npage, _fc1, _fc2, salt1, salt2, c1, c2 = struct.unpack(f"{order}8I", head[16:48])
    if version != 3007000 or not is_init:
        return None
    if _checksum(head[:40], order == ">") != (c1, c2):
        return None
    # The salts are copied from the WAL header as bytes, so compare them as the bytes they are.
    if struct.pack(f"{order}2I", salt1, salt2) != struct.pack(">2I", *salts):
        return None
    return int(mx_frame)


# -- salvage ----------------------------------------------------------------------------------------

@dataclass
class ScanReport:
    """How much of a damaged file could be read."""

    pages: int = 0  # pages looked at (main file and WAL frames)
    leaf_pages: int = 0  # table leaf pages among them that parsed
    bad_pages: int = 0  # pages of no known kind, or table leaves that did not parse
    bad_cells: int = 0  # cells on parsed pages that did not decode
    notes: list[str] = field(default_factory=list)


def table_records(db_path: Path | str, report: ScanReport | None = None) -> Iterator[tuple[int, Record]]:
    """Every (rowid, column values) on a live table leaf page of the database or its WAL.

    Reads the file, not the b-tree, so rows are found wherever their page survived. Of each page the
    newest copy that still says what it is counts (the log's last frame of it, else the main file's):
    older copies hold rows deleted since. Pages on the free list are skipped for the same reason, when
    the header that lists them is readable. A copy that no longer says what it is (damaged) gives way
    to the next older one: an old row is better than none, and the caller must tolerate it.
    """
    report = report if report is not None else ScanReport()
    pages = _pages(Path(db_path), report)
    free = _free_pages(pages, report)
    for pgno in sorted(pages.copies):
        if pgno in free:
            continue
        for page in reversed(pages.copies[pgno]):  # newest first
            report.pages += 1
            offset = 100 if pgno == 1 else 0
            kind = page[offset] if len(page) > offset else -1
            if kind in (0x00, 0x02, 0x05, 0x0A):
                break  # an index, interior, overflow or free page now: no rows of its own
            if kind != 0x0D:
                # B-tree pages start with their type; overflow and free-list pages with a page number,
                # whose first byte is 0 below 2^24 pages. This one no longer says what it is.
                report.bad_pages += 1
                continue
            try:
                cells = _leaf_cells(page, offset)
            except (IndexError, ValueError, struct.error):
                report.bad_pages += 1
                continue
            report.leaf_pages += 1
            for cell in cells:
                try:
                    yield _cell_record(page, cell, pages)
                except (IndexError, ValueError, struct.error, KeyError):
                    report.bad_cells += 1
            break


class _Pages:
    def __init__(self, page_size: int, usable: int) -> None:
        self.page_size = page_size
        self.usable = usable
        self.copies: dict[int, list[memoryview]] = {}  # every copy of each page, oldest first

    def add(self, pgno: int, page: memoryview) -> None:
        self.copies.setdefault(pgno, []).append(page)

    def latest(self, pgno: int) -> memoryview:
        return self.copies[pgno][-1]


def _pages(db_path: Path, report: ScanReport) -> _Pages:
    # Views, not copies: an edge box may have less memory to spare than twice its outbox.
    main = memoryview(db_path.read_bytes() if db_path.exists() else b"")
    wal_path = Path(f"{db_path}-wal")
    wal = memoryview(wal_path.read_bytes() if wal_path.exists() else b"")
    page_size, reserved = 0, 0
    if bytes(main[:16]) == b"SQLite format 3\x00":
        raw = struct.unpack(">H", main[16:18])[0]
        page_size = 65536 if raw == 1 else raw
        reserved = main[20]
    wal_salts = None
    if len(wal) >= WAL_HEADER and struct.unpack(">I", wal[:4])[0] in WAL_MAGIC:
        wal_salts = tuple(struct.unpack(">2I", wal[16:24]))
        if not _valid_page_size(page_size):
            page_size = struct.unpack(">I", wal[8:12])[0]
    if not _valid_page_size(page_size):
        report.notes.append("page size unreadable; assuming 4096")
        page_size, reserved = 4096, 0
    pages = _Pages(page_size, page_size - reserved)
    for n in range(len(main) // page_size):
        pages.add(n + 1, main[n * page_size:(n + 1) * page_size])
    if len(main) % page_size:
        report.notes.append(f"main file ends inside a page ({len(main)} bytes): the partial page is skipped")
    frame_size = WAL_FRAME_HEADER + page_size
    for n in range(max(0, (len(wal) - WAL_HEADER) // frame_size)):
        start = WAL_HEADER + n * frame_size
        pgno, _commit, salt1, salt2 = struct.unpack(">4I", wal[start:start + 16])
        # Frames of an earlier log generation were copied into the main file before it started over.
        if pgno and (wal_salts is None or (salt1, salt2) == wal_salts):
            pages.add(pgno, wal[start + WAL_FRAME_HEADER:start + frame_size])
    return pages


def _free_pages(pages: _Pages, report: ScanReport) -> set[int]:
    """The free list, from the newest readable copy of page 1 (empty when it cannot be read)."""
    header = next((p for p in reversed(pages.copies.get(1, [])) if bytes(p[:16]) == b"SQLite format 3\x00"), None)
    if header is None:
        report.notes.append("database header unreadable: free pages cannot be told from live ones")
        return set()
    trunk, count = struct.unpack(">2I", header[32:40])
    free: set[int] = set()
    while trunk and trunk not in free and trunk in pages.copies and len(free) <= count:
        page = pages.latest(trunk)
        free.add(trunk)
        next_trunk, leaves = struct.unpack(">2I", page[:8])
        leaves = min(leaves, (pages.usable - 8) // 4)
        free.update(struct.unpack(f">{leaves}I", page[8:8 + 4 * leaves]))
        trunk = next_trunk
    return free


def _varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    value = 0
    for i in range(8):
        byte = buf[pos + i]
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            return value, pos + i + 1
    return (value << 8) | buf[pos + 8], pos + 9


def _leaf_cells(page: memoryview, offset: int) -> list[int]:
    count = struct.unpack(">H", page[offset + 3:offset + 5])[0]
    content_start = struct.unpack(">H", page[offset + 5:offset + 7])[0] or 65536
    pointers = struct.unpack(f">{count}H", page[offset + 8:offset + 8 + 2 * count])
    if offset + 8 + 2 * count > len(page) or content_start > len(page):
        raise ValueError("cell pointer array past the page")
    for pointer in pointers:
        if not offset + 8 + 2 * count <= pointer < len(page):
            raise ValueError("cell pointer outside the page")
    return list(pointers)


def _cell_record(page: memoryview, pos: int, pages: _Pages) -> tuple[int, Record]:
    size, pos = _varint(page, pos)
    rowid, pos = _varint(page, pos)
    if rowid >= 1 << 63:
        rowid -= 1 << 64
    usable = pages.usable
    max_local = usable - 35
    if size <= max_local:
        payload = bytes(page[pos:pos + size])
    else:
        min_local = (usable - 12) * 32 // 255 - 23
        local = min_local + (size - min_local) % (usable - 4)
        if local > max_local:
            local = min_local
        chained = bytearray(page[pos:pos + local])
        (next_page,) = struct.unpack(">I", page[pos + local:pos + local + 4])
        seen: set[int] = set()
        while len(chained) < size:
            if next_page in seen or next_page not in pages.copies:
                raise ValueError("broken overflow chain")
            seen.add(next_page)
            overflow = pages.latest(next_page)
            (next_page,) = struct.unpack(">I", overflow[:4])
            chained += overflow[4:min(usable, 4 + size - len(chained))]
        payload = bytes(chained)
    if len(payload) != size:
        raise ValueError("cell runs past the page")
    return rowid, _record(payload)


def _record(payload: bytes) -> Record:
    header_size, pos = _varint(payload, 0)
    if header_size > len(payload):
        raise ValueError("record header past the record")
    types = []
    while pos < header_size:
        serial, pos = _varint(payload, pos)
        types.append(serial)
    values: list[Value] = []
    pos = header_size
    for serial in types:
        if serial == 0:
            values.append(None)
        elif 1 <= serial <= 6:
            width = (1, 2, 3, 4, 6, 8)[serial - 1]
            values.append(int.from_bytes(payload[pos:pos + width], "big", signed=True))
            pos += width
        elif serial == 7:
            values.append(struct.unpack(">d", payload[pos:pos + 8])[0])
            pos += 8
        elif serial in (8, 9):
            values.append(serial - 8)
        elif serial >= 12:
            width = (serial - 12) // 2
            chunk = payload[pos:pos + width]
            values.append(bytes(chunk) if serial % 2 == 0 else bytes(chunk).decode("utf-8"))
            pos += width
        else:
            raise ValueError(f"reserved serial type {serial}")
        if pos > len(payload):
            raise ValueError("record values past the record")
    return tuple(values)


def fsync_directory(path: Path) -> None:
    """Make a rename or a new file in `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
