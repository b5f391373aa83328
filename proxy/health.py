"""Active health checks per upstream (`upstreams.*.health_check`).

Owns: the hysteresis that turns check outcomes into healthy / unhealthy (a pure value and
function, `HealthState` and `observe`), and the shell around it: one owned background task per
upstream that GETs `url + path` with the upstream's configured headers, sets
`Upstream.track.healthy`, and raises "upstream_unhealthy" / "upstream_healthy" events.
Must not: open or close breakers, count checks as traffic (no rate limit, no retry budget), or
decide what the request path does with an unhealthy upstream (`Upstream.available` does).

Consecutive-count hysteresis as HAProxy's `rise`/`fall` and Envoy's `healthy_threshold` /
`unhealthy_threshold`: https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/health_checking
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, replace

from aiohttp import web

from proxy.clock import Clock
from proxy.core.config.model import HealthCheck, Timeouts
from proxy.core.errors import UpstreamError
from proxy.runtime import Live
from proxy.telemetry import Telemetry
from proxy.transport import Outbound
from proxy.upstream import Upstream

log = logging.getLogger("proxy.health")
BODY_LIMIT = 64 * 1024  # read small bodies whole so the pooled connection is reused
JITTER = 0.1  # +-10% on every interval, so many upstreams do not probe in lockstep


# -- pure core ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HealthState:
    """One upstream's health: None until evidence arrives, and the current streaks."""

    healthy: bool | None = None
    successes: int = 0  # consecutive passing checks
    failures: int = 0  # consecutive failing checks


def observe(state: HealthState, ok: bool, policy: HealthCheck) -> HealthState:
    """The state after one check. Unknown health counts as healthy, because the request path
    already sends traffic to an upstream nobody has checked: one pass confirms it, and it takes
    `unhealthy_after` consecutive failures to mark it down, as it takes `healthy_after`
    consecutive passes to bring a down upstream back."""
    if ok:
        successes = state.successes + 1
        healthy = state.healthy
        if healthy is None or (healthy is False and successes >= policy.healthy_after):
            healthy = True
        return HealthState(healthy, successes, 0)
    failures = state.failures + 1
    healthy = state.healthy
    if healthy is not False and failures >= policy.unhealthy_after:
        healthy = False
    return HealthState(healthy, 0, failures)


def passed(status: int) -> bool:
    """2xx and 3xx pass, as HAProxy's `option httpchk`; 4xx too says the check is broken
    (wrong path, credentials refused), which an operator must hear about."""
    return 200 <= status < 400


def next_delay(interval: float, rand: float) -> float:
    """Seconds until the next check: `interval` +-10%, `rand` in [0, 1)."""
    return interval * (1.0 - JITTER + 2.0 * JITTER * rand)


@dataclass(frozen=True, slots=True)
class CheckResult:
    upstream: str
    ok: bool
    status: int | None  # None: no HTTP answer (connect error, timeout)
    error: str | None
    elapsed: float
    before: HealthState
    after: HealthState

    @property
    def changed(self) -> bool:
        """True when health flipped in a way worth an event (None -> True is not news)."""
        return self.after.healthy is not self.before.healthy and not (
            self.before.healthy is None and self.after.healthy is True
        )


# -- shell -------------------------------------------------------------------------------------


