"""Issue 11's vendor faults above the wire: coded bodies, oversize bodies, 304s and redirects that
must not stand in for the last good copy, and numbers no header may overflow.

For each: what the client got, what is cached afterwards, and what the vendor received.
"""

from __future__ import annotations

import gzip
import json
import os
from typing import Any

from proxy.clock import FakeClock
from tests.conftest import MakeProxy, Proxy
from tests.origin import Origin, Reply
from tests.routes import CATALOGUE, PRICES

ROUTES = (
    """
routes:
"""
    + PRICES
    + """    cache: {ttl: 30s, stale_if_error: 1h}
    max_object_size: 2KB
    guards:
      - {path: $.price, gt: 0}
"""
    + CATALOGUE
    + """    cache: {ttl: 30s, stale_if_error: 1h}
    guards:
      - {path: $.items, max_shrink: 50%}
"""
)
JSON = {"Content-Type": "application/json"}
PRICE = {"sku": "A1", "price": 9.5, "currency": "GBP"}


def catalogue(n: int) -> bytes:
    return json.dumps({"items": [{"sku": f"S{i}", "price": 1.0 + i} for i in range(n)]}).encode()


def gzipped(body: bytes, **headers: str) -> Reply:
    return Reply(200, gzip.compress(body), {**JSON, "Content-Encoding": "gzip", **headers})


def stored(proxy: Proxy) -> list[bytes]:
    return [entry.body for _, entry in proxy.state.store.items()]


async def stale_after(
    proxy: Proxy, clock: FakeClock, origin: Origin, path: str, upath: str, reply: Reply
) -> Any:
    """Past freshness, the vendor answers `reply`: the answer the client gets."""
    clock.advance(40)
    origin.always(upath, reply)
    return await proxy.get(path)


async def test_a_gzip_catalogue_that_shrank_is_refused(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock
) -> None:
    origin.always("/catalogue/all", gzipped(catalogue(10)))
    proxy = await make_proxy(ROUTES)
    first = await proxy.get("/api/catalogue/all")
    assert first.headers["X-Cache"] == "MISS"
    good = stored(proxy)
    answer = await stale_after(
        proxy, clock, origin, "/api/catalogue/all", "/catalogue/all", gzipped(catalogue(2))
    )
    assert answer.headers["X-Cache"] == "STALE"
    assert 'detail="guard: max_shrink at $.items"' in answer.headers["Cache-Status"]
    assert len((await answer.json())["items"]) == 10  # the good copy, decoded for this client
    assert stored(proxy) == good
    assert origin.count("/catalogue/all") == 2


async def test_a_gzip_bomb_is_refused_and_nothing_is_stored(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock
) -> None:
    origin.always("/catalogue/all", Reply(200, catalogue(10), JSON))
    proxy = await make_proxy(ROUTES)
    await proxy.get("/api/catalogue/all")
    bomb = Reply(200, gzip.compress(b"\0" * (32 << 20)), {**JSON, "Content-Encoding": "gzip"})
    answer = await stale_after(proxy, clock, origin, "/api/catalogue/all", "/catalogue/all", bomb)
    assert answer.headers["X-Cache"] == "STALE"
    assert 'detail="guard: encoding at $"' in answer.headers["Cache-Status"]
    assert await answer.read() == catalogue(10)
    assert stored(proxy) == [catalogue(10)]
    assert origin.count("/catalogue/all") == 2


async def test_an_oversize_body_with_a_zero_price_is_refused(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock
) -> None:
    origin.always("/prices/A1", Reply(200, PRICE, JSON))
    proxy = await make_proxy(ROUTES)
    await proxy.get("/api/prices/A1")
    huge = Reply(200, {**PRICE, "price": 0, "pad": "x" * 4096}, JSON)
    answer = await stale_after(proxy, clock, origin, "/api/prices/A1", "/prices/A1", huge)
    assert answer.headers["X-Cache"] == "STALE"
    assert 'detail="guard: max_object_size at $"' in answer.headers["Cache-Status"]
    assert await answer.json() == PRICE
    assert stored(proxy) == [json.dumps(PRICE).encode()]

    origin.always("/prices/B2", huge)  # no copy to fall back on: a JSON error, never the body
    none = await proxy.get("/api/prices/B2")
    assert none.status == 502
    assert (await none.json())["error"] == "upstream_data_rejected"
    assert origin.count("/prices/A1") == 2 and origin.count("/prices/B2") == 1


