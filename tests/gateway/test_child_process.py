"""The child-process supervisor the store and alert processes run on, with tiny real children.

The children's setups are below at module level: the child is spawned and imports this module to find them.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from datetime import UTC, datetime

import pytest

from gateway.child_process import ChildGone, ChildStartError, ChildSupervisor
from gateway.store_process import StoreError, StoreProcess
from tests.support import wait_until

START_S = 60.0  # a wait for a spawned interpreter, not a timing check


class Echo:
    """Replies to each request with ("echo", request); "hang" never returns, "quiet" has no reply."""

    def handle(self, request):
        if request == "hang":
            threading.Event().wait()
        if request == "quiet":
            return None
        return ("echo", request)

    def stop(self) -> None:
        pass


def echo() -> Echo:
    return Echo()


def refuse(reason: str) -> Echo:
    raise ValueError(reason)


def vanish() -> Echo:
    os._exit(5)


class Stubborn(Echo):
    def stop(self) -> None:
        threading.Event().wait()


def stubborn() -> Stubborn:
    return Stubborn()


def supervised(setup, *args) -> ChildSupervisor:
    return ChildSupervisor("test child", "isowatch-test", setup, args)


@pytest.fixture
def children():
    """Supervisors made in a test, stopped after it whatever happened."""
    made: list[ChildSupervisor] = []

    def make(setup, *args) -> ChildSupervisor:
        made.append(supervised(setup, *args))
        return made[-1]

    yield make
    for supervisor in made:
        supervisor.stop(5)


def test_a_child_says_it_is_ready_then_answers_in_order_and_stops_when_asked(children):
    supervisor = children(echo)
    child = supervisor.start_and_wait(START_S)
    for n in range(3):
        child.send(n)
    child.send("quiet")
    child.send("last")
    assert [child.reply() for _ in range(4)] == [("echo", 0), ("echo", 1), ("echo", 2), ("echo", "last")]
    supervisor.stop(30)
    assert child.process.exitcode == 0 and supervisor.restarts == 0


def test_a_child_that_cannot_start_says_why_and_the_parent_raises_it(children):
    supervisor = children(refuse, "no database at /nowhere")
    with pytest.raises(ChildStartError, match=r"the test child could not start: ValueError: no database at /nowhere"):
        supervisor.start_and_wait(START_S)
    assert not supervisor.process.is_alive()
    # Asked for again, it is started again (and fails again, saying so again).
    with pytest.raises(ChildStartError, match="could not start: ValueError"):
        supervisor.current().wait_ready(START_S)


def test_a_child_that_exits_while_starting_is_reported_with_its_exit_code(children):
    with pytest.raises(ChildStartError, match=r"the test child exited while starting \(exit code 5\)"):
        children(vanish).start_and_wait(START_S)


def test_a_killed_child_is_started_again_when_next_asked_for_and_counted(children, caplog):
    supervisor = children(echo)
    first = supervisor.start_and_wait(START_S)
    os.kill(first.process.pid, signal.SIGKILL)
    wait_until(lambda: first.gone, what="the parent to see the child gone")
    with pytest.raises(ChildGone):
        first.send("anyone?")
    caplog.set_level(logging.ERROR, "gateway.child_process")
    second = supervisor.current()
    assert second is not first and supervisor.restarts == 1
    assert "test child exited (code -9); starting another" in caplog.text
    assert supervisor.current() is second, "a live child is not replaced"
    second.wait_ready(START_S)
    second.send("again")
    assert second.reply() == ("echo", "again")


def test_a_watched_child_that_is_killed_is_started_again_by_itself_and_counted(children, caplog):
    caplog.set_level(logging.ERROR, "gateway.child_process")
    supervisor = children(echo)
    first = supervisor.start_and_wait(START_S)
    supervisor.watch(delay_s=0, start_timeout=START_S)
    os.kill(first.process.pid, signal.SIGKILL)
    wait_until(lambda: supervisor.child is not first, what="another child")
    assert supervisor.restarts == 1
    assert "test child exited (code -9); starting it again in 0 s" in caplog.text
    second = supervisor.child
    second.wait_ready(START_S)
    second.send("again")
    assert second.reply() == ("echo", "again")
    supervisor.stop(30)
    assert second.process.exitcode == 0 and supervisor.child is second and supervisor.restarts == 1


def test_every_reply_awaited_from_a_child_that_died_says_so(children):
    supervisor = children(echo)
    child = supervisor.start_and_wait(START_S)
    child.send("hang")
    child.send("never read")
    os.kill(child.process.pid, signal.SIGKILL)
    for _ in range(2):
        assert child.has_reply(timeout=START_S)
        with pytest.raises(ChildGone):
            child.reply()


def test_stop_kills_a_child_that_does_not_stop_in_time(children, caplog):
    caplog.set_level(logging.ERROR, "gateway.child_process")
    supervisor = children(stubborn)
    child = supervisor.start_and_wait(START_S)
    supervisor.stop(timeout=0.5)
    assert child.process.exitcode == -signal.SIGKILL
    assert "test child did not stop within 0.5 s; killing it" in caplog.text


def test_stop_kills_a_child_busy_with_a_request_that_never_ends(children):
    supervisor = children(echo)
    child = supervisor.start_and_wait(START_S)
    child.send("hang")
    supervisor.stop(timeout=0.5)
    assert child.process.exitcode == -signal.SIGKILL


# -- the store process on it ------------------------------------------------------------------------

def test_each_batch_held_by_a_store_process_that_died_fails_and_the_next_starts_another(tmp_path):
    """Two batches in the child's hands when it dies: both come back as failed (to be retried), not one."""
    store_process = StoreProcess(tmp_path / "gw.db", tmp_path / "snapshots").start()
    try:
        store_process.wait_ready()
        pid = store_process._child.process.pid
        os.kill(pid, signal.SIGSTOP)  # it holds both batches and answers neither
        now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
        store_process.submit([], now)
        store_process.submit([], now)
        os.kill(pid, signal.SIGKILL)
        for _ in range(2):
            assert store_process.has_result(timeout=START_S), "a batch held by a dead store process"
            with pytest.raises(StoreError, match="died with the batch in hand"):
                store_process.result()
        store_process.submit([], now)
        assert store_process.result().received == 0
        assert store_process.restarts == 1 and store_process._child.process.pid != pid
    finally:
        store_process.stop()
