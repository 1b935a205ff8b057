"""Escalation decisions: which step comes next for an unacknowledged alert, and when (pure functions)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.policy import KindPolicy, Renotify, Role


@dataclass(frozen=True)
class Page:
    """Page `roles` as step `step` (1-based) and reminder `round` (0: the step itself); next due at `next_at`."""

    step: int
    round: int
    roles: tuple[Role, ...]
    next_at: datetime | None


def first_page(kind: KindPolicy, now: datetime) -> Page:
    first = kind.steps[0]
    return Page(1, 0, tuple(first.notify), now + timedelta(minutes=first.wait_minutes))


def next_page(kind: KindPolicy, renotify: Renotify, *, step: int, round: int, now: datetime) -> Page | None:
    """What is due when step `step` (round `round`) went unacknowledged; None: nothing more, stop."""
    if step < len(kind.steps):
        nxt = kind.steps[step]  # steps are 1-based, so index `step` is the following one
        return Page(step + 1, 0, tuple(nxt.notify), now + timedelta(minutes=nxt.wait_minutes))
    if round < renotify.max:
        last = kind.steps[-1]
        more = round + 1 < renotify.max
        return Page(step, round + 1, tuple(last.notify),
                    now + timedelta(minutes=renotify.every_minutes) if more else None)
    return None
