"""The labels a vendor's answer carries, byte for byte: a stored miss and a pass each get their
Cache-Status (RFC 9211) in one exact form, and our fields follow the stored ones in one order."""

from __future__ import annotations

from proxy.clock import FakeClock
from tests.conftest import MakeProxy
from tests.origin import Origin, Reply

PRICE = {"sku": "A1", "price": 9.5}


async def test_a_stored_miss_is_labelled_and_its_fields_ordered(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock
) -> None:
    origin.json("/prices/A1", PRICE, headers={"Cache-Control": "max-age=60", "Server": "vendor/1"})
    proxy = await make_proxy()
    first = await proxy.get("/api/prices/A1")
    assert first.status == 200 and await first.json() == PRICE
    assert first.headers["Cache-Status"] == "resilient-proxy; fwd=miss; fwd-status=200; ttl=60; stored"
    names = [k.decode().lower() for k, _ in first.raw_headers]
    assert "server" not in names  # the vendor's software is nobody's business
    ours = ["accept-ranges", "x-cache", "cache-status", "x-request-id", "age"]
    assert [n for n in names if n in ours] == ours
    assert names.index("cache-control") < names.index("x-cache")  # stored fields first
    assert first.headers["Age"] == "0" and first.headers["X-Cache"] == "MISS"
    clock.advance(10)
    hit = await proxy.get("/api/prices/A1")
    assert hit.headers["Cache-Status"] == "resilient-proxy; hit; ttl=50" and hit.headers["Age"] == "10"


async def test_a_write_to_an_uncached_route_is_a_pass(origin: Origin, make_proxy: MakeProxy) -> None:
    vendor = {"Content-Type": "application/json", "X-Cache": "HIT", "SERVER": "vendor/1", "X-Vendor": "v"}
    origin.always("/prices/A1", Reply(201, {"ok": True}, vendor))
    proxy = await make_proxy()
    write = await proxy.request("POST", "/api/prices/A1", json={"price": 2})
    assert write.status == 201 and await write.json() == {"ok": True}
    assert write.headers.getall("X-Cache") == ["BYPASS"]  # the vendor's own is dropped, any case
    assert "Server" not in write.headers and write.headers["X-Vendor"] == "v"
    assert write.headers["Cache-Status"] == "resilient-proxy; fwd=bypass; fwd-status=201"  # cache: off
