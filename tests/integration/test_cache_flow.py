"""The cache states end to end: a real origin on loopback, the proxy with a FakeClock."""

from __future__ import annotations

import asyncio

from proxy.clock import FakeClock
from tests.conftest import MakeProxy, Proxy
from tests.origin import Origin, Reply

PRICE = {"sku": "A1", "price": 9.5, "currency": "GBP"}


async def test_miss_then_hit(origin: Origin, make_proxy: MakeProxy, clock: FakeClock) -> None:
    origin.json("/prices/A1", PRICE, headers={"Cache-Control": "max-age=60"})
    proxy: Proxy = await make_proxy()
    first = await proxy.get("/api/prices/A1")
    assert first.status == 200
    assert first.headers["X-Cache"] == "MISS"
    assert "fwd=miss" in first.headers["Cache-Status"] and "stored" in first.headers["Cache-Status"]
    clock.advance(10)
    second = await proxy.get("/api/prices/A1")
    assert second.headers["X-Cache"] == "HIT"
    assert second.headers["Age"] == "10"
    assert second.headers["Cache-Status"] == "resilient-proxy; hit; ttl=50"
    assert await second.json() == PRICE
    assert origin.count("/prices/A1") == 1


async def test_stale_while_revalidate_refreshes_once(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock
) -> None:
    origin.json("/prices/A1", PRICE, headers={"Cache-Control": "max-age=10"})
    proxy: Proxy = await make_proxy()
    await proxy.get("/api/prices/A1")
    clock.advance(20)  # past freshness, inside the route's 60s stale-while-revalidate
    # The refresh is slow, so every request below arrives while it is in flight.
    origin.always(
        "/prices/A1",
        Reply(
            200,
            {**PRICE, "price": 10.0},
            {"Cache-Control": "max-age=10", "Content-Type": "application/json"},
            delay=0.3,
        ),
    )
    answers = await asyncio.gather(*(proxy.get("/api/prices/A1") for _ in range(5)))
    assert {a.headers["X-Cache"] for a in answers} == {"UPDATING"}  # stale while one refresh runs
    assert [(await a.json())["price"] for a in answers] == [9.5] * 5
    await proxy.settle()
    assert origin.count("/prices/A1") == 2  # exactly one background refresh
    fresh = await proxy.get("/api/prices/A1")
    assert fresh.headers["X-Cache"] == "HIT"
    assert (await fresh.json())["price"] == 10.0


async def test_stale_if_error_on_500(origin: Origin, make_proxy: MakeProxy, clock: FakeClock) -> None:
    origin.json("/prices/A1", PRICE, headers={"Cache-Control": "max-age=10"})
    proxy: Proxy = await make_proxy()
    await proxy.get("/api/prices/A1")
    clock.advance(120)  # past SWR (60s), inside stale-if-error (1h)
    origin.always("/prices/A1", Reply(500, "boom"))
    answer = await proxy.get("/api/prices/A1")
    assert answer.status == 200
    assert answer.headers["X-Cache"] == "STALE"
    assert (
        answer.headers["Cache-Status"]
        == 'resilient-proxy; fwd=stale; fwd-status=500; ttl=-110; detail="stale-if-error"'
    )
    assert await answer.json() == PRICE


async def test_no_copy_gives_json_502(origin: Origin, make_proxy: MakeProxy) -> None:
    origin.always("/prices/A1", Reply(503, "down"))
    proxy: Proxy = await make_proxy()
    answer = await proxy.get("/api/prices/A1")
    assert answer.status == 502
    body = await answer.json()
    assert body["error"] == "upstream_status" and body["route"] == "prices"
    assert body["upstream"] == "vendor" and body["request_id"] == answer.headers["X-Request-Id"]


async def test_concurrent_cold_requests_coalesce(origin: Origin, make_proxy: MakeProxy) -> None:
    origin.always(
        "/prices/A1",
        Reply(200, PRICE, {"Cache-Control": "max-age=60", "Content-Type": "application/json"}, delay=0.2),
    )
    proxy: Proxy = await make_proxy()
    answers = await asyncio.gather(*(proxy.get("/api/prices/A1") for _ in range(100)))
    assert all(a.status == 200 for a in answers)
    assert origin.count("/prices/A1") == 1
    assert sum("collapsed" in a.headers["Cache-Status"] for a in answers) == 99


async def test_post_invalidates(origin: Origin, make_proxy: MakeProxy) -> None:
    origin.json("/prices/A1", PRICE, headers={"Cache-Control": "max-age=60"})
    proxy: Proxy = await make_proxy()
    await proxy.get("/api/prices/A1")
    assert (await proxy.get("/api/prices/A1")).headers["X-Cache"] == "HIT"
    origin.always("/prices/A1", Reply(200, b'{"ok": true}'))
    posted = await proxy.request("POST", "/api/prices/A1", data=b'{"price": 11}')
    assert posted.status == 200 and posted.headers["X-Cache"] == "BYPASS"
    assert origin.seen[-1].method == "POST" and origin.seen[-1].body == b'{"price": 11}'
    origin.json("/prices/A1", {**PRICE, "price": 11}, headers={"Cache-Control": "max-age=60"})
    after = await proxy.get("/api/prices/A1")
    assert after.headers["X-Cache"] == "MISS"
    assert (await after.json())["price"] == 11
