"""The periodic thread the WAL checkpointer and the database maintenance run on."""

from __future__ import annotations

import logging

from isowatch.periodic import Periodic
from tests.support import wait_until


class Flaky(Periodic):
    """Fails every tick the same way, as a checkpoint does on a full disk."""

    def __init__(self) -> None:
        super().__init__("flaky-job", every_s=0.001, logger=logging.getLogger("tests.periodic"))
        self.ticks = 0

    def tick(self) -> None:
        self.ticks += 1
        raise OSError("No space left on device")


def test_a_tick_that_raises_is_logged_once_with_its_traceback_and_the_ticks_go_on(caplog):
    caplog.set_level(logging.ERROR, "tests.periodic")
    flaky = Flaky().start()
    try:
        wait_until(lambda: flaky.ticks >= 50, what="50 failed ticks")
    finally:
        flaky.stop()
    assert not flaky._thread.is_alive()
    failures = [r for r in caplog.records if "flaky-job failed (OSError: No space left on device)" in r.getMessage()]
    assert len(failures) == 1 and failures[0].exc_info, "one line with its traceback, not one per tick"


def test_stop_before_start_is_harmless():
    Flaky().stop()
