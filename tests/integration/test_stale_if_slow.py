"""`cache.stale_if_slow`: a slow vendor never makes a client wait for a copy we already have.

The vendor is a real origin on loopback whose answer is held until the test releases it, and the
proxy's clock is a FakeClock: "slower than the budget" is scripted, never slept.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Sequence
from typing import Any

import pytest

from proxy.clock import FakeClock
from proxy.doctor import run_doctor
from tests.conftest import MakeProxy, Proxy, make_config
from tests.origin import Origin, Reply
from tests.routes import PRICES, WRITES
from tests.waiting import until

PRICE = {"sku": "A1", "price": 9.5, "currency": "GBP"}
NEW = {"sku": "A1", "price": 10.0, "currency": "GBP"}
JSON = {"Content-Type": "application/json", "Cache-Control": "max-age=10"}
BUDGET = 0.25  # exact in binary, so two advances of 0.125 land on the deadline exactly
SLOW = (
    "routes:\n"
    + PRICES
    + "    cache: {ttl: 30s, stale_while_revalidate: 60s, stale_if_error: 1h, stale_if_slow: 250ms}\n"
    + WRITES
)
GUARDED = SLOW.replace("    cache: {", "    guards: [{path: $.price, gt: 0}]\n    cache: {", 1)
A1, VENDOR_A1 = "/api/prices/A1", "/prices/A1"
STALE_IF_SLOW = 'resilient-proxy; fwd=stale; ttl=-111; detail="stale-if-slow"'


async def cached_then_stale(origin: Origin, proxy: Proxy, clock: FakeClock) -> None:
    """A copy stored, then 120 s later: past stale_while_revalidate, inside stale_if_error."""
    origin.json(VENDOR_A1, PRICE, headers={"Cache-Control": "max-age=10"})
    first = await proxy.get(A1)
    assert first.headers["X-Cache"] == "MISS"
    clock.advance(120)


async def still_waiting(proxy: Proxy, clients: Sequence[asyncio.Future[Any]]) -> bool:
    """A full round trip through the proxy's loop, then: has no client been answered yet?"""
    assert (await proxy.get("/nowhere")).status == 404
    return not any(c.done() for c in clients)


async def test_slow_vendor_answered_with_the_copy_at_the_budget(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "proxy.refresh")
    proxy = await make_proxy(SLOW)
    await cached_then_stale(origin, proxy, clock)
    gate = asyncio.Event()
    origin.always(VENDOR_A1, Reply(200, NEW, JSON, hold=gate))
    clients = [asyncio.ensure_future(proxy.get(A1)) for _ in range(5)]
    await origin.reached(VENDOR_A1, 2)
    await until(lambda: clock.timers() == 5)  # every client waits on the same deadline
    clock.advance(BUDGET / 2)
    assert await still_waiting(proxy, clients)
    clock.advance(BUDGET / 2)  # the budget has passed, the vendor has not answered
    answers = await asyncio.gather(*clients)
    assert [a.headers["X-Cache"] for a in answers] == ["STALE"] * 5
    assert [a.headers["Cache-Status"] for a in answers] == [STALE_IF_SLOW] * 5
    assert [await a.json() for a in answers] == [PRICE] * 5
    # A client arriving later, the fetch still running: answered with the copy at once.
    late = await proxy.get(A1)
    assert late.headers["Cache-Status"] == STALE_IF_SLOW and await late.json() == PRICE
    head = await proxy.request("HEAD", A1)  # HEAD shares the GET's copy and its flight
    assert head.status == 200 and head.headers["Cache-Status"] == STALE_IF_SLOW
    assert origin.count(VENDOR_A1) == 2  # the copy's fetch and one refetch for seven clients
    stale = proxy.state.telemetry.stale
    assert stale.value(("prices", "stale-if-slow")) == 7
    gate.set()  # the vendor answers late: stored for the next client
    await proxy.settle()
    fresh = await proxy.get(A1)
    assert fresh.headers["X-Cache"] == "HIT" and await fresh.json() == NEW
    assert origin.count(VENDOR_A1) == 2
    assert proxy.state.telemetry.refreshes.value(("prices", "ok")) == 1
    upstream = proxy.state.runtime.upstreams["vendor"]
    assert upstream.track.calls == 2  # the late answer is accounted once, not once per client
    logged = [r.getMessage() for r in caplog.records if "stale_if_slow" in r.getMessage()]
    assert len(logged) == 1 and "route prices" in logged[0] and "0.25s" in logged[0]


