"""Issue 3 end to end: breaker, timeouts, retries, safe writes, rate limit, bulkhead, refresh
backoff and alerts, against a real scripted origin on loopback with the proxy on a FakeClock.

Time that the proxy decides on (open_for, Retry-After, token refill, refresh backoff) moves only
with the FakeClock; the few real delays are the origin's (hung / slow vendor) and are bounded.
"""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from proxy.clock import FakeClock
from proxy.config import parse_config
from proxy.core.breaker import State
from proxy.core.config.model import Config
from tests.conftest import MakeProxy, Proxy
from tests.origin import Hook, Origin, Reply, Seen
from tests.routes import PRICES, WRITES
from tests.waiting import until

PRICE = {"sku": "A1", "price": 9.5, "currency": "GBP"}
JSON = {"Content-Type": "application/json"}
ROUTES = (
    """
routes:
"""
    + PRICES
    + """    cache: {ttl: 30s, stale_while_revalidate: 60s, stale_if_error: 1h}
  - name: quotes
    match: /api/quotes/{sku}
    methods: [GET]
    upstream: vendor
    rewrite: /quotes/{sku}
    cache: {ttl: 30s, stale_if_error: 1h}
    fallback: {status: 503, json: {error: quotes unavailable}}
"""
    + WRITES
)
# Opens after 4 calls in the window at >= 50% failures; 15 s open; one probe.
BREAKER = "circuit_breaker: {failure_rate: 50%, minimum_calls: 4, window: 30s, open_for: 15s}"
NO_RETRY = "retries: {attempts: 0}"


def cached(origin: Origin, path: str, doc: Any, cache_control: str) -> None:
    """The vendor answers `path` with JSON `doc` and this Cache-Control, until told otherwise."""
    origin.always(path, Reply(200, doc, {**JSON, "Cache-Control": cache_control}))


def config(
    origin_url: str,
    upstream: str = NO_RETRY,
    *,
    routes: str = ROUTES,
    top: str = "",
    more_upstreams: str = "",
) -> Config:
    text = (
        f"server: {{listen: 127.0.0.1:0}}\nlog: {{access: off}}\n{textwrap.dedent(top)}\n"
        f"upstreams:\n  vendor:\n    url: {origin_url}\n"
        f"{textwrap.indent(textwrap.dedent(upstream).strip(), '    ')}\n"
        f"{textwrap.indent(textwrap.dedent(more_upstreams).strip(), '  ')}\n"
        f"{textwrap.dedent(routes)}"
    )
    return parse_config(text, "resilience.yaml", {})


async def open_breaker(proxy: Proxy, origin: Origin, clock: FakeClock) -> None:
    """Failing calls on a key nobody cached until the breaker opens (the fourth call in the
    window, at >= 50% failures); every one of them reached the vendor and came back 502."""
    origin.always("/prices/DOWN", Reply(503, "down"))
    upstream = proxy.state.runtime.upstreams["vendor"]
    for _ in range(4):
        answer = await proxy.get("/api/prices/DOWN")
        assert answer.status == 502
        if upstream.state(clock.now()) is State.OPEN:
            return
    raise AssertionError("the breaker did not open after 4 failing calls")


# -- circuit breaker -------------------------------------------------------------------------


async def test_outage_opens_breaker_then_probe_closes_it(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock
) -> None:
    proxy = await make_proxy(config=config(origin.url, f"{NO_RETRY}\n{BREAKER}"))
    await open_breaker(proxy, origin, clock)
    assert origin.count() == 4
    # Open: nothing reaches the vendor, whatever the path, until open_for has passed.
    for seconds in (0.0, 5.0, 9.5):
        clock.advance(seconds)
        answer = await proxy.get("/api/prices/DOWN")
        assert answer.status == 503
        body = await answer.json()
        assert body["error"] == "circuit_open" and body["upstream"] == "vendor"
        assert answer.headers["Content-Type"] == "application/json"
    assert origin.count() == 4
    clock.advance(0.5)  # 15 s after opening: half-open, the next call is the probe
    cached(origin, "/prices/DOWN", PRICE, "max-age=60")
    probe = await proxy.get("/api/prices/DOWN")
    assert probe.status == 200 and probe.headers["X-Cache"] == "MISS"
    assert origin.count() == 5
    assert proxy.state.runtime.upstreams["vendor"].state(clock.now()) is State.CLOSED


