"""The decisions of the request path, as pure functions: what to do with a request given what
the cache holds, the vendor's health and the time (Varnish's `vcl_hit` / `vcl_miss` /
`vcl_backend_error`, hishel's states).

Owns: `on_lookup` (serve fresh, serve stale and refresh, fetch, or refuse an only-if-cached
request), `on_failure` (serve a copy, the route's fallback, or the error) and `slow_budget`
(how long a request with a usable copy waits for a slow vendor). The labels the answer carries
(X-Cache, Cache-Status detail) come with each decision.
Must not: do I/O, read the clock, or touch the store: the shell (`handler`) carries them out.

RFC 9111 4.2 (fresh), RFC 5861 3 (stale-while-revalidate) and 4 (stale-if-error) and our
last-known-good and circuit rules, in one place; the tables in `tests/unit/test_decide.py`.
"""

from __future__ import annotations

import enum
import math
from typing import Final

from proxy.core.freshness import usable_on_error
from proxy.core.model import Entry
from proxy.core.record import Frozen


class Action(enum.Enum):
    HIT = "hit"  # the stored copy, fresh (RFC 9111 4.2)
    STALE = "stale"  # the stored copy, stale, while a background refresh runs
    FETCH = "fetch"  # ask the vendor (coalesced; conditional when the copy has validators)
    NOT_CACHED = "not-cached"  # only-if-cached and nothing to serve (RFC 9111 5.2.1.7): 504


class Vendor(Frozen):
    """What the shell knows of the upstream right now."""

    __slots__ = ("available", "unhealthy")

    def __init__(self, available: bool = True, unhealthy: bool = False) -> None:
        self.available: Final = available  # the breaker lets a call through
        self.unhealthy: Final = unhealthy  # the health checks say it is down


class Plan(Frozen):
    """What to do, and how the answer is marked."""

    __slots__ = ("action", "reason", "refresh", "x_cache")

    def __init__(
        self, action: Action, reason: str | None = None, x_cache: str = "MISS", refresh: bool = False
    ) -> None:
        self.action: Final = action
        self.reason: Final = reason  # Cache-Status detail of a stale answer
        self.x_cache: Final = x_cache  # HIT, STALE or UPDATING when the copy answers
        self.refresh: Final = refresh  # start a background refresh (STALE only)


FETCH: Final = Plan(Action.FETCH)
NOT_CACHED: Final = Plan(Action.NOT_CACHED)


def on_lookup(entry: Entry | None, now: float, vendor: Vendor, *, only_if_cached: bool = False) -> Plan:
    """What to do with a cacheable request once the cache was asked."""
    if entry is not None:
        if now < entry.fresh_until:
            return Plan(Action.HIT, "heuristic" if entry.heuristic else None, "HIT")
        if not vendor.available and usable_on_error(entry, now):
            # The breaker, or the health checks while the breaker is closed: say which. The
            # refresh is the probe; an unhealthy vendor is left to its health check.
            why = "upstream-unhealthy" if vendor.unhealthy else "circuit-open"
            return Plan(Action.STALE, why, "STALE", refresh=True)
        if now < entry.stale_until:
            return Plan(Action.STALE, "stale-while-revalidate", "UPDATING", refresh=True)
    return NOT_CACHED if only_if_cached else FETCH


class Failure(enum.Enum):
    COPY = "copy"  # the stored copy, marked STALE
    FALLBACK = "fallback"  # the route's synthetic answer, marked FALLBACK
    ERROR = "error"  # our JSON error


def on_failure(
    entry: Entry | None, now: float, *, circuit_open: bool, guard: str | None, has_fallback: bool
) -> tuple[Failure, str | None]:
    """What answers when the fetch failed, and the Cache-Status detail of a served copy: the
    guard's verdict, `circuit-open`, or why the copy may stand in."""
    usable = usable_on_error(entry, now) if entry is not None else None
    if usable is not None:
        return Failure.COPY, guard or ("circuit-open" if circuit_open else usable)
    return (Failure.FALLBACK if has_fallback else Failure.ERROR), None


def slow_budget(
    entry: Entry | None, now: float, *, stale_if_slow: float, started: float | None
) -> float | None:
    """Seconds this request may still wait for the vendor before its copy answers, or None when
    it waits as long as the fetch takes (no `stale_if_slow`, or no copy usable on error).
    Measured from the start of the key's fetch (`started`), so every waiter is answered at once."""
    if not stale_if_slow or entry is None or usable_on_error(entry, now) is None:
        return None
    return (now if started is None else started) + stale_if_slow - now


DEFAULT_RETRY_AFTER: Final = 5.0  # seconds, when neither the vendor nor the breaker says


def retry_after(asked: float | None, breaker_wait: float) -> int:
    """Seconds a client should wait (RFC 9110 10.2.3): the vendor's Retry-After, else the open
    breaker's, else 5."""
    wait = asked if asked is not None else (breaker_wait if breaker_wait > 0 else DEFAULT_RETRY_AFTER)
    return max(1, math.ceil(wait))
