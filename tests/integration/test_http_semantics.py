"""RFC 9111 / RFC 5861 semantics end to end: a real origin on loopback, the proxy with a FakeClock.

Every test drives the proxy over HTTP and checks both what the client saw and what reached the
origin (`origin.seen`, `origin.count`).
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from email.utils import formatdate

import pytest
from aiohttp.test_utils import TestServer
from aiohttp.web import Application

from proxy.clock import FakeClock
from tests.conftest import MakeProxy, make_config
from tests.origin import Origin, Reply
from tests.routes import PRICES, WRITES

AiohttpServer = Callable[[Application], Awaitable[TestServer]]

PRICE = {"sku": "A1", "price": 9.5, "currency": "GBP"}
JSON = "application/json"

# No stale-while-revalidate: an expired entry is fetched while the client waits, so each test sees
# the outcome of that fetch in the response it gets.
ROUTES = (
    """
routes:
"""
    + PRICES
    + """    timeout: {connect: 200ms, total: 300ms}
    cache: {ttl: 30s, stale_if_error: 1h, key: {query: all}}
"""
    + WRITES
)


def reply(body: object = PRICE, status: int = 200, /, **headers: str) -> Reply:
    return Reply(status, body, {"Content-Type": JSON, **headers})


def http_date(at: float) -> str:
    return formatdate(at, usegmt=True)


def closed_port() -> int:
    """A loopback port nothing listens on: bound, read, closed."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- stale-if-error and errors without a copy -------------------------------------------------


async def test_stale_if_error_on_timeout(origin: Origin, make_proxy: MakeProxy, clock: FakeClock) -> None:
    origin.always("/prices/A1", reply(**{"Cache-Control": "max-age=10"}))
    proxy = await make_proxy(ROUTES)
    assert (await proxy.get("/api/prices/A1")).headers["X-Cache"] == "MISS"
    clock.advance(20)
    origin.always("/prices/A1", Reply(200, PRICE, {"Content-Type": JSON}, delay=1.0))
    answer = await proxy.get("/api/prices/A1")
    assert answer.status == 200
    assert answer.headers["X-Cache"] == "STALE"
    assert answer.headers["Cache-Status"] == 'resilient-proxy; fwd=stale; ttl=-10; detail="stale-if-error"'
    assert answer.headers["Age"] == "20"
    assert await answer.json() == PRICE
    assert origin.count("/prices/A1") == 2


async def test_timeout_without_a_copy_is_504(origin: Origin, make_proxy: MakeProxy) -> None:
    origin.always("/prices/A1", Reply(200, PRICE, {"Content-Type": JSON}, delay=1.0))
    proxy = await make_proxy(ROUTES)
    answer = await proxy.get("/api/prices/A1")
    assert answer.status == 504
    assert answer.headers["Content-Type"] == JSON
    body = await answer.json()
    assert (body["error"], body["route"], body["upstream"]) == ("upstream_timeout", "prices", "vendor")
    assert body["request_id"] == answer.headers["X-Request-Id"]
    assert "Cache-Status" in answer.headers


async def test_stale_if_error_on_connection_refused(
    aiohttp_server: AiohttpServer, make_proxy: MakeProxy, clock: FakeClock
) -> None:
    vendor = Origin(clock)
    server = await aiohttp_server(vendor.app())
    vendor.always("/prices/A1", reply(**{"Cache-Control": "max-age=10"}))
    proxy = await make_proxy(config=make_config(str(server.make_url("")).rstrip("/"), ROUTES))
    assert (await proxy.get("/api/prices/A1")).headers["X-Cache"] == "MISS"
    await server.close()  # the vendor is gone: its port now refuses connections
    clock.advance(20)
    answer = await proxy.get("/api/prices/A1")
    assert answer.status == 200 and answer.headers["X-Cache"] == "STALE"
    assert 'detail="stale-if-error"' in answer.headers["Cache-Status"]
    assert await answer.json() == PRICE
    # Another key with no copy: the proxy's own error, 502 (not a timeout).
    missing = await proxy.get("/api/prices/B2")
    assert missing.status == 502
    assert (await missing.json())["error"] == "upstream_unreachable"


