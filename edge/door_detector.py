"""Door state from the ROI compared with a calibrated 'closed' signature, voted over time (issue 3).

Not a motion detector: a door left open stays open however long it stays still, because each frame
is compared with the closed door, never with a running background.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import cv2
import numpy as np

from edge.camera_config import DetectorSettings
from edge.door_features import (
    Geometry,
    Levels,
    cell_signature,
    crop_working,
    door_crop,
    light_change,
    plan_geometry,
    structure_change,
    thumbnail,
)

_NOISE_FLOOR = 0.4  # contrast units; a flat cell's sensor noise stays well below this
_RING_BUSY = 0.15  # share of a ring strip that must change to say something stands beside the door
_REFERENCE_QUIET = 0.03  # the ROI must be this still for the closed signature to follow drift
_TOP_BAND = 0.12  # of the ROI's height
_LEAF_MARGIN = 0.1  # of the ROI's size: where an opened leaf overhangs the door frame
_STILL_WINDOW_S = 0.2  # a door at rest matches itself this long ago; a walking person does not
_STILL_AREA = 0.04  # share of ROI cells allowed to change over the still window
_PERSIST_S = 1.2  # a column changed this long is no body walking past
# Thumbnail changes that call for a fresh analysis, in grey levels of any channel: a block's, or the
# mean over a column of blocks beyond the median column's (a thin gap at the jamb, too faint per
# block, is a column's height long).
_GATE_BLOCK = 10.0
_GATE_COLUMN = 1.5
_GATE_REFRESH_S = 0.5  # a full analysis at least this often, whatever the gate says


class DoorState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class DoorReading:
    """What one frame says about the door, before voting."""

    changed_area: float  # share of ROI cells that differ from the closed door
    full_columns: int  # ROI columns changed over most of their height
    occluder: bool  # something changed beside or below the door: a passer-by, a shadow
    opening: bool  # this frame alone looks like an open door
    closed: bool  # this frame alone looks like the closed door
    full: np.ndarray  # per ROI column: changed lintel to floor


@dataclass(frozen=True, slots=True)
class DoorTransition:
    state: DoorState
    t_s: float  # when the change began (first frame of the evidence), not when it was confirmed


def read_door(changed: np.ndarray, geometry: Geometry, settings: DetectorSettings) -> DoorReading:
    """Judge one frame's changed-cell map; pure so it is tested on hand-made maps."""
    c0, r0, c1, r1 = geometry.roi_cells
    roi = changed[r0:r1, c0:c1]
    area = _share(roi)
    # A turning leaf changes whole columns, lintel to floor. A person standing at the door changes
    # most of a column too, but their head stays below the lintel: the top band tells them apart.
    # A narrow gap may straddle two cell columns, half-changing each: judge pairs of neighbours.
    paired = roi.copy()
    paired[:, :-1] |= roi[:, 1:]
    top = paired[: max(1, round(_TOP_BAND * roi.shape[0]))]
    full = (_share(paired, axis=0) >= settings.column_coverage) & (_share(top, axis=0) >= 0.5)
    full_columns = np.count_nonzero(full)
    need_columns = max(1, round(0.08 * roi.shape[1]))
    # The gap opens at the jamb, so an opening always changes columns at a side of the door; a body
    # standing in the middle leaves both of the leaf's edges in place.
    side = max(1, roi.shape[1] // 4)
    at_jamb = bool(full[:side].any() or full[-side:].any())
    # The ring skips a margin next to the door, where the leaf itself shows once it swings toward the camera.
    gap_c = max(1, round(_LEAF_MARGIN * (c1 - c0)))
    gap_r = max(1, round(_LEAF_MARGIN * (r1 - r0)))
    strips = [changed[r0:r1, : max(0, c0 - gap_c)], changed[r0:r1, c1 + gap_c :], changed[r1 + gap_r :, :]]
    occluder = any(s.size >= 4 and _share(s) > _RING_BUSY for s in strips)
    opening = full_columns >= need_columns and at_jamb and area >= settings.min_open_area
    closed = full_columns == 0 and area < settings.min_open_area / 2
    return DoorReading(area, full_columns, occluder, opening, closed, full)


def roi_still(moving: np.ndarray, geometry: Geometry) -> bool:
    """Does the ROI match itself a moment ago (a leaf at rest, not a body walking)?"""
    c0, r0, c1, r1 = geometry.roi_cells
    return _share(moving[r0:r1, c0:c1]) < _STILL_AREA


def _share(cells: np.ndarray, axis: int | None = None) -> Any:
    """Share of True cells (per column with axis=0), without mean()'s conversion to floats."""
    if axis is None:
        return np.count_nonzero(cells) / cells.size
    return cells.sum(axis=axis) / cells.shape[axis]


class ChangeGate:
    """Tells when the door's crop still looks as it did at the last full analysis, so that analysis
    (most of the door detector's cost) can be skipped and its reading reused.

    It compares with the last *analysed* thumbnail, not the previous frame's, so slow drift adds up
    until it calls for analysis; and it forces one every `_GATE_REFRESH_S` so nothing too faint for
    the thumbnail can go unseen for long.
    """

    def __init__(self) -> None:
        self._thumbnail: np.ndarray | None = None
        self._analysed_s = -np.inf

    def unchanged(self, thumb: np.ndarray, t_s: float) -> bool:
        # The epsilon keeps frame times like 0.6 - 0.1 on the half-second cadence, not one frame after it.
        if self._thumbnail is None or not 0.0 <= t_s - self._analysed_s < _GATE_REFRESH_S - 1e-6:
            return False
        if cv2.norm(thumb, self._thumbnail, cv2.NORM_INF) > _GATE_BLOCK:
            return False
        # Less the median column's change: a gain flicker or compression's frame-wide jitter moves
        # every column alike, and the detector removes the median brightness change too.
        diff = cv2.subtract(thumb, self._thumbnail, dtype=cv2.CV_16S)
        columns = cv2.reduce(diff, 0, cv2.REDUCE_AVG, dtype=cv2.CV_32F)  # (1, cols[, channels])
        columns -= np.sort(columns, axis=1)[:, columns.shape[1] // 2]
        return bool(cv2.norm(columns, cv2.NORM_INF) <= _GATE_COLUMN)

    def analysed(self, thumb: np.ndarray, t_s: float) -> None:
        self._thumbnail, self._analysed_s = thumb, t_s


class DoorDetector:
    """Feed frames of a fixed camera; `update` returns a transition when the door state changes."""

    def __init__(
        self,
        frame_size: tuple[int, int],
        roi: tuple[int, int, int, int],
        settings: DetectorSettings | None = None,
        reference: Levels | None = None,
        *,
        change_gate: bool = True,
    ) -> None:
        """`change_gate=False` analyses every frame (the worst case's cost: a view that never settles)."""
        self.settings = settings or DetectorSettings()
        self.geometry = plan_geometry(frame_size[0], frame_size[1], roi)
        self._reference: np.ndarray | None = None
        self.state = DoorState.UNKNOWN
        self._run_start: float | None = None  # first frame of the current run of contrary evidence
        self._occluded_until = -np.inf
        self._last_t: float | None = None
        self._recent: list[tuple[float, np.ndarray]] = []  # recent signatures, oldest first
        c0, _, c1, _ = self.geometry.roi_cells
        self._full_since = np.full(c1 - c0, np.inf)  # per ROI column: since when it has been fully changed
        self.last_reading: DoorReading | None = None
        self._gate = ChangeGate() if change_gate else None
        self._last_analysis: tuple[np.ndarray, np.ndarray, DoorReading] | None = None  # signature, changed, reading
        self.analysed_frames = 0  # frames given a full analysis rather than the gate's reuse
        if reference is not None:
            self.set_reference(reference)

    def set_reference(self, levels: Levels) -> None:
        """The closed door's signature; the caller vouches that the door is closed in this frame."""
        self._reference = cell_signature(crop_working(door_crop(levels, self.geometry), self.geometry))
        self._last_analysis = None  # judged against the old reference
        self.state = DoorState.CLOSED
        self._run_start = None

    @property
    def calibrated(self) -> bool:
        return self._reference is not None

    def suspend(self) -> None:
        """The view is unusable (tamper): forget any half-gathered evidence, keep the state."""
        self._run_start = None

    def update(self, levels: Levels, t_s: float) -> DoorTransition | None:
        """`levels` is `levels_of(frame)`; returns the change of state this frame confirms, if any."""
        if self._reference is None:
            self.set_reference(levels)
            return DoorTransition(DoorState.CLOSED, t_s)
        settings = self.settings
        signature, changed, reading = self._observe(levels, t_s)
        self._recent = [(t, sig) for t, sig in self._recent if t >= t_s - 2 * _STILL_WINDOW_S]
        older = [sig for t, sig in self._recent if t <= t_s - _STILL_WINDOW_S]
        self._recent.append((t_s, signature))
        self.last_reading = reading
        if reading.occluder:
            self._occluded_until = t_s + settings.occluder_hold_s
        dt = 0.0 if self._last_t is None else max(0.0, t_s - self._last_t)
        self._last_t = t_s

        if self.state is DoorState.OPEN:
            return self._vote(reading.closed, t_s, settings.close_confirm_s, DoorState.CLOSED)
        # A leaf at rest is confirmed quickly; one that keeps moving (someone is coming out) once the
        # same columns have stayed changed longer than a passer-by takes to cross them.
        self._full_since = np.where(reading.full, np.fmin(self._full_since, t_s), np.inf)
        settled = False
        if reading.opening:  # only then is stillness worth computing
            settled = int((self._full_since <= t_s - _PERSIST_S).sum()) > 0 or (
                bool(older) and roi_still(self._differs(signature, older[-1]), self.geometry)
            )
        blocked = t_s < self._occluded_until or not settled
        transition = self._vote(reading.opening, t_s, settings.open_confirm_s, DoorState.OPEN, blocked=blocked)
        if transition is None and reading.closed and not reading.occluder and reading.changed_area < _REFERENCE_QUIET:
            self._follow_drift(signature, changed, dt)
        return transition

    def _observe(self, levels: Levels, t_s: float) -> tuple[np.ndarray, np.ndarray, DoorReading]:
        """This frame's signature, changed-cell map and reading; the last analysis's when the gate
        finds the crop unchanged since, so that voting, durations and drift carry on as if the
        same frame had come again."""
        crop = door_crop(levels, self.geometry)
        if self._gate is not None:
            thumb = thumbnail(crop)
            if self._last_analysis is not None and self._gate.unchanged(thumb, t_s):
                return self._last_analysis
            self._gate.analysed(thumb, t_s)
        assert self._reference is not None
        signature = cell_signature(crop_working(crop, self.geometry))
        changed = self._differs(signature, self._reference)
        self._last_analysis = (signature, changed, read_door(changed, self.geometry, self.settings))
        self.analysed_frames += 1
        return self._last_analysis

    def _differs(self, signature: np.ndarray, other: np.ndarray) -> np.ndarray:
        settings = self.settings
        brightness, chroma = light_change(signature, other)
        changed = structure_change(signature, other, _NOISE_FLOOR) > settings.structure_threshold
        changed |= brightness > settings.brightness_threshold
        changed |= chroma > settings.colour_threshold
        return changed

    def _vote(
        self, evidence: bool, t_s: float, confirm_s: float, target: DoorState, blocked: bool = False
    ) -> DoorTransition | None:
        if not evidence:
            self._run_start = None
            return None
        if self._run_start is None:
            self._run_start = t_s
        if blocked or t_s - self._run_start < confirm_s:
            return None
        self.state = target
        start, self._run_start = self._run_start, None
        return DoorTransition(target, start)

    def _follow_drift(self, signature: np.ndarray, changed: np.ndarray, dt: float) -> None:
        # Only unchanged cells learn, slowly, so a bag left at the door is not painted into 'closed'
        # faster than daylight moves; the door itself never learns while open.
        alpha = min(1.0, dt / self.settings.reference_tau_s)
        assert self._reference is not None
        step = signature - self._reference
        step *= np.where(changed, np.float32(0.0), np.float32(alpha))  # in place: this runs on most frames
        self._reference += step