@pytest.mark.parametrize(("open_for_left", "retry_after"), [(15.0, "15"), (6.5, "7"), (0.2, "1")])
async def test_breaker_open_without_copy_is_503_with_retry_after(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock, open_for_left: float, retry_after: str
) -> None:
    proxy = await make_proxy(config=config(origin.url, f"{NO_RETRY}\n{BREAKER}"))
    await open_breaker(proxy, origin, clock)
    clock.advance(15.0 - open_for_left)
    answer = await proxy.get("/api/prices/NEVER-SEEN")
    assert answer.status == 503
    assert answer.headers["Retry-After"] == retry_after  # the time left open, rounded up
    assert (await answer.json())["error"] == "circuit_open"
    assert origin.count("/prices/NEVER-SEEN") == 0


async def test_breaker_open_without_copy_uses_route_fallback(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock
) -> None:
    proxy = await make_proxy(config=config(origin.url, f"{NO_RETRY}\n{BREAKER}"))
    await open_breaker(proxy, origin, clock)
    answer = await proxy.get("/api/quotes/Q1")
    assert answer.status == 503
    assert await answer.json() == {"error": "quotes unavailable"}
    assert answer.headers["X-Cache"] == "FALLBACK"
    assert 'detail="fallback: circuit-open"' in answer.headers["Cache-Status"]
    # When to come back: the open breaker's remaining time, whole seconds, at least 1.
    assert int(answer.headers["Retry-After"]) >= 1
    assert origin.count("/quotes/Q1") == 0


async def test_breaker_open_with_copy_serves_stale_then_background_probe_closes(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock
) -> None:
    proxy = await make_proxy(config=config(origin.url, f"{NO_RETRY}\n{BREAKER}"))
    cached(origin, "/prices/A1", PRICE, "max-age=10")
    assert (await proxy.get("/api/prices/A1")).headers["X-Cache"] == "MISS"
    await open_breaker(proxy, origin, clock)
    clock.advance(11)  # the copy is past freshness
    before = origin.count()
    for _ in range(5):
        answer = await proxy.get("/api/prices/A1")
        assert answer.status == 200 and await answer.json() == PRICE
        assert answer.headers["X-Cache"] == "STALE"
        assert answer.headers["Cache-Status"] == 'resilient-proxy; hit; ttl=-1; detail="circuit-open"'
        await proxy.settle()
    assert origin.count() == before  # no origin contact while open
    clock.advance(15)  # half-open: the background refresh is the probe, the user still gets the copy
    cached(origin, "/prices/A1", {**PRICE, "price": 10.0}, "max-age=10")
    answer = await proxy.get("/api/prices/A1")
    assert answer.headers["X-Cache"] == "STALE" and (await answer.json())["price"] == 9.5
    await proxy.settle()
    assert origin.count("/prices/A1") == 2
    assert proxy.state.runtime.upstreams["vendor"].state(clock.now()) is State.CLOSED
    fresh = await proxy.get("/api/prices/A1")
    assert fresh.headers["X-Cache"] == "HIT" and (await fresh.json())["price"] == 10.0


# -- timeouts --------------------------------------------------------------------------------

HUNG = "retries: {attempts: 0}\ntimeout: {connect: 200ms, total: 300ms}"
# The vendor answers after 1 s: only a timeout shorter than that can turn its 200 into a 504 or a
# stale copy, so the outcome (not a stopwatch) proves which timeout applied.


