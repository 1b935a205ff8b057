"""Exit suspicion: a person-sized moving region that comes out of the open doorway and goes away.

No person model (OpenCV 5 has no HOG people detector and the edge box downloads no weights): moving
regions from frame differencing on the small whole-frame view, tracked by nearest centroid. A track
born inside the doorway while the door is open, that then walks sideways out of the door's span,
reaches the frame's side, or grows far taller than the door (walked up to the camera), is an exit.
A passer-by is born at the frame's edge, so crossing an open door does not count.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

_MIN_HEIGHT = 0.35  # of the door's height: smaller moving regions are not a person at the door
_MATCH_DISTANCE = 0.8  # of the door's width: how far a centroid may jump between frames
_SIDEWAYS = 0.35  # of the door's width beyond its edge that a centroid must reach
_TALLER = 1.3  # times the door's height: nearer the camera than the doorway
_LOST_AFTER = 3  # frames without a match before a track is dropped
_KERNEL = np.ones((3, 3), np.uint8)


@dataclass(slots=True)
class Track:
    box: tuple[int, int, int, int]  # x, y, w, h in view pixels
    from_doorway: bool
    missed: int = 0
    history: list[tuple[float, float]] = field(default_factory=list)

    @property
    def centre(self) -> tuple[float, float]:
        x, y, w, h = self.box
        return x + w / 2, y + h / 2


def moving_regions(view: np.ndarray, previous: np.ndarray, min_height: float) -> list[tuple[int, int, int, int]]:
    """Boxes of regions that changed since the previous (uint8) view, with a noise-adaptive threshold,
    top to bottom, left to right."""
    diff = cv2.absdiff(view, previous)
    noise = _median(diff)
    _, mask = cv2.threshold(diff, max(8.0, 4.0 * noise + 3.0), 1, cv2.THRESH_BINARY)
    mask = cv2.dilate(mask, _KERNEL, iterations=2)
    # Outer contours' boxes are the 8-connected regions' boxes, at a tenth of the cost of
    # connectedComponentsWithStats here; a region inside another's hole is no separate person.
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    boxes = sorted((y, x, w, h) for x, y, w, h in map(cv2.boundingRect, contours) if h >= min_height)
    return [(x, y, w, h) for y, x, w, h in boxes]


def _median(image: np.ndarray) -> float:
    """The median of a uint8 image (upper middle for an even count) from its histogram: np.median and
    np.partition crawl on a still view's differences, nearly all 0 or 1."""
    counts = np.cumsum(cv2.calcHist([image], [0], None, [256], [0, 256]).ravel())
    return float(np.searchsorted(counts, image.size // 2, side="right"))


def is_exit(track: Track, door: tuple[float, float, float, float], view_w: int) -> bool:
    """Has a doorway-born track gone away from the door?"""
    if not track.from_doorway:
        return False
    x, y, w, h = track.box
    dx, dy, dw, dh = door
    cx, _ = track.centre
    sideways = cx < dx - _SIDEWAYS * dw or cx > dx + dw + _SIDEWAYS * dw
    at_side = x <= 0 or x + w >= view_w
    return sideways or at_side or h >= _TALLER * dh


class ExitTracker:
    """Feed the small view every frame; `suspected` says whether the current opening looks like an exit."""

    def __init__(self, door_in_view: tuple[float, float, float, float]) -> None:
        self.door = door_in_view
        self._previous: np.ndarray | None = None
        self._tracks: list[Track] = []
        self.suspected = False

    def start_opening(self) -> None:
        self._tracks = []
        self.suspected = False

    def update(self, view: np.ndarray | None, door_open: bool) -> None:
        """`view` may be None while the door is closed: nothing is tracked then."""
        previous, self._previous = self._previous, view
        if view is None or previous is None or not door_open:
            self._tracks = []
            return
        dx, dy, dw, dh = self.door
        boxes = moving_regions(view, previous, _MIN_HEIGHT * dh)
        unmatched = list(boxes)
        for track in self._tracks:
            best = _nearest(track, unmatched, _MATCH_DISTANCE * dw)
            if best is None:
                track.missed += 1
                continue
            unmatched.remove(best)
            track.box, track.missed = best, 0
            track.history.append(track.centre)
        for box in unmatched:
            x, y, w, h = box
            cx = x + w / 2
            born_in_door = dx <= cx <= dx + dw and x > 0 and x + w < view.shape[1]
            self._tracks.append(Track(box, born_in_door, history=[(cx, y + h / 2)]))
        for track in self._tracks:
            if track.missed == 0 and is_exit(track, self.door, view.shape[1]):
                self.suspected = True
        self._tracks = [t for t in self._tracks if t.missed < _LOST_AFTER]


def _nearest(track: Track, boxes: list[tuple[int, int, int, int]], limit: float) -> tuple[int, int, int, int] | None:
    tx, ty = track.centre
    best, best_d = None, limit
    for box in boxes:
        x, y, w, h = box
        d = float(np.hypot(x + w / 2 - tx, y + h / 2 - ty))
        if d < best_d:
            best, best_d = box, d
    return best