async def test_connection_refused_without_a_copy_is_502(make_proxy: MakeProxy) -> None:
    proxy = await make_proxy(config=make_config(f"http://127.0.0.1:{closed_port()}", ROUTES))
    answer = await proxy.get("/api/prices/A1")
    assert answer.status == 502
    body = await answer.json()
    assert (body["error"], body["route"]) == ("upstream_unreachable", "prices")
    assert answer.headers["X-Cache"] == "MISS"


async def test_a_5xx_never_replaces_a_good_entry(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock
) -> None:
    origin.always("/prices/A1", reply(**{"Cache-Control": "max-age=10"}))
    proxy = await make_proxy(ROUTES)
    await proxy.get("/api/prices/A1")
    clock.advance(20)
    origin.always(
        "/prices/A1", Reply(503, {"error": "down"}, {"Content-Type": JSON, "Cache-Control": "max-age=600"})
    )
    for _ in range(2):  # the failed fetch stored nothing: the second request fails over the same copy
        answer = await proxy.get("/api/prices/A1")
        assert answer.status == 200 and answer.headers["X-Cache"] == "STALE"
        assert "fwd-status=503" in answer.headers["Cache-Status"]
        assert await answer.json() == PRICE
    assert origin.count("/prices/A1") == 3
    origin.always("/prices/A1", reply({**PRICE, "price": 11.0}, **{"Cache-Control": "max-age=10"}))
    recovered = await proxy.get("/api/prices/A1")
    assert recovered.headers["X-Cache"] == "MISS" and (await recovered.json())["price"] == 11.0


async def test_a_404_is_cached_for_the_route_ttl(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock
) -> None:
    origin.always("/prices/NOPE", reply({"error": "no such sku"}, 404))
    proxy = await make_proxy(ROUTES)
    first = await proxy.get("/api/prices/NOPE")
    assert first.status == 404 and first.headers["X-Cache"] == "MISS"
    clock.advance(29)
    second = await proxy.get("/api/prices/NOPE")
    assert second.status == 404 and second.headers["X-Cache"] == "HIT"
    assert await second.json() == {"error": "no such sku"}
    assert origin.count("/prices/NOPE") == 1
    clock.advance(2)  # past the route's 30s ttl
    assert (await proxy.get("/api/prices/NOPE")).headers["X-Cache"] == "MISS"
    assert origin.count("/prices/NOPE") == 2


# -- revalidation and conditionals ------------------------------------------------------------


async def test_304_revalidation_updates_stored_headers(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock
) -> None:
    origin.always("/prices/A1", reply(**{"Cache-Control": "max-age=10", "ETag": '"v1"', "X-Version": "1"}))
    proxy = await make_proxy(ROUTES)
    assert (await proxy.get("/api/prices/A1")).headers["X-Version"] == "1"
    clock.advance(20)
    origin.always(
        "/prices/A1", Reply(304, b"", {"Cache-Control": "max-age=10", "ETag": '"v1"', "X-Version": "2"})
    )
    revalidated = await proxy.get("/api/prices/A1")
    assert origin.seen[-1].headers["If-None-Match"] == '"v1"'
    assert revalidated.status == 200
    assert revalidated.headers["X-Version"] == "2"
    assert "fwd=stale; fwd-status=304" in revalidated.headers["Cache-Status"]
    assert revalidated.headers["X-Cache"] == "REVALIDATED"  # nginx's word, not MISS (issue 15)
    assert await revalidated.json() == PRICE  # the stored body, unchanged
    clock.advance(5)
    hit = await proxy.get("/api/prices/A1")
    assert hit.headers["X-Cache"] == "HIT" and hit.headers["X-Version"] == "2"
    assert hit.headers["Age"] == "5"
    assert await hit.json() == PRICE
    assert origin.count("/prices/A1") == 2


async def test_revalidation_with_last_modified(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock
) -> None:
    modified = http_date(clock.now() - 3600)
    origin.always("/prices/A1", reply(**{"Cache-Control": "max-age=10", "Last-Modified": modified}))
    proxy = await make_proxy(ROUTES)
    await proxy.get("/api/prices/A1")
    clock.advance(20)
    origin.always("/prices/A1", Reply(304, b"", {"Cache-Control": "max-age=10"}))
    answer = await proxy.get("/api/prices/A1")
    assert origin.seen[-1].headers["If-Modified-Since"] == modified
    assert "If-None-Match" not in origin.seen[-1].headers
    assert answer.status == 200 and await answer.json() == PRICE
    assert answer.headers["X-Cache"] == "REVALIDATED"
    assert 'x_cache="REVALIDATED"' in proxy.state.telemetry.registry.render()


