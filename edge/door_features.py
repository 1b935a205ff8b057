"""Lighting-robust signatures of the door region: gain-normalised edge structure per cell.

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
            self._colour[factor] = halve(self.colour(factor // 2))
        return self._colour[factor]

    def region(self, factor: int, box: tuple[int, int, int, int]) -> np.ndarray:
        """`box` (x0, y0, x1, y1 in pixels of level `factor`) of that level. When the whole level is not
        made, only the box is halved down to it: frames without a tamper check need no more."""
        x0, y0, x1, y1 = box
        if factor in self._colour:
            return self._colour[factor][y0:y1, x0:x1]
        # 2:1 blocks start at even pixels, so this equals the box of the whole halved level.
        return halve(self.region(factor // 2, (2 * x0, 2 * y0, 2 * x1, 2 * y1)))

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


def halve(image: np.ndarray) -> np.ndarray:
    """Each 2x2 block averaged (an odd last row or column dropped): half the sensor noise, half the size.

    At exactly 2:1, bilinear sampling lands between pixels and averages each 2x2 block (as INTER_AREA
    would, twice as fast).
    """
    h, w = image.shape[:2]
    return cv2.resize(image[: h // 2 * 2, : w // 2 * 2], (max(1, w // 2), max(1, h // 2)), interpolation=cv2.INTER_LINEAR)


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


def door_crop(levels: Levels, geometry: Geometry) -> np.ndarray:
    """The ROI and its ring at the geometry's pyramid level: what both the working image and the
    change gate's thumbnail are made from."""
    return levels.region(geometry.factor, geometry.crop)


def crop_working(crop: np.ndarray, geometry: Geometry) -> tuple[np.ndarray, np.ndarray | None]:
    """`door_crop` in grey (uint8) at the working size, and its colour averaged per cell (float, None
    for a grey camera).

    The crop comes from the pyramid level at most twice the working size, so one bilinear resize
    still mixes every source pixel in (averaging away sensor noise as the pyramid did); INTER_AREA
    at such fractional ratios costs several times more. Grey and per-cell colour then come from
    the small colour crop, not the larger level.
    """
    small = cv2.resize(crop, geometry.size, interpolation=cv2.INTER_LINEAR)
    if small.ndim == 2:
        return small, None
    cells = halve(halve(small))  # CELL_PX = 4: two halvings average each cell
    return to_grey(small), cells.astype(np.float32)


def thumbnail(crop: np.ndarray) -> np.ndarray:
    """`door_crop` as 8x8-pixel block means (the ROI 8-16 blocks wide, a block one or two cells),
    in colour when the camera has it.

    Block means average sensor noise down eightfold, so a few grey levels of change already mean
    something moved; halvings cost a fraction of the working resize (INTER_AREA to a fixed size,
    at these fractional ratios, costs as much as the analysis it would save).
    """
    return halve(halve(halve(crop)))


def cell_signature(working: tuple[np.ndarray, np.ndarray | None]) -> np.ndarray:
    """(7, rows, cols): four signed-direction contrast channels, log brightness, two chromaticities.

    `working` is a uint8 grey image (sides multiples of CELL_PX) and its colour per cell, or None.
    Chromaticity (colour with brightness divided out) survives light changes and shadows; it tells a
    lit interior from a leaf of the same brightness but another colour.
    """
    grey, colour = working
    cells = np.empty((7, grey.shape[0] // CELL_PX, grey.shape[1] // CELL_PX), np.float32)
    brightness = _pool_edges(grey, cells[:4], with_grey=True)[0]
    brightness += _EPS_GREY
    np.log(brightness, out=cells[4])
    if colour is None:
        cells[5:] = 0.0
    else:
        b, g, r = colour[..., 0], colour[..., 1], colour[..., 2]
        inverse_total = 1.0 / (b + g + r + 3 * _EPS_GREY)
        np.multiply(r - g, inverse_total, out=cells[5])
        np.multiply(b - g, inverse_total, out=cells[6])
    return cells


def edge_structure(grey: np.ndarray) -> np.ndarray:
    """(4, rows, cols): `cell_signature`'s contrast channels alone, for views whose checks use no
    brightness or colour per cell (the tamper view)."""
    cells = np.empty((4, grey.shape[0] // CELL_PX, grey.shape[1] // CELL_PX), np.float32)
    _pool_edges(grey, cells, with_grey=False)
    return cells


def _pool_edges(grey: np.ndarray, out: np.ndarray, *, with_grey: bool) -> np.ndarray:
    """Writes the four contrast channels of each cell into `out`; returns the planes pooled after them:
    the cells' mean grey (1, rows, cols) when `with_grey`, else none (0, rows, cols)."""
    h, w = grey.shape
    rows, cols = out.shape[1:]
    half_inverse_mean: np.ndarray = cv2.boxFilter(grey, cv2.CV_32F, (5, 5))
    half_inverse_mean += _EPS_GREY
    np.divide(0.5, half_inverse_mean, out=half_inverse_mean)
    dx, dy = cv2.spatialGradient(grey)  # both 3x3 Sobels in one pass
    # The positive and negative parts pooled separately keep a light-to-dark edge apart from a
    # dark-to-light one: relu(g) = (|g| + g) / 2, so pool g / 2 and |g| / 2 and add or subtract.
    # The planes are stacked so that one resize pools them all (a cell never straddles two planes).
    count = 5 if with_grey else 4
    planes = np.empty((count, h, w), np.float32)  # g_x, |g_x|, g_y, |g_y| (halved), grey if asked
    np.multiply(dx, half_inverse_mean, out=planes[0])
    np.multiply(dy, half_inverse_mean, out=planes[2])
    np.abs(planes[0:4:2], out=planes[1:4:2])
    if with_grey:
        planes[4] = grey
    pooled = cv2.resize(planes.reshape(count * h, w), (cols, count * rows), interpolation=cv2.INTER_AREA).reshape(count, rows, cols)
    signed, magnitude = pooled[0:4:2], pooled[1:4:2]
    np.add(magnitude, signed, out=out[0:4:2])
    np.subtract(magnitude, signed, out=out[1:4:2])
    return pooled[4:]


def structure_change(cur: np.ndarray, ref: np.ndarray, noise_floor: float) -> np.ndarray:
    """Per-cell distance in [0, 1) between edge structures; `noise_floor` keeps flat cells quiet."""
    diff = np.abs(cur[:4] - ref[:4]).sum(axis=0)
    total = (cur[:4] + ref[:4]).sum(axis=0)
    return diff / (total + noise_floor)


def light_change(cur: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-cell log-brightness and chromaticity changes, each after removing the crop's median change
    (the lights switching, daylight drift, a lamp of another colour).

    Chromaticity change is zero where either is too dark for colour to mean anything, and on the
    reference's edges: there a shake of a pixel mixes two colours, and the edge channels already
    watch those cells. The three channels share one subtraction and one partition for their medians.
    """
    delta = (cur[4:7] - ref[4:7]).reshape(3, -1)
    k = delta.shape[1] // 2
    delta -= np.partition(delta, k, axis=1)[:, k : k + 1]
    np.abs(delta, out=delta)
    delta = delta.reshape(3, *cur.shape[1:])
    chroma = delta[1] + delta[2]
    usable = (cur[4] > _LIT_LOG) & (ref[4] > _LIT_LOG) & (ref[:4].sum(axis=0) < _FLAT_EDGE)
    return delta[0], np.where(usable, chroma, 0.0)
