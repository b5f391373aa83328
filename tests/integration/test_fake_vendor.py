"""The fake vendor (proxy/vendor/) as its three users see it, over real HTTP on loopback.

The item API and the switch are what the benchmarks measure against; the shop API and its modes
are what the demo shows; the script taking precedence over a built-in path is what lets a test
break one endpoint of either. `Origin` (the tests' own layer) is covered by every other test.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from proxy.vendor import Items, Reply, Vendor, build_vendor_app, make_body

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[[web.Application], Awaitable[Client]]


@pytest.fixture
def make_client(aiohttp_client: Callable[..., Awaitable[Client]]) -> MakeClient:
    async def make(app: web.Application) -> Client:
        return await aiohttp_client(app)

    return make


async def state(client: Client) -> dict[str, Any]:
    answer = await client.get("/__vendor/mode")
    doc: dict[str, Any] = await answer.json()
    return doc


async def switch(client: Client, mode: str) -> None:
    answer = await client.post("/__vendor/mode", json={"mode": mode})
    assert answer.status == 200
    assert await answer.json() == {"mode": mode}


@pytest.mark.parametrize("size", [1024, 4096])
def test_an_item_body_is_compact_json_of_exactly_the_size_asked(size: int) -> None:
    body = make_body('sku-\u00e9"1', size)
    doc = json.loads(body)
    assert doc["id"] == 'sku-\u00e9"1' and doc["name"] == 'item sku-\u00e9"1'
    assert len(body) == size and doc["pad"] == "x" * len(doc["pad"])


def test_an_item_body_too_small_for_its_id_is_the_least_that_holds_it() -> None:
    doc = json.loads(make_body("a", 10))
    assert doc["id"] == "a" and doc["pad"] == ""


async def test_the_item_api_answers_each_path_with_its_freshness(make_client: MakeClient) -> None:
    client = await make_client(build_vendor_app(items=Items(size=700, max_age=30, short_max_age=2)))
    expected = {"/items/a": "max-age=30", "/stale/b": "max-age=0", "/short/c": "max-age=2"}
    for path, cache_control in expected.items():
        answer = await client.get(path)
        assert answer.status == 200
        assert answer.headers["Cache-Control"] == cache_control
        assert answer.content_type == "application/json"
        assert await answer.read() == make_body(path.rsplit("/", 1)[1], 700)
    order = await client.post("/orders", data=b"x" * 33)
    assert order.status == 201 and await order.json() == {"ok": True, "received": 33}


async def test_counters_count_api_calls_and_reset_forgets_them(make_client: MakeClient) -> None:
    vendor = Vendor()
    client = await make_client(build_vendor_app(vendor, items=Items()))
    for path in ("/items/1", "/items/1?v=2", "/items/2", "/nowhere"):
        await client.get(path)
    doc = await state(client)
    assert (doc["requests"], doc["distinct"], doc["failed"]) == (4, 4, 0)
    assert vendor.count("/items/1") == 2 and vendor.seen == []  # recording is off by default
    assert (await client.post("/__vendor/reset")).status == 200
    assert (await state(client))["requests"] == 0


async def test_down_answers_503_everywhere_and_counts_failures(make_client: MakeClient) -> None:
    client = await make_client(build_vendor_app(items=Items(), shop=True))
    await switch(client, "down")
    for path in ("/items/1", "/v2/prices/ABC-1", "/health"):
        answer = await client.get(path)
        assert answer.status == 503, path
        assert await answer.json() == {"error": "service_unavailable"}
    assert (await state(client))["failed"] == 2  # the health check is not an API call
    await switch(client, "ok")
    assert (await client.get("/items/1")).status == 200


async def test_refuse_closes_connections_unanswered(make_client: MakeClient) -> None:
    client = await make_client(build_vendor_app(items=Items()))
    await switch(client, "refuse")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await client.get("/items/1")
    await switch(client, "ok")
    assert (await client.get("/items/1")).status == 200


async def test_an_unknown_mode_is_refused_with_the_list(make_client: MakeClient) -> None:
    client = await make_client(build_vendor_app())
    answer = await client.post("/__vendor/mode", data=b"503")
    assert answer.status == 400
    assert "zero-price" in (await answer.json())["message"]
    assert (await state(client))["mode"] == "ok"


async def test_shop_prices_are_stable_and_revalidate_with_their_etag(make_client: MakeClient) -> None:
    client = await make_client(build_vendor_app(shop=True))
    first = await client.get("/v2/prices/ABC-1")
    doc = await first.json()
    assert doc["sku"] == "ABC-1" and 5 <= doc["price"] <= 99.99 and doc["currency"] == "GBP"
    assert first.headers["Cache-Control"] == "max-age=10"
    again = await client.get("/v2/prices/ABC-1", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status == 304
    assert await (await client.get("/v2/prices/ABC-1")).json() == doc


async def test_data_modes_return_valid_json_with_wrong_data(make_client: MakeClient) -> None:
    client = await make_client(build_vendor_app(shop=True))
    assert len((await (await client.get("/v2/catalogue/summer")).json())["items"]) == 50
    await switch(client, "zero-price")
    assert (await (await client.get("/v2/prices/ABC-1")).json())["price"] == 0
    await switch(client, "empty-catalogue")
    assert (await (await client.get("/v2/catalogue/summer")).json())["items"] == []


async def test_html_mode_spares_the_health_check(make_client: MakeClient) -> None:
    client = await make_client(build_vendor_app(shop=True))
    await switch(client, "html")
    page = await client.get("/v2/prices/ABC-1")
    assert page.status == 200 and page.content_type == "text/html"
    health = await client.get("/health")
    assert await health.json() == {"status": "ok", "mode": "html"}


async def test_bookings_replay_the_first_booking_for_a_repeated_key(make_client: MakeClient) -> None:
    client = await make_client(build_vendor_app(shop=True))
    key = {"Idempotency-Key": "order-1"}
    first = await client.post("/v2/bookings", json={"sku": "ABC-1"}, headers=key)
    second = await client.post("/v2/bookings", json={"sku": "ABC-1"}, headers=key)
    other = await client.post("/v2/bookings", json={"sku": "ABC-1"})
    assert first.status == second.status == other.status == 201
    assert await first.json() == await second.json() != await other.json()
    assert second.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    assert (await state(client))["bookings"] == 2
    bad = await client.post("/v2/bookings", data=b"[1")
    assert bad.status == 400 and (await bad.json())["error"] == "invalid_json"


async def test_a_script_overrides_a_built_in_path_then_gives_it_back(make_client: MakeClient) -> None:
    vendor = Vendor()
    client = await make_client(build_vendor_app(vendor, items=Items(), shop=True))
    vendor.then("/v2/prices/ABC-1", Reply(500, {"error": "boom"}, {"Content-Type": "application/json"}))
    assert (await client.get("/v2/prices/ABC-1")).status == 500
    assert (await client.get("/v2/prices/ABC-1")).status == 200
    missing = await client.get("/v3/anything")
    assert missing.status == 404 and await missing.json() == {"error": "not scripted"}