async def test_hung_origin_without_copy_answers_504_within_timeout(
    origin: Origin, make_proxy: MakeProxy
) -> None:
    origin.always("/prices/A1", Reply(200, PRICE, JSON, delay=1.0))
    proxy = await make_proxy(config=config(origin.url, HUNG))
    answer = await proxy.get("/api/prices/A1")
    assert answer.status == 504
    assert (await answer.json())["error"] == "upstream_timeout"
    assert origin.count("/prices/A1") == 1  # it was asked, once, and its late answer discarded


async def test_hung_origin_with_copy_answers_stale_within_timeout(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock
) -> None:
    cached(origin, "/prices/A1", PRICE, "max-age=10")
    proxy = await make_proxy(config=config(origin.url, HUNG))
    await proxy.get("/api/prices/A1")
    clock.advance(120)  # past stale-while-revalidate: the request itself must try the vendor
    origin.always("/prices/A1", Reply(200, PRICE, JSON, delay=1.0))
    answer = await proxy.get("/api/prices/A1")
    assert answer.status == 200 and await answer.json() == PRICE
    assert answer.headers["X-Cache"] == "STALE"
    assert 'detail="stale-if-error"' in answer.headers["Cache-Status"]
    assert origin.count("/prices/A1") == 2  # the request did try the vendor, which timed out


async def test_route_timeout_overrides_upstream_timeout(origin: Origin, make_proxy: MakeProxy) -> None:
    routes = ROUTES.replace(
        "    fallback: {status: 503, json: {error: quotes unavailable}}\n",
        "    timeout: {connect: 200ms, total: 300ms}\n",
    )
    origin.always("/quotes/Q1", Reply(200, PRICE, JSON, delay=1.0))
    proxy = await make_proxy(config=config(origin.url, f"{NO_RETRY}\ntimeout: {{total: 5s}}", routes=routes))
    answer = await proxy.get("/api/quotes/Q1")
    # Under the upstream's 5 s the vendor's 1 s answer would have been a 200.
    assert answer.status == 504 and (await answer.json())["error"] == "upstream_timeout"


# -- retries and writes ----------------------------------------------------------------------

RETRY = "retries: {attempts: 2, backoff: 1ms, max_backoff: 5ms}"


@pytest.mark.parametrize(
    ("method", "key", "reached"),
    [
        ("GET", None, 3),  # safe: 1 + 2 retries
        ("POST", None, 1),  # a write without a key is sent once
        ("DELETE", None, 1),
        ("POST", "book-1", 3),  # a keyed write may be retried
        ("PUT", "book-2", 3),
    ],
)
async def test_502_retries_only_safe_or_keyed(
    origin: Origin, make_proxy: MakeProxy, method: str, key: str | None, reached: int
) -> None:
    origin.always("/prices/A1", Reply(502, "bad gateway"))
    proxy = await make_proxy(config=config(origin.url, RETRY))
    headers = {"Idempotency-Key": key} if key else {}
    body = b'{"qty": 2}' if method != "GET" else None
    answer = await proxy.request(method, "/api/prices/A1", headers=headers, data=body)
    assert origin.count("/prices/A1") == reached
    assert answer.status == 502
    doc = await answer.json()
    assert doc["error"] == "upstream_status" and doc["upstream_status"] == 502
    if body is not None:
        assert all(seen.body == body for seen in origin.seen)  # forwarded intact, every time


async def test_retried_get_succeeds_on_third_try(origin: Origin, make_proxy: MakeProxy) -> None:
    cached(origin, "/prices/A1", PRICE, "max-age=60")
    origin.then("/prices/A1", Reply(502), Reply(503))
    proxy = await make_proxy(config=config(origin.url, RETRY))
    answer = await proxy.get("/api/prices/A1")
    assert answer.status == 200 and await answer.json() == PRICE
    assert origin.count("/prices/A1") == 3


async def test_retry_never_sooner_than_retry_after(origin: Origin, make_proxy: MakeProxy) -> None:
    origin.always("/prices/A1", Reply(503, "busy", {"Retry-After": "30"}))
    proxy = await make_proxy(config=config(origin.url, RETRY))
    answer = await proxy.get("/api/prices/A1")
    # Retry-After 30 s is past max_backoff: the proxy gives up rather than retry any sooner.
    assert answer.status == 502 and (await answer.json())["upstream_status"] == 503
    assert origin.count("/prices/A1") == 1


