"""A contact sheet for `isowatch check-door`: one row of frames per opening, the detection drawn.

An installer looks at it before leaving a new door: each row shows the door a second before the
opening, at its reported start, when it was confirmed, a second later, and when it closed, with the
ROI drawn red while the door reads open and green while closed, and the time on every frame.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

TILE_W = 200
COLUMNS = ("1 s before", "start", "confirmed", "1 s later", "closed")
_OPEN, _CLOSED, _TEXT = (40, 40, 230), (60, 180, 60), (255, 255, 255)


@dataclass
class Row:
    start_s: float
    confirmed_s: float
    tiles: dict[str, np.ndarray] = field(default_factory=dict)
    end_s: float | None = None


class ContactSheet:
    """Feed every frame with its time and door state; mark openings and closes; `save` the PNG."""

    def __init__(self, roi: tuple[int, int, int, int], frame_size: tuple[int, int], fps: float) -> None:
        self.roi = roi
        self.scale = TILE_W / frame_size[0]
        self.tile_h = max(1, round(frame_size[1] * self.scale))
        self._recent: deque[tuple[float, np.ndarray]] = deque(maxlen=max(2, int(fps * 3)))  # the last 3 s, small
        self.rows: list[Row] = []
        self._waiting: list[tuple[Row, float]] = []  # rows still waiting for their "1 s later" tile

    def frame(self, frame: np.ndarray, t_s: float, is_open: bool) -> None:
        tile = self._tile(frame, t_s, is_open)
        self._recent.append((t_s, tile))
        for row, due in list(self._waiting):
            if t_s >= due:
                row.tiles["1 s later"] = tile
                self._waiting.remove((row, due))

    def opened(self, start_s: float, confirmed_s: float) -> None:
        row = Row(start_s, confirmed_s)
        row.tiles["1 s before"] = self._nearest(start_s - 1.0)
        row.tiles["start"] = self._nearest(start_s)
        row.tiles["confirmed"] = self._nearest(confirmed_s)
        self.rows.append(row)
        self._waiting.append((row, confirmed_s + 1.0))

    def closed(self, end_s: float) -> None:
        if self.rows and self.rows[-1].end_s is None:
            self.rows[-1].end_s = end_s
            self.rows[-1].tiles["closed"] = self._nearest(end_s)

    def save(self, path: Path) -> None:
        header = np.zeros((22, TILE_W * len(COLUMNS), 3), np.uint8)
        for i, name in enumerate(COLUMNS):
            cv2.putText(header, name, (i * TILE_W + 4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, _TEXT, 1, cv2.LINE_AA)
        blank = np.full((self.tile_h, TILE_W, 3), 40, np.uint8)
        lines = [header]
        for n, row in enumerate(self.rows, 1):
            tiles = [row.tiles.get(name, blank) for name in COLUMNS]
            strip = np.hstack(tiles)
            end = "still open" if row.end_s is None else f"closed {row.end_s:.2f} s"
            label = f"#{n}  start {row.start_s:.2f} s  confirmed {row.confirmed_s:.2f} s  {end}"
            bar = np.zeros((20, strip.shape[1], 3), np.uint8)
            cv2.putText(bar, label, (4, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, _TEXT, 1, cv2.LINE_AA)
            lines += [bar, strip]
        if not self.rows:
            bar = np.zeros((40, TILE_W * len(COLUMNS), 3), np.uint8)
            cv2.putText(bar, "no opening seen", (4, 26), cv2.FONT_HERSHEY_SIMPLEX, 0.6, _TEXT, 1, cv2.LINE_AA)
            lines.append(bar)
        if not cv2.imwrite(str(path), np.vstack(lines)):
            raise OSError(f"cannot write {path}")

    def _nearest(self, t_s: float) -> np.ndarray:
        return min(self._recent, key=lambda item: abs(item[0] - t_s))[1].copy()

    def _tile(self, frame: np.ndarray, t_s: float, is_open: bool) -> np.ndarray:
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        tile = cv2.resize(frame, (TILE_W, self.tile_h), interpolation=cv2.INTER_AREA)
        x, y, w, h = (round(v * self.scale) for v in self.roi)
        cv2.rectangle(tile, (x, y), (x + w, y + h), _OPEN if is_open else _CLOSED, 2)
        cv2.putText(tile, f"{t_s:.2f} s {'OPEN' if is_open else ''}", (4, self.tile_h - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(tile, f"{t_s:.2f} s {'OPEN' if is_open else ''}", (4, self.tile_h - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    _TEXT, 1, cv2.LINE_AA)
        return tile
