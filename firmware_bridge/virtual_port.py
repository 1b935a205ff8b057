"""Pseudo-terminals that stand in for USB serial adapters: for tests, the bench and the demo.

`VirtualPort` is one pty whose slave is reachable at a stable symlink (like /dev/serial/by-id/...);
`unplug()` closes it and removes the link, `plug()` makes a new pty (a new /dev/pts/N) behind the
same link, which is what the kernel and udev do when a cable is pulled and pushed back.
`NullModem` joins two ptys back to back, so two programs that both want a port path (a pymodbus
server and our client) can talk.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import tty
from pathlib import Path

log = logging.getLogger(__name__)


class VirtualPort:
    """One pty; the device side (master fd) stays with us, the host side is `link` for pyserial."""

    def __init__(self, link: str | os.PathLike[str]) -> None:
        self.link = Path(link)
        self.master: int | None = None
        self._slave: int | None = None
        self.slave_name: str | None = None

    def plug(self) -> "VirtualPort":
        master, slave = os.openpty()
        # Raw before anyone opens it: a cooked pty would echo our frames back and turn CR into LF.
        tty.setraw(slave)
        tty.setraw(master)
        self.master, self._slave = master, slave  # keeping the slave open: the host may come and go
        self.slave_name = os.ttyname(slave)
        tmp = self.link.with_name(self.link.name + ".tmp")
        tmp.unlink(missing_ok=True)
        os.symlink(self.slave_name, tmp)
        os.replace(tmp, self.link)  # atomic, as udev renames
        log.info("virtual port plugged link=%s device=%s", self.link, self.slave_name)
        return self

    def unplug(self) -> None:
        """The cable is pulled: the host's reads fail and the stable name disappears."""
        self.link.unlink(missing_ok=True)
        for fd in (self.master, self._slave):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass  # already closed
        self.master = self._slave = None
        log.info("virtual port unplugged link=%s device=%s", self.link, self.slave_name)

    def write(self, data: bytes) -> None:
        if self.master is None:
            raise OSError("virtual port is unplugged")
        view = memoryview(data)
        while view:
            written = os.write(self.master, view)
            view = view[written:]

    def read(self, timeout: float) -> bytes:
        """What the host wrote, or b"" after `timeout` seconds."""
        fd = self.master
        if fd is None:
            return b""
        try:
            ready, _, _ = select.select([fd], [], [], timeout)
            return os.read(fd, 4096) if ready else b""
        except (OSError, ValueError):
            return b""  # unplugged while we waited

    def __enter__(self) -> "VirtualPort":
        return self.plug()

    def __exit__(self, *exc: object) -> None:
        self.unplug()


class NullModem:
    """Two virtual ports wired back to back by a relay thread: what one side writes, the other reads."""

    def __init__(self, link_a: str | os.PathLike[str], link_b: str | os.PathLike[str]) -> None:
        self.a = VirtualPort(link_a)
        self.b = VirtualPort(link_b)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "NullModem":
        self.a.plug()
        self.b.plug()
        self._stop.clear()
        self._thread = threading.Thread(target=self._relay, name="null-modem", daemon=True)
        self._thread.start()
        return self

    def _relay(self) -> None:
        assert self.a.master is not None and self.b.master is not None
        peer = {self.a.master: self.b.master, self.b.master: self.a.master}
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select(list(peer), [], [], 0.05)
                for fd in ready:
                    data = os.read(fd, 4096)
                    if data:
                        os.write(peer[fd], data)
            except OSError as exc:
                log.debug("null modem relay stopped: %s", exc)
                return

    def _halt_relay(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def replug_b(self) -> None:
        """Pull side b's cable and plug it back: b gets a new pty behind the same link, a is untouched."""
        self._halt_relay()
        self.b.unplug()
        self.b.plug()
        self._stop.clear()
        self._thread = threading.Thread(target=self._relay, name="null-modem", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._halt_relay()
        self.a.unplug()
        self.b.unplug()

    def __enter__(self) -> "NullModem":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
