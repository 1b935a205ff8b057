"""Score detector output against labelled clips the way issue 3 judges it: starts within 1.5 s, F1."""

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
