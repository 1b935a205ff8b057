"""Door state from the ROI compared with a calibrated 'closed' signature, voted over time.

Not a motion detector: a door left open stays open however long it stays still, because each frame
is compared with the closed door, never with a running background.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from edge.door_teach import TaughtDoor

_NOISE_FLOOR = 0.4  # contrast units; a flat cell's sensor noise stays well below this
_RING_BUSY = 0.15  # share of a ring strip that must change to say something stands beside the door
_REFERENCE_QUIET = 0.03  # the ROI must be this still for the closed signature to follow drift
_TOP_BAND = 0.12  # of the ROI's height
# Share of the top band's rows a column must have changed: a quarter leaves room for a hand-drawn ROI
# a little above the lintel (the wall there never changes), while a person's head stays lower still.
_TOP_SHARE = 0.25
_LEAF_MARGIN = 0.1  # of the ROI's size: where an opened leaf overhangs the door frame
_STILL_WINDOW_S = 0.2  # a door at rest matches itself this long ago; a walking person does not
_STILL_AREA = 0.04  # share of ROI cells allowed to change over the still window
_PERSIST_S = 1.2  # a column changed this long is no body walking past
_ANCHOR_SLACK = 1  # columns an anchored band's fixed edge may wander (a cell boundary, noise)
_MOTION_AREA = 0.01  # share of ROI cells changed: the leaf has begun to move (for back-dating the start)
_BACKDATE_S = 1.5  # an opening's start is moved back at most this far before its evidence began
_TAUGHT_HOLD_S = 0.4  # a taught door's open score held this long settles the opening
# Thumbnail changes that call for a fresh analysis, in grey levels of any channel: a block's, or the
# mean over a column of blocks beyond the median column's (a thin gap at the jamb, too faint per
# block, is a column's height long).
_GATE_BLOCK = 10.0
_GATE_COLUMN = 1.5
_GATE_REFRESH_S = 0.5  # a full analysis at least this often, whatever the gate says
# A run of evidence this close to its confirmation time has lasted it. Frame times are sums and
# differences of floats (3.4 - 3.1 < 0.3 at 10 fps) and a live camera's frames jitter by milliseconds:
# without slack, half the openings waited one more frame than `open_confirm_s` asks (100 ms at 10 fps).
_VOTE_SLACK_S = 0.01


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
    side_busy: tuple[bool, bool] = (False, False)  # the ring left and right of the door (with the floor there)
    floor_busy: bool = False  # the floor strip in front of the door, except under changed door columns
    taught: float | None = None  # the taught door's score (None without a teach)
    taught_open: bool = False  # the taught door says this frame looks open


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
    full = (_share(paired, axis=0) >= settings.column_coverage) & (_share(top, axis=0) >= _TOP_SHARE)
    full_columns = int(np.count_nonzero(full))
    need_columns = max(1, round(0.08 * roi.shape[1]))
    # The gap opens at the jamb, so an opening always changes columns at a side of the door; a body
    # standing in the middle leaves both of the leaf's edges in place.
    side = max(1, roi.shape[1] // 4)
    at_jamb = bool(full[:side].any() or full[-side:].any())
    left, right, floor = _ring_busy(changed, geometry, full)
    occluder = left or right or floor
    opening = full_columns >= need_columns and at_jamb and area >= settings.min_open_area
    closed = full_columns == 0 and area < settings.min_open_area / 2
    return DoorReading(area, full_columns, occluder, opening, closed, full, (left, right), floor)


def _ring_busy(changed: np.ndarray, geometry: Geometry, full: np.ndarray) -> tuple[bool, bool, bool]:
    """Did something change beside (left, right) or below (the middle of the floor strip) the door?

    The ring skips a margin next to the door, where the leaf shows once it swings toward the camera.
    A leaf swinging toward a close camera spills further, past the door frame and below the
    threshold, but it stays joined to the door: the floor under changed door columns is not counted,
    and the floor beside the door counts with its side, which the detector may excuse (see
    `DoorDetector._occluded`).
    """
    c0, r0, c1, r1 = geometry.roi_cells
    gap_c = max(1, round(_LEAF_MARGIN * (c1 - c0)))
    gap_r = max(1, round(_LEAF_MARGIN * (r1 - r0)))
    floor = changed[r1 + gap_r :, :]
    middle = np.zeros(changed.shape[1], bool)
    middle[c0:c1] = True
    leaf_columns = np.flatnonzero(full) + c0
    middle[np.clip(np.concatenate([leaf_columns - 1, leaf_columns, leaf_columns + 1]), 0, middle.size - 1)] = False
    left = (changed[r0:r1, : max(0, c0 - gap_c)], floor[:, :c0])
    right = (changed[r0:r1, c1 + gap_c :], floor[:, c1:])
    return _busy(*left), _busy(*right), _busy(floor[:, middle])


def _busy(*strips: np.ndarray) -> bool:
    return any(s.size >= 4 and _share(s) > _RING_BUSY for s in strips)


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
        columns: np.ndarray = cv2.reduce(diff, 0, cv2.REDUCE_AVG, dtype=cv2.CV_32F)  # (1, cols[, channels])
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
        teach: TaughtDoor | None = None,
    ) -> None:
        """`change_gate=False` analyses every frame (the worst case's cost: a view that never settles);
        `teach` is this door's taught open appearance (`edge.door_teach`), else the generic tests alone."""
        self.settings = settings or DetectorSettings()
        self.teach = teach
        self.geometry = plan_geometry(frame_size[0], frame_size[1], roi)
        self._reference: np.ndarray | None = None
        self.state = DoorState.UNKNOWN
        self._run_start: float | None = None  # first frame of the current run of contrary evidence
        self._occluded_until = -np.inf
        self._last_t: float | None = None
        self._recent: list[tuple[float, np.ndarray]] = []  # recent signatures, oldest first
        c0, _, c1, _ = self.geometry.roi_cells
        self._full_since = np.full(c1 - c0, np.inf)  # per ROI column: since when it has been fully changed
        self._taught_since: float | None = None
        self._band: list[int] | None = None  # the evidence run's first full-column band: lo, hi, lo kept, hi kept
        self._ring_busy_since: list[float | None] = [None, None, None]  # the ring's left, right, floor
        self._areas: list[tuple[float, float]] = []  # recent (t, changed area) while closed, for back-dating
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
        self._band, self._taught_since, self._areas = None, None, []

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
        dt = 0.0 if self._last_t is None else max(0.0, t_s - self._last_t)
        self._last_t = t_s

        if self.state is DoorState.OPEN:
            if reading.occluder:
                self._occluded_until = t_s + settings.occluder_hold_s
            return self._vote(reading.closed, t_s, settings.close_confirm_s, DoorState.CLOSED)
        self._full_since = np.where(reading.full, np.fmin(self._full_since, t_s), np.inf)
        if self._occluded(reading, t_s):
            self._occluded_until = t_s + settings.occluder_hold_s
        self._areas = [(t, a) for t, a in self._areas if t >= t_s - _BACKDATE_S - settings.open_confirm_s - 1.0]
        self._areas.append((t_s, reading.changed_area))
        # A leaf at rest is confirmed quickly; one still swinging (a slow door closer) once its band of
        # changed columns has kept one edge in place while it grew, as a leaf turning about its hinge
        # does and a body walking across does not; one that keeps changing (someone coming out) once
        # the same columns have stayed changed longer than a passer-by takes to cross them.
        anchored = self._track_band(reading) if reading.opening and reading.full_columns else False
        settled = False
        if reading.opening:  # only then is stillness worth computing
            settled = anchored or self._taught_held(reading, t_s) or int((self._full_since <= t_s - _PERSIST_S).sum()) > 0 or (
                bool(older) and roi_still(self._differs(signature, older[-1]), self.geometry)
            )
        blocked = t_s < self._occluded_until or not settled
        transition = self._vote(reading.opening, t_s, settings.open_confirm_s, DoorState.OPEN, blocked=blocked)
        if transition is not None:
            transition = DoorTransition(transition.state, self._first_motion(transition.t_s))
            self._areas, self._band = [], None
        elif not reading.opening:
            self._band = None
        if transition is None and reading.closed and not reading.occluder and reading.changed_area < _REFERENCE_QUIET:
            self._follow_drift(signature, changed, dt)
        return transition

    def _taught_held(self, reading: DoorReading, t_s: float) -> bool:
        """The taught score has said open for `_TAUGHT_HOLD_S`: this door's own open look, held longer
        than a passer-by's shadow on the leaf lasts (a frosted leaf whose edges keep moving while
        someone walks through never looks still)."""
        if not reading.taught_open:
            self._taught_since = None
            return False
        if self._taught_since is None:
            self._taught_since = t_s
        return t_s - self._taught_since >= _TAUGHT_HOLD_S

    def _occluded(self, reading: DoorReading, t_s: float) -> bool:
        """Something beside or in front of the door that is not the leaf. A part of the ring (left,
        right, the floor) is the leaf going on past the frame when the door's columns changed first:
        a leaf swinging toward a close camera fills the door's columns, then spills out at its side
        and grows below the threshold, while a passer-by or someone walking up reaches the ring
        first. A side counts as the leaf only if the changed columns reach it. In the same frame only
        one band of columns and one side qualify: a knocked camera shifts the door's columns at both
        ends and the ring at once."""
        columns = np.flatnonzero(reading.full)
        oldest = float(self._full_since[columns].min()) if columns.size else np.inf
        one_band = bool(columns.size) and columns.size >= 0.7 * (columns[-1] - columns[0] + 1)
        both_sides = all(reading.side_busy)
        edge = max(1, reading.full.size // 8)
        touches = (bool(columns.size) and columns[0] < edge, bool(columns.size) and columns[-1] >= reading.full.size - edge, True)
        busy = False
        for part, now in enumerate((*reading.side_busy, reading.floor_busy)):
            if not now:
                self._ring_busy_since[part] = None
                continue
            since = self._ring_busy_since[part]
            if since is None:
                since = self._ring_busy_since[part] = t_s
            leaf_first = oldest < since or (oldest == since and one_band and not both_sides)
            busy |= not (touches[part] and leaf_first)
        return busy

    def _track_band(self, reading: DoorReading) -> bool:
        """Has the evidence run's band of full columns kept one edge in place while it grew?"""
        columns = np.flatnonzero(reading.full)
        lo, hi = int(columns[0]), int(columns[-1])
        if self._band is None:
            self._band = [lo, hi, 1, 1]
            return False
        lo0, hi0 = self._band[0], self._band[1]
        self._band[2] &= int(abs(lo - lo0) <= _ANCHOR_SLACK)
        self._band[3] &= int(abs(hi - hi0) <= _ANCHOR_SLACK)
        # One band (a shake changes both door edges at once) that has grown at its free edge.
        contiguous = columns.size >= 0.7 * (hi - lo + 1)
        return bool(self._band[2] or self._band[3]) and contiguous and hi - lo > hi0 - lo0

    def _first_motion(self, evidence_s: float) -> float:
        """The first frame of the leaf's movement: back from the evidence's first frame while the
        door already differed a little from closed, at most `_BACKDATE_S`."""
        start = evidence_s
        for t, area in reversed(self._areas):
            if t >= evidence_s:
                continue
            if area < _MOTION_AREA or t < evidence_s - _BACKDATE_S:
                break
            start = t
        return start

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
        level = self._change_level(signature, self._reference)
        changed = level > 1.0
        reading = read_door(changed, self.geometry, self.settings)
        if self.teach is not None:
            # The taught door: open when this door's own open cells have changed enough, closed when
            # they are back; either test may open the door, both must agree it has closed.
            score, looks_open = self.teach.looks_open(level)
            reading = replace(reading, taught=score, taught_open=looks_open, opening=reading.opening or looks_open,
                              closed=reading.closed and score < self.teach.closed_level)
        self._last_analysis = (signature, changed, reading)
        self.analysed_frames += 1
        return self._last_analysis

    def _differs(self, signature: np.ndarray, other: np.ndarray) -> np.ndarray:
        return self._change_level(signature, other) > 1.0

    def _change_level(self, signature: np.ndarray, other: np.ndarray) -> np.ndarray:
        """Per cell, the largest of its structure, brightness and colour changes, each in units of its
        threshold: above 1 the cell differs; below, how close it came (what a taught door weighs)."""
        settings = self.settings
        brightness, chroma = light_change(signature, other)
        level = structure_change(signature, other, _NOISE_FLOOR)
        level *= 1.0 / settings.structure_threshold
        np.maximum(level, brightness * (1.0 / settings.brightness_threshold), out=level)
        np.maximum(level, chroma * (1.0 / settings.colour_threshold), out=level)
        return level

    def change_levels(self, levels: Levels) -> np.ndarray:
        """This frame's `_change_level` against the closed door over the whole crop, ungated (for teach)."""
        assert self._reference is not None
        signature = cell_signature(crop_working(door_crop(levels, self.geometry), self.geometry))
        return self._change_level(signature, self._reference)

    def _vote(
        self, evidence: bool, t_s: float, confirm_s: float, target: DoorState, blocked: bool = False
    ) -> DoorTransition | None:
        if not evidence:
            self._run_start = None
            return None
        if self._run_start is None:
            self._run_start = t_s
        if blocked or t_s - self._run_start < confirm_s - _VOTE_SLACK_S:
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