@pytest.mark.parametrize(
    ("conditionals", "status"),
    [
        ({"If-None-Match": '"v1"'}, 304),
        ({"If-None-Match": 'W/"v1"'}, 304),
        ({"If-None-Match": '"v0", "v1"'}, 304),
        ({"If-None-Match": "*"}, 304),
        ({"If-None-Match": '"v2"'}, 200),
        # If-None-Match takes precedence over If-Modified-Since (RFC 9110 13.2.2)
        ({"If-None-Match": '"v2"', "If-Modified-Since": "FUTURE"}, 200),
        ({"If-None-Match": '"v1"', "If-Modified-Since": "PAST"}, 304),
        ({"If-Modified-Since": "FUTURE"}, 304),
        ({"If-Modified-Since": "PAST"}, 200),
    ],
)
async def test_client_conditionals_from_a_fresh_entry(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock, conditionals: dict[str, str], status: int
) -> None:
    modified = clock.now() - 3600
    origin.always(
        "/prices/A1",
        reply(**{"Cache-Control": "max-age=60", "ETag": '"v1"', "Last-Modified": http_date(modified)}),
    )
    proxy = await make_proxy(ROUTES)
    await proxy.get("/api/prices/A1")
    dates = {"FUTURE": http_date(modified + 60), "PAST": http_date(modified - 60)}
    sent = {k: dates.get(v, v) for k, v in conditionals.items()}
    answer = await proxy.get("/api/prices/A1", headers=sent)
    assert answer.status == status
    assert answer.headers["X-Cache"] == "HIT"
    assert answer.headers["ETag"] == '"v1"'
    assert (await answer.read() == b"") is (status == 304)
    assert origin.count("/prices/A1") == 1  # answered by the cache; conditionals never forwarded


# -- what is stored and what is not -----------------------------------------------------------


async def test_vary_variants_are_stored_separately(origin: Origin, make_proxy: MakeProxy) -> None:
    """A cached fetch forwards only keyed headers until the vendor's Vary names more: the first
    answer is stored for clients without the header, one more request gets this client's own."""
    vary = {"Cache-Control": "max-age=60", "Vary": "Accept-Language"}
    langs = ("default", "en", "fr")
    origin.then("/prices/A1", *(reply({"lang": lang}, **vary) for lang in langs))
    proxy = await make_proxy(ROUTES)
    none: dict[str, str] = {}
    en, fr = {"Accept-Language": "en"}, {"Accept-Language": "fr"}
    assert (await (await proxy.get("/api/prices/A1", headers=en)).json()) == {"lang": "en"}
    assert (await (await proxy.get("/api/prices/A1", headers=fr)).json()) == {"lang": "fr"}
    for headers, lang in ((en, "en"), (fr, "fr"), (none, "default"), (en, "en")):
        answer = await proxy.get("/api/prices/A1", headers=headers)
        assert answer.headers["X-Cache"] == "HIT"
        assert await answer.json() == {"lang": lang}
    sent = [seen.headers.get("Accept-Language") for seen in origin.seen]
    assert sent == [None, "en", "fr"]  # Vary learnt once, then forwarded from the first request
    assert origin.count("/prices/A1") == 3


async def test_vary_star_is_not_stored(origin: Origin, make_proxy: MakeProxy) -> None:
    origin.always("/prices/A1", reply(**{"Cache-Control": "max-age=60", "Vary": "Accept, *"}))
    proxy = await make_proxy(ROUTES)
    for _ in range(2):
        answer = await proxy.get("/api/prices/A1")
        assert answer.status == 200 and answer.headers["X-Cache"] == "MISS"
        assert "vary-star" in answer.headers["Cache-Status"]
    assert origin.count("/prices/A1") == 2


