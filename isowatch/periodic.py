"""A thread of its own that does one thing every so often (a checkpoint, a backup), from start to stop."""

from __future__ import annotations

import logging
import threading
from typing import Self

from isowatch.log_limit import RateLimitedLog


class Periodic:
    """Calls `tick()` every `every_s` seconds on a thread of its own, from `start()` until `stop()`.

    A tick that raises does not end the thread, which would leave its work undone in silence: the error
    is logged (the first time with its traceback, then a line an hour saying how often) and the next
    tick comes as usual.
    """

    def __init__(self, name: str, every_s: float, logger: logging.Logger) -> None:
        self.every_s = every_s
        self._errors = RateLimitedLog(logger, every_s=3600)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def tick(self) -> None:
        raise NotImplementedError

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Let the tick under way finish (up to `timeout`); no tick after this."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.tick()
            except Exception as exc:  # whatever failed, the next tick may not: keep the thread
                self._errors.log(logging.ERROR, f"{self._thread.name} failed ({type(exc).__name__}: {exc}); "
                                                f"trying again every {self.every_s:g} s", exc_info=True)