async def test_a_refresh_older_than_the_budget_answers_a_new_client_at_once(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock
) -> None:
    proxy = await make_proxy(SLOW)
    origin.json(VENDOR_A1, PRICE, headers={"Cache-Control": "max-age=10"})
    await proxy.get(A1)
    clock.advance(20)  # inside stale-while-revalidate: a background refresh starts
    gate = asyncio.Event()
    # The refresh's request time counts toward the answer's age (RFC 9111 4.2.3): a long max-age.
    long_lived = {**JSON, "Cache-Control": "max-age=3600"}
    origin.always(VENDOR_A1, Reply(200, NEW, long_lived, hold=gate))
    assert (await proxy.get(A1)).headers["X-Cache"] == "UPDATING"
    await origin.reached(VENDOR_A1, 2)
    clock.advance(100)  # past stale-while-revalidate; the refresh has run far past the budget
    answer = await proxy.get(A1)
    assert answer.headers["X-Cache"] == "STALE" and "stale-if-slow" in answer.headers["Cache-Status"]
    assert await answer.json() == PRICE and origin.count(VENDOR_A1) == 2
    gate.set()
    await proxy.settle()
    assert proxy.state.telemetry.refreshes.value(("prices", "ok")) == 1  # bookkeeping once
    fresh = await proxy.get(A1)
    assert fresh.headers["X-Cache"] == "HIT" and await fresh.json() == NEW


async def test_a_vendor_inside_the_budget_answers_itself(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock
) -> None:
    proxy = await make_proxy(SLOW)
    await cached_then_stale(origin, proxy, clock)
    origin.json(VENDOR_A1, NEW, headers={"Cache-Control": "max-age=10"})
    answer = await proxy.get(A1)
    assert answer.headers["X-Cache"] == "MISS" and await answer.json() == NEW
    assert clock.timers() == 0  # the timer was cancelled with the answer
    assert proxy.state.telemetry.stale.value(("prices", "stale-if-slow")) == 0


async def test_without_a_copy_the_client_waits_for_the_vendor(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock
) -> None:
    proxy = await make_proxy(SLOW)
    gate = asyncio.Event()
    origin.always(VENDOR_A1, Reply(200, NEW, JSON, hold=gate))
    client = asyncio.ensure_future(proxy.get(A1))
    await origin.reached(VENDOR_A1, 1)
    clock.advance(10)  # far past the budget: there is nothing to answer with
    assert await still_waiting(proxy, [client]) and clock.timers() == 0
    gate.set()
    answer = await client
    assert answer.headers["X-Cache"] == "MISS" and await answer.json() == NEW


async def test_a_copy_past_every_window_is_not_used(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock
) -> None:
    proxy = await make_proxy(SLOW)
    await cached_then_stale(origin, proxy, clock)
    clock.advance(2 * 3600)  # past stale_if_error: the copy may not stand in any more
    gate = asyncio.Event()
    origin.always(VENDOR_A1, Reply(200, NEW, JSON, hold=gate))
    client = asyncio.ensure_future(proxy.get(A1))
    await origin.reached(VENDOR_A1, 2)
    clock.advance(10)
    assert await still_waiting(proxy, [client])
    gate.set()
    assert await (await client).json() == NEW


