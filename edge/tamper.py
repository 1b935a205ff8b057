"""Camera tampering: lens covered, heavy defocus, camera knocked away, from a small whole-frame view."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from edge.camera_config import DetectorSettings
from edge.door_features import Levels, edge_structure, structure_change

TamperReason = Literal["covered", "defocus", "moved", "no_signal"]

VIEW_WIDTH_PX = 160
CHECK_HZ = 5.0
_DARK_GREY = 12.0  # mean grey level below which nothing usable is left, whatever the reference
# A lights-off corridor keeps its relative contrast (std / mean); a hand, tape or a cap flattens it.
_FLAT_CONTRAST = 0.35  # relative contrast left, vs the reference, when a lit cover fills the view
_DIM_CONTRAST = 0.75  # ... when the cover is also dark
_BLACK_RATIO = 0.15  # brightness left, vs the reference: below any lights-off corridor with IR
_DIM_BRIGHTNESS = 0.45  # brightness left, vs the reference, for a dark cover
_DEFOCUS_SHARPNESS = 0.6  # squared-gradient energy per unit brightness squared left when out of focus
_MOVED_CHANGED = 0.2  # structure change of the scene's edges outside the door, 0 = as calibrated
_STILL_WINDOW_S = 0.5
_STILL_CHANGE = 0.1  # edge-structure change over STILL_WINDOW_S below which the view is at rest
_CLEAR_MARGIN = 1.25  # a condition ends only when its measure recovers past threshold times this
_NOISE_FLOOR = 0.4


@dataclass(frozen=True, slots=True)
class ViewReading:
    brightness: float  # mean grey level, 0-255
    brightness_ratio: float  # vs the reference view
    contrast: float  # (std / mean) vs the reference view: survives lights switching, not a cover
    sharpness: float  # (mean squared gradient / mean^2) vs the reference view: falls with defocus
    displaced: float  # structure change of the reference's edge cells outside the door, spread-checked
    still: bool  # the view matches itself half a second ago: a knocked camera rests, a crowd moves


@dataclass(frozen=True, slots=True)
class TamperChange:
    reason: TamperReason
    started: bool  # False: it ended
    t_s: float


def view_size(frame_size: tuple[int, int]) -> tuple[int, int]:
    w, h = frame_size
    return VIEW_WIDTH_PX, max(8, round(h * VIEW_WIDTH_PX / w / 4) * 4)


def view_of(levels: Levels) -> np.ndarray:
    """The whole frame, area-averaged to VIEW_WIDTH_PX wide, grey uint8: what tamper checks look at."""
    h, w = levels.colour(1).shape[:2]
    size = view_size((w, h))
    source = levels.grey(levels.coarsest(w, size[0]))
    if source.shape[1] == size[0] and source.shape[0] == size[1]:
        return source
    return cv2.resize(source, size, interpolation=cv2.INTER_AREA)


def view_measures(view: np.ndarray) -> tuple[float, float, float]:
    """Brightness, relative contrast and sharpness of a small grey view."""
    mean, std = (float(m[0, 0]) for m in cv2.meanStdDev(view))
    gx, gy = cv2.spatialGradient(view)  # 3x3 Sobels
    # Squared gradients: blur spreads an edge's step over more pixels, which keeps the sum of
    # gradients but lowers the sum of their squares.
    energy = (cv2.norm(gx, cv2.NORM_L2SQR) + cv2.norm(gy, cv2.NORM_L2SQR)) / view.size
    return mean, std / (mean + 1.0), energy / (mean + 1.0) ** 2


class EdgeCells:
    """The reference view's strong edges outside the door, weighted once for the means taken at every check
    (dot products: boolean gathers of small maps cost ten times more)."""

    def __init__(self, cells: np.ndarray) -> None:
        rows, cols = cells.shape
        self._weights = cells.astype(np.float32) / max(1, int(np.count_nonzero(cells)))
        # Quadrants with enough edges to judge, each with its cells' weights for its own mean.
        self._quadrants: list[tuple[slice, slice, np.ndarray]] = []
        for rs in (slice(0, rows // 2), slice(rows // 2, rows)):
            for cs in (slice(0, cols // 2), slice(cols // 2, cols)):
                count = np.count_nonzero(cells[rs, cs])
                if count >= 6:
                    self._quadrants.append((rs, cs, cells[rs, cs].astype(np.float32) / count))

    def mean(self, change: np.ndarray) -> float:
        """Mean of `change` over the edge cells."""
        return float(np.vdot(change, self._weights))

    def spread_displacement(self, change: np.ndarray) -> float:
        """Mean structure change of edge cells in the second-least-changed quadrant of the view.

        A knocked camera displaces edges everywhere; a person or a shadow, however large, fills one or
        two quadrants, so a low quadrant keeps them from looking like a move. The second-lowest, because
        one quadrant may hold only a few weak edges (a plain wall) that barely change when displaced.
        """
        shares = sorted(float(np.vdot(change[rs, cs], weights)) for rs, cs, weights in self._quadrants)
        if not shares:
            return self.mean(change)
        return shares[1] if len(shares) >= 3 else shares[0]


def classify(reading: ViewReading, active: TamperReason | None) -> TamperReason | None:
    """Which tamper the reading shows; the active one needs clear recovery to end (hysteresis)."""

    def margin(reason: TamperReason) -> float:
        return _CLEAR_MARGIN if reason == active else 1.0

    m = margin("covered")
    flat = reading.contrast < _FLAT_CONTRAST * m
    dark_and_flat = reading.contrast < min(0.95, _DIM_CONTRAST * m) and reading.brightness_ratio < _DIM_BRIGHTNESS * m
    black = reading.brightness < _DARK_GREY * m or reading.brightness_ratio < _BLACK_RATIO * m
    if black or flat or dark_and_flat:
        return "covered"
    if reading.sharpness < min(0.9, _DEFOCUS_SHARPNESS * margin("defocus")):
        return "defocus"
    if reading.displaced > _MOVED_CHANGED / margin("moved") and (reading.still or active == "moved"):
        return "moved"
    return None


class TamperDetector:
    """Compares each frame's small view with the calibrated one; reports starts and ends, backdated."""

    def __init__(
        self,
        frame_size: tuple[int, int],
        roi: tuple[int, int, int, int],
        settings: DetectorSettings | None = None,
    ) -> None:
        self.settings = settings or DetectorSettings()
        self._frame_size = frame_size
        self._roi = roi
        self._reference: np.ndarray | None = None
        self._reference_measures = (1.0, 1.0, 1.0)
        self._edge_cells: EdgeCells | None = None
        self._recent: list[tuple[float, np.ndarray]] = []  # signatures of the last second, oldest first
        self._last_check_s = -np.inf
        self.active: TamperReason | None = None
        self._candidate: TamperReason | None = None
        self._candidate_since = 0.0
        self.last_reading: ViewReading | None = None

    def set_reference(self, view: np.ndarray) -> None:
        """`view` is `view_of(frame)` of a frame showing the scene as installed."""
        signature = edge_structure(view)
        self._reference = signature
        brightness, contrast, sharpness = view_measures(view)
        self._reference_measures = (max(brightness, 1e-3), max(contrast, 1e-3), max(sharpness, 1e-3))
        strength = signature.sum(axis=0)
        edge_cells = strength >= np.percentile(strength, 70)
        # The door swings and people stand in front of it: only the rest of the scene says where the camera points.
        rows, cols = strength.shape
        x, y, w, h = self._roi
        fw, fh = self._frame_size
        c0, c1 = int((x - 0.3 * w) * cols / fw), int(np.ceil((x + 1.3 * w) * cols / fw))
        r0, r1 = int((y - 0.1 * h) * rows / fh), int(np.ceil((y + 1.3 * h) * rows / fh))
        edge_cells[max(0, r0) : r1, max(0, c0) : c1] = False
        self._edge_cells = EdgeCells(edge_cells if edge_cells.sum() >= 8 else strength >= np.percentile(strength, 70))

    def read(self, view: np.ndarray, t_s: float) -> ViewReading:
        signature = edge_structure(view)
        assert self._reference is not None and self._edge_cells is not None
        change = structure_change(signature, self._reference, _NOISE_FLOOR)
        displaced = self._edge_cells.spread_displacement(change)
        self._recent = [(t, sig) for t, sig in self._recent if t >= t_s - _STILL_WINDOW_S * 2]
        older = [sig for t, sig in self._recent if t <= t_s - _STILL_WINDOW_S]
        still = bool(older) and self._edge_cells.mean(structure_change(signature, older[-1], _NOISE_FLOOR)) < _STILL_CHANGE
        self._recent.append((t_s, signature))
        brightness, contrast, sharpness = view_measures(view)
        ref_b, ref_c, ref_s = self._reference_measures
        return ViewReading(brightness, brightness / ref_b, contrast / ref_c, sharpness / ref_s, displaced, still)

    @property
    def pending(self) -> bool:
        """A condition is building up but not yet confirmed: the view should not be trusted meanwhile."""
        return self._candidate is not None and self._candidate != self.active

    def due(self, t_s: float) -> bool:
        """Tamper conditions take seconds to confirm, so the view is checked at CHECK_HZ, not every frame."""
        return self._reference is None or t_s >= self._last_check_s + 1.0 / CHECK_HZ - 1e-6

    def update(self, view: np.ndarray, t_s: float) -> list[TamperChange]:
        if self._reference is None:
            self.set_reference(view)
            self._last_check_s = t_s
            return []
        self._last_check_s = t_s
        reading = self.read(view, t_s)
        self.last_reading = reading
        seen = classify(reading, self.active)
        if seen != self._candidate:
            self._candidate, self._candidate_since = seen, t_s
        confirm = self.settings.moved_confirm_s if seen == "moved" else self.settings.tamper_confirm_s
        if seen == self.active or t_s - self._candidate_since < confirm:
            return []
        changes = []
        if self.active is not None:
            changes.append(TamperChange(self.active, False, self._candidate_since))
        if seen is not None:
            # 'still' compares with half a second ago, so a knock happened at least that long before.
            began = self._candidate_since - (_STILL_WINDOW_S if seen == "moved" else 0.0)
            changes.append(TamperChange(seen, True, began))
        self.active = seen
        return changes