async def test_a_304_to_a_request_without_validators_is_no_answer(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock
) -> None:
    origin.always("/prices/A1", Reply(304, b"", {"Cache-Control": "max-age=600"}))
    proxy = await make_proxy(ROUTES)
    cold = await proxy.get("/api/prices/A1")  # nothing cached, nothing asked conditionally
    assert cold.status == 502 and cold.headers["X-Cache"] == "MISS"
    assert stored(proxy) == []

    origin.always("/prices/A1", Reply(200, PRICE, JSON))  # a copy without validators
    await proxy.get("/api/prices/A1")
    answer = await stale_after(proxy, clock, origin, "/api/prices/A1", "/prices/A1", Reply(304, b"", {}))
    assert "If-None-Match" not in origin.seen[-1].headers
    assert answer.headers["X-Cache"] == "STALE" and await answer.json() == PRICE
    again = await proxy.get("/api/prices/A1")  # the 304 refreshed nothing: the vendor is asked again
    assert again.headers["X-Cache"] == "STALE"
    assert origin.count("/prices/A1") == 4


async def test_a_304_for_another_etag_is_no_answer(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock
) -> None:
    origin.always("/prices/A1", Reply(200, PRICE, {**JSON, "ETag": '"v1"'}))
    proxy = await make_proxy(ROUTES)
    await proxy.get("/api/prices/A1")
    answer = await stale_after(
        proxy, clock, origin, "/api/prices/A1", "/prices/A1", Reply(304, b"", {"ETag": '"v2"'})
    )
    assert origin.seen[-1].headers["If-None-Match"] == '"v1"'
    assert answer.headers["X-Cache"] == "STALE"
    assert 'fwd-status=304; ttl=-10; detail="stale-if-error"' in answer.headers["Cache-Status"]
    assert await answer.json() == PRICE
    assert origin.count("/prices/A1") == 2


async def test_a_redirect_with_max_age_never_replaces_the_good_copy(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock
) -> None:
    origin.always("/prices/A1", Reply(200, PRICE, JSON))
    proxy = await make_proxy(ROUTES)
    await proxy.get("/api/prices/A1")
    moved = Reply(301, b"", {"Location": "/prices/OTHER", "Cache-Control": "max-age=3600"})
    answer = await stale_after(proxy, clock, origin, "/api/prices/A1", "/prices/A1", moved)
    assert answer.status == 200 and answer.headers["X-Cache"] == "STALE"
    assert await answer.json() == PRICE
    assert (await proxy.get("/api/prices/A1")).headers["X-Cache"] == "STALE"  # not a HIT of the 301
    assert stored(proxy) == [json.dumps(PRICE).encode()]
    assert origin.count("/prices/A1") == 3


async def test_absurd_numbers_never_break_delivery(origin: Origin, make_proxy: MakeProxy) -> None:
    nines = "9" * 400
    origin.always("/prices/A1", Reply(200, PRICE, {**JSON, "Age": nines, "Cache-Control": "max-age=60"}))
    origin.always("/prices/B2", Reply(200, PRICE, {**JSON, "Cache-Control": f"max-age={nines}"}))
    proxy = await make_proxy(ROUTES)
    for _ in range(2):
        aged = await proxy.get("/api/prices/A1")
        assert aged.status == 200 and aged.headers["Age"] == str(2**31)
    assert (await proxy.get("/api/prices/B2")).headers["X-Cache"] == "MISS"
    assert (await proxy.get("/api/prices/B2")).headers["X-Cache"] == "HIT"
    assert origin.count("/prices/B2") == 1