async def test_writes_are_never_answered_early(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock
) -> None:
    proxy = await make_proxy(SLOW)
    await cached_then_stale(origin, proxy, clock)  # a GET copy of the same URL exists
    gate = asyncio.Event()
    origin.always(VENDOR_A1, Reply(201, {"saved": True}, JSON, hold=gate))
    for method in ("POST", "PUT"):
        client = asyncio.ensure_future(proxy.request(method, A1, json=NEW))
        await origin.reached(VENDOR_A1, origin.count(VENDOR_A1) + 1)
        clock.advance(10)
        assert await still_waiting(proxy, [client])
        gate.set()
        answer = await client
        assert answer.status == 201 and answer.headers["X-Cache"] == "BYPASS"
        assert await answer.json() == {"saved": True}
        gate.clear()


async def test_a_late_answer_the_guards_reject_is_not_stored(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock
) -> None:
    proxy = await make_proxy(GUARDED)
    await cached_then_stale(origin, proxy, clock)
    gate = asyncio.Event()
    origin.always(VENDOR_A1, Reply(200, {**PRICE, "price": 0}, JSON, hold=gate))
    client = asyncio.ensure_future(proxy.get(A1))
    await origin.reached(VENDOR_A1, 2)
    await until(lambda: clock.timers() == 1)
    clock.advance(BUDGET)
    answer = await client
    assert answer.headers["Cache-Status"] == STALE_IF_SLOW and await answer.json() == PRICE
    gate.set()
    await proxy.settle()
    assert proxy.state.telemetry.refreshes.value(("prices", "failed")) == 1
    origin.always(VENDOR_A1, Reply(503, "down"))  # the next fetch fails: what copy is left?
    after = await proxy.get(A1)
    assert after.headers["X-Cache"] == "STALE" and await after.json() == PRICE


async def test_a_last_known_good_copy_answers_for_a_slow_vendor(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock
) -> None:
    routes = GUARDED.replace("stale_if_error: 1h", "stale_if_error: 0s")
    proxy = await make_proxy(routes)
    await cached_then_stale(origin, proxy, clock)  # past every stale window: last-known-good only
    gate = asyncio.Event()
    origin.always(VENDOR_A1, Reply(200, NEW, JSON, hold=gate))
    client = asyncio.ensure_future(proxy.get(A1))
    await origin.reached(VENDOR_A1, 2)
    await until(lambda: clock.timers() == 1)
    clock.advance(BUDGET)
    answer = await client
    assert answer.headers["X-Cache"] == "STALE" and await answer.json() == PRICE
    gate.set()
    await proxy.settle()
    assert await (await proxy.get(A1)).json() == NEW


async def test_doctor_shows_the_budget_beside_the_measured_latency(
    origin: Origin, capsys: pytest.CaptureFixture[str]
) -> None:
    routes = SLOW.replace("stale_if_slow: 250ms", "stale_if_slow: 50ms") + (
        "  - name: rates\n    match: /api/rates\n    methods: [GET]\n    upstream: vendor\n"
        "    cache: {ttl: 30s}\n"
    )
    sampled = routes.replace(
        "rewrite: /prices/{sku}\n", "rewrite: /prices/{sku}\n    sample: /api/prices/A1\n", 1
    )
    cfg = make_config(origin.url, sampled)
    # The vendor's real latency must exceed the budget: a real delay (doctor measures wall time).
    origin.always(VENDOR_A1, Reply(200, PRICE, JSON, delay=0.2))
    origin.always("/api/rates", Reply(200, {"gbp": 1}, JSON))
    code = await asyncio.to_thread(run_doctor, cfg, True)
    assert code == 0  # slow is a warning, not a failure
    (up,) = json.loads(capsys.readouterr().out)["upstreams"]
    prices, rates = up["probes"]
    assert (prices["what"], prices["budget_ms"], prices["verdict"]) == ("prices", 50.0, "warn")
    assert prices["ms"] >= 200.0
    assert (rates["what"], rates["budget_ms"], rates["verdict"]) == ("rates", None, "ok")
    assert any("over the route's stale_if_slow 50ms" in w for w in up["warnings"])
    await asyncio.to_thread(run_doctor, cfg, False)
    lines = capsys.readouterr().out.splitlines()
    header = next(re.split(r"\s{2,}", line) for line in lines if "budget ms" in line)
    rows = [dict(zip(header, re.split(r"\s{2,}", line), strict=False)) for line in lines]
    row = next(r for r in rows if r.get("check") == "prices")
    assert row["budget ms"] == "50" and float(row["ms"]) >= 200.0


