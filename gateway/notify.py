"""Delivery through Apprise: one attempt to one URL, per-service rate limits, retry and fallback decisions.

Apprise pauses between consecutive sends through one plugin instance (`request_rate_per_sec`, 5.5 s
by default for many services). We build a fresh Apprise object for every attempt, so that pause never
applies and the first alert never waits behind an earlier one; our own token bucket per service
(scheme + host) keeps group bots under their limits instead, without blocking: a send with no token is
rescheduled in the database, and the worker moves on.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import apprise

from isowatch.clock import Clock

log = logging.getLogger(__name__)

# (burst, per minute). Burst + one minute's refill stays within the service's limit per minute:
# WeCom and DingTalk group bots take about 20 messages a minute.
SERVICE_LIMITS: dict[str, tuple[float, float]] = {
    "wecombot": (5, 15),
    "dingtalk": (5, 15),
    "tgram": (20, 30),
    "ntfy": (30, 60),
    "ntfys": (30, 60),
}
DEFAULT_LIMIT = (30, 120)
MAX_ROUNDS = 5  # all of a person's URLs failed this many times in a row: give up, the next step still pages


@dataclass(frozen=True)
class DeliveryResult:
    ok: bool
    status: str
    error: str
    elapsed_ms: float


def service_key(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}:{parts.port or ''}"


def redact(url: str) -> str:
    """Safe to log and store: Apprise URLs carry tokens and passwords, and for bots (tgram://, wecombot://,
    dingtalk://) the "host" is the token itself. A real host name is kept; anything else becomes a hash."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host == "localhost" or "." in host:
        return f"{parts.scheme}://{host}{':' + str(parts.port) if parts.port else ''}/..."
    return f"{parts.scheme}://#{hashlib.sha256(url.encode()).hexdigest()[:10]}"


class TokenBucket:
    def __init__(self, burst: float, per_minute: float, clock: Clock) -> None:
        self.capacity = burst
        self.rate = per_minute / 60.0
        self.clock = clock
        self.tokens = burst  # full at start: the first message goes at once
        self.stamp = clock.monotonic()

    def take(self) -> float:
        """0 when a token was taken; else seconds until one will be there."""
        now = self.clock.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class RateLimiter:
    """One bucket per service; used by the worker thread only."""

    def __init__(self, clock: Clock, limits: dict[str, tuple[float, float]] | None = None) -> None:
        self.clock = clock
        self.limits = {**SERVICE_LIMITS, **(limits or {})}
        self._buckets: dict[str, TokenBucket] = {}

    def take(self, url: str) -> float:
        key = service_key(url)
        bucket = self._buckets.get(key)
        if bucket is None:
            burst, per_minute = self.limits.get(urlsplit(url).scheme, DEFAULT_LIMIT)
            bucket = self._buckets[key] = TokenBucket(burst, per_minute, self.clock)
        return bucket.take()


def warm_up() -> None:
    """Load Apprise's plugins now: the first `add()` in a process scans them (0.4 s here), and that must
    not happen in front of the first alert after a gateway start."""
    apprise.Apprise().add("json://localhost/")


def send(url: str, title: str, body: str, *, timeout_s: float = 10.0) -> DeliveryResult:
    """One attempt through Apprise to one URL. Runs in a pool thread; never raises on delivery failure."""
    started = time.perf_counter()
    sender = apprise.Apprise()
    if not sender.add(url):
        return DeliveryResult(False, "invalid_url", f"Apprise does not accept {redact(url)}", 0.0)
    try:
        result = sender.notify(body=body, title=title, timeout=timeout_s)
    except Exception as exc:  # a plugin bug must cost one attempt, not the worker
        return DeliveryResult(False, "exception", f"{type(exc).__name__}: {exc}"[:300],
                              (time.perf_counter() - started) * 1000)
    elapsed = (time.perf_counter() - started) * 1000
    status = getattr(getattr(result, "status", None), "name", "SUCCESS" if result else "FAILURE")
    return DeliveryResult(bool(result), status.lower(), "" if result else f"apprise status {status}", elapsed)


@dataclass(frozen=True)
class NextTry:
    """After a failed attempt: which URL, and when (None: give up)."""

    url_index: int
    at: datetime | None


def after_failure(*, url_index: int, url_count: int, attempts: int, now: datetime) -> NextTry:
    """Fall back to the person's next URL at once; after the last, back off and start over from the first."""
    if url_index + 1 < url_count:
        return NextTry(url_index + 1, now)
    rounds = attempts // max(url_count, 1)
    if rounds >= MAX_ROUNDS:
        return NextTry(0, None)
    return NextTry(0, now + timedelta(seconds=min(300.0, 5.0 * 2 ** (rounds - 1))))
