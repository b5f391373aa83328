"""Active health checks: the pure hysteresis (plain table tests and a hypothesis property), then
`check_once` against a real scripted origin, the background loop, events, and the request path
treating an unhealthy upstream like an open breaker for routes with a copy."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from hypothesis import given
from hypothesis import strategies as st

from proxy.clock import FakeClock
from proxy.config import parse_config
from proxy.core.config.model import Config, HealthCheck
from proxy.health import HEALTH, CheckResult, HealthChecks, HealthState, next_delay, observe, passed
from tests.conftest import MakeProxy, Proxy
from tests.origin import Hook, Origin, Reply
from tests.routes import PRICES
from tests.waiting import until

PRICE = {"sku": "A1", "price": 9.5, "currency": "GBP"}
JSON = {"Content-Type": "application/json"}
POLICY = HealthCheck(path="/health", interval=10.0, timeout=2.0, unhealthy_after=3, healthy_after=2)


def cached(origin: Origin, path: str, doc: Any, cache_control: str) -> None:
    """The vendor answers `path` with JSON `doc` and this Cache-Control, until told otherwise."""
    origin.always(path, Reply(200, doc, {**JSON, "Cache-Control": cache_control}))


# -- the pure hysteresis ---------------------------------------------------------------------

U, H, D = None, True, False  # unknown, healthy, down


def run(outcomes: str, policy: HealthCheck = POLICY) -> list[bool | None]:
    """Health after each outcome in `outcomes` ("+" pass, "-" fail), from unknown."""
    state, seen = HealthState(), []
    for mark in outcomes:
        state = observe(state, mark == "+", policy)
        seen.append(state.healthy)
    return seen


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        ("+", [H]),  # unknown counts as healthy: one pass confirms it
        ("-", [U]),
        ("--", [U, U]),
        ("---", [U, U, D]),  # unhealthy_after=3 consecutive failures
        ("--+--", [U, U, H, H, H]),  # a pass breaks the streak
        ("---+", [U, U, D, D]),  # one pass is not enough to come back...
        ("---++", [U, U, D, D, H]),  # ...healthy_after=2 is
        ("---+-++", [U, U, D, D, D, D, H]),  # a failure restarts the climb
        ("+---", [H, H, H, D]),
        ("+--+--", [H, H, H, H, H, H]),
    ],
)
def test_hysteresis_table(outcomes: str, expected: list[bool | None]) -> None:
    assert run(outcomes) == expected


@pytest.mark.parametrize(
    ("unhealthy_after", "healthy_after", "outcomes", "expected"),
    [
        (1, 1, "-+-", [D, H, D]),  # no hysteresis at all
        (2, 3, "--+++", [U, D, D, D, H]),
        (5, 1, "----+", [U, U, U, U, H]),
    ],
)
def test_hysteresis_thresholds(
    unhealthy_after: int, healthy_after: int, outcomes: str, expected: list[bool | None]
) -> None:
    policy = HealthCheck("/h", unhealthy_after=unhealthy_after, healthy_after=healthy_after)
    assert run(outcomes, policy=policy) == expected


def test_observe_counts_streaks() -> None:
    state = observe(HealthState(True, successes=4, failures=0), False, POLICY)
    assert state == HealthState(True, successes=0, failures=1)
    assert observe(state, True, POLICY) == HealthState(True, successes=1, failures=0)


@given(st.lists(st.booleans(), max_size=40), st.integers(1, 5), st.integers(1, 5))
def test_health_flips_only_after_a_full_streak(outcomes: list[bool], down: int, up: int) -> None:
    policy = HealthCheck("/h", unhealthy_after=down, healthy_after=up)
    state = HealthState()
    for ok in outcomes:
        new = observe(state, ok, policy)
        if new.healthy is False and state.healthy is not False:
            assert new.failures >= down and not ok  # down only after `down` failures in a row
        if new.healthy is True and state.healthy is False:
            assert new.successes >= up and ok  # back only after `up` passes in a row
        if new.healthy is None:
            assert state.healthy is None  # unknown is never re-entered
        assert (new.successes == 0) == (not ok) and (new.failures == 0) == ok
        state = new


@pytest.mark.parametrize(
    ("status", "ok"),
    [
        (200, True),
        (204, True),
        (301, True),
        (399, True),
        (401, False),
        (404, False),
        (429, False),
        (500, False),
        (503, False),
        (100, False),
    ],
)
def test_passed(status: int, ok: bool) -> None:
    assert passed(status) is ok


@pytest.mark.parametrize(("rand", "delay"), [(0.0, 9.0), (0.5, 10.0), (0.999, 10.998)])
def test_next_delay_jitters_ten_percent(rand: float, delay: float) -> None:
    assert next_delay(10.0, rand) == pytest.approx(delay)


@pytest.mark.parametrize(
    ("before", "after", "changed"),
    [
        (U, H, False),
        (U, D, True),
        (H, D, True),
        (D, H, True),
        (H, H, False),
        (D, D, False),
        (U, U, False),
    ],
)
def test_check_result_changed(before: bool | None, after: bool | None, changed: bool) -> None:
    result = CheckResult("v", True, 200, None, 0.0, HealthState(before), HealthState(after))
    assert result.changed is changed


# -- against a real origin -------------------------------------------------------------------

ROUTES = (
    """