async def test_the_late_answer_counts_once_as_a_slow_call(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock
) -> None:
    proxy = await make_proxy(SLOW, upstream_extra="circuit_breaker: {slow_call: 200ms}")
    await cached_then_stale(origin, proxy, clock)
    gate = asyncio.Event()
    origin.always(VENDOR_A1, Reply(200, NEW, JSON, hold=gate))
    clients = [asyncio.ensure_future(proxy.get(A1)) for _ in range(3)]
    await origin.reached(VENDOR_A1, 2)
    await until(lambda: clock.timers() == 3)
    clock.advance(BUDGET)  # the vendor has now taken 250ms on the proxy's clock
    assert {(await c).headers["X-Cache"] for c in clients} == {"STALE"}
    gate.set()
    await proxy.settle()
    upstream = proxy.state.runtime.upstreams["vendor"]
    breaker = upstream.breaker.snapshot(clock.now())
    # One call for three clients, slower than slow_call: one failure (the first call, 120 s ago,
    # has left the breaker's 30 s window).
    assert (breaker["calls"], breaker["failures"]) == (1, 1)
    assert (upstream.track.calls, upstream.track.failures) == (2, 0)  # it did answer, and well
    assert (await proxy.get(A1)).headers["X-Cache"] == "HIT"  # slow, yet a good answer: stored


async def test_a_client_fetching_alone_after_a_vary_mismatch_keeps_its_budget(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock
) -> None:
    """The flight's answer turns out to Vary on a header the waiter sent otherwise, so the waiter
    fetches alone (it may not be served another variant): its copy still answers at the budget,
    measured from its arrival, and its own fetch goes on in the background and is stored."""
    proxy = await make_proxy(SLOW)
    await cached_then_stale(origin, proxy, clock)
    first, late = asyncio.Event(), asyncio.Event()
    varied = {**JSON, "Vary": "Accept-Language"}
    origin.then(
        VENDOR_A1,
        Reply(200, {**NEW, "lang": None}, varied, hold=first),  # the flight, held until both wait
        Reply(200, {**NEW, "lang": "en"}, varied),  # the leader's own variant, asked at once
        Reply(200, {**NEW, "lang": "fr"}, varied, hold=late),  # the waiter's, alone and slow
    )
    leader = asyncio.ensure_future(proxy.get(A1, headers={"Accept-Language": "en"}))
    await origin.reached(VENDOR_A1, 2)
    waiter = asyncio.ensure_future(proxy.get(A1, headers={"Accept-Language": "fr"}))
    await until(lambda: proxy.state.flights.coalesced == 1)  # it joined the leader's flight
    first.set()
    assert await (await leader).json() == {**NEW, "lang": "en"}
    await origin.reached(VENDOR_A1, 4)  # the waiter's own fetch, with its language
    assert origin.seen[-1].headers.get("Accept-Language") == "fr"
    await until(lambda: clock.timers() == 1)
    assert await still_waiting(proxy, [waiter])
    clock.advance(BUDGET)
    answer = await waiter
    assert answer.headers["Cache-Status"] == STALE_IF_SLOW and await answer.json() == PRICE
    late.set()
    await proxy.settle()
    again = await proxy.get(A1, headers={"Accept-Language": "fr"})
    assert again.headers["X-Cache"] == "HIT" and await again.json() == {**NEW, "lang": "fr"}
    assert origin.count(VENDOR_A1) == 4
    assert proxy.state.telemetry.refreshes.value(("prices", "ok")) == 1
