"""Per-door teach: learn what *this* door looks like open from one opening at calibration.

The generic detector knows what doors do in general (whole columns change, lintel to floor, at a
jamb). Some doors barely do: a frosted-glass leaf in a pale corridor changes little but its frame's
edges, a leaf swinging toward a close camera spills out of the ROI. When the installer opens and
closes the door once while calibrating, every frame is compared with the closed door (the
detector's own per-cell change levels); the frames that differ most are this door open, the quiet
ones closed. Cells that change when open and stay quiet when closed get a weight; a frame's taught
score is the weighted mean of its change levels, and the levels between the closed and open scores
become this door's open and close thresholds. The detector then reads a frame as open when either
the generic test or the taught score says so.

The teach refuses, with the reason, a clip it cannot learn from: too dark, no door visible in the
ROI, no opening seen, an opening that happens outside the ROI, or open and closed scores that
overlap.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.camera_config import DetectorSettings
from edge.door_detector import DoorDetector
from edge.door_features import levels_of, to_grey

_CAP = 3.0  # change levels above this (three thresholds) count as 3: one glaring cell must not carry a frame
_DARK_GREY = 20.0  # mean grey of the ROI below which a camera sees no door to learn
# Edge contrast of the ROI's most-edged cells (95th percentile): a door's frame, stiles and mouldings
# give 0.3-1; a covered lens or an out-of-focus view only sensor noise (0.04 at noise sigma 2, 0.18
# at sigma 12, night gain).
_MIN_EDGES = 0.2
_MIN_RISE = 0.15  # the busiest frames' mean change level over the quiet ones': less is no opening
_MIN_INSIDE = 0.35  # share of the opening's changed cells that must lie inside the ROI
_MIN_GAP = 0.25  # taught score units between the closed frames' highest and the open frames' median
_MIN_SEPARATION = 0.2  # that gap over the closed-to-open medians: overlap below this


class TeachRefused(ValueError):
    """The teach clip cannot tell this door open from closed; the message says why and what to do."""


@dataclass(frozen=True)
class TaughtDoor:
    """One door's open appearance: per-cell weights over the detector's crop grid and two thresholds."""

    weights: np.ndarray  # (rows, cols) float32, >= 0, of the detector's crop cell grid
    open_level: float  # taught score at or above which a frame looks open
    closed_level: float  # below which it looks closed
    gap_side: str  # "left" or "right": where the gap first showed (the latch side)
    columns: tuple[int, int]  # first and last ROI cell column the open door changes
    swing: float  # share of the ROI's width the open door changes
    separation: float  # (lowest open score - highest closed score) / (open median - closed median)
    min_span: float = 0.0  # share of the leaf's columns that must each look open (a person is narrower)

    def score(self, level: np.ndarray) -> float:
        """A frame's taught score from its per-cell change levels (`DoorDetector._change_level`)."""
        if level.shape != self.weights.shape:
            raise ValueError(f"taught for a {self.weights.shape} cell grid, got {level.shape}: ROI or frame size changed")
        return float(np.minimum(level, _CAP).ravel() @ self.weights.ravel())

    def span(self, level: np.ndarray) -> float:
        """Share of the leaf's columns whose own taught score reaches the open level: an open door
        changes its columns across the swing, a person in front of it only the columns they cover."""
        return _span(np.minimum(level, _CAP)[None], self.weights, self.open_level)[0]

    def top_score(self, level: np.ndarray) -> float:
        """The taught score of the top fifth of the door's rows alone: a leaf turns lintel to floor,
        a person standing in front leaves the top of the door as it was."""
        rows = np.flatnonzero(self.weights.sum(axis=1) > 0)
        if rows.size == 0:
            return 0.0
        top = slice(int(rows[0]), int(rows[0] + max(1, round(0.2 * (rows[-1] - rows[0] + 1)))))
        weights = self.weights[top]
        total = float(weights.sum())
        return 0.0 if total <= 0 else float((np.minimum(level[top], _CAP) * weights).sum() / total)

    def looks_open(self, level: np.ndarray) -> tuple[float, bool]:
        """The taught score, and whether this frame looks like this door open: the whole door's score,
        its top's, and the span of its columns."""
        score = self.score(level)
        if score < self.open_level:
            return score, False
        return score, self.top_score(level) >= self.open_level and self.span(level) >= self.min_span

    def save(self, path: Path) -> None:
        levels = [self.open_level, self.closed_level, self.swing, self.separation, self.min_span]
        with path.open("wb") as handle:  # np.savez would add .npz to a name without it
            np.savez(handle, weights=self.weights, levels=np.array(levels, np.float64),
                     columns=np.array(self.columns, np.int64), gap_side=np.str_(self.gap_side))

    @classmethod
    def load(cls, path: Path) -> TaughtDoor:
        with np.load(path, allow_pickle=False) as data:
            open_level, closed_level, swing, separation, min_span = (float(v) for v in data["levels"])
            first, last = (int(v) for v in data["columns"])
            return cls(data["weights"].astype(np.float32), open_level, closed_level, str(data["gap_side"]), (first, last), swing,
                       separation, min_span)

    def describe(self) -> str:
        return (f"gap opens at the {self.gap_side}, the open door changes ROI cell columns {self.columns[0]}-{self.columns[1]} "
                f"({self.swing:.0%} of its width); open at taught score >= {self.open_level:.2f}, closed below "
                f"{self.closed_level:.2f} and over {self.min_span:.0%} of those columns; separation {self.separation:.2f}")


