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
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

from proxy.clock import Clock
from proxy.core.breaker import CircuitBreaker, Permit, State, Transition, is_failure_status
from proxy.core.config.model import Timeouts, UpstreamConfig
from proxy.core.errors import CircuitOpen, Overloaded, ProxyError, UpstreamError, UpstreamOutcomeUnknown
from proxy.core.ratelimit import Bulkhead, TokenBucket
from proxy.core.retry import (
    RetryBudget,
    backoff_delay,
    is_retryable_status,
    may_retry_method,
    parse_retry_after,
)
from proxy.transport import Exchange, Fetched, Outbound, Transport

log = logging.getLogger("proxy.upstream")

RATE_WAIT_MAX = 1.0  # seconds a request without a stored copy may wait for a token
MAX_HOLD = 300.0  # the longest a vendor's 429 Retry-After holds us off: one bad header is not a year
Judge = Callable[[Fetched], bool]
_CLOSED = State.CLOSED  # a plain name: an enum member lookup is slow on 3.11 (see `breaker`)


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


class Gate:
    """Bulkhead admission (the protocol in `ratelimit.Bulkhead`): a slot at once, else a place
    in a FIFO queue for as long as the request's own deadline allows, else a 503 at once.

    "Reject only what cannot meet its deadline": a queued call waits at most its upstream
    timeout (`total`), measured on the injected clock from when the attempt began, and the
    exchange then gets only what is left of it, so queueing never stretches a request past
    its deadline. A call whose expected wait (its place in the queue over the slots, times the
    recent exchange time, an EWMA) already exceeds that deadline is refused at once, with
    Retry-After, instead of holding a client until it times out. `max_queue` stays a hard cap.

    The healthy path (a free slot, nobody queued) is `enter`, `leave` and `served`: no event to
    clear and set per exchange; only a retiring upstream waits for `idle`, and only then is
    there a future to resolve (issue 11).
    """

    EWMA = 0.1  # weight of the newest exchange time in `service`

    def __init__(self, bulkhead: Bulkhead, clock: Clock, name: str) -> None:
        self.bulkhead, self.clock, self.name = bulkhead, clock, name
        self._waiting: deque[asyncio.Future[bool]] = deque()
        self._idlers: list[asyncio.Future[None]] = []  # whoever awaits `idle()`, until it is
        self.service = 0.0  # seconds an exchange has been taking lately (0: no sample yet)

    def enter(self) -> bool:
        """A slot now (True); False: the caller holds a place in the queue and must `queue`,
        which also refuses what the queue cannot hold."""
        verdict = self.bulkhead.try_enter()
        if verdict == "run":
            return True
        if verdict == "reject":
            raise Overloaded(f"too many requests in flight toward {self.name}", retry_after=1.0)
        return False

    def is_idle(self) -> bool:
        """No call in flight and none queued."""
        return self.bulkhead.idle

    async def idle(self) -> None:
        """Returns once no call is in flight or queued (at once if none is)."""
        if self.bulkhead.idle:
            return
        idler: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._idlers.append(idler)
        try:
            await idler
        finally:
            if idler in self._idlers:  # cancelled (a retire's grace ran out): not kept
                self._idlers.remove(idler)

    async def queue(self, out: Outbound, timeouts: Timeouts, started: float) -> Outbound:
        """Wait for a slot until `started + timeouts.total`; the request to send with the time
        left, or Overloaded. Cancelled while waiting: the place is given up, nothing leaks."""
        bulkhead = self.bulkhead
        budget = started + timeouts.total - self.clock.now()
        expected = self.service * bulkhead.queued / bulkhead.max_active  # `queued` counts us
        if budget <= 0 or expected > budget:
            self._give_up()
            raise Overloaded(
                f"toward {self.name}: the queue is longer than the request's deadline", retry_after=1.0
            )
        loop = asyncio.get_running_loop()
        # One future per place in the line: `_wake_one` resolves it True, the deadline False
        # (cheaper than asyncio.wait over two futures, which a thousand queued calls all pay).
        current: list[asyncio.Future[bool]] = []
        timer = asyncio.ensure_future(self.clock.sleep(budget))
        timer.add_done_callback(lambda _: _resolve(current, False))
        queued = True  # still counted in the bulkhead's queue
        try:
            while True:
                turn: asyncio.Future[bool] = loop.create_future()
                current[:] = [turn]
                self._waiting.append(turn)
                if timer.done() or not await turn:
                    break  # the deadline came first
                if bulkhead.try_promote():
                    queued = False
                    break
        finally:
            timer.cancel()
            _resolve(current, False)  # a wake-up not taken goes on to the next in line
            if queued:  # the deadline, or cancelled in the queue: the place is given back
                self._give_up()
        left = started + timeouts.total - self.clock.now()
        if queued or left <= 0:
            if not queued:  # promoted just as its time ran out: the slot goes to the next
                self.leave()
            raise Overloaded(
                f"no free connection toward {self.name} within the request's deadline", retry_after=1.0
            )
        if left >= timeouts.total:
            return out
        return replace(out, timeout=Timeouts(connect=min(timeouts.connect, left), total=left))

    def leave(self) -> None:
        if self.bulkhead.leave():
            self._wake_one()
        elif self._idlers:
            self._maybe_idle()

    def served(self, seconds: float) -> None:
        self.service += self.EWMA * (seconds - self.service) if self.service else seconds

    def _give_up(self) -> None:
        if self.bulkhead.dequeue():
            self._wake_one()
        elif self._idlers:
            self._maybe_idle()

    def _wake_one(self) -> None:
        while self._waiting:
            turn = self._waiting.popleft()
            if not turn.done():
                turn.set_result(True)
                return

    def _maybe_idle(self) -> None:
        if self.bulkhead.idle:
            idlers, self._idlers = self._idlers, []
            for idler in idlers:
                if not idler.done():
                    idler.set_result(None)


def _resolve(current: list[asyncio.Future[bool]], value: bool) -> None:
    if current and not current[0].done():
        current[0].set_result(value)


def _get(fetched: Fetched, name: str) -> str | None:
    for key, value in fetched.headers:
        if key.lower() == name:
            return value
    return None


__all__ = ["Fetched", "Outbound", "ProxyError", "Upstream"]
