"""The outbox's high-water mark: a small file beside it that keeps sequence numbers from going back when
the outbox itself is lost, damaged or cannot be written.

It holds three numbers: `lease`, above every sequence number handed out (taken in blocks, so it is
written once per `LEASE` numbers, not per message); `consumed`, the next number after those used up
while the outbox could not record them (a full disk); and `dropped`, the outbox's drop counter at that
moment. The file is created at full size once and then only overwritten in place, alternating between
two checksummed slots: no rename, no new block, so it can still be written on a full disk, and a
write torn by a power cut leaves the other slot intact.
"""

from __future__ import annotations

import errno
import logging
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from isowatch.sqlite_files import fsync_directory

log = logging.getLogger(__name__)

LEASE = 1000
_MAGIC = b"ISOWSEQ1"
_SLOT = struct.Struct(">8sQQQQ")  # magic, generation, lease, consumed, dropped; then a crc32
_SLOT_SIZE = _SLOT.size + 4


@dataclass(frozen=True, slots=True)
class Mark:
    lease: int = 0
    consumed: int = 0
    dropped: int = 0


class SeqMark:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._generation = 0
        self._fd: int | None = None
        self.found = False  # a readable mark already there: this outbox has numbered messages before
        self.mark = self._read() if path.exists() else Mark()
        try:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            if os.fstat(self._fd).st_size < 2 * _SLOT_SIZE:
                os.pwrite(self._fd, bytes(2 * _SLOT_SIZE), 0)  # all the space it will ever need
                os.fsync(self._fd)
                fsync_directory(path.parent)
                self.write(self.mark)
        except OSError as exc:
            # Without it the outbox still numbers from its own counter; only the lost-outbox case suffers.
            log.error("sequence high-water mark %s unusable (%s): a lost outbox would restart numbering",
                      path, exc)
            self.close()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _read(self) -> Mark:
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            log.error("sequence high-water mark %s unreadable: %s", self.path, exc)
            return Mark()
        best = Mark()
        for n in range(2):
            slot = data[n * _SLOT_SIZE:(n + 1) * _SLOT_SIZE]
            if len(slot) < _SLOT_SIZE or zlib.crc32(slot[:-4]) != int.from_bytes(slot[-4:], "big"):
                continue
            magic, generation, lease, consumed, dropped = _SLOT.unpack(slot[:-4])
            if magic == _MAGIC:
                self.found = True
                self._generation = max(self._generation, generation)
                best = Mark(max(best.lease, lease), max(best.consumed, consumed), max(best.dropped, dropped))
        return best

    def write(self, mark: Mark) -> bool:
        """Store `mark` durably (fsync); False when the file is unusable or the write failed."""
        self.mark = Mark(max(mark.lease, self.mark.lease), max(mark.consumed, self.mark.consumed),
                         max(mark.dropped, self.mark.dropped))
        if self._fd is None:
            return False
        self._generation += 1
        body = _SLOT.pack(_MAGIC, self._generation, self.mark.lease, self.mark.consumed, self.mark.dropped)
        try:
            os.pwrite(self._fd, body + zlib.crc32(body).to_bytes(4, "big"), (self._generation % 2) * _SLOT_SIZE)
            os.fsync(self._fd)
        except OSError as exc:
            level = logging.WARNING if exc.errno == errno.ENOSPC else logging.ERROR
            log.log(level, "sequence high-water mark %s not written: %s", self.path, exc)
            return False
        return True
