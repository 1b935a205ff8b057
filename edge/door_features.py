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
_EPS_GREY = 6.0
_FLAT_EDGE = 0.25  # contrast units: a cell with less edge energy than this is a flat surface
_LIT_LOG = float(np.log(35.0 + 6.0))  # cells darker than grey 35 carry no trustworthy colour  # keeps the contrast of near-black pixels (IR noise, covered lens) from exploding


class Levels:
    """One frame as a pyramid (factor 1, 2, 4, ...) in colour and grey; each level is made once, on first use."""

    def __init__(self, frame: np.ndarray) -> None:
        self._colour: dict[int, np.ndarray] = {1: frame}
        self._grey: dict[int, np.ndarray] = {}

    def colour(self, factor: int) -> np.ndarray:
        if factor not in self._colour:
            finer = self.colour(factor // 2)
            h, w = finer.shape[:2]
            # At exactly 2:1, bilinear sampling lands between pixels and averages each 2x2 block (as
            # INTER_AREA would, twice as fast), which also halves sensor noise at every level.
            self._colour[factor] = cv2.resize(
                finer[: h // 2 * 2, : w // 2 * 2], (max(1, w // 2), max(1, h // 2)), interpolation=cv2.INTER_LINEAR
            )
        return self._colour[factor]

    def grey(self, factor: int) -> np.ndarray:
        if factor not in self._grey:
            self._grey[factor] = to_grey(self.colour(factor))
        return self._grey[factor]

    def coarsest(self, width: int, at_least: int) -> int:
        """The largest factor that keeps `width` pixels at least `at_least` wide."""
        factor = 1
        while width // (factor * 2) >= at_least and factor < 16:
            factor *= 2
        return factor


def levels_of(frame: np.ndarray) -> Levels:
    return Levels(frame)


@dataclass(frozen=True, slots=True)
class Geometry:
    """Where the working crop sits in the frame and where the ROI sits in the crop's cell grid."""

    crop: tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels of the source level
    factor: int  # pyramid level the crop is taken from (1 = full size)
    size: tuple[int, int]  # working crop width, height in pixels (multiples of CELL_PX)
    roi_cells: tuple[int, int, int, int]  # col0, row0, col1, row1 (exclusive) of the ROI
    grid: tuple[int, int]  # cols, rows of the whole crop


def plan_geometry(frame_w: int, frame_h: int, roi: tuple[int, int, int, int]) -> Geometry:
    """Crop = ROI plus a ring (sides, a little above, a floor strip below) where occluders show first."""
    k = 1
    while roi[2] // (k * 2) >= ROI_WIDTH_PX and k < 16:
        k *= 2
    x, y, w, h = (v / k for v in roi)
    frame_w, frame_h = (frame_w // k, frame_h // k)
    scale = min(1.0, ROI_WIDTH_PX / w)
    side, above, below = 0.5 * w, 0.08 * h, 0.3 * h
    x0 = max(0, int(x - side))
    y0 = max(0, int(y - above))
    x1 = min(frame_w, int(x + w + side))
    y1 = min(frame_h, int(y + h + below))
    cols = max(1, round((x1 - x0) * scale / CELL_PX))
    rows = max(1, round((y1 - y0) * scale / CELL_PX))
    sx = cols / (x1 - x0)  # cells per source pixel
    sy = rows / (y1 - y0)
    c0 = int(round((x - x0) * sx))
    r0 = int(round((y - y0) * sy))
    c1 = max(c0 + 1, min(cols, int(round((x + w - x0) * sx))))
    r1 = max(r0 + 1, min(rows, int(round((y + h - y0) * sy))))
    return Geometry((x0, y0, x1, y1), k, (cols * CELL_PX, rows * CELL_PX), (c0, r0, c1, r1), (cols, rows))


def to_grey(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 2:
        return frame
    return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)


def crop_working(levels: Levels, geometry: Geometry) -> tuple[np.ndarray, np.ndarray | None]:
    """The crop around the door in grey, area-averaged down (which also averages away sensor noise),
    and its colour averaged per cell (None for a grey camera)."""
    x0, y0, x1, y1 = geometry.crop
    grey = levels.grey(geometry.factor)
    small = cv2.resize(grey[y0:y1, x0:x1], geometry.size, interpolation=cv2.INTER_AREA).astype(np.float32)
    colour = levels.colour(geometry.factor)
    if colour.ndim == 2:
        return small, None
    cells = cv2.resize(colour[y0:y1, x0:x1], geometry.grid, interpolation=cv2.INTER_AREA).astype(np.float32)
    return small, cells


def cell_signature(working: tuple[np.ndarray, np.ndarray | None]) -> np.ndarray:
    """(7, rows, cols): four signed-direction contrast channels, log brightness, two chromaticities.

    Chromaticity (colour with brightness divided out) survives light changes and shadows; it tells a
    lit interior from a leaf of the same brightness but another colour.
    """
    grey, colour = working
    inverse_mean = 1.0 / (cv2.blur(grey, (5, 5)) + _EPS_GREY)
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
    gx *= inverse_mean
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    gy *= inverse_mean
    h, w = grey.shape
    size = (w // CELL_PX, h // CELL_PX)

    def pool(image: np.ndarray) -> np.ndarray:
        return cv2.resize(image, size, interpolation=cv2.INTER_AREA)

    # The positive and negative parts pooled separately keep a light-to-dark edge apart from a
    # dark-to-light one: relu(g) = (|g| + g) / 2, so pool g and |g| and combine.
    sx, ax, sy, ay = pool(gx), pool(np.abs(gx)), pool(gy), pool(np.abs(gy))
    cells = np.zeros((7, size[1], size[0]), np.float32)
    cells[0], cells[1] = (ax + sx) * 0.5, (ax - sx) * 0.5
    cells[2], cells[3] = (ay + sy) * 0.5, (ay - sy) * 0.5
    cells[4] = np.log(pool(grey) + _EPS_GREY)
    if colour is not None:
        if colour.shape[:2] != size[::-1]:
            colour = cv2.resize(colour, size, interpolation=cv2.INTER_AREA)
        b, g, r = cv2.split(colour)
        total = b + g + r + 3 * _EPS_GREY
        cells[5] = (r - g) / total
        cells[6] = (b - g) / total
    return cells


def _middle(values: np.ndarray) -> float:
    """The median without np.median's NaN checks and copies: it runs three times a frame."""
    flat = values.ravel()
    k = flat.size // 2
    return float(np.partition(flat, k)[k])


def structure_change(cur: np.ndarray, ref: np.ndarray, noise_floor: float) -> np.ndarray:
    """Per-cell distance in [0, 1) between edge structures; `noise_floor` keeps flat cells quiet."""
    diff = np.abs(cur[:4] - ref[:4]).sum(axis=0)
    total = (cur[:4] + ref[:4]).sum(axis=0)
    return diff / (total + noise_floor)


def brightness_change(cur: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Per-cell log-brightness change after removing the crop's median (global light) change."""
    delta = cur[4] - ref[4]
    return np.abs(delta - _middle(delta))


def chroma_change(cur: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Per-cell chromaticity change after removing the crop's median (a lamp of another colour).

    Zero where either is too dark for colour to mean anything, and on the reference's edges: there
    a shake of a pixel mixes two colours, and the edge channels already watch those cells.
    """
    delta = cur[5:7] - ref[5:7]
    change = np.abs(delta[0] - _middle(delta[0])) + np.abs(delta[1] - _middle(delta[1]))
    usable = (np.minimum(cur[4], ref[4]) > _LIT_LOG) & (ref[:4].sum(axis=0) < _FLAT_EDGE)
    return np.where(usable, change, 0.0)
