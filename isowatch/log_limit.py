"""Rate-limited logging for loops that fail the same way every iteration (a full disk, a dead peer).

The first occurrence of a message is logged in full (with its traceback when asked); repeats of the
same message within `every_s` are counted, not logged (or logged at `held_level`, say DEBUG), and the
next line that does go out says how many were held back. A different message is logged at once: only
identical repeats are suppressed, or repeats of the same `key` when the text varies (a frame's number).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable


class RateLimitedLog:
    def __init__(self, logger: logging.Logger, every_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic, *, held_level: int | None = None) -> None:
        self.logger = logger
        self.every_s = every_s
        self.clock = clock
        self.held_level = held_level
        self._lock = threading.Lock()
        self._last: dict[str, tuple[float, int]] = {}  # key -> (when last logged, repeats held back)

    def log(self, level: int, message: str, *, key: str | None = None, exc_info: bool = False) -> bool:
        """Log `message` unless its `key` (the message itself by default) was logged less than `every_s`
        ago; returns whether it went out at `level`."""
        key = message if key is None else key
        now = self.clock()
        with self._lock:
            last, held = self._last.get(key, (None, 0))
            held_back = last is not None and now - last < self.every_s
            if last is not None and held_back:
                self._last[key] = (last, held + 1)
            else:
                self._last[key] = (now, 0)
        if held_back:
            if self.held_level is not None:
                self.logger.log(self.held_level, message)
            return False
        if last is None:
            self.logger.log(level, message, exc_info=exc_info)
        else:
            # The traceback was in the first line; repeats only say how often it happened since.
            self.logger.log(level, "%s (repeated %d more times in the last %.0f s)", message, held, now - last)
        return True

    def held(self) -> int:
        """Occurrences not logged since the last line that went out, over all messages."""
        with self._lock:
            return sum(h for _t, h in self._last.values())

    def clear(self, key: str | None = None) -> int:
        """Forget one message or key (or all), so its next occurrence logs in full; returns how many times
        it (they) occurred since last logged in full, 0 when it had not occurred at all."""
        with self._lock:
            if key is None:
                occurred = sum(1 + h for _t, h in self._last.values())
                self._last.clear()
                return occurred
            if key not in self._last:
                return 0
            return 1 + self._last.pop(key)[1]
