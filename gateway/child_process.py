"""The gateway's child processes (the store processes, the alert process) and how the parent keeps them.

A child is spawned, not forked: the parent runs threads, and a forked child would inherit their locks in
whatever state they were. Parent and child talk over one pipe:

- the child builds what it serves (`setup(*args)`, run in the child) and sends that it is ready, or why it
  could not start, and then leaves; the parent raises `ChildStartError` with the child's reason;
- then the child answers requests in order: `handle(request)` returns the reply to send (None: no reply);
- on `STOP` it calls `stop()` on what it built and leaves;
- at end-of-file (the parent died) it leaves at once, as if killed with it: a gateway started again
  starts children of its own, and two of a kind (two alert workers dispatching) must never run side by side.

The child ignores SIGINT and SIGTERM: a Ctrl-C or systemd's SIGTERM reaches the whole process group, and the
parent decides when its children stop. So a child that does not stop in time is killed (a SIGTERM would
be ignored).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any, Protocol

log = logging.getLogger(__name__)

STOP = "stop"
START_TIMEOUT_S = 60.0  # a spawned child's interpreter, imports and setup (opening the database) on a slow box


class Served(Protocol):
    """What a child serves: built by `setup` in the child."""

    def handle(self, request: Any) -> Any: ...

    def stop(self) -> None: ...


# Runs in the child; a module-level function (spawn pickles it by name), returning what the child serves.
Setup = Callable[..., Served]


class ChildError(RuntimeError):
    """A child process could not start, or is gone."""


class ChildStartError(ChildError):
    """The child could not start (its reason), exited while starting, or did not start in time."""


class ChildGone(ChildError):
    """The child process has exited: what it held is lost, what is sent to it goes nowhere."""


@dataclass(frozen=True, slots=True)
class _Ready:
    pass


@dataclass(frozen=True, slots=True)
class _StartFailed:
    reason: str


_GONE = object()  # the reader's last word: the pipe reached end-of-file
_NOTHING = object()


class Child:
    """One spawned child: its process, its pipe, and a thread that takes its replies off the pipe as they come.

    A child blocked writing a large reply while the parent blocks writing the next request to it would
    otherwise wait for each other for ever.
    """

    def __init__(self, what: str, name: str, setup: Setup, args: tuple, log_level: int) -> None:
        self.what = what
        context = multiprocessing.get_context("spawn")
        self.conn, theirs = context.Pipe()
        self.process: BaseProcess = context.Process(target=_main, args=(theirs, log_level, setup, args), name=name,
                                                    daemon=True)
        self.process.start()
        theirs.close()
        self.stopped = False
        self._send_lock = threading.Lock()  # a Connection is not safe to write from two threads at once
        self._ready = threading.Event()  # set at the child's first word, or at end-of-file
        self._started = False
        self._start_error: str | None = None
        self._gone = threading.Event()
        self._replies: queue.Queue[object] = queue.Queue()
        self._peeked: object = _NOTHING
        threading.Thread(target=self._read, name=f"{name}-replies", daemon=True).start()

    @property
    def gone(self) -> bool:
        return self._gone.is_set()

    def _read(self) -> None:
        try:
            first = self.conn.recv()
            if isinstance(first, _StartFailed):
                self._start_error = first.reason
            else:
                self._started = True
            self._ready.set()
            while True:
                self._replies.put(self.conn.recv())
        except (EOFError, OSError):
            self._gone.set()
            self._ready.set()
            self._replies.put(_GONE)
            with self._send_lock:  # closed by the thread that reads it, once nothing more can come
                self.conn.close()

    def wait_ready(self, timeout: float) -> None:
        """Return once the child is up (or was: one that has died since is for `send` and `reply` to tell)."""
        if not self._ready.wait(timeout):
            raise ChildStartError(f"the {self.what} did not start within {timeout:.0f} s")
        if self._start_error is not None:
            raise ChildStartError(f"the {self.what} could not start: {self._start_error}")
        if not self._started:
            self.process.join(5)
            raise ChildStartError(f"the {self.what} exited while starting (exit code {self.process.exitcode})")

    def send(self, message: Any) -> None:
        try:
            with self._send_lock:
                self.conn.send(message)
        except (EOFError, OSError) as exc:
            self._gone.set()
            raise ChildGone(f"the {self.what} has exited") from exc

    def has_reply(self, timeout: float = 0.0) -> bool:
        """Whether a reply (or word that the child is gone) is there, waiting up to `timeout`."""
        if self._peeked is _NOTHING:
            try:
                self._peeked = self._replies.get(timeout=timeout) if timeout else self._replies.get_nowait()
            except queue.Empty:
                return False
        return True

    def reply(self) -> Any:
        """The next reply, in the order of the requests; raises `ChildGone` once the child has exited."""
        if self._peeked is not _NOTHING:
            reply, self._peeked = self._peeked, _NOTHING
        else:
            reply = self._replies.get()
        if reply is _GONE:
            self._replies.put(_GONE)  # and for every reply still awaited
            raise ChildGone(f"the {self.what} has exited")
        return reply

    def stop(self, timeout: float) -> None:
        """Ask the child to stop; kill it if it has not within `timeout`."""
        self.stopped = True
        try:
            self.send(STOP)
        except ChildGone:
            pass
        self.process.join(timeout)
        if self.process.is_alive():
            log.error("%s did not stop within %g s; killing it", self.what, timeout)
            self.kill()

    def kill(self) -> None:
        self.process.kill()
        self.process.join(5)


class ChildSupervisor:
    """Keeps one child of a kind: spawns it, notices when it has died, starts another, stops it.

    Another is started in one of two ways. `current()` starts one when asked for a child that has died:
    the store process, whose next batch needs it (and which is not needed until then). `watch(delay_s)`
    starts one as soon as the child dies, after `delay_s`: the alert worker, which has work of its own in
    the database and no one to ask for it. Each child started in place of one that died is a restart.
    """

    def __init__(self, what: str, name: str, setup: Setup, args: tuple) -> None:
        self.what = what
        self.name = name
        self._setup = setup
        self._args = args
        self._log_level = logging.getLogger().level  # the child logs as the parent was set up to
        self._child: Child | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None
        self.restarts = 0

    @property
    def child(self) -> Child | None:
        """The latest child, as it is (perhaps dead, perhaps stopped), without starting one."""
        return self._child

    @property
    def process(self) -> BaseProcess | None:
        return None if self._child is None else self._child.process

    def start(self) -> Child:
        """Spawn the child and return at once (`Child.wait_ready` waits for it)."""
        with self._lock:
            self._child = self._spawn()
            return self._child

    def start_and_wait(self, timeout: float) -> Child:
        """Spawn the child and wait for it to be up; one that fails or does not come up in time is killed."""
        return self._wait_ready_or_kill(self.start(), timeout)

    def current(self) -> Child:
        """The child, starting it if there is none (or it was stopped) and starting another if it has died."""
        with self._lock:
            child = self._child
            if child is None or child.stopped:
                child = self._child = self._spawn()
            elif child.gone:
                self._count_death(child, "starting another")
                child = self._child = self._spawn()
            return child

    def watch(self, delay_s: float, start_timeout: float) -> None:
        """From now on, start another child `delay_s` after the child dies, until `stop`."""
        self._watcher = threading.Thread(target=self._watch, args=(delay_s, start_timeout),
                                         name=f"{self.name}-watch", daemon=True)
        self._watcher.start()

    def stop(self, timeout: float) -> None:
        """Let the child finish what it has in hand and leave; kill it after `timeout`. No restarts after this."""
        with self._lock:  # the watcher starts no child after this (it checks under the lock)
            self._stopping.set()
            child = self._child
        if child is not None and not child.stopped:
            child.stop(timeout)
        if self._watcher is not None:
            self._watcher.join(5)
            self._watcher = None

    def _spawn(self) -> Child:
        return Child(self.what, self.name, self._setup, self._args, self._log_level)

    def _count_death(self, child: Child, then: str) -> None:
        child.process.join(1)
        self.restarts += 1
        log.error("%s exited (code %s); %s", self.what, child.process.exitcode, then)

    @staticmethod
    def _wait_ready_or_kill(child: Child, timeout: float) -> Child:
        try:
            child.wait_ready(timeout)
        except ChildStartError:
            child.kill()
            raise
        return child

    def _watch(self, delay_s: float, start_timeout: float) -> None:
        while not self._stopping.is_set():
            child = self._child
            if child is None:
                self._stopping.wait(1.0)
                continue
            if not wait([child.process.sentinel], timeout=1.0) or self._stopping.is_set():
                continue
            self._count_death(child, f"starting it again in {delay_s:g} s")
            if self._stopping.wait(delay_s):
                return
            with self._lock:
                if self._stopping.is_set():
                    return
                child = self._child = self._spawn()
            try:
                self._wait_ready_or_kill(child, start_timeout)
            except ChildStartError:
                if not self._stopping.is_set():  # not stopped while it was starting
                    log.exception("%s could not be started again; retrying", self.what)


def _main(conn: Connection, log_level: int, setup: Setup, args: tuple) -> None:
    """The child's side of the pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop (see the module's doc)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        served = setup(*args)
    except Exception as exc:
        conn.send(_StartFailed(f"{type(exc).__name__}: {exc}"))
        return
    conn.send(_Ready())
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            os._exit(1)  # the parent died: leave now, as if killed with it, before its successor starts ours
        if request == STOP:
            served.stop()
            return
        reply = served.handle(request)
        if reply is not None:
            conn.send(reply)