async def test_write_is_never_cached_or_answered_from_cache(origin: Origin, make_proxy: MakeProxy) -> None:
    origin.always("/prices/A1", Reply(200, {"ok": True}, {**JSON, "Cache-Control": "max-age=600"}))
    proxy = await make_proxy(config=config(origin.url, RETRY))
    for n in range(3):
        answer = await proxy.request("POST", "/api/prices/A1", data=f"n={n}".encode())
        assert answer.headers["X-Cache"] == "BYPASS"
    assert [s.body for s in origin.seen] == [b"n=0", b"n=1", b"n=2"]


class Bookings:
    """A vendor's bookings API that fails every third call with 502 BEFORE recording anything,
    and, like Stripe's, replays the first answer for an Idempotency-Key it has already seen.
    Served by an `Origin` (`respond`), so it is a real server on loopback."""

    def __init__(self) -> None:
        self.calls = 0
        self.recorded: Counter[str] = Counter()  # how many bookings exist per key
        self.replays = 0

    def answer(self, seen: Seen) -> Reply:
        self.calls += 1
        body = json.loads(seen.body)
        if self.calls % 3 == 0:
            return Reply(502, {"error": "try again"}, JSON)
        key = seen.headers.get("Idempotency-Key", "")
        if self.recorded[key]:
            self.replays += 1
        else:
            self.recorded[key] += 1
        return Reply(201, {"booking": key, "seat": body["seat"]}, JSON)


async def test_bookings_with_idempotency_keys_are_recorded_exactly_once(
    origin: Origin,
    make_proxy: MakeProxy,
    clock: FakeClock,
    aiohttp_server: Callable[..., Awaitable[TestServer]],
) -> None:
    vendor, served = Bookings(), Origin()
    served.respond("/bookings", vendor.answer)
    server = await aiohttp_server(served.app())
    routes = ROUTES + (
        "  - name: bookings\n    match: /api/bookings\n    methods: [POST]\n"
        "    upstream: bookings\n    rewrite: /bookings\n    cache: off\n"
    )
    bookings_up = f"""
    bookings:
      url: {str(server.make_url("")).rstrip("/")}
      retries: {{attempts: 2, backoff: 1ms, max_backoff: 5ms}}
    """
    proxy = await make_proxy(config=config(origin.url, NO_RETRY, routes=routes, more_upstreams=bookings_up))
    gate = asyncio.Semaphore(20)

    async def book(n: int) -> tuple[str, int]:
        async with gate:
            answer = await proxy.request(
                "POST", "/api/bookings", json={"seat": n}, headers={"Idempotency-Key": f"key-{n}"}
            )
            await answer.read()
            return f"key-{n}", answer.status

    results: list[tuple[str, int]] = []
    for batch in range(10):  # 20 bookings a second for 10 s: the retry budget's window moves
        results += await asyncio.gather(*(book(batch * 20 + i) for i in range(20)))
        clock.advance(1.0)
    confirmed = {key for key, status in results if 200 <= status < 300}
    refused = [status for _, status in results if not 200 <= status < 300]
    assert all(count == 1 for count in vendor.recorded.values())  # none twice
    assert set(vendor.recorded) == confirmed  # every confirmed one recorded, nothing else
    assert set(refused) <= {502}  # a refusal is the vendor's 502, as a JSON error
    retries = vendor.calls - 200
    # Keyed writes were retried, but within the retry budget (20% of requests, plus the 3 a
    # window always allows), so a vendor failing one call in three is not hammered...
    assert 0 < retries <= 0.2 * 200 + 3
    # ...and most bookings still got through (measured: 160 confirmed, 40 refused, 240 calls).
    assert len(confirmed) >= 150


# -- rate limit, 429, bulkhead ---------------------------------------------------------------