class HealthChecks:
    """The background checks of one running proxy. Tests call `check_once` directly."""

    def __init__(
        self, clock: Clock, live: Live, telemetry: Telemetry, *, rng: random.Random | None = None
    ) -> None:
        self.clock, self.live, self.telemetry = clock, live, telemetry
        self._rng = rng or random.Random()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._health: dict[str, tuple[Upstream, HealthState]] = {}
        self.checks = 0
        self.crashes = 0

    def start(self) -> None:
        """Start a task for every upstream with a `health_check` that has none yet. Idempotent:
        call it again after a reload so new upstreams are checked too."""
        loop = asyncio.get_running_loop()
        for name, upstream in self.live.runtime.upstreams.items():
            if upstream.config.health_check is None or name in self._tasks:
                continue
            task = loop.create_task(self._loop(name), name=f"health:{name}")
            self._tasks[name] = task
            task.add_done_callback(self._done)

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    @property
    def running(self) -> frozenset[str]:
        return frozenset(name for name, task in self._tasks.items() if not task.done())

    def health(self, name: str) -> HealthState | None:
        found = self._health.get(name)
        return found[1] if found else None

    async def check_once(self, upstream: Upstream) -> CheckResult:
        """One check of `upstream`: request, hysteresis, `track.healthy`, event on a change."""
        policy = upstream.config.health_check
        if policy is None:
            raise ValueError(f"upstream {upstream.name} has no health_check")
        status, error, elapsed = await self._probe(upstream, policy)
        ok = status is not None and passed(status)
        before = self._current(upstream)
        after = observe(before, ok, policy)
        self._health[upstream.name] = (upstream, after)
        upstream.track.healthy = after.healthy
        self.checks += 1
        result = CheckResult(upstream.name, ok, status, error, elapsed, before, after)
        if result.changed:
            self._announce(result, policy)
        return result

    # -- internals -----------------------------------------------------------------------------

    def _current(self, upstream: Upstream) -> HealthState:
        """Streaks survive between checks of the same Upstream object; a reload that built a
        new one starts over. `track.healthy` wins, so whoever else sets it is respected."""
        found = self._health.get(upstream.name)
        streaks = found[1] if found is not None and found[0] is upstream else HealthState()
        return replace(streaks, healthy=upstream.track.healthy)

    async def _probe(self, upstream: Upstream, policy: HealthCheck) -> tuple[int | None, str | None, float]:
        # The upstream's own transport: same TLS settings and pool, but not its breaker,
        # rate limit or retries: a check must see the vendor, not our own admission control.
        timeout = Timeouts(connect=min(policy.timeout, upstream.config.timeout.connect), total=policy.timeout)
        out = Outbound("GET", policy.path, list(upstream.config.headers), timeout=timeout)
        start = self.clock.now()
        try:
            fetched = await upstream.transport.send(out, BODY_LIMIT)
        except UpstreamError as exc:
            return None, exc.message, self.clock.now() - start
        fetched.release()
        error = None if passed(fetched.status) else f"HTTP {fetched.status}"
        return fetched.status, error, fetched.elapsed

    def _announce(self, result: CheckResult, policy: HealthCheck) -> None:
        now = self.clock.now()
        if result.after.healthy is False:
            self.telemetry.event(
                "upstream_unhealthy",
                now,
                level="error",
                upstream=result.upstream,
                path=policy.path,
                failures=result.after.failures,
                reason=result.error,
            )
        else:
            self.telemetry.event(
                "upstream_healthy",
                now,
                level="info",
                upstream=result.upstream,
                path=policy.path,
                successes=result.after.successes,
            )

    async def _loop(self, name: str) -> None:
        """Check `name` every interval until cancelled, or until a reload removes it or its
        health_check. One failed or crashed check never ends the loop."""
        while True:
            upstream = self.live.runtime.upstreams.get(name)
            policy = upstream.config.health_check if upstream is not None else None
            if upstream is None or policy is None:
                return
            # The first check waits one interval too: a restart must not probe every vendor
            # at the same instant, and traffic meanwhile treats the upstream as healthy.
            await asyncio.sleep(next_delay(policy.interval, self._rng.random()))
            upstream = self.live.runtime.upstreams.get(name)
            if upstream is None or upstream.config.health_check is None:
                return
            try:
                await self.check_once(upstream)
            except Exception:
                self.crashes += 1
                log.exception("health check of %s crashed", name)

    def _done(self, task: asyncio.Task[None]) -> None:
        name = task.get_name().removeprefix("health:")
        if self._tasks.get(name) is task:
            del self._tasks[name]
        if not task.cancelled() and task.exception() is not None:
            log.error("health checks of %s stopped", name, exc_info=task.exception())


HEALTH = web.AppKey("health_checks", HealthChecks)