async def test_one_stored_encoding_served_to_every_client(origin: Origin, make_proxy: MakeProxy) -> None:
    origin.always("/catalogue/all", gzipped(catalogue(10), Vary="Accept-Encoding"))
    proxy = await make_proxy(ROUTES)
    first = await proxy.get("/api/catalogue/all", headers={"Accept-Encoding": "br"})
    assert origin.seen[-1].headers["Accept-Encoding"] == "gzip, deflate"  # only what we decode
    plain = await proxy.get("/api/catalogue/all", headers={"Accept-Encoding": "identity"})
    for answer in (first, plain):
        assert "Content-Encoding" not in answer.headers
        assert await answer.read() == catalogue(10)
    assert plain.headers["X-Cache"] == "HIT"  # one variant, whatever the client accepts
    assert stored(proxy) == [catalogue(10)]
    assert origin.count("/catalogue/all") == 1


async def test_a_bomb_on_an_unguarded_route_is_a_502(origin: Origin, make_proxy: MakeProxy) -> None:
    origin.always(
        "/prices/A1", Reply(200, gzip.compress(b"\0" * (32 << 20)), {**JSON, "Content-Encoding": "gzip"})
    )
    proxy = await make_proxy()
    answer = await proxy.get("/api/prices/A1")
    assert answer.status == 502 and (await answer.json())["error"] == "upstream_status"
    assert stored(proxy) == []


async def test_a_route_may_pass_oversize_bodies_unchecked_and_says_so(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock
) -> None:
    origin.always("/prices/A1", Reply(200, PRICE, JSON))
    proxy = await make_proxy(
        ROUTES.replace("    max_object_size: 2KB\n", "    max_object_size: 2KB\n    guards_oversize: pass\n")
    )
    await proxy.get("/api/prices/A1")
    huge = {**PRICE, "price": 0, "pad": "x" * 4096}
    answer = await stale_after(proxy, clock, origin, "/api/prices/A1", "/prices/A1", Reply(200, huge, JSON))
    assert answer.headers["X-Cache"] == "MISS"
    assert 'detail="too large to check"' in answer.headers["Cache-Status"]
    assert await answer.json() == huge  # the route chose this: unchecked, but never silently
    assert stored(proxy) == [json.dumps(PRICE).encode()]  # and never stored
    assert proxy.state.telemetry.guard_unchecked.value(("prices",)) == 1
    assert proxy.state.telemetry.guard_rejections.value(("prices", "max_object_size")) == 0


async def test_a_streamed_coded_body_is_inflated_for_clients_that_did_not_ask(
    origin: Origin, make_proxy: MakeProxy
) -> None:
    body = json.dumps({"items": [os.urandom(32).hex() for _ in range(40_000)]}).encode()
    origin.always("/catalogue/big", gzipped(body))  # 2.8 MB, 1.6 MB coded: streamed
    proxy = await make_proxy(
        ROUTES.replace("      - {path: $.items, max_shrink: 50%}\n", "    max_object_size: 1MB\n")
    )
    plain = await proxy.get("/api/catalogue/big", headers={"Accept-Encoding": "identity"})
    assert plain.status == 200 and "Content-Encoding" not in plain.headers
    assert await plain.read() == body
    coded = await proxy.get("/api/catalogue/big", headers={"Accept-Encoding": "gzip"}, auto_decompress=False)
    assert coded.headers["Content-Encoding"] == "gzip"  # asked for it: relayed as the vendor sent it
    assert gzip.decompress(await coded.read()) == body
    assert stored(proxy) == [] and origin.count("/catalogue/big") == 2


async def test_a_coded_body_that_inflates_past_the_limit_streams_unstored(
    origin: Origin, make_proxy: MakeProxy
) -> None:
    body = json.dumps({"items": ["x" * 64] * 20_000}).encode()  # 1.3 MB, 10 KB coded
    origin.always("/catalogue/big", gzipped(body))
    proxy = await make_proxy(
        ROUTES.replace("      - {path: $.items, max_shrink: 50%}\n", "    max_object_size: 1MB\n")
    )
    answer = await proxy.get("/api/catalogue/big", headers={"Accept-Encoding": "identity"})
    assert answer.status == 200 and "Content-Encoding" not in answer.headers
    assert 'detail="too large to store"' in answer.headers["Cache-Status"]
    assert await answer.read() == body and stored(proxy) == []
