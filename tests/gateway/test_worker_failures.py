"""A failing alert worker step neither kills the worker nor floods the log (nothing given up in silence)."""

from __future__ import annotations

import logging

from tests.fixtures.world import World
from tests.support import wait_until


def test_an_unexpected_error_in_a_step_is_logged_once_and_the_worker_goes_on_paging(tmp_path, inbox, caplog):
    world = World(tmp_path, inbox)
    real_run_once = world.worker.run_once
    failures = {"left": 5}

    def flaky_run_once(**kwargs):
        if failures["left"]:
            failures["left"] -= 1
            raise ValueError("a row this code cannot handle")
        return real_run_once(**kwargs)

    world.worker.run_once = flaky_run_once  # type: ignore[method-assign]
    caplog.set_level(logging.ERROR, logger="gateway.alert_worker")
    world.worker._stop.wait = lambda timeout=None: False  # type: ignore[method-assign]  # retry without the pause
    world.door()
    world.worker.start()
    try:
        world.worker.wake()
        wait_until(lambda: failures["left"] == 0, timeout=30, what="the failing steps tried")
        world.worker.wake()
        wait_until(lambda: "chen-social" in world.recipients(), timeout=30, what="the door page after the failures")
    finally:
        world.close()
    lines = [r for r in caplog.records if "alert worker step failed" in r.getMessage()]
    assert len(lines) == 1 and lines[0].exc_info, [r.getMessage() for r in lines]
