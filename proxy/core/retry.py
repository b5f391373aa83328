"""Retry decisions: which requests may be retried, how long to wait, and a retry budget.

Owns: the retry policy value, method/status rules, full-jitter backoff, Retry-After parsing and
the Envoy-style budget that stops retries from multiplying load during an outage.
Must not: sleep, read the clock, draw random numbers (the caller passes `rand` in [0, 1)) or
perform the request; the async shell in upstream.py does all of that.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Final

from proxy.core.breaker import SlidingCounts
from proxy.core.cachecontrol import DELTA_MAX

RETRYABLE_STATUSES: Final = frozenset({502, 503, 504})
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
WRITE_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})

# RFC 9110 10.2.3 says delay-seconds is 1*DIGIT; we also accept a sign (negative -> 0) and a
# fraction, because vendors send both and the intent is unambiguous.
_SECONDS: Final = re.compile(r"[+-]?\d+(?:\.\d+)?")
# Beyond 2**60 times the base every realistic policy is already at max_backoff; capping the
# exponent keeps huge retry numbers from overflowing a float.
_MAX_EXPONENT: Final = 60


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """`attempts` is the number of RETRIES after the first try (0 = never retry), matching the
    config's `retries: {attempts: 2}`: at most 1 + attempts requests reach the upstream."""

    attempts: int = 2
    backoff: float = 0.1  # seconds; base of the exponential backoff
    max_backoff: float = 2.0  # seconds; cap before jitter

    def __post_init__(self) -> None:
        if self.attempts < 0:
            raise ValueError("attempts must be >= 0")
        if not 0 <= self.backoff <= self.max_backoff:
            raise ValueError("need 0 <= backoff <= max_backoff")


def may_retry_method(method: str, has_idempotency_key: bool) -> bool:
    """Safe methods always; anything else only with an Idempotency-Key.

    Stricter than RFC 9110 9.2.2 (which calls PUT and DELETE idempotent): vendors' writes
    often are not, and a doubled booking costs more than a failed one.
    """
    if method in SAFE_METHODS or has_idempotency_key:
        return True
    # A write as the listener spells it is never safe: no upper-cased copy (twice a write)
    return method not in WRITE_METHODS and method.upper() in SAFE_METHODS


def is_retryable_status(status: int) -> bool:
    """Gateway errors say the request probably never ran; 500 and 429 are not retried blindly."""
    return status in RETRYABLE_STATUSES


def backoff_delay(policy: RetryPolicy, retry_number: int, rand: float, retry_after: float | None) -> float:
    """Seconds to wait before retry number `retry_number` (1 for the first retry).

    Exponential backoff with full jitter: rand * min(max_backoff, backoff * 2**(n-1))
    (https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/), but never
    sooner than the upstream's Retry-After. The caller decides whether a long Retry-After
    still fits its deadline.
    """
    if retry_number < 1:
        raise ValueError("retry_number starts at 1")
    if not 0.0 <= rand <= 1.0:
        raise ValueError("rand must be in [0, 1]")
    exponent = min(retry_number - 1, _MAX_EXPONENT)
    ceiling = min(policy.max_backoff, policy.backoff * 2.0**exponent)
    # A negative (or missing) Retry-After loses to the jittered delay, which is >= 0.
    return max(rand * ceiling, retry_after if retry_after is not None else 0.0)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (RFC 9110 10.2.3): delay-seconds or HTTP-date.

    `now` must be wall-clock epoch seconds, since an HTTP-date is absolute. Garbage -> None;
    a date in the past or a negative number -> 0. Deliberately more lenient than `httpdate`
    (which Expires, Date and Last-Modified go through): a misread here only makes us wait longer.
    """
    if value is None:
        return None
    text = value.strip()
    if _SECONDS.fullmatch(text):
        return min(float(DELTA_MAX), max(0.0, float(text)))  # a bound on what one header holds
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    # RFC 9110 5.6.7: HTTP dates are UTC; the obsolete asctime form carries no zone at all.
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


class RetryBudget:
    """Envoy's retry budget: retries may be at most `ratio` of the requests seen in a sliding
    `window`, but `min_retries` per window are always allowed so low traffic can still retry.
    https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/cluster/v3/circuit_breaker.proto

    Call record_request() once per client request (not per attempt) and try_spend() before
    each retry; one budget per upstream.
    """

    __slots__ = ("_counts", "min_retries", "ratio")

    def __init__(self, ratio: float = 0.2, window: float = 10.0, min_retries: int = 3) -> None:
        if ratio < 0 or min_retries < 0:
            raise ValueError("ratio and min_retries must be >= 0")
        self.ratio = ratio
        self.min_retries = min_retries
        # first = requests, second = retries spent
        self._counts = SlidingCounts(window)

    def record_request(self, now: float) -> None:
        self._counts.add(now, 1)

    def try_spend(self, now: float) -> bool:
        """True, and counts the retry, when within budget."""
        if self.available(now) == 0:
            return False
        self._counts.add(now, second=1)
        return True

    def available(self, now: float) -> int:
        """Retries that try_spend() would still allow now (for /status and metrics)."""
        requests, retries = self._counts.totals(now)
        # "at most ratio": round down, with a hair of slack so 0.3 * 10 still allows 3.
        allowed = max(self.min_retries, math.floor(self.ratio * requests + 1e-9))
        return max(0, allowed - retries)
