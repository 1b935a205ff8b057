"""Snapshots attached to door events: the frame when the door opened and the one where it was widest."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

SnapshotRole = Literal["opened", "widest"]


class SnapshotError(RuntimeError):
    """The frame could not be encoded as JPEG."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    role: SnapshotRole
    jpeg: bytes
    width: int
    height: int
    t_s: float


def encode_snapshot(frame: np.ndarray, role: SnapshotRole, t_s: float, quality: int = 80) -> Snapshot:
    ok, buffer = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise SnapshotError(f"cannot encode a {frame.shape} frame as JPEG")
    height, width = frame.shape[:2]
    return Snapshot(role, buffer.tobytes(), width, height, t_s)


class WidestFrame:
    """Keeps a copy of the frame where the door showed the most change; encoded once, when it closes."""

    def __init__(self) -> None:
        self._frame: np.ndarray | None = None
        self._score = -1.0
        self._t_s = 0.0

    def offer(self, frame: np.ndarray, score: float, t_s: float) -> None:
        if score > self._score:
            self._frame, self._score, self._t_s = frame.copy(), score, t_s

    def take(self, quality: int) -> Snapshot | None:
        frame, self._frame, self._score = self._frame, None, -1.0
        if frame is None:
            return None
        return encode_snapshot(frame, "widest", self._t_s, quality)