def limited(per_second: float, burst: int) -> str:
    return f"{NO_RETRY}\nrate_limit: {{per_second: {per_second}, burst: {burst}}}"


async def test_rate_limit_is_honoured_at_the_origin(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock
) -> None:
    for n in range(20):
        cached(origin, f"/prices/S{n}", PRICE, "max-age=60")
    # 0.5/s: a request short of a token would wait 2 s, past the 1 s a user may wait: 503 now.
    proxy = await make_proxy(config=config(origin.url, limited(0.5, 5)))
    answers = await asyncio.gather(*(proxy.get(f"/api/prices/S{n}") for n in range(20)))
    statuses = Counter(a.status for a in answers)
    assert statuses == {200: 5, 503: 15}
    assert origin.count() == 5
    refused = next(a for a in answers if a.status == 503)
    assert (await refused.json())["error"] == "upstream_overloaded"
    assert int(refused.headers["Retry-After"]) >= 1
    clock.advance(4.0)  # two tokens back
    later = await asyncio.gather(*(proxy.get(f"/api/prices/S{n}") for n in range(10, 15)))
    assert sorted(a.status for a in later) == [200, 200, 503, 503, 503]
    assert origin.count() == 7


async def test_rate_limited_request_with_copy_gets_the_copy(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock
) -> None:
    cached(origin, "/prices/A1", PRICE, "max-age=10")
    proxy = await make_proxy(config=config(origin.url, limited(0.1, 1)))
    await proxy.get("/api/prices/A1")
    clock.advance(120)  # past SWR; the bucket has refilled its one token by now
    origin.json("/prices/B1", PRICE)
    await proxy.get("/api/prices/B1")  # spends it
    answer = await proxy.get("/api/prices/A1")
    assert answer.status == 200 and answer.headers["X-Cache"] == "STALE"
    assert origin.count("/prices/A1") == 1


async def test_vendor_429_retry_after_slows_us_down(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock
) -> None:
    origin.json("/prices/A1", PRICE)
    origin.then("/prices/A1", Reply(429, "slow down", {"Retry-After": "30"}))
    proxy = await make_proxy(config=config(origin.url, limited(100, 100)))
    first = await proxy.get("/api/prices/A1")
    assert first.status == 502 and (await first.json())["upstream_status"] == 429
    for seconds in (0.0, 10.0, 19.0):
        clock.advance(seconds)
        held = await proxy.get("/api/prices/A1")
        assert held.status == 503 and (await held.json())["error"] == "upstream_overloaded"
    assert origin.count("/prices/A1") == 1  # nothing sent inside the vendor's Retry-After
    clock.advance(1.5)  # 30.5 s: the penalty is over and tokens accrue again
    assert (await proxy.get("/api/prices/A1")).status == 200
    assert origin.count("/prices/A1") == 2


async def test_vendor_429_is_honoured_without_a_configured_rate_limit(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock
) -> None:
    origin.json("/prices/A1", PRICE)
    origin.then("/prices/A1", Reply(429, "slow down", {"Retry-After": "30"}))
    proxy = await make_proxy(config=config(origin.url, NO_RETRY))
    assert (await proxy.get("/api/prices/A1")).status == 502
    clock.advance(10)
    await proxy.get("/api/prices/A1")
    assert origin.count("/prices/A1") == 1


async def test_short_of_a_token_a_request_waits_briefly(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock
) -> None:
    cached(origin, "/prices/A1", PRICE, "max-age=60")
    cached(origin, "/prices/B1", PRICE, "max-age=60")
    proxy = await make_proxy(config=config(origin.url, limited(2, 1)))
    assert (await proxy.get("/api/prices/A1")).status == 200  # spends the only token
    waiting = asyncio.ensure_future(proxy.get("/api/prices/B1"))
    await until(lambda: clock.timers() == 1, what="B1's fetch waits for its token")
    clock.advance(0.4)  # 2/s: the token is 0.5 s away; not yet
    assert (await proxy.get("/nowhere")).status == 404  # a round trip through the proxy's loop
    assert not waiting.done() and origin.count("/prices/B1") == 0 and clock.timers() == 1
    clock.advance(0.1)  # the token it was promised arrives while it waits (within RATE_WAIT_MAX)
    answer = await waiting
    assert answer.status == 200 and origin.count("/prices/B1") == 1


