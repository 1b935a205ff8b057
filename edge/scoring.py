"""Score detector output against labelled clips the way the detector is judged: starts within 1.5 s, F1."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

START_TOLERANCE_S = 1.5


@dataclass(frozen=True, slots=True)
class DoorScore:
    true_positives: int
    false_positives: int
    false_negatives: int

    def __add__(self, other: "DoorScore") -> "DoorScore":
        return DoorScore(
            self.true_positives + other.true_positives,
            self.false_positives + other.false_positives,
            self.false_negatives + other.false_negatives,
        )

    @property
    def f1(self) -> float:
        tp = self.true_positives
        denominator = 2 * tp + self.false_positives + self.false_negatives
        return 1.0 if denominator == 0 else 2 * tp / denominator


def score_openings(predicted_starts: Sequence[float], true_starts: Sequence[float], tolerance_s: float = START_TOLERANCE_S) -> DoorScore:
    """Greedy one-to-one matching in time order: a prediction matches a true opening within tolerance."""
    unused = sorted(predicted_starts)
    matched = 0
    for truth in sorted(true_starts):
        best = min(unused, key=lambda p: abs(p - truth), default=None)
        if best is not None and abs(best - truth) <= tolerance_s:
            unused.remove(best)
            matched += 1
    return DoorScore(matched, len(unused), len(true_starts) - matched)


def tamper_found(predicted: Iterable[dict[str, Any]], truth: dict[str, Any], clip_end_s: float) -> bool:
    """A true tamper interval is found when a prediction with the same reason overlaps it."""
    t_start, t_end = truth["start_s"], truth["end_s"] if truth["end_s"] is not None else clip_end_s
    for p in predicted:
        p_end = p["end_s"] if p["end_s"] is not None else clip_end_s
        if p["reason"] == truth["reason"] and p["start_s"] < t_end and p_end > t_start:
            return True
    return False


ON_TIME_START_S = 0.5  # start_s within this of the first frame the leaf moves
ON_TIME_CONFIRM_S = 1.0  # and the opening confirmed within this of the leaf having moved noticeably


@dataclass(frozen=True, slots=True)
class OpeningTiming:
    """One true opening against what the detector said, live."""

    moved_s: float  # the first frame the leaf moves
    noticeable_s: float  # the leaf has turned enough for a gap to show (the label's start_s)
    start_s: float | None  # the reported start; None: missed
    confirmed_s: float | None  # the frame on which the detector reported the opening

    @property
    def found(self) -> bool:
        return self.start_s is not None

    @property
    def start_delay_s(self) -> float | None:
        return None if self.start_s is None else self.start_s - self.moved_s

    @property
    def confirm_delay_s(self) -> float | None:
        return None if self.confirmed_s is None else self.confirmed_s - self.noticeable_s

    @property
    def on_time(self) -> bool:
        start, confirm = self.start_delay_s, self.confirm_delay_s
        return start is not None and confirm is not None and abs(start) <= ON_TIME_START_S and confirm <= ON_TIME_CONFIRM_S


def match_openings(
    reported: Sequence[tuple[float, float]], truths: Sequence[dict[str, Any]], tolerance_s: float = START_TOLERANCE_S
) -> tuple[list[OpeningTiming], int]:
    """`reported` is (start_s, confirmed_s) per opening; returns each true opening's timing and the
    count of false openings. Matching as `score_openings`: nearest start within the tolerance of the
    label's start, one to one, in time order."""
    unused = sorted(reported)
    timings = []
    for truth in sorted(truths, key=lambda t: t["start_s"]):
        noticeable = float(truth["start_s"])
        moved = float(truth.get("moved_s", noticeable))
        best = min(unused, key=lambda r: abs(r[0] - noticeable), default=None)
        if best is not None and abs(best[0] - noticeable) <= tolerance_s:
            unused.remove(best)
            timings.append(OpeningTiming(moved, noticeable, best[0], best[1]))
        else:
            timings.append(OpeningTiming(moved, noticeable, None, None))
    return timings, len(unused)
