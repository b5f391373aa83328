"""Outbound admission per upstream: a token bucket (rate) and a bulkhead (concurrency).

Owns: the token arithmetic, vendor 429 penalties, and the bulkhead's active/queued counts.
Must not: read the clock (every method that needs time takes `now`), sleep, await or hold
asyncio primitives; the async shell waits on its own Condition/Event using these answers.
"""

from __future__ import annotations

import math
from typing import Final, Literal

# Float refill arithmetic (0.1 s * 10/s) can land a hair under a whole token; this slack keeps
# "exactly enough" from being reported as "wait 1e-17 seconds".
_EPSILON: Final = 1e-9


class TokenBucket:
    """Requests toward one upstream: refills `per_second`, holds at most `burst`; starts full."""

    __slots__ = ("_tokens", "_updated", "burst", "per_second")

    def __init__(self, per_second: float, burst: int) -> None:
        if not per_second > 0 or burst < 1:
            raise ValueError("per_second must be > 0 and burst >= 1")
        self.per_second = per_second
        self.burst = burst
        self._tokens = float(burst)
        # Time the tokens were last brought up to date; None until first use. After penalise()
        # it may lie in the future: no refill happens before it.
        self._updated: float | None = None

    def tokens(self, now: float) -> float:
        """Tokens available at `now` (for /status)."""
        self._refill(now)
        return self._tokens

    def try_take(self, now: float, n: float = 1.0) -> bool:
        """Take `n` tokens if they are all there; take nothing otherwise."""
        self._check(n)
        self._refill(now)
        if self._tokens + _EPSILON < n:
            return False
        self._tokens = max(0.0, self._tokens - n)
        return True

    def wait_time(self, now: float, n: float = 1.0) -> float:
        """Seconds until `n` tokens are available (0 if now; inf if n exceeds the burst)."""
        self._check(n)
        if n > self.burst:
            return math.inf
        self._refill(now)
        assert self._updated is not None
        missing = n - self._tokens
        if missing <= _EPSILON:
            return 0.0
        # Before a penalty ends nothing refills; the tokens then accrue from its end.
        return max(0.0, self._updated - now) + max(0.0, missing) / self.per_second

    def penalise(self, now: float, until: float) -> None:
        """A vendor 429 (Retry-After -> `until`): no tokens before `until`, and an empty bucket
        after it, so traffic resumes at the configured rate instead of as one burst."""
        self._refill(now)
        assert self._updated is not None
        self._tokens = 0.0
        self._updated = max(self._updated, until)

    def _refill(self, now: float) -> None:
        if self._updated is None:
            self._updated = now
            return
        elapsed = now - self._updated
        if elapsed > 0:  # a clock that steps back, or a pending penalty, refills nothing
            self._tokens = min(float(self.burst), self._tokens + elapsed * self.per_second)
            self._updated = now

    @staticmethod
    def _check(n: float) -> None:
        if not n > 0:
            raise ValueError("n must be > 0")


class Bulkhead:
    """At most `max_active` calls in flight toward one upstream, plus at most `max_queue`
    waiting; counts only. Waiters are never overtaken by newcomers (see try_enter).

    Shell protocol (one asyncio.Condition per bulkhead):
        verdict = bulkhead.try_enter()
        "reject" -> fail fast (503)
        "queue"  -> async with cond: await cond.wait_for(bulkhead.try_promote)
                    (on timeout/cancel: if bulkhead.dequeue(): cond.notify())
        then run the call; finally: if bulkhead.leave(): cond.notify()
    """

    __slots__ = ("_active", "_queued", "max_active", "max_queue")

    def __init__(self, max_active: int, max_queue: int) -> None:
        if max_active < 1 or max_queue < 0:
            raise ValueError("max_active must be >= 1 and max_queue >= 0")
        self.max_active = max_active
        self.max_queue = max_queue
        self._active = 0
        self._queued = 0

    @property
    def active(self) -> int:
        return self._active

    @property
    def queued(self) -> int:
        return self._queued

    @property
    def idle(self) -> bool:
        """Nothing in flight and nobody waiting."""
        return self._active == 0 and self._queued == 0

    def try_enter(self) -> Literal["run", "queue", "reject"]:
        """Take a slot ("run"), a place in the queue ("queue"), or neither ("reject").
        A newcomer queues while anyone is waiting, even if a slot just freed: FIFO fairness."""
        if self._active < self.max_active and self._queued == 0:
            self._active += 1
            return "run"
        if self._queued < self.max_queue:
            self._queued += 1
            return "queue"
        return "reject"

    def try_promote(self) -> bool:
        """A queued caller takes a free slot: True means it is now active and may run."""
        if self._queued == 0:
            raise RuntimeError("try_promote() without a queued caller")
        if self._active >= self.max_active:
            return False
        self._queued -= 1
        self._active += 1
        return True

    def dequeue(self) -> bool:
        """A queued caller gave up (timeout, cancel) before running. True when a slot is free
        and someone still waits: wake one, or the slot would sit idle."""
        if self._queued == 0:
            raise RuntimeError("dequeue() without a queued caller")
        self._queued -= 1
        return self._should_wake()

    def leave(self) -> bool:
        """An active caller finished. True when a queued caller should be woken."""
        if self._active == 0:
            raise RuntimeError("leave() without a matching run")
        self._active -= 1
        return self._queued > 0 and self._active < self.max_active  # `_should_wake`, inline

    def _should_wake(self) -> bool:
        return self._queued > 0 and self._active < self.max_active