async def test_bulkhead_answers_503_at_once_instead_of_piling_up(
    origin: Origin, make_proxy: MakeProxy
) -> None:
    release = asyncio.Event()
    for n in range(10):
        origin.always(f"/prices/S{n}", Reply(200, PRICE, JSON, hold=release))
    proxy = await make_proxy(config=config(origin.url, f"{NO_RETRY}\nmax_connections: 2\nmax_queue: 1"))
    asked = [asyncio.ensure_future(proxy.get(f"/api/prices/S{n}")) for n in range(10)]
    # Refused at once: every shed answer arrives while the vendor still holds the slow replies.
    await until(lambda: sum(a.done() for a in asked) == 7 and origin.count() == 2, what="seven shed")
    # ...and the release has not been given: two run at the vendor, one queues, none is answered.
    shed = [a.result() for a in asked if a.done()]
    assert [a.status for a in shed] == [503] * 7
    assert [(await a.json())["error"] for a in shed] == ["upstream_overloaded"] * 7
    assert all(a.headers["Retry-After"] == "1" for a in shed)
    release.set()
    ok = [a for a in await asyncio.gather(*asked) if a not in shed]
    assert [a.status for a in ok] == [200] * 3  # the queued one ran once a slot freed
    assert origin.count() == 3
    upstream = proxy.state.runtime.upstreams["vendor"]
    assert (upstream.bulkhead.active, upstream.bulkhead.queued) == (0, 0)


# -- refresh discipline ----------------------------------------------------------------------


async def test_failed_background_refreshes_back_off(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock
) -> None:
    cached(origin, "/prices/A1", PRICE, "max-age=1")
    # A breaker that never opens here: the backoff alone must keep the dead vendor quiet.
    never_opens = f"{NO_RETRY}\ncircuit_breaker: {{minimum_calls: 1000}}"
    proxy = await make_proxy(config=config(origin.url, never_opens))
    await proxy.get("/api/prices/A1")
    origin.always("/prices/A1", Reply(500, "dead"))
    clock.advance(2)  # stale, inside stale-while-revalidate
    hits, updating = [], 0
    for _second in range(8):
        for _ in range(10):  # ten users a second, each answered from the copy
            answer = await proxy.get("/api/prices/A1")
            # UPDATING when this request started a refresh; STALE while backing off
            assert answer.status == 200 and answer.headers["X-Cache"] in ("STALE", "UPDATING")
            updating += answer.headers["X-Cache"] == "UPDATING"
            await proxy.settle()
        hits.append(origin.count("/prices/A1") - 1)
        clock.advance(1)
    # Refreshes at t=0, 1, 3, 7 (delays 1, 2, 4 s): 4 vendor calls for 80 requests.
    assert hits == [1, 2, 2, 3, 3, 3, 3, 4]
    assert updating == 4  # one UPDATING answer per refresh that ran


async def test_refresh_lease_never_leaves_a_key_stuck(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock
) -> None:
    """A hung refresh ends at the upstream timeout; the key refreshes again afterwards."""
    cached(origin, "/prices/A1", PRICE, "max-age=1")
    proxy = await make_proxy(config=config(origin.url, HUNG))
    await proxy.get("/api/prices/A1")
    origin.then("/prices/A1", Reply(200, PRICE, JSON, delay=1.0))
    clock.advance(2)
    assert (await proxy.get("/api/prices/A1")).headers["X-Cache"] == "UPDATING"
    await proxy.settle()  # the refresh timed out (300 ms) instead of hanging
    assert len(proxy.state.flights) == 0  # nothing left "updating"
    clock.advance(2)  # past the 1 s backoff
    cached(origin, "/prices/A1", {**PRICE, "price": 11.0}, "max-age=60")
    await proxy.get("/api/prices/A1")
    await proxy.settle()
    assert (await (await proxy.get("/api/prices/A1")).json())["price"] == 11.0


