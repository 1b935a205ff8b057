"""Replay recorded footage through `DoorWatcher` and yield door-open and tamper intervals.

Times are seconds from the clip start, from the frame index and the video's frame rate, so a replay
gives the same answer however fast the machine decodes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2

from edge.camera_config import DetectorSettings
from edge.door_teach import TaughtDoor
from edge.door_watch import DoorClosed, DoorWatcher, TamperEnded
from edge.tamper import TamperReason


class VideoError(RuntimeError):
    """The footage cannot be opened or has no usable frame rate."""


@dataclass(frozen=True, slots=True)
class DoorInterval:
    start_s: float
    end_s: float | None  # None: still open when the clip ended
    exit_suspected: bool
    type: Literal["door_open"] = "door_open"

    def as_json(self) -> dict[str, Any]:
        return {"type": self.type, "start_s": _round(self.start_s), "end_s": _round(self.end_s), "exit_suspected": self.exit_suspected}


@dataclass(frozen=True, slots=True)
class TamperInterval:
    reason: TamperReason
    start_s: float
    end_s: float | None
    type: Literal["camera_tamper"] = "camera_tamper"

    def as_json(self) -> dict[str, Any]:
        return {"type": self.type, "reason": self.reason, "start_s": _round(self.start_s), "end_s": _round(self.end_s)}


Interval = DoorInterval | TamperInterval


@dataclass(frozen=True, slots=True)
class VideoInfo:
    fps: float
    frames: int  # as the container claims; 0 when unknown
    width: int
    height: int


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def video_frames(video_path: Path | str) -> Iterator[Any]:
    """Every frame of a video file in order; the file is released when the loop ends or is left."""
    capture = cv2.VideoCapture(str(video_path))
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield frame
    finally:
        capture.release()


def probe(video_path: Path | str, fps: float | None = None) -> VideoInfo:
    capture = cv2.VideoCapture(str(video_path))
    try:
        if not capture.isOpened():
            raise VideoError(f"cannot open {video_path}")
        rate = fps or capture.get(cv2.CAP_PROP_FPS)
        if not rate or math.isnan(rate) or rate <= 0 or rate > 1000:
            raise VideoError(f"{video_path} reports no usable frame rate; pass fps")
        frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        return VideoInfo(float(rate), max(0, frames), width, height)
    finally:
        capture.release()


def replay(
    video_path: Path | str,
    roi: tuple[int, int, int, int],
    settings: DetectorSettings | None = None,
    *,
    fps: float | None = None,
    reference: Any = None,
    on_frame: Callable[[int], None] | None = None,
    teach: TaughtDoor | None = None,
) -> Iterator[Interval]:
    """Yield each interval as it completes, then those still open at the end (with `end_s` None)."""
    info = probe(video_path, fps)
    watcher = DoorWatcher(roi, settings, reference, teach=teach)
    for index, frame in enumerate(video_frames(video_path)):
        t_s = index / info.fps
        for event in watcher.process(frame, t_s):
            if isinstance(event, DoorClosed):
                yield DoorInterval(event.opened_s, event.t_s, event.exit_suspected)
            elif isinstance(event, TamperEnded):
                yield TamperInterval(event.reason, event.started_s, event.t_s)
        if on_frame is not None:
            on_frame(index + 1)
    if watcher.open_since is not None:
        yield DoorInterval(watcher.open_since, None, watcher.exit_suspected)
    for reason, started in watcher.active_tampers.items():
        yield TamperInterval(reason, started, None)