@pytest.mark.parametrize(
    ("cache_control", "shared"),
    [
        ("max-age=60", False),
        ("public, max-age=60", True),
        ("s-maxage=60", True),
        ("must-revalidate, max-age=60", True),
    ],
)
async def test_authorization_is_not_shared_unless_the_response_allows(
    origin: Origin, make_proxy: MakeProxy, cache_control: str, shared: bool
) -> None:
    origin.always("/prices/A1", reply(**{"Cache-Control": cache_control}))
    proxy = await make_proxy(ROUTES)
    first = await proxy.get("/api/prices/A1", headers={"Authorization": "Bearer alice"})
    assert first.status == 200
    assert origin.seen[-1].headers["Authorization"] == "Bearer alice"
    second = await proxy.get("/api/prices/A1")  # another client, no credentials
    assert second.headers["X-Cache"] == ("HIT" if shared else "MISS")
    assert origin.count("/prices/A1") == (1 if shared else 2)


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({"Cache-Control": "max-age=60", "Set-Cookie": "session=abc"}, "set-cookie"),
        ({"Cache-Control": "no-store, max-age=60"}, "no-store"),
        ({"Cache-Control": "private, max-age=60"}, "private"),
        ({}, None),  # control row: the same response without them is stored
    ],
)
async def test_responses_that_must_not_be_stored(
    origin: Origin, make_proxy: MakeProxy, headers: dict[str, str], why: str | None
) -> None:
    origin.always("/prices/A1", reply(**headers))
    proxy = await make_proxy(ROUTES)
    first = await proxy.get("/api/prices/A1")
    assert first.status == 200 and await first.json() == PRICE
    if "Set-Cookie" in headers:  # the client that asked still gets its cookie
        assert first.headers["Set-Cookie"] == "session=abc"
    second = await proxy.get("/api/prices/A1")
    if why is None:
        assert second.headers["X-Cache"] == "HIT"
        assert origin.count("/prices/A1") == 1
    else:
        assert f"not stored: {why}" in first.headers["Cache-Status"]
        assert second.headers["X-Cache"] == "MISS"
        assert origin.count("/prices/A1") == 2


async def test_expires_is_honoured(origin: Origin, make_proxy: MakeProxy, clock: FakeClock) -> None:
    origin.always("/prices/A1", reply(**{"Expires": http_date(clock.now() + 100)}))
    proxy = await make_proxy(ROUTES)
    await proxy.get("/api/prices/A1")
    clock.advance(90)  # beyond the route's 30s ttl, within Expires
    hit = await proxy.get("/api/prices/A1")
    assert hit.headers["X-Cache"] == "HIT"
    assert hit.headers["Cache-Status"] == "resilient-proxy; hit; ttl=10"
    clock.advance(11)
    assert (await proxy.get("/api/prices/A1")).headers["X-Cache"] == "MISS"
    assert origin.count("/prices/A1") == 2


async def test_age_from_upstream_is_counted(origin: Origin, make_proxy: MakeProxy, clock: FakeClock) -> None:
    origin.always("/prices/A1", reply(**{"Cache-Control": "max-age=60", "Age": "20"}))
    proxy = await make_proxy(ROUTES)
    first = await proxy.get("/api/prices/A1")
    assert first.headers["Age"] == "20"
    assert first.headers.getall("Age") == ["20"]  # ours replaces the upstream's, never both
    clock.advance(10)
    hit = await proxy.get("/api/prices/A1")
    assert (hit.headers["X-Cache"], hit.headers["Age"]) == ("HIT", "30")
    assert hit.headers["Cache-Status"] == "resilient-proxy; hit; ttl=30"
    clock.advance(31)  # 20 + 41 > 60: expired although only 41s passed here
    assert (await proxy.get("/api/prices/A1")).headers["X-Cache"] == "MISS"


async def test_upstream_date_is_kept(origin: Origin, make_proxy: MakeProxy, clock: FakeClock) -> None:
    sent = http_date(clock.now() - 5)
    origin.always("/prices/A1", reply(**{"Cache-Control": "max-age=60", "Date": sent}))
    proxy = await make_proxy(ROUTES)
    await proxy.get("/api/prices/A1")
    clock.advance(10)
    hit = await proxy.get("/api/prices/A1")
    assert hit.headers["Date"] == sent
    assert hit.headers["Age"] == "15"  # apparent age at arrival (5) plus time resident (10)


