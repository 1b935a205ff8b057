"""Lighting-robust signatures of the door region: gain-normalised edge structure per cell (issue 3).

A door that swings moves its leaf's edges and mouldings about the hinge and uncovers the interior;
a light switch, daylight drift or a soft shadow multiplies brightness but leaves that structure in
place. So each cell keeps its edge energy divided by the local mean brightness, split by direction
and sign, plus its log brightness; comparisons remove the global gain first.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

CELL_PX = 4  # cell side in the working image; the ROI is scaled to ROI_WIDTH_PX wide
ROI_WIDTH_PX = 64
_EPS_GREY = 6.0  # keeps the contrast of near-black pixels (IR noise, covered lens) from exploding


@dataclass(frozen=True, slots=True)
class Geometry:
    """Where the working crop sits in the frame and where the ROI sits in the crop's cell grid."""

    crop: tuple[int, int, int, int]  # x0, y0, x1, y1 in frame pixels
    size: tuple[int, int]  # working crop width, height in pixels (multiples of CELL_PX)
    roi_cells: tuple[int, int, int, int]  # col0, row0, col1, row1 (exclusive) of the ROI
    grid: tuple[int, int]  # cols, rows of the whole crop


def plan_geometry(frame_w: int, frame_h: int, roi: tuple[int, int, int, int]) -> Geometry:
    """Crop = ROI plus a ring (sides, a little above, a floor strip below) where occluders show first."""
    x, y, w, h = roi
    scale = min(1.0, ROI_WIDTH_PX / w)
    side, above, below = 0.5 * w, 0.08 * h, 0.3 * h
    x0 = max(0, int(x - side))
    y0 = max(0, int(y - above))
    x1 = min(frame_w, int(x + w + side))
    y1 = min(frame_h, int(y + h + below))
    cols = max(1, round((x1 - x0) * scale / CELL_PX))
    rows = max(1, round((y1 - y0) * scale / CELL_PX))
    sx = cols / (x1 - x0)  # cells per frame pixel
    sy = rows / (y1 - y0)
    c0 = int(round((x - x0) * sx))
    r0 = int(round((y - y0) * sy))
    c1 = max(c0 + 1, min(cols, int(round((x + w - x0) * sx))))
    r1 = max(r0 + 1, min(rows, int(round((y + h - y0) * sy))))
    return Geometry((x0, y0, x1, y1), (cols * CELL_PX, rows * CELL_PX), (c0, r0, c1, r1), (cols, rows))


def to_grey(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 2:
        return frame
    return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)


def crop_working(frame: np.ndarray, geometry: Geometry) -> np.ndarray:
    """The crop around the door, area-averaged down (which also averages away sensor noise), grey float."""
    x0, y0, x1, y1 = geometry.crop
    small = cv2.resize(frame[y0:y1, x0:x1], geometry.size, interpolation=cv2.INTER_AREA)
    return to_grey(small).astype(np.float32)


def cell_signature(grey: np.ndarray) -> np.ndarray:
    """(rows, cols, 5): four signed-direction contrast channels and log brightness per cell."""
    local_mean = cv2.blur(grey, (5, 5)) + _EPS_GREY
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3) / local_mean
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3) / local_mean
    channels = np.stack(
        (np.maximum(gx, 0), np.maximum(-gx, 0), np.maximum(gy, 0), np.maximum(-gy, 0), grey), axis=-1
    )
    h, w = grey.shape
    cells = cv2.resize(channels, (w // CELL_PX, h // CELL_PX), interpolation=cv2.INTER_AREA)
    cells[..., 4] = np.log(cells[..., 4] + _EPS_GREY)
    return cells


def structure_change(cur: np.ndarray, ref: np.ndarray, noise_floor: float) -> np.ndarray:
    """Per-cell distance in [0, 1) between edge structures; `noise_floor` keeps flat cells quiet."""
    diff = np.abs(cur[..., :4] - ref[..., :4]).sum(axis=-1)
    total = (cur[..., :4] + ref[..., :4]).sum(axis=-1)
    return diff / (total + noise_floor)


def brightness_change(cur: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Per-cell log-brightness change after removing the crop's median (global light) change."""
    delta = cur[..., 4] - ref[..., 4]
    return np.abs(delta - np.median(delta))