def _span(levels: np.ndarray, weights: np.ndarray, open_level: float) -> np.ndarray:
    """Per frame of `levels` (frames, rows, cols): the share of leaf columns (those carrying a fifth of
    the heaviest column's weight) whose weighted mean level reaches `open_level`."""
    per_column = weights.sum(axis=0)
    leaf = per_column >= 0.2 * per_column.max()
    column_scores = (levels[:, :, leaf] * weights[:, leaf]).sum(axis=1) / per_column[leaf]
    return (column_scores >= open_level).mean(axis=1)


def teach_door(
    frames: Iterable[np.ndarray],
    roi: tuple[int, int, int, int],
    reference: np.ndarray,
    settings: DetectorSettings | None = None,
) -> TaughtDoor:
    """Learn the door from `frames` (the installer opens and closes it once); `reference` shows it closed.
    Raises TeachRefused with the reason when open and closed cannot be told apart."""
    settings = settings or DetectorSettings()
    size = (reference.shape[1], reference.shape[0])
    detector = DoorDetector(size, roi, settings, levels_of(reference), change_gate=False)
    c0, r0, c1, r1 = detector.geometry.roi_cells
    x, y, w, h = roi
    grey = float(to_grey(reference)[y : y + h, x : x + w].mean())
    if grey < _DARK_GREY:
        raise TeachRefused(f"too dark: the door's region averages grey {grey:.0f} of 255 (needs {_DARK_GREY:.0f}); light the door or use the camera's night mode")
    assert detector._reference is not None
    edges = float(np.percentile(detector._reference[:4, r0:r1, c0:c1].sum(axis=0), 95))
    if edges < _MIN_EDGES:
        raise TeachRefused(f"door not visible: the region shows no clear edges (contrast {edges:.2f}, needs {_MIN_EDGES}); "
                           "check focus, that nothing covers the lens, and that the ROI is drawn on the door")
    maps = []
    for frame in frames:
        if (frame.shape[1], frame.shape[0]) != size:
            raise TeachRefused(f"the teach clip's frames are {frame.shape[1]}x{frame.shape[0]}, the reference {size[0]}x{size[1]}")
        maps.append(np.minimum(detector.change_levels(levels_of(frame)), _CAP))
    if len(maps) < 10:
        raise TeachRefused(f"only {len(maps)} frames to learn from: record the door opening and closing once (a few seconds)")
    stack = np.stack(maps)  # (frames, rows, cols)
    inside = stack[:, r0:r1, c0:c1]
    busy = inside.mean(axis=(1, 2))
    base, peak = float(np.percentile(busy, 20)), float(np.percentile(busy, 95))
    ring = stack.copy()
    ring[:, r0:r1, c0:c1] = 0.0
    if peak - base < _MIN_RISE:
        ring_rise = float(np.percentile(ring.mean(axis=(1, 2)), 95) - np.percentile(ring.mean(axis=(1, 2)), 20))
        if ring_rise >= _MIN_RISE / 2:
            raise TeachRefused("ROI misses the leaf: things changed beside the region but not inside it; redraw the ROI on the door")
        raise TeachRefused(f"no opening seen: the door's region hardly changed (mean change level rose {peak - base:.2f}, needs "
                           f"{_MIN_RISE}); open the door wide and close it again while recording")
    open_frames = busy >= base + 0.6 * (peak - base)
    closed_frames = busy <= base + 0.15 * (peak - base)
    changed_in = float((inside[open_frames] > 1).sum())
    changed_out = float((ring[open_frames] > 1).sum())
    if changed_in < _MIN_INSIDE * (changed_in + changed_out):
        raise TeachRefused(f"ROI misses the leaf: only {changed_in / max(1.0, changed_in + changed_out):.0%} of what changed while the "
                           "door was open lies inside the region; redraw the ROI around the whole door")
    # Weight: how much more a cell changes when open than it ever does when closed.
    closed_mean, closed_spread = stack[closed_frames].mean(axis=0), stack[closed_frames].std(axis=0)
    weights = np.clip(stack[open_frames].mean(axis=0) - closed_mean - 2 * closed_spread, 0.0, None)
    weights[:r0], weights[r1:], weights[:, :c0], weights[:, c1:] = 0.0, 0.0, 0.0, 0.0  # the ring also holds passers-by
    if weights.sum() <= 0:
        raise TeachRefused("open and closed look alike: no cell of the door changes more when open than when closed")
    weights = (weights / weights.sum()).astype(np.float32)
    scores = np.tensordot(stack, weights, axes=([1, 2], [0, 1]))
    closed_top = float(np.percentile(scores[closed_frames], 99))
    open_median = float(np.median(scores[open_frames]))
    open_low = float(np.percentile(scores[open_frames], 10))
    spread = open_median - float(np.median(scores[closed_frames]))
    separation = (open_low - closed_top) / spread if spread > 0 else 0.0
    if open_median - closed_top < _MIN_GAP or separation < _MIN_SEPARATION:
        raise TeachRefused(f"open and closed look alike: taught scores closed up to {closed_top:.2f}, open median {open_median:.2f} "
                           f"(separation {separation:.2f}, needs {_MIN_SEPARATION}); light the door better or move the camera so the leaf's edge shows")
    gap = open_median - closed_top
    open_level = closed_top + 0.35 * gap
    # Half the span the open door showed: room for a door opened less wide; the top test stops a person.
    min_span = 0.5 * float(np.median(_span(stack[open_frames], weights, open_level)))
    per_column = weights[r0:r1, c0:c1].sum(axis=0)
    leaf = np.flatnonzero(per_column >= 0.2 * per_column.max())
    first_open = int(np.argmax(open_frames))
    rising = inside[max(0, first_open - 3) : first_open + 1].mean(axis=(0, 1))
    centre = (c1 - c0 - 1) / 2
    gap_side = "left" if float(np.average(np.arange(c1 - c0), weights=rising + 1e-6)) < centre else "right"
    return TaughtDoor(weights, open_level, closed_top + 0.15 * gap, gap_side,
                      (int(leaf[0]), int(leaf[-1])), float(leaf.size / (c1 - c0)), float(separation), min_span)