# -- HEAD -------------------------------------------------------------------------------------


async def test_head_is_answered_from_a_stored_get(origin: Origin, make_proxy: MakeProxy) -> None:
    origin.always("/prices/A1", reply(**{"Cache-Control": "max-age=60", "ETag": '"v1"'}))
    proxy = await make_proxy(ROUTES)
    got = await proxy.get("/api/prices/A1")
    body = await got.read()
    head = await proxy.request("HEAD", "/api/prices/A1")
    assert head.status == 200 and head.headers["X-Cache"] == "HIT"
    assert await head.read() == b""
    for name in ("Content-Type", "ETag"):
        assert head.headers[name] == got.headers[name]
    assert head.headers["Content-Length"] == str(len(body))
    assert origin.count("/prices/A1") == 1


async def test_head_miss_fetches_get_upstream(origin: Origin, make_proxy: MakeProxy) -> None:
    origin.always("/prices/A1", reply(**{"Cache-Control": "max-age=60"}))
    proxy = await make_proxy(ROUTES)
    head = await proxy.request("HEAD", "/api/prices/A1")
    assert head.status == 200 and head.headers["X-Cache"] == "MISS"
    assert await head.read() == b""
    assert [s.method for s in origin.seen] == ["GET"]
    got = await proxy.get("/api/prices/A1")
    assert got.headers["X-Cache"] == "HIT" and await got.json() == PRICE


# -- memory bound -----------------------------------------------------------------------------

LRU_ROUTES = (
    """
cache: {max_bytes: 2KB}
routes:
"""
    + PRICES
    + """    cache: {ttl: 1h}
"""
)


async def test_lru_eviction_under_max_bytes(origin: Origin, make_proxy: MakeProxy) -> None:
    for sku in "ABCD":  # about 600 bytes each once stored: three fit in 2KB, four do not
        origin.always(f"/prices/{sku}", Reply(200, sku.encode() * 400, {"Content-Type": "text/plain"}))
    proxy = await make_proxy(LRU_ROUTES)

    async def x_cache(sku: str) -> str:
        answer = await proxy.get(f"/api/prices/{sku}")
        assert await answer.read() == sku.encode() * 400
        return str(answer.headers["X-Cache"])

    assert [await x_cache(s) for s in "ABC"] == ["MISS"] * 3
    assert await x_cache("A") == "HIT"  # A is now the most recently used
    assert await x_cache("D") == "MISS"  # evicts B, the least recently used
    assert proxy.state.store.evictions == 1
    assert proxy.state.store.bytes <= 2048
    assert await x_cache("A") == "HIT"
    assert await x_cache("C") == "HIT"
    assert await x_cache("B") == "MISS"
    assert origin.count("/prices/B") == 2 and origin.count("/prices/A") == 1


# -- invalidation -----------------------------------------------------------------------------

# Identity paths, so the Location the vendor sends is also a path the proxy serves.
SAME_PATH_ROUTES = """
routes:
  - name: prices
    match: /prices/{sku}
    methods: [GET, HEAD]
    upstream: vendor
    cache: {ttl: 1h}
  - name: writes
    match: /prices/{sku}
    methods: [POST, PUT, PATCH, DELETE]
    upstream: vendor
    cache: off
"""


@pytest.mark.parametrize("location_header", ["Location", "Content-Location"])
async def test_post_invalidates_its_url_and_location(
    origin: Origin, make_proxy: MakeProxy, location_header: str
) -> None:
    for sku in ("A1", "B2", "C3"):
        origin.always(f"/prices/{sku}", reply({**PRICE, "sku": sku}))
    proxy = await make_proxy(SAME_PATH_ROUTES)
    for sku in ("A1", "B2", "C3"):
        await proxy.get(f"/prices/{sku}")
        assert (await proxy.get(f"/prices/{sku}")).headers["X-Cache"] == "HIT"
    origin.then("/prices/A1", Reply(201, b"{}", {location_header: "/prices/B2"}))
    posted = await proxy.request("POST", "/prices/A1", data=b'{"price": 1}')
    assert posted.status == 201
    assert (await proxy.get("/prices/A1")).headers["X-Cache"] == "MISS"
    assert (await proxy.get("/prices/B2")).headers["X-Cache"] == "MISS"
    assert (await proxy.get("/prices/C3")).headers["X-Cache"] == "HIT"


