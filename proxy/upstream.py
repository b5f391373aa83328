"""One upstream as the request path sees it: `await upstream.request(...)`.

Owns: the order of resilience around a call, as resilience4j composes it: retry( breaker(
rate limit( bulkhead( transport.send ))))) and the per-upstream state that goes with it (breaker,
retry budget, token bucket, bulkhead, health, last success / failure).
Must not: cache or decide freshness; catch socket or parser errors (the transport maps them).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from proxy.clock import Clock
from proxy.core.breaker import CircuitBreaker, Permit, State, Transition, is_failure_status
from proxy.core.config.model import UpstreamConfig
from proxy.core.errors import CircuitOpen, Overloaded, ProxyError, UpstreamError, UpstreamOutcomeUnknown
from proxy.core.ratelimit import Bulkhead, TokenBucket
from proxy.core.retry import (
    RetryBudget,
    backoff_delay,
    is_retryable_status,
    may_retry_method,
    parse_retry_after,
)
from proxy.fetched import Fetched
from proxy.gate import Gate
from proxy.transport import Exchange, Outbound, Transport

log = logging.getLogger("proxy.upstream")

RATE_WAIT_MAX: Final = 1.0  # seconds a request without a stored copy may wait for a token
MAX_HOLD: Final = 300.0  # the longest a vendor's 429 Retry-After holds us off: one bad header is not a year
Judge = Callable[[Fetched], bool]
_CLOSED: Final = State.CLOSED  # a plain name: an enum member lookup is slow on 3.11 (see `breaker`)


@dataclass(slots=True)
class Track:
    """What the status page and doctor show about an upstream."""

    last_success: float | None = None
    last_failure: float | None = None
    last_error: str | None = None
    calls: int = 0
    failures: int = 0
    data_faults: int = 0
    healthy: bool | None = None  # None until the first health check


class Upstream:
    def __init__(
        self,
        config: UpstreamConfig,
        clock: Clock,
        *,
        on_transition: Callable[[Transition], None],
        rng: random.Random | None = None,
        transport: Exchange | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.clock = clock
        self.transport: Exchange = transport or Transport(config, clock)
        self.breaker = CircuitBreaker(config.name, config.circuit_breaker)
        self.budget = RetryBudget()
        self.bucket = (
            TokenBucket(config.rate_limit.per_second, config.rate_limit.burst) if config.rate_limit else None
        )
        self.bulkhead = Bulkhead(config.max_connections, config.max_queue)
        self.gate = Gate(self.bulkhead, clock, config.name)
        self.track = Track()
        self.hold_until = 0.0  # after a 429: no request before this moment
        self._on_transition = on_transition
        self._rng = rng or random.Random()

    # -- what the request path asks before it calls ------------------------------------------

    def available(self, now: float) -> bool:
        """False when a caller with a stored copy should not wait on this upstream."""
        if self.breaker.transitions_pending:  # asked on every miss: no drain when nothing moved
            self._report()
        return self.breaker.state(now) is _CLOSED and self.track.healthy is not False

    def state(self, now: float) -> State:
        state = self.breaker.state(now)
        if self.breaker.transitions_pending:
            self._report()
        return state

    # -- the call ----------------------------------------------------------------------------

    async def request(
        self,
        out: Outbound,
        limit: int,
        *,
        has_copy: bool = False,
        judge: Judge | None = None,
        identity: bool = False,
    ) -> Fetched:
        """Send with retries; a 5xx/429 comes back as a `Fetched`, transport faults raise.

        `judge` decides whether a complete non-failing response counts as a success for the
        breaker (a route with `guards_trip_breaker` judges the data, not just the status).
        `identity`: a complete coded body is decoded before the judge sees it (`to_identity`).
        """
        now = self.clock.now()
        self.budget.record_request(now)
        retryable = may_retry_method(out.method, out.idempotency_key)
        attempt = 0
        while True:
            attempt += 1
            try:
                # The first attempt starts now; a retry reads the clock afresh.
                fetched = await self._attempt(
                    out, limit, has_copy, judge, identity, now if attempt == 1 else None
                )
            except UpstreamError as exc:
                # The vendor may have acted on it: never again, whatever the method says.
                if isinstance(exc, UpstreamOutcomeUnknown) or not self._may_retry(retryable, attempt):
                    raise
                await asyncio.sleep(self._delay(attempt, None))
                continue
            if not (retryable and is_retryable_status(fetched.status)):
                fetched.attempts = attempt
                return fetched
            retry_after = parse_retry_after(_get(fetched, "retry-after"), self.clock.now())
            # Never sooner than the vendor's Retry-After (RFC 9110 10.2.3): when that is longer
            # than our backoff allows, the answer goes back now instead of waiting for it.
            too_long = (retry_after or 0.0) > self.config.retries.max_backoff
            if too_long or not self._may_retry(retryable, attempt):
                fetched.attempts = attempt
                return fetched
            fetched.release()
            await asyncio.sleep(self._delay(attempt, retry_after))

    def _may_retry(self, retryable: bool, attempt: int) -> bool:
        return (
            retryable and attempt <= self.config.retries.attempts and self.budget.try_spend(self.clock.now())
        )

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        return backoff_delay(self.config.retries, attempt, self._rng.random(), retry_after)

    async def _attempt(
        self,
        out: Outbound,
        limit: int,
        has_copy: bool,
        judge: Judge | None,
        identity: bool,
        now: float | None,
    ) -> Fetched:
        if now is None:
            now = self.clock.now()
        if now < self.hold_until:  # the vendor said 429 + Retry-After: do not ask before then
            raise Overloaded(f"{self.name} asked us to slow down", retry_after=self.hold_until - now)
        breaker = self.breaker
        permit = breaker.acquire(now)
        if breaker.transitions_pending:  # acquire may have moved OPEN -> HALF_OPEN
            self._report()
        if permit is None:
            raise CircuitOpen(
                f"circuit breaker for {self.name} is open",
                retry_after=max(1.0, self.breaker.retry_after(now)),
            )
        try:
            if self.bucket is not None:
                await self._take_token(has_copy)
            gate = self.gate
            if not gate.enter():  # no free slot: queue within the request's own deadline
                out = await gate.queue(out, out.timeout or self.config.timeout, now)
            try:
                fetched = await self.transport.send(out, limit)
            finally:
                gate.leave()
            elapsed = fetched.elapsed
            gate.served(elapsed)
        except UpstreamError as exc:
            failed_at = self.clock.now()
            self._record(permit, failed_at, ok=False, duration=failed_at - now, error=exc.message)
            raise
        except BaseException:
            self.breaker.release(permit)
            raise
        if identity and fetched.complete and fetched.coding() is not None:
            await fetched.to_identity(limit)
        failed = is_failure_status(fetched.status)
        error = f"HTTP {fetched.status}" if failed else None
        if not failed and judge is not None and fetched.complete and not judge(fetched):
            failed, error = True, "data rejected by guards"
        # The clock as the response arrived: nothing was awaited since but a decode.
        self._record(permit, fetched.response_time, ok=not failed, duration=elapsed, error=error)
        if fetched.status == 429:
            asked = parse_retry_after(_get(fetched, "retry-after"), fetched.response_time)
            wait = min(MAX_HOLD, asked or 1.0)
            self.hold_until = max(self.hold_until, fetched.response_time + wait)
            if self.bucket is not None:
                self.bucket.penalise(fetched.response_time, fetched.response_time + wait)
        return fetched

    async def _take_token(self, has_copy: bool) -> None:
        if self.bucket is None:
            return
        now = self.clock.now()
        if self.bucket.try_take(now):
            return
        wait = self.bucket.wait_time(now)
        if has_copy or wait > RATE_WAIT_MAX:
            raise Overloaded(f"rate limit toward {self.name} reached", retry_after=max(1.0, wait))
        await self.clock.sleep(wait)  # the bucket's time, so the wait and the refill agree
        if not self.bucket.try_take(self.clock.now()):
            raise Overloaded(f"rate limit toward {self.name} reached", retry_after=1.0)

    def _record(self, permit: Permit, now: float, *, ok: bool, duration: float, error: str | None) -> None:
        self.breaker.record(permit, now, ok=ok, duration=duration)
        self.track.calls += 1
        if ok:
            self.track.last_success = now
        else:
            self.track.failures += 1
            self.track.last_failure = now
            self.track.last_error = error
        if self.breaker.transitions_pending:
            self._report()

    def _report(self) -> None:
        for transition in self.breaker.drain_transitions():
            self._on_transition(transition)

    async def close(self) -> None:
        await self.transport.close()

    async def retire(self, grace: float) -> None:
        """Close once no call is in flight or queued (a reload replaced this upstream), or
        after `grace` seconds whatever is still running."""
        try:
            await asyncio.wait_for(self.gate.idle(), grace)
        except TimeoutError:
            log.warning("upstream %s retired with calls still in flight after %.1fs", self.name, grace)
        finally:  # also on shutdown, when the task set is cancelled: never leak the pool
            await self.close()


def _get(fetched: Fetched, name: str) -> str | None:
    for key, value in fetched.headers:
        if key.lower() == name:
            return value
    return None


__all__ = ["Fetched", "Outbound", "ProxyError", "Upstream"]