routes:
"""
    + PRICES
    + """    cache: {ttl: 10s, stale_while_revalidate: 5s, stale_if_error: 1h}
"""
)


def config(origin_url: str, health: str, *, extra: str = "", top: str = "") -> Config:
    text = (
        f"server: {{listen: 127.0.0.1:0}}\nlog: {{access: off}}\n{top}\n"
        f"upstreams:\n  vendor:\n    url: {origin_url}/v2\n    retries: {{attempts: 0}}\n"
        f"    headers: {{Authorization: Bearer s3cret-token, X-API-Version: '2024-06-01'}}\n"
        f"    health_check: {health}\n"
        f"{textwrap.indent(textwrap.dedent(extra).strip(), '    ')}\n{ROUTES}"
    )
    return parse_config(text, "health.yaml", {})


# An hour between checks: the background loop stays asleep and the test drives `check_once`.
MANUAL = "{path: /health, interval: 1h, timeout: 300ms, unhealthy_after: 2, healthy_after: 2}"


def checks(proxy: Proxy) -> HealthChecks:
    server = proxy.client.server
    assert isinstance(server, TestServer)
    app = server.app
    assert app is proxy.state.app
    return app[HEALTH]


async def test_check_sends_configured_headers_to_url_plus_path(origin: Origin, make_proxy: MakeProxy) -> None:
    origin.always("/v2/health", Reply(200, "ok"))
    proxy = await make_proxy(config=config(origin.url, MANUAL))
    health = checks(proxy)
    assert health.running == frozenset({"vendor"})
    result = await health.check_once(proxy.state.runtime.upstreams["vendor"])
    assert (result.ok, result.status, result.error) == (True, 200, None)
    seen = origin.seen[-1]
    assert (seen.method, seen.path) == ("GET", "/v2/health")
    assert seen.headers["Authorization"] == "Bearer s3cret-token"
    assert seen.headers["X-API-Version"] == "2024-06-01"
    assert proxy.state.runtime.upstreams["vendor"].track.healthy is True


@pytest.mark.parametrize(
    "failure",
    [
        Reply(503, "down"),
        Reply(404, "no such path"),
        Reply(200, "late", delay=1.0),
        Reply(reset=True),
    ],
)
async def test_failures_mark_unhealthy_then_passes_bring_it_back(
    origin: Origin, make_proxy: MakeProxy, failure: Reply
) -> None:
    proxy = await make_proxy(config=config(origin.url, MANUAL))
    health, upstream = checks(proxy), proxy.state.runtime.upstreams["vendor"]
    origin.always("/v2/health", failure)
    first = await health.check_once(upstream)
    assert not first.ok and first.error and upstream.track.healthy is None
    second = await health.check_once(upstream)
    assert second.changed and upstream.track.healthy is False
    assert not upstream.available(proxy.state.clock.now())
    origin.always("/v2/health", Reply(204))
    await health.check_once(upstream)
    assert upstream.track.healthy is False  # one pass is not enough
    back = await health.check_once(upstream)
    assert back.changed and upstream.track.healthy is True
    assert upstream.available(proxy.state.clock.now())
    events = proxy.state.telemetry.events
    assert (events.value(("upstream_unhealthy",)), events.value(("upstream_healthy",))) == (1, 1)


async def test_timeout_is_the_health_checks_own(origin: Origin, make_proxy: MakeProxy) -> None:
    origin.always("/v2/health", Reply(200, "slow", delay=1.0))
    proxy = await make_proxy(config=config(origin.url, MANUAL, extra="timeout: {total: 10s}"))
    result = await checks(proxy).check_once(proxy.state.runtime.upstreams["vendor"])
    # The vendor answers 200 after 1 s: only the check's own (shorter) timeout makes it fail,
    # under the upstream's 10 s it would have passed.
    assert not result.ok and result.status is None and result.error
    assert origin.count("/v2/health") == 1


async def test_checks_bypass_breaker_and_rate_limit(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock
) -> None:
    origin.always("/v2/health", Reply(200, "ok"))
    slow = "rate_limit: {per_second: 0.01, burst: 1}"
    proxy = await make_proxy(config=config(origin.url, MANUAL, extra=slow))
    upstream = proxy.state.runtime.upstreams["vendor"]
    upstream.breaker.force_open(clock.now())
    upstream.bucket.try_take(clock.now())  # type: ignore[union-attr]
    for _ in range(3):
        assert (await checks(proxy).check_once(upstream)).ok
    assert origin.count("/v2/health") == 3
    assert upstream.track.calls == 0  # not counted as traffic either


async def test_unhealthy_upstream_serves_copy_without_waiting(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock
) -> None:
    cached(origin, "/v2/prices/A1", PRICE, "max-age=10")
    timeouts = "timeout: {connect: 200ms, total: 800ms}"
    proxy = await make_proxy(config=config(origin.url, MANUAL, extra=timeouts))
    assert (await proxy.get("/api/prices/A1")).headers["X-Cache"] == "MISS"
    # The vendor hangs: health checks notice, so users with a copy are not made to wait.
    origin.always("/v2/prices/A1", Reply(200, PRICE, JSON, delay=1.5))
    origin.always("/v2/health", Reply(200, "late", delay=1.5))
    health, upstream = checks(proxy), proxy.state.runtime.upstreams["vendor"]
    for _ in range(2):
        await health.check_once(upstream)
    assert upstream.track.healthy is False
    clock.advance(20)  # past freshness and stale-while-revalidate: normally a foreground fetch
    answer = await proxy.get("/api/prices/A1")
    assert answer.status == 200 and await answer.json() == PRICE
    assert answer.headers["X-Cache"] == "STALE"
    # The breaker is closed: the health checks decided, and the label says so (issue 15).
    assert 'detail="upstream-unhealthy"' in answer.headers["Cache-Status"]
    assert upstream.breaker.snapshot(clock.now())["state"] == "closed"
    assert origin.count("/v2/prices/A1") == 1  # nobody waited on the hung vendor: not asked


async def test_healthy_upstream_still_fetches_in_foreground(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock
) -> None:
    """The control for the test above: with health unknown, the same request waits."""
    cached(origin, "/v2/prices/A1", PRICE, "max-age=10")
    timeouts = "timeout: {connect: 200ms, total: 300ms}"
    proxy = await make_proxy(config=config(origin.url, MANUAL, extra=timeouts))
    await proxy.get("/api/prices/A1")
    origin.always("/v2/prices/A1", Reply(200, PRICE, JSON, delay=1.0))
    clock.advance(20)
    answer = await proxy.get("/api/prices/A1")
    assert answer.headers["X-Cache"] == "STALE"
    assert 'detail="stale-if-error"' in answer.headers["Cache-Status"]
    assert origin.count("/v2/prices/A1") == 2  # the request asked the vendor and waited it out


# -- the background loop and the webhook -----------------------------------------------------


async def test_background_loop_flips_health_and_alerts_the_webhook(
    origin: Origin, make_proxy: MakeProxy, aiohttp_server: Callable[..., Awaitable[TestServer]]
) -> None:
    hook = Hook()
    server = await aiohttp_server(hook.app())
    fast = "{path: /health, interval: 20ms, timeout: 200ms, unhealthy_after: 2, healthy_after: 2}"
    origin.always("/v2/health", Reply(503, "down"))
    top = f"alerts: {{webhook: {server.make_url('/hook')}}}"
    proxy = await make_proxy(config=config(origin.url, fast, top=top))
    upstream = proxy.state.runtime.upstreams["vendor"]
    await until(lambda: upstream.track.healthy is False)
    origin.always("/v2/health", Reply(200, "ok"))
    await until(lambda: upstream.track.healthy is True)
    await proxy.state.telemetry.alerts.flush()
    names = [e["event"] for e in hook.events]
    assert names == ["upstream_unhealthy", "upstream_healthy"]
    down = hook.events[0]
    assert down["upstream"] == "vendor" and down["path"] == "/health" and down["reason"] == "HTTP 503"
    assert "s3cret-token" not in str(hook.events)


async def test_loop_survives_a_dead_vendor_and_stops_at_cleanup(
    origin: Origin, make_proxy: MakeProxy
) -> None:
    fast = "{path: /health, interval: 20ms, timeout: 100ms, unhealthy_after: 1, healthy_after: 1}"
    origin.always("/v2/health", Reply(reset=True))
    proxy = await make_proxy(config=config(origin.url, fast))
    health = checks(proxy)
    await until(lambda: health.checks >= 5)  # every check failed; the loop kept going
    assert health.running == frozenset({"vendor"}) and health.crashes == 0
    tasks = [t for t in asyncio.all_tasks() if t.get_name() == "health:vendor"]
    assert len(tasks) == 1
    await health.stop()
    assert health.running == frozenset() and tasks[0].cancelled()


async def test_no_health_check_configured_starts_nothing(origin: Origin, make_proxy: MakeProxy) -> None:
    text = (
        f"server: {{listen: 127.0.0.1:0}}\nlog: {{access: off}}\n"
        f"upstreams:\n  vendor:\n    url: {origin.url}\n{ROUTES}"
    )
    proxy = await make_proxy(config=parse_config(text, "plain.yaml", {}))
    health = checks(proxy)
    assert health.running == frozenset()
    with pytest.raises(ValueError, match="no health_check"):
        await health.check_once(proxy.state.runtime.upstreams["vendor"])