async def test_cross_origin_location_is_not_invalidated(origin: Origin, make_proxy: MakeProxy) -> None:
    origin.always("/prices/B2", reply({**PRICE, "sku": "B2"}))
    proxy = await make_proxy(SAME_PATH_ROUTES)
    await proxy.get("/prices/B2")
    origin.then("/prices/A1", Reply(201, b"{}", {"Location": "http://elsewhere.example/prices/B2"}))
    await proxy.request("POST", "/prices/A1", data=b"{}")
    assert (await proxy.get("/prices/B2")).headers["X-Cache"] == "HIT"


async def test_failed_post_invalidates_nothing(origin: Origin, make_proxy: MakeProxy) -> None:
    origin.always("/prices/A1", reply())
    proxy = await make_proxy(SAME_PATH_ROUTES)
    await proxy.get("/prices/A1")
    origin.then("/prices/A1", Reply(409, b"{}", {"Content-Type": JSON}))
    assert (await proxy.request("POST", "/prices/A1", data=b"{}")).status == 409
    assert (await proxy.get("/prices/A1")).headers["X-Cache"] == "HIT"


async def test_post_invalidates_a_location_behind_a_rewrite(origin: Origin, make_proxy: MakeProxy) -> None:
    origin.always("/prices/B2", reply({**PRICE, "sku": "B2"}))
    proxy = await make_proxy(ROUTES)
    await proxy.get("/api/prices/B2")
    origin.then("/prices/A1", Reply(201, b"{}", {"Location": "/prices/B2"}))
    await proxy.request("POST", "/api/prices/A1", data=b"{}")
    assert (await proxy.get("/api/prices/B2")).headers["X-Cache"] == "MISS"


async def test_a_vendor_location_is_handed_out_as_the_proxy_path(
    origin: Origin, make_proxy: MakeProxy
) -> None:
    """As nginx's `proxy_redirect default`: a client following a redirect or a created resource's
    Location stays behind the proxy, and the vendor's address is not handed out."""
    origin.always("/prices/B2", Reply(201, b"{}", {"Location": f"{origin.url}/prices/B2?v=1"}))
    proxy = await make_proxy()
    created = await proxy.request("POST", "/api/prices/B2", data=b"{}")
    assert created.status == 201 and created.headers["Location"] == "/api/prices/B2?v=1"
    origin.always(
        "/prices/OLD",
        Reply(301, b"", {"Location": f"{origin.url}/prices/NEW", "Cache-Control": "max-age=60"}),
    )
    for _ in range(2):  # fetched, then from cache: the stored copy carries the proxy path too
        moved = await proxy.get("/api/prices/OLD", allow_redirects=False)
        assert moved.status == 301 and moved.headers["Location"] == "/api/prices/NEW"
    assert origin.count("/prices/OLD") == 1


async def test_a_varied_header_the_upstream_sets_itself_is_shared(
    origin: Origin, make_proxy: MakeProxy
) -> None:
    """The upstream's configured Accept-Language replaces every client's, so the vendor's
    `Vary: Accept-Language` answer is the same for all of them: one fetch, then HITs, whatever
    the clients send (the variant is keyed on what the vendor got, RFC 9111 4.1)."""
    vary = {"Cache-Control": "max-age=60", "Vary": "Accept-Language"}
    origin.always("/prices/A1", reply({"lang": "en"}, **vary))
    proxy = await make_proxy(ROUTES, upstream_extra="headers: {Accept-Language: en}")
    first = await proxy.get("/api/prices/A1", headers={"Accept-Language": "fr"})
    assert first.headers["X-Cache"] == "MISS"
    for headers in ({"Accept-Language": "de"}, {}, {"Accept-Language": "fr"}):
        for _ in range(2):  # the second ask of a target is the listener's fast hit
            answer = await proxy.get("/api/prices/A1", headers=headers)
            assert answer.headers["X-Cache"] == "HIT" and await answer.json() == {"lang": "en"}
    assert [seen.headers.get("Accept-Language") for seen in origin.seen] == ["en"]
