"""Range requests answered from a stored complete response (RFC 9110 14, issue 14): what the
client got, and what the vendor was asked (never a Range: the cache fetches whole bodies)."""

from __future__ import annotations

import json

from tests.conftest import MakeProxy
from tests.origin import Origin, Reply
from tests.routes import PRICES

ROUTES = f"\nroutes:\n{PRICES}    cache: {{ttl: 60s}}\n"
BODY = json.dumps({"sku": "A1", "price": 9.5, "pad": "x" * 60}).encode()
STORED = {
    "Content-Type": "application/json",
    "ETag": '"v1"',
    "Last-Modified": "Tue, 01 Dec 2026 10:00:00 GMT",
}


async def test_a_range_of_a_stored_200_is_a_206_from_cache(origin: Origin, make_proxy: MakeProxy) -> None:
    origin.always("/prices/A1", Reply(200, BODY, STORED))
    proxy = await make_proxy(ROUTES)
    cold = await proxy.get("/api/prices/A1", headers={"Range": "bytes=0-9"})
    assert cold.status == 206 and cold.headers["X-Cache"] == "MISS"  # fetched whole, stored, cut
    assert await cold.read() == BODY[:10]
    assert cold.headers["Content-Range"] == f"bytes 0-9/{len(BODY)}"
    assert "Range" not in origin.seen[0].headers
    tail = await proxy.get("/api/prices/A1", headers={"Range": "bytes=-5"})
    assert tail.status == 206 and tail.headers["X-Cache"] == "HIT" and await tail.read() == BODY[-5:]
    whole = await proxy.get("/api/prices/A1")
    assert whole.status == 200 and whole.headers["Accept-Ranges"] == "bytes" and await whole.read() == BODY
    assert origin.count("/prices/A1") == 1


async def test_unsatisfiable_and_ignored_ranges(origin: Origin, make_proxy: MakeProxy) -> None:
    origin.always("/prices/A1", Reply(200, BODY, STORED))
    proxy = await make_proxy(ROUTES)
    await proxy.get("/api/prices/A1")
    past = await proxy.get("/api/prices/A1", headers={"Range": f"bytes={len(BODY)}-"})
    assert past.status == 416 and past.headers["Content-Range"] == f"bytes */{len(BODY)}"
    assert (await past.json())["error"] == "range_not_satisfiable"
    for ignored in ("bytes=0-1,50-60", "bytes=9-0", "lines=1-2"):
        answer = await proxy.get("/api/prices/A1", headers={"Range": ignored})
        assert answer.status == 200 and await answer.read() == BODY, ignored
    head = await proxy.request("HEAD", "/api/prices/A1", headers={"Range": "bytes=0-9"})
    assert head.status == 200  # Range is defined for GET only (RFC 9110 14.2)
    assert origin.count("/prices/A1") == 1


async def test_if_range_holds_only_for_the_stored_validator(origin: Origin, make_proxy: MakeProxy) -> None:
    origin.always("/prices/A1", Reply(200, BODY, STORED))
    proxy = await make_proxy(ROUTES)
    await proxy.get("/api/prices/A1")
    same = await proxy.get("/api/prices/A1", headers={"Range": "bytes=0-9", "If-Range": '"v1"'})
    assert same.status == 206 and await same.read() == BODY[:10]
    changed = await proxy.get("/api/prices/A1", headers={"Range": "bytes=0-9", "If-Range": '"v0"'})
    assert changed.status == 200 and await changed.read() == BODY  # the whole, current copy
    dated = await proxy.get(
        "/api/prices/A1", headers={"Range": "bytes=0-9", "If-Range": STORED["Last-Modified"]}
    )
    assert dated.status == 206


async def test_only_a_stored_200_is_cut(origin: Origin, make_proxy: MakeProxy) -> None:
    origin.always("/prices/GONE", Reply(404, b'{"error": "no such sku"}', {"Cache-Control": "max-age=60"}))
    proxy = await make_proxy(ROUTES)
    for _ in range(2):
        gone = await proxy.get("/api/prices/GONE", headers={"Range": "bytes=0-3"})
        assert gone.status == 404 and await gone.read() == b'{"error": "no such sku"}'
        assert "Accept-Ranges" not in gone.headers
    assert origin.count("/prices/GONE") == 1