# -- alerts ----------------------------------------------------------------------------------


async def test_webhook_receives_breaker_events(
    origin: Origin,
    make_proxy: MakeProxy,
    clock: FakeClock,
    aiohttp_server: Callable[..., Awaitable[TestServer]],
) -> None:
    hook = Hook()
    server = await aiohttp_server(hook.app())
    top = f"alerts: {{webhook: {server.make_url('/hook')}}}"
    proxy = await make_proxy(config=config(origin.url, f"{NO_RETRY}\n{BREAKER}", top=top))
    await open_breaker(proxy, origin, clock)
    clock.advance(15)
    origin.json("/prices/DOWN", PRICE)
    assert (await proxy.get("/api/prices/DOWN")).status == 200
    await proxy.state.telemetry.alerts.flush()
    breaker = [e for e in hook.events if e["event"].startswith("breaker_")]
    assert [e["event"] for e in breaker] == ["breaker_open", "breaker_half_open", "breaker_closed"]
    assert all(e["upstream"] == "vendor" for e in breaker)
    assert breaker[0]["previous"] == "closed" and "failure rate" in breaker[0]["reason"]
    assert breaker[2]["reason"] == "probe succeeded"


async def test_a_hung_webhook_never_slows_requests(
    origin: Origin,
    make_proxy: MakeProxy,
    clock: FakeClock,
    aiohttp_server: Callable[..., Awaitable[TestServer]],
) -> None:
    hook = Hook(hold=asyncio.Event())  # takes the alert's POST and never answers it
    server = await aiohttp_server(hook.app())
    top = f"alerts: {{webhook: {server.make_url('/hook')}}}"
    proxy = await make_proxy(config=config(origin.url, f"{NO_RETRY}\n{BREAKER}", top=top))
    await open_breaker(proxy, origin, clock)  # queues breaker_open, which the hook now holds
    await hook.reached.wait()
    answer = await proxy.get("/api/prices/NEW")
    assert answer.status == 503 and (await answer.json())["error"] == "circuit_open"
    alerts = proxy.state.telemetry.alerts
    # Answered while the alert was still in flight: neither delivered nor given up yet.
    assert (alerts.sent, alerts.failed, hook.events) == (0, 0, [])
    hook.hold.set()  # type: ignore[union-attr]
    await alerts.flush()
    assert [e["event"] for e in hook.events][:1] == ["breaker_open"]


async def test_a_read_of_an_uncached_route_gets_its_fallback_a_write_never(
    origin: Origin, make_proxy: MakeProxy
) -> None:
    """A route's fallback answers a failed read even when the route does not cache; a failed
    write gets our JSON error, never the fallback (a synthetic 200 could fake a booking), and is
    sent once."""
    routes = """
routes:
  - name: live
    match: /api/live/{sku}
    methods: [GET, POST]
    upstream: vendor
    rewrite: /live/{sku}
    cache: off
    fallback: {status: 200, json: {items: []}}
"""
    origin.always("/live/L1", Reply(503, {"error": "down"}, JSON))
    proxy = await make_proxy(config=config(origin.url, routes=routes))
    read = await proxy.get("/api/live/L1")
    assert read.status == 200 and await read.json() == {"items": []}
    assert read.headers["X-Cache"] == "FALLBACK"
    assert (
        read.headers["Cache-Status"]
        == 'resilient-proxy; fwd=miss; fwd-status=503; detail="fallback: upstream-status"'
    )
    write = await proxy.request("POST", "/api/live/L1", json={"sku": "L1"})
    assert write.status == 502 and (await write.json())["error"] == "upstream_status"
    assert write.headers["X-Cache"] == "BYPASS"
    assert [seen.method for seen in origin.seen] == ["GET", "POST"]
