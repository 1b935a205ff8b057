"""Camera input: a V4L2 device, an RTSP/HTTP stream or a video file, reopened with backoff when it dies."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Tick:
    frame: np.ndarray
    t_s: float  # seconds on the source's own timeline (video time for files, monotonic for live sources)


class FrameSource:
    def __init__(self, source: str, *, loop: bool = False, realtime: bool = True, reconnect_max_s: float = 30.0) -> None:
        self.source = source
        self.loop = loop
        self.realtime = realtime
        self.reconnect_max_s = reconnect_max_s
        self.is_file = not (source.isdigit() or "://" in source)
        self.reopens = 0

    def _open(self) -> cv2.VideoCapture:
        capture = cv2.VideoCapture(int(self.source) if self.source.isdigit() else self.source)
        if not capture.isOpened():
            capture.release()
            raise OSError(f"cannot open camera source {self.source!r}")
        return capture

    def ticks(self, stop: threading.Event) -> Iterator[Tick]:
        """Frames until `stop` (or the end of a file that does not loop). While the camera is away this
        yields nothing; the camera pipeline's watchdog notices the silence."""
        start = time.monotonic()
        offset = 0.0  # video time of the current pass through a looping file
        delay = 0.5
        while not stop.is_set():
            try:
                capture = self._open()
            except OSError as exc:
                log.warning("camera unavailable source=%s retry_in=%.1fs error=%s", self.source, delay, exc)
                stop.wait(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, self.reconnect_max_s)
                self.reopens += 1
                continue
            delay = 0.5
            fps = capture.get(cv2.CAP_PROP_FPS) or 10.0
            index = 0
            pass_start = time.monotonic()
            try:
                while not stop.is_set():
                    ok, frame = capture.read()
                    if not ok:
                        break
                    if self.is_file:
                        t = offset + index / fps
                        if self.realtime:
                            wait = pass_start + index / fps - time.monotonic()
                            if wait > 0:
                                stop.wait(wait)
                    else:
                        t = time.monotonic() - start
                    index += 1
                    yield Tick(frame, t)
            finally:
                capture.release()
            if self.is_file:
                if not self.loop:
                    return
                offset += index / fps
                if index == 0:
                    raise OSError(f"video file {self.source!r} has no frames")
            else:
                log.warning("camera stream ended source=%s; reopening", self.source)
                self.reopens += 1
