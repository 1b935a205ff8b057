"""Delivery through Apprise: one attempt to one URL, per-service rate limits, retry and fallback decisions.

Every attempt carries the page's idempotency key: in the text for every service, and for the generic
HTTP plugins (json://, form://, xml://) also as an `Idempotency-Key` header and a `notification_id`
field, so a receiver can keep one copy however often we had to try (docs/alerts.md, "At least once").

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
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

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
# Apprise's generic HTTP plugins take extra headers (`+Name=value`) and payload fields (`:name=value`) as URL
# arguments; the service-specific plugins build their own requests, so for those the key is in the text only.
KEYED_SCHEMES = {"json", "jsons", "form", "forms", "xml", "xmls"}
Outcome = Literal["sent", "failed", "unknown"]


@dataclass(frozen=True)
class DeliveryResult:
    ok: bool
    status: str
    error: str
    elapsed_ms: float
    # "unknown": the request went out and no answer came (timed out): it may have been delivered.
    outcome: Outcome = "failed"

    @property
    def unknown(self) -> bool:
        return self.outcome == "unknown"


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
    not happen in front of the first alert after a gateway start.

    Apprise's own warnings stop at its logger: each one comes back in the attempt's result and goes into
    our attempt log line and `delivery_attempts.error`, so an outage does not log twice per attempt."""
    logging.getLogger("apprise").propagate = False
    apprise.Apprise().add("json://localhost/")


def _reasons(result: object) -> str:
    logs = getattr(result, "logs", None)
    messages = [entry.message for entry in logs()] if callable(logs) else []
    return "; ".join(dict.fromkeys(str(m) for m in messages))[:300]


def attempt_url(url: str, key: str, timeout_s: float) -> str:
    """The URL for one attempt: the idempotency key where the plugin can carry it, and our read timeout
    (Apprise's default is 4 s, shorter than many a gateway takes) unless the URL sets its own `rto=`."""
    parts = urlsplit(url)
    args = parse_qsl(parts.query, keep_blank_values=True)
    names = {name for name, _ in args}
    if "rto" not in names:
        args.append(("rto", f"{timeout_s:g}"))
    if parts.scheme.lower() in KEYED_SCHEMES and key:
        args += [("+Idempotency-Key", key), (":notification_id", key)]
    return urlunsplit(parts._replace(query=urlencode(args, safe="+:")))


def read_timeout(url: str, default: float) -> float:
    for name, value in parse_qsl(urlsplit(url).query):
        if name == "rto":
            try:
                return float(value)
            except ValueError:
                break
    return default


def send(url: str, title: str, body: str, *, key: str = "", timeout_s: float = 30.0) -> DeliveryResult:
    """One attempt through Apprise to one URL. Runs in a pool thread; never raises on delivery failure."""
    started = time.perf_counter()
    sender = apprise.Apprise()
    if not sender.add(attempt_url(url, key, timeout_s)):
        return DeliveryResult(False, "invalid_url", f"Apprise does not accept {redact(url)}", 0.0)
    rto = read_timeout(url, timeout_s)
    try:
        # The outer limit only catches a plugin that ignores its socket timeouts; Apprise then stops
        # waiting but its thread may still deliver, so that too is an unknown outcome.
        result = sender.notify(body=body, title=title, timeout=rto + 30.0)
    except Exception as exc:  # a plugin bug must cost one attempt, not the worker
        return DeliveryResult(False, "exception", f"{type(exc).__name__}: {exc}"[:300],
                              (time.perf_counter() - started) * 1000)
    elapsed = (time.perf_counter() - started) * 1000
    status = getattr(getattr(result, "status", None), "name", "SUCCESS" if result else "FAILURE").lower()
    if result:
        return DeliveryResult(True, status, "", elapsed, "sent")
    # Apprise reports a refused connection and an unanswered request alike (FAILURE): only the time tells
    # them apart. A failure that lasted the whole read timeout was sent and never answered.
    why = _reasons(result)
    if status == "timeout" or elapsed >= rto * 1000 * 0.95:
        return DeliveryResult(False, "unknown", f"no answer within {rto:g} s: {why or status}", elapsed, "unknown")
    return DeliveryResult(False, status, f"apprise status {status}: {why}" if why else f"apprise status {status}",
                          elapsed, "failed")


@dataclass(frozen=True)
class NextTry:
    """After a failed attempt: which URL, and when."""

    url_index: int
    at: datetime


def after_failure(*, url_index: int, url_count: int, attempts: int, now: datetime, first_s: float = 5.0,
                  max_s: float = 180.0, unknown: bool = False, hold_s: float = 60.0) -> NextTry:
    """Fall back to the person's next URL at once; after the last, back off (doubling up to `max_s`) and start
    over from the first. Never gives up: the caller stops when the alert no longer needs the page. An attempt
    that may have arrived (`unknown`) is not followed by another within `hold_s`, whichever URL is next."""
    if url_index + 1 < url_count:
        nxt = NextTry(url_index + 1, now)
    else:
        rounds = max(1, attempts // max(url_count, 1))
        nxt = NextTry(0, now + timedelta(seconds=min(max_s, first_s * 2 ** min(rounds - 1, 30))))
    if unknown and nxt.at < now + timedelta(seconds=hold_s):
        return NextTry(nxt.url_index, now + timedelta(seconds=hold_s))
    return nxt
