"""Issue 8, attacks: raw bytes against the proxy as `proxy.serve` serves it.

The proxy is `build_app` on a FakeClock behind `PublicSite` on a real loopback port; origins are
real servers that record what reached them (`tests.origin.Origin`, a reflecting origin below, and
`RawOrigin` for byte-exact upstream answers). Each case checks what the attacker gets, what the
origin saw (usually nothing), what was stored, and that an honest request still works after.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import unquote

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from proxy.app import build_app
from proxy.clock import FakeClock
from proxy.core.limits import ConnLimits
from tests.conftest import make_config
from tests.hardening.rawhttp import (
    CLOSE,
    Live,
    RawClient,
    RawOrigin,
    RawResponse,
    raw_reply,
    request,
    serve_guarded,
)
from tests.loops import event_loop_policy  # noqa: F401  (a fixture: every case on both loops)
from tests.origin import Origin, Reply
from tests.parts import Parts
from tests.routes import PRICES, WRITES

PRICE = {"sku": "A1", "price": 9.5, "currency": "GBP"}
JSON = "application/json"
ROUTES = (
    """
routes:
"""
    + PRICES
    + """    cache: {ttl: 30s, stale_while_revalidate: 60s, stale_if_error: 1h}
"""
    + WRITES
    + """    max_body: 1KB
  - name: catalog
    match: /api/catalog/*
    methods: [GET, HEAD]
    upstream: vendor
    rewrite: /v1/catalog/*
    cache: {ttl: 30s}
  - name: session
    match: /api/session/{id}
    methods: [GET]
    upstream: vendor
    rewrite: /session/{id}
    cache: {ttl: 30s}
  - name: shared
    match: /api/shared/{id}
    methods: [GET]
    upstream: vendor
    rewrite: /session/{id}
    cache: {ttl: 30s, store_set_cookie: true, share_authorized: true}
"""
)
FAST = ConnLimits(header_timeout=0.5, body_timeout=0.5)
# `event_loop_policy` (bottom) runs every case on asyncio and on uvloop; pytest-asyncio would
# rather have a conftest hook, which this directory does not own.
pytestmark = pytest.mark.filterwarnings('ignore:Overriding the "event_loop_policy" fixture')


Start = Callable[..., Awaitable[Live]]


@pytest.fixture
async def exits() -> AsyncIterator[contextlib.AsyncExitStack]:
    async with contextlib.AsyncExitStack() as stack:
        yield stack


@pytest.fixture
def live(exits: contextlib.AsyncExitStack, origin: Origin, clock: FakeClock) -> Start:
    async def start(
        body: str = ROUTES, upstream_extra: str = "", limits: ConnLimits | None = None, url: str | None = None
    ) -> Live:
        app = build_app(make_config(url or origin.url, body, upstream_extra), clock=clock)
        served = await exits.enter_async_context(serve_guarded(app, limits))
        return Live(served, Parts(app))

    return start


async def assert_healthy(proxy: Live, origin: Origin | None = None) -> None:
    """An honest request still gets the vendor's answer."""
    if origin is not None:
        origin.always(
            "/prices/OK",
            Reply(200, {**PRICE, "sku": "OK"}, {"Content-Type": JSON, "Cache-Control": "no-store"}),
        )
    answer = await proxy.get("/api/prices/OK")
    assert answer.status == 200, answer
    assert json.loads(answer.body)["sku"] == "OK"


def cached(doc: Any = PRICE, **headers: str) -> Reply:
    return Reply(200, doc, {"Content-Type": JSON, "Cache-Control": "max-age=60", **headers})


# -- request smuggling (RFC 9112 6.1, 6.3, 7.1; Kettle, "HTTP Desync Attacks") ---------------------

SMUGGLED = "GET /api/prices/SMUGGLED HTTP/1.1\r\nHost: x\r\n\r\n"
POST = "POST /api/prices/A1 HTTP/1.1\r\nHost: x\r\n"
CHUNKED = POST + "Transfer-Encoding: chunked\r\n\r\n"
SMUGGLING = {
    "cl-te": (POST + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED, 400),
    "te-cl": (POST + "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n" + SMUGGLED, 400),
    "te-cl-zero": (
        POST + "Content-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nxxxxx\r\n0\r\n\r\n",
        400,
    ),
    "two-cl": (POST + "Content-Length: 0\r\nContent-Length: 47\r\n\r\n" + SMUGGLED, 400),
    "two-equal-cl": (POST + "Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc" + SMUGGLED, 400),
    "cl-list": (POST + "Content-Length: 3, 3\r\n\r\nabc", 400),
    "cl-plus": (POST + "Content-Length: +3\r\n\r\nabc", 400),
    "cl-hex": (POST + "Content-Length: 0x3\r\n\r\nabc", 400),
    "cl-space-before-colon": (POST + "Content-Length : 3\r\n\r\nabc", 400),
    "te-space-before-colon": (
        POST + "Transfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
        400,
    ),
    "obs-fold": ("GET /api/prices/A1 HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", 400),
    "obs-fold-te": (POST + "Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n" + SMUGGLED, 400),
    "bare-lf-request-line": ("GET /api/prices/A1 HTTP/1.1\nHost: x\r\n\r\n", 400),
    "bare-lf-header": ("GET /api/prices/A1 HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n", 400),
    "bare-lf-everywhere": ("GET /api/prices/A1 HTTP/1.1\nHost: x\n\n", 400),
    "bare-cr-request-line": ("GET /api/prices/A1 HTTP/1.1\rHost: x\r\n\r\n", 400),
    "bare-cr-header": ("GET /api/prices/A1 HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", 400),
    "nul-in-header": ("GET /api/prices/A1 HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400),
    "chunk-size-not-hex": (CHUNKED + "zz\r\nabc\r\n0\r\n\r\n" + SMUGGLED, 400),
    "chunk-size-negative": (CHUNKED + "-3\r\nabc\r\n0\r\n\r\n", 400),
    "chunk-size-0x": (CHUNKED + "0x3\r\nabc\r\n0\r\n\r\n", 400),
    "chunk-size-space": (CHUNKED + "3 \r\nabc\r\n0\r\n\r\n", 400),
    "chunk-size-overflow": (CHUNKED + "f" * 20 + "\r\nabc\r\n0\r\n\r\n", 400),
    "chunk-ext-nul": (CHUNKED + "3;\x00\r\nabc\r\n0\r\n\r\n", 400),
    "chunk-ext-bare-lf": (CHUNKED + "3;a\nb\r\nabc\r\n0\r\n\r\n" + SMUGGLED, 400),
    "chunk-ext-bare-cr": (CHUNKED + "3;a\rb\r\nabc\r\n0\r\n\r\n", 400),
    "chunk-ext-unquoted-space": (CHUNKED + "3;a=b c\r\nabc\r\n0\r\n\r\n", 400),
    "chunk-bare-lf": (CHUNKED + "3\nabc\n0\n\n" + SMUGGLED, 400),
    "chunk-data-overrun": (CHUNKED + "3\r\nabcdef\r\n0\r\n\r\n", 400),
    "te-chunked-not-last": (POST + "Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", 400),
    "te-gzip-only": (POST + "Transfer-Encoding: gzip\r\n\r\nabc", 400),
    "te-xchunked": (POST + "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400),
    "te-twice": (POST + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    # RFC 9112 6.1: Transfer-Encoding in HTTP/1.0 is faulty framing. aiohttp alone honours it and
    # keeps the connection open for the smuggled request behind it; the guard refuses it.
    "te-in-http-1.0": (
        "POST /api/prices/A1 HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n"
        "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
        400,
    ),
    "http-2.0-over-1.1": ("GET /api/prices/A1 HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    "http-0.9": ("GET /api/prices/A1\r\n\r\n", 400),
    "lowercase-version": ("GET /api/prices/A1 http/1.1\r\nHost: x\r\n\r\n", 400),
}


async def send_smuggling(client: RawClient, raw: bytes, how: str) -> RawResponse:
    """`whole`: one write. `expect`: the head asks `Expect: 100-continue` and the rest is sent only
    once the proxy says 100 Continue, i.e. once the request has been dispatched to the handler:
    a body error then arrives while the handler is reading the body."""
    cut = raw.find(b"\r\n\r\n")
    if how == "whole" or cut < 0 or not raw.startswith(b"POST"):
        await client.send(raw)
        return await client.response()
    await client.send(raw[:cut] + b"\r\nExpect: 100-continue\r\n\r\n")
    answer = await client.response()
    if answer.status != 100:
        return answer
    await client.send(raw[cut + 4 :])
    return await client.response()


@pytest.mark.parametrize("how", ["whole", "expect"])
@pytest.mark.parametrize("case", SMUGGLING)
async def test_smuggling_is_refused_and_nothing_is_forwarded(
    live: Start, origin: Origin, case: str, how: str
) -> None:
    origin.always("/prices/A1", cached())
    origin.always("/prices/SMUGGLED", cached({"smuggled": True}))
    proxy = await live()
    raw, status = SMUGGLING[case]
    client = await proxy.connect()
    answer = await send_smuggling(client, raw.encode("latin-1"), how)
    assert answer.status == status, answer
    assert await client.closed(2.0), "the connection must not stay open for what follows"
    await client.close()
    assert origin.count() == 0, [s.path for s in origin.seen]
    await assert_healthy(proxy, origin)


@pytest.mark.parametrize(
    "head",
    [
        "GET /api/prices/A1 HTTP/1.0\r\n",  # HTTP/1.0 needs no Host
        "GET /api/prices/A1 HTTP/1.1\r\nHost: \r\n",  # empty: a target without authority
        "GET /api/prices/A1 HTTP/1.1\r\nHost: [::1]:8080\r\n",
        "GET /api/prices/A1 HTTP/1.1\r\nHost: shop.example.com:443\r\n",
        "GET /api/prices/A1 HTTP/1.1\r\nhOsT: xn--bcher-kva.example\r\n",
    ],
    ids=["http-1.0-without", "empty", "ipv6-literal", "name-and-port", "any-case"],
)
async def test_a_lawful_host_is_served(live: Start, origin: Origin, head: str) -> None:
    """Control for the Host rows of tests/hardening/test_client_attacks.py."""
    origin.always("/prices/A1", cached())
    proxy = await live()
    answer = await proxy.send(head + "Connection: close\r\n\r\n")
    assert answer.status == 200, answer


async def test_a_valid_chunked_write_still_goes_through(live: Start, origin: Origin) -> None:
    """Control for the table above: the strict form of every construct it breaks is accepted."""
    origin.always("/prices/A1", Reply(201, {"ok": True}, {"Content-Type": JSON}))
    proxy = await live()
    answer = await proxy.send(
        CHUNKED.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n")
        + '3;ext="q v"\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n'
    )
    assert answer.status == 201
    assert [(s.method, s.body) for s in origin.seen] == [("POST", b"abcde")]


async def test_pipelined_requests_are_answered_in_order(live: Start, origin: Origin) -> None:
    origin.always("/prices/A1", cached())
    origin.always("/prices/B2", cached({**PRICE, "sku": "B2"}))
    proxy = await live()
    client = await proxy.connect()
    await client.send(request("GET", "/api/prices/A1", close=False) + request("GET", "/api/prices/B2"))
    first, second = await client.response(), await client.response()
    assert [json.loads(first.body)["sku"], json.loads(second.body)["sku"]] == ["A1", "B2"]
    await client.close()


async def test_a_body_cannot_hide_a_request(live: Start, origin: Origin) -> None:
    """A GET whose Content-Length covers a second request: that request is body, never served."""
    origin.always("/prices/A1", cached())
    origin.always("/prices/SMUGGLED", cached({"smuggled": True}))
    proxy = await live()
    client = await proxy.connect()
    await client.send(
        f"GET /api/prices/A1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        f"Content-Length: {len(SMUGGLED)}\r\n\r\n" + SMUGGLED
    )
    answer = await client.response()
    assert answer.status == 200 and json.loads(answer.body) == PRICE
    assert await client.rest(3.0) == b""  # no second response follows
    await client.close()
    assert [s.path for s in origin.seen] == ["/prices/A1"]
    assert origin.seen[0].body == b""  # the fat GET body is not forwarded either


# -- no open proxy ------------------------------------------------------------------------------


@pytest.fixture
async def canary(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> Origin:
    """A host the proxy must never talk to: it counts every request that reaches it."""
    c = Origin()
    c.fallback = Reply(200, {"canary": True}, {"Content-Type": JSON})
    server = await aiohttp_server(c.app())
    c.url = str(server.make_url("")).rstrip("/")
    return c


@pytest.mark.parametrize(
    "line",
    [
        "GET CANARY/api/prices/A1 HTTP/1.1",
        "GET CANARY/ HTTP/1.1",
        "GET http://evil.example/api/prices/A1 HTTP/1.1",
        "GET https://evil.example:443/api/prices/A1 HTTP/1.1",
        "GET ORIGIN/prices/A1 HTTP/1.1",  # even the vendor's own address, in absolute form
        "GET //CANARYHOST/api/prices/A1 HTTP/1.1",
        "GET @CANARYHOST/api/prices/A1 HTTP/1.1",
        "OPTIONS * HTTP/1.1",
    ],
)
async def test_absolute_and_odd_targets_reach_no_one(
    live: Start, origin: Origin, canary: Origin, line: str
) -> None:
    origin.always("/prices/A1", cached())
    proxy = await live()
    line = (
        line.replace("CANARYHOST", canary.url.removeprefix("http://"))
        .replace("CANARY", canary.url)
        .replace("ORIGIN", origin.url)
    )
    answer = await proxy.send(
        f"{line}\r\nHost: {canary.url.removeprefix('http://')}\r\nConnection: close\r\n\r\n"
    )
    assert answer.status == 400, answer
    assert (canary.count(), origin.count()) == (0, 0)


@pytest.mark.parametrize("target", ["CANARYHOST", "evil.example:443", "/api/prices/A1"])
async def test_connect_never_opens_a_tunnel(live: Start, origin: Origin, canary: Origin, target: str) -> None:
    proxy = await live()
    target = target.replace("CANARYHOST", canary.url.removeprefix("http://"))
    client = await proxy.connect()
    host = target if not target.startswith("/") else "x"  # a path is no Host (that is a 400)
    await client.send(f"CONNECT {target} HTTP/1.1\r\nHost: {host}\r\n\r\n")
    answer = await client.response()
    assert answer.status == 405
    # Whatever a client sends next is not relayed anywhere: the connection is closed.
    with contextlib.suppress(ConnectionError):
        await client.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert await client.closed(2.0)
    assert (canary.count(), origin.count()) == (0, 0)


@pytest.mark.parametrize(
    "spoof",
    [
        "Host: CANARYHOST",
        "X-Forwarded-Host: CANARYHOST",
        "Forwarded: host=CANARYHOST;proto=http",
        "X-Host: CANARYHOST",
        "X-Forwarded-Server: CANARYHOST",
    ],
)
async def test_a_spoofed_host_still_reaches_only_the_configured_upstream(
    live: Start, origin: Origin, canary: Origin, spoof: str
) -> None:
    origin.always("/prices/A1", cached())
    proxy = await live()
    host = canary.url.removeprefix("http://")
    if spoof.startswith("Host:"):
        raw = request("GET", "/api/prices/A1", host=host)
    else:
        raw = request("GET", "/api/prices/A1", spoof.replace("CANARYHOST", host))
    answer = await proxy.send(raw)
    assert answer.status == 200 and json.loads(answer.body) == PRICE
    assert canary.count() == 0
    assert origin.seen[0].headers["Host"] == origin.url.removeprefix("http://")


# -- traversal and encoded slashes ------------------------------------------------------------

ESCAPES = [
    "/api/catalog/../../admin",
    "/api/catalog/shoes/../../../v1/admin",
    "/api/catalog/%2e%2e/%2e%2e/admin",
    "/api/catalog/%2E%2e%2F%2e%2E%2Fadmin",
    "/api/catalog/.%2e/admin",
    "/api/catalog/shoes%2f..%2f..%2fadmin",
    "/api/catalog/%252e%252e%252fadmin",
    "/api/catalog/%25252e%25252e/admin",
    "/api/catalog/..%5cadmin",
    "/api/catalog/..%255cadmin",
    "/api/catalog/..;/admin",
    "/api/catalog/%2e%2e;x=1/admin",
    "/api/catalog/%00/../admin",
    "/api/catalog/./shoes",
    "/api/catalog//admin",
    "/api/catalog/\\..\\admin",
    "/api/prices/A1%2f..%2f..%2fadmin",
    "/api/prices/%2e%2e",
    "/api/%2e%2e/admin",
    "/api/catalog/%c0%ae%c0%ae/admin",  # overlong UTF-8 dots: not dots to us; forwarded encoded
    "/api/catalog/shoes%0d%0aX-Injected:%20yes",  # stays encoded: no header is injected
]


def decoded_segments(path: str) -> list[str]:
    """Every segment of `path` as a vendor that keeps decoding would finally read it."""
    out = []
    for seg in path.split("?")[0].split("/"):
        for _ in range(4):
            seg = unquote(seg, errors="replace") if "%" in seg else seg
        out.append(seg)
    return out


@pytest.mark.parametrize("target", ESCAPES)
async def test_traversal_cannot_leave_the_route(live: Start, origin: Origin, target: str) -> None:
    origin.always("/v1/catalog/shoes", cached({"items": ["shoe"]}))
    for secret in ("/admin", "/v1/admin", "/v1/catalog/admin"):
        origin.always(secret, cached({"secret": True}))
    proxy = await live()
    answer = await proxy.get(target)
    assert answer.status in (200, 400, 404), answer
    assert b"secret" not in answer.body
    for seen in origin.seen:  # whatever was forwarded stayed inside the route's upstream prefix
        assert seen.path.startswith("/v1/catalog/"), seen.path
        segments = decoded_segments(seen.path)
        assert not {".", ".."} & {s.split(";")[0] for s in segments}, seen.path
        assert not any("/" in s or "\\" in s for s in segments[3:]), seen.path
        assert "X-Injected" not in seen.headers
    await assert_healthy(proxy, origin)


@pytest.mark.parametrize(
    "target",
    [
        "/api/catalog/shoes",
        "/api/catalog/a%20b",
        "/api/catalog/sale/50%25",
        "/api/catalog/..shoes",
        "/api/catalog/shoes..",
        "/api/catalog/%7Euser",
    ],
)
async def test_ordinary_paths_pass_byte_for_byte(live: Start, origin: Origin, target: str) -> None:
    proxy = await live()
    await proxy.get(target)
    assert [s.path for s in origin.seen] == [target.replace("/api/catalog/", "/v1/catalog/")]


def statuses_counted(proxy: Live) -> dict[str, float]:
    """Transactions the proxy has counted, by status."""
    out: dict[str, float] = {}
    for sample in proxy.state.telemetry.requests.samples():
        status = dict(sample.labels)["status"]
        out[status] = out.get(status, 0.0) + sample.value
    return out


async def test_a_client_gone_mid_body_is_499(live: Start, origin: Origin) -> None:
    proxy = await live()
    client = await proxy.connect()
    await client.send(POST + "Content-Length: 100\r\nExpect: 100-continue\r\n\r\n")
    assert (await client.response()).status == 100  # the handler is now waiting for the body
    await client.send("x" * 10)
    await client.close()
    for _ in range(500):  # bounded wait for the handler to finish the transaction
        if statuses_counted(proxy):
            break
        await asyncio.sleep(0.01)
    assert statuses_counted(proxy) == {"499": 1.0}
    assert origin.count() == 0


async def test_a_connection_cut_mid_body_is_not_counted_as_a_proxy_fault(live: Start, origin: Origin) -> None:
    proxy = await live()
    client = await proxy.connect()
    await client.send(CHUNKED + "3\r\nabc\r\nzz\r\n")
    assert (await client.response()).status == 400
    for _ in range(500):  # bounded wait for the handler to finish the transaction
        if statuses_counted(proxy):
            break
        await asyncio.sleep(0.01)
    assert statuses_counted(proxy) == {"499": 1.0}
    assert origin.count() == 0


# -- limits: 414, 431, 413 -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "statuses"),
    [
        (request("GET", "/api/prices/" + "A" * 5000), {414}),
        (request("GET", "/api/prices/" + "A" * 9000), {400, 414}),  # past aiohttp's 8190-byte line
        (request("GET", "/api/prices/A1", *[f"X-H{i}: v" for i in range(101)]), {431}),
        (request("GET", "/api/prices/A1", *[f"X-H{i}: {'v' * 6000}" for i in range(3)]), {431}),
        (request("GET", "/api/prices/A1", "X-Big: " + "v" * 9000), {400, 431}),  # past aiohttp's field limit
        (request("GET", "/api/prices/A1", *[f"X-H{i}: {'v' * 8000}" for i in range(10)]), {431}),  # the guard
        (request("GET", "/api/prices/A1", *["X-H: v"] * 200), {400, 431}),
    ],
)
async def test_oversized_requests_are_refused_before_the_origin(
    live: Start, origin: Origin, raw: bytes, statuses: set[int]
) -> None:
    origin.always("/prices/A1", cached())
    proxy = await live()
    answer = await proxy.send(raw)
    assert answer.status in statuses, answer
    assert origin.count() == 0
    await assert_healthy(proxy, origin)


@pytest.mark.parametrize(
    "opening",
    [
        "GET /api/prices/A1 HTTP/1.1\r\nHost: x\r\nX-Endless: ",  # a field that never ends
        CHUNKED + "2\r\nhi\r\n0\r\nX-Endless: ",  # a trailer field that never ends
    ],
)
async def test_a_field_that_never_ends_is_refused_not_buffered(
    live: Start, origin: Origin, opening: str
) -> None:
    """llhttp hands a field over only once it ends, so no callback of ours sees one that never
    does: the bytes read are bounded instead (the head's limit and one read), and the client
    gets a 431 long before its deadline, not a proxy holding all it sends."""
    proxy = await live()
    client = await proxy.connect()
    await client.send(opening)
    with contextlib.suppress(ConnectionError):
        for _ in range(64):  # 4 MB, unless refused first
            await client.send(b"a" * 65536)
    answer = await client.response(timeout=3.0)
    assert answer.status == 431 and json.loads(answer.body)["error"] == "request_headers_too_large"
    await client.close()
    assert origin.count() == 0
    await assert_healthy(proxy, origin)


@pytest.mark.parametrize("after", ["reads-to-the-end", "resets"])
async def test_a_refused_head_the_client_walks_away_from_logs_no_error(
    live: Start, origin: Origin, caplog: pytest.LogCaptureFixture, after: str
) -> None:
    """10,000 tiny fields in one write: a 431, then the close. A client gone (or resetting) by the
    time the proxy half-closes is no error: nothing is logged above a warning, no task dies."""
    proxy = await live()
    for _ in range(5):
        client = await proxy.connect()
        await client.send(request("GET", "/api/prices/A1", *[f"X{i}: {i}" for i in range(10_000)]))
        if after == "resets":
            client.writer.transport.abort()
        else:
            assert (await client.response()).status == 431
            await client.closed()
    await assert_healthy(proxy, origin)
    gc.collect()  # a worker task that died says so when it is collected ("never retrieved")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_a_body_over_the_route_limit_is_413_before_it_is_sent(live: Start, origin: Origin) -> None:
    """The Content-Length alone decides: the proxy answers without waiting for 64 MB."""
    proxy = await live()
    client = await proxy.connect()
    await client.send(POST + f"Content-Length: {64 << 20}\r\n\r\n" + "x" * 1000)
    answer = await client.response(timeout=3.0)
    assert answer.status == 413 and json.loads(answer.body)["error"] == "payload_too_large"
    await client.close()
    assert origin.count() == 0


async def test_a_chunked_body_over_the_route_limit_is_413(live: Start, origin: Origin) -> None:
    proxy = await live()
    client = await proxy.connect()
    await client.send(CHUNKED + "".join("100\r\n" + "x" * 256 + "\r\n" for _ in range(8)))
    answer = await client.response(timeout=3.0)
    assert answer.status == 413
    await client.close()
    assert origin.count() == 0


async def test_a_body_within_the_limit_passes(live: Start, origin: Origin) -> None:
    origin.always("/prices/A1", Reply(201, {"ok": True}, {"Content-Type": JSON}))
    proxy = await live()
    answer = await proxy.send(request("POST", "/api/prices/A1", "Content-Length: 1024", body="x" * 1024))
    assert answer.status == 201 and origin.seen[0].body == b"x" * 1024


# -- slow clients ----------------------------------------------------------------------------------


async def test_a_silent_connection_gets_408_and_is_closed(live: Start) -> None:
    proxy = await live(limits=FAST)
    client = await proxy.connect()
    answer = await client.response(timeout=5.0)
    assert answer.status == 408 and json.loads(answer.body)["error"] == "request_timeout"
    assert await client.closed(2.0)
    assert proxy.served.guard.stats.header_timeouts == 1


async def trickle(client: RawClient, data: bytes, every: float) -> int:
    """Send `data` a few bytes at a time, one piece per `every` seconds (each pause is a bounded
    wait for the server to answer or close), until the server closes; returns the bytes sent."""
    sent = 0
    for start in range(0, len(data), 4):
        try:
            await client.send(data[start : start + 4])
            sent = start + 4
            if await client.closed(every):
                return sent
        except ConnectionError:
            return sent
    raise AssertionError(f"all {len(data)} bytes trickled in and the connection is still open")


async def test_slowloris_trickling_a_head_is_cut_at_the_header_timeout(live: Start, origin: Origin) -> None:
    proxy = await live(limits=FAST)
    client = await proxy.connect()
    head = b"GET /api/prices/A1 HTTP/1.1\r\n" + b"X-Keep: alive\r\n" * 50  # never finished
    sent = await trickle(client, head, 0.05)
    assert sent < len(head)  # cut mid-head: bytes kept coming, the deadline did not move
    assert origin.count() == 0
    assert proxy.served.guard.stats.header_timeouts == 1


async def test_a_slow_body_is_cut_at_the_body_timeout(live: Start, origin: Origin) -> None:
    proxy = await live(limits=FAST)
    client = await proxy.connect()
    await client.send(POST + "Content-Length: 100\r\n\r\n" + "x" * 10)
    assert await client.closed(3.0)
    assert origin.count() == 0
    assert proxy.served.guard.stats.body_timeouts == 1
    await assert_healthy(proxy, origin)


async def test_a_slow_second_head_on_a_kept_alive_connection_is_cut(live: Start, origin: Origin) -> None:
    origin.always("/prices/A1", cached())
    proxy = await live(limits=FAST)
    client = await proxy.connect()
    await client.send(request("GET", "/api/prices/A1", close=False))
    assert (await client.response()).status == 200
    await client.send(b"GET /api/prices/A1 HTTP/1.1\r\nHost")
    assert await client.closed(3.0)
    assert proxy.served.guard.stats.header_timeouts == 1


async def test_an_idle_kept_alive_connection_is_not_cut_by_the_header_timeout(
    live: Start, origin: Origin
) -> None:
    """Between requests the keep-alive timer (aiohttp's, 75 s) owns the connection, not ours."""
    origin.always("/prices/A1", cached())
    proxy = await live(limits=FAST)
    client = await proxy.connect()
    await client.send(request("GET", "/api/prices/A1", close=False))
    assert (await client.response()).status == 200
    assert not await client.closed(FAST.header_timeout * 3)
    await client.send(request("GET", "/api/prices/A1", close=False))
    assert (await client.response()).status == 200
    await client.close()


async def test_many_slow_clients_are_all_cut_and_leave_nothing_behind(live: Start, origin: Origin) -> None:
    proxy = await live(limits=FAST)
    clients = [await proxy.connect() for _ in range(50)]
    for c in clients:
        await c.send(b"GET /api/prices/A1 HTTP/1.1\r\nHo")
    closed = await asyncio.gather(*(c.closed(5.0) for c in clients))
    assert all(closed)
    guard = proxy.served.guard
    for _ in range(100):  # the server side notices each close on its own loop iteration
        if guard.table.open == 0:
            break
        await asyncio.sleep(0)
    assert (guard.table.open, guard.table.addresses, guard.stats.header_timeouts) == (0, 0, 50)
    await assert_healthy(proxy, origin)


# -- connection limits -----------------------------------------------------------------------------


async def keep_alive_200(client: RawClient) -> None:
    await client.send(request("GET", "/api/prices/A1", close=False))
    assert (await client.response()).status == 200


async def shed_answer(proxy: Live, local: str | None = None) -> RawResponse:
    client = await proxy.connect(local)
    try:
        with contextlib.suppress(ConnectionError):
            await client.send(request("GET", "/api/prices/A1"))
        return await client.response(timeout=3.0)
    finally:
        await client.close()


async def test_connections_per_address_are_capped_with_a_fast_503(live: Start, origin: Origin) -> None:
    origin.always("/prices/A1", cached())
    proxy = await live(limits=ConnLimits(per_address=4))
    held = [await proxy.connect() for _ in range(4)]
    for c in held:
        await keep_alive_200(c)
    shed = await shed_answer(proxy)  # answered while the four are still held open
    assert shed.status == 503 and shed.header("Retry-After") == "1"
    assert shed.header("Connection") == "close"
    assert json.loads(shed.body)["error"] == "too_many_connections"
    other = await proxy.connect(local="127.0.0.2")  # another address is not affected
    await keep_alive_200(other)
    await held.pop().close()
    for _ in range(200):  # admitted again once the server has seen the close
        answer = await shed_answer(proxy)
        if answer.status == 200:
            break
    assert answer.status == 200
    for c in [*held, other]:
        await c.close()
    assert proxy.served.guard.stats.shed_per_address >= 1


async def test_total_connections_are_capped(live: Start, origin: Origin) -> None:
    origin.always("/prices/A1", cached())
    proxy = await live(limits=ConnLimits(per_address=10, total=3))
    held = [await proxy.connect(local=f"127.0.0.{i}") for i in (1, 2, 3)]
    for c in held:
        await keep_alive_200(c)
    shed = await shed_answer(proxy, local="127.0.0.4")
    assert shed.status == 503 and "in total" in json.loads(shed.body)["message"]
    assert proxy.served.guard.stats.shed_total == 1
    for c in held:
        await c.close()


async def test_a_connection_flood_is_shed_fast_with_bounded_state(live: Start, origin: Origin) -> None:
    origin.always("/prices/A1", cached())
    proxy = await live(limits=ConnLimits(per_address=8, max_lingering=10_000))
    guard = proxy.served.guard
    held = [await proxy.connect() for _ in range(8)]
    for c in held:
        await keep_alive_200(c)
    answers = await asyncio.gather(*(shed_answer(proxy) for _ in range(300)), return_exceptions=True)
    statuses = [a.status if isinstance(a, RawResponse) else type(a).__name__ for a in answers]
    assert statuses == [503] * 300, {s: statuses.count(s) for s in set(statuses)}
    assert guard.table.open == 8 and guard.table.addresses == 1  # state did not grow with the flood
    for c in held:
        await c.close()
    for _ in range(1000):
        if guard.table.open == 0 and guard.lingering == 0:
            break
        await asyncio.sleep(0)
    assert (guard.table.open, guard.table.addresses, guard.lingering) == (0, 0, 0)
    assert origin.count() == 1  # held[0] fetched; the rest were hits; the flood reached nothing


async def test_the_guard_counters_are_exported(live: Start) -> None:
    proxy = await live(limits=ConnLimits(per_address=1, header_timeout=0.5))
    held = await proxy.connect()
    await shed_answer(proxy)
    assert (await held.response()).status == 408
    guard = proxy.served.guard
    assert guard.shed_total.value(("per_address",)) == 1
    assert guard.slow_total.value(("header",)) == 1


# -- cache poisoning (Kettle, "Practical Web Cache Poisoning") -------------------------------------


class Reflector:
    """A vendor that reflects every unkeyed input a careless vendor would: a poisoned copy in
    the cache would show it."""

    def __init__(self) -> None:
        self.seen: list[tuple[dict[str, str], bytes]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        h = request.headers
        self.seen.append((dict(h), body))
        doc = {
            "link": f"{h.get('X-Forwarded-Proto', h.get('X-Forwarded-Scheme', 'http'))}://"
            f"{h.get('X-Forwarded-Host', h.get('X-Host', h.get('Host')))}{request.path}",
            "path": h.get("X-Original-URL", h.get("X-Rewrite-URL", request.path)),
            "method": h.get(
                "X-HTTP-Method-Override", h.get("X-HTTP-Method", h.get("X-Method-Override", request.method))
            ),
            "forwarded": h.get("Forwarded", ""),
            "server": h.get("X-Forwarded-Server", ""),
            "who": h.get("Authorization", "") + h.get("Cookie", ""),
            "body": body.decode("latin-1"),
        }
        return web.json_response(doc, headers={"Cache-Control": "max-age=60"})


@pytest.fixture
async def reflector(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> Reflector:
    r = Reflector()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", r.handle)
    server = await aiohttp_server(app)
    r.url = str(server.make_url("")).rstrip("/")
    return r


POISONS = {
    "x-forwarded-host": ["X-Forwarded-Host: evil.example"],
    "x-forwarded-proto": ["X-Forwarded-Proto: evil"],
    "x-forwarded-scheme": ["X-Forwarded-Scheme: evil"],
    "x-forwarded-server": ["X-Forwarded-Server: evil.example"],
    "forwarded": ["Forwarded: host=evil.example;proto=evil"],
    "x-original-url": ["X-Original-URL: /evil"],
    "x-rewrite-url": ["X-Rewrite-URL: /evil"],
    "x-http-method-override": ["X-HTTP-Method-Override: EVIL"],
    "x-http-method": ["X-HTTP-Method: EVIL"],
    "x-method-override": ["X-Method-Override: EVIL"],
    "fat-get-body": ["Content-Length: 4", "BODY:evil"],
    "fat-get-chunked": ["Transfer-Encoding: chunked", "BODY:4\r\nevil\r\n0\r\n\r\n"],
}


def poisoned(target: str, lines: list[str]) -> bytes:
    headers = [x for x in lines if not x.startswith("BODY:")]
    body = "".join(x[5:] for x in lines if x.startswith("BODY:"))
    return request("GET", target, *headers, body=body)


@pytest.mark.parametrize("poison", POISONS)
async def test_unkeyed_inputs_never_change_what_others_get(
    live: Start, reflector: Reflector, poison: str
) -> None:
    proxy = await live(url=reflector.url)
    attacker = await proxy.send(poisoned("/api/prices/P1", POISONS[poison]))
    victim = await proxy.get("/api/prices/P1")
    assert attacker.status == victim.status == 200
    assert victim.header("X-Cache") == "HIT"
    assert victim.body == attacker.body
    assert b"evil" not in victim.body.lower(), victim.body
    assert len(reflector.seen) == 1
    headers, body = reflector.seen[0]
    assert body == b""
    assert not any("evil" in v.lower() for v in headers.values()), headers


async def test_a_spoofed_host_header_is_not_reflected_into_the_cache(
    live: Start, reflector: Reflector
) -> None:
    proxy = await live(url=reflector.url)
    await proxy.send(request("GET", "/api/prices/P1", host="evil.example"))
    victim = await proxy.get("/api/prices/P1")
    assert victim.header("X-Cache") == "HIT" and b"evil" not in victim.body


async def test_a_method_override_never_turns_a_read_into_a_write(live: Start, origin: Origin) -> None:
    origin.always("/prices/A1", cached())
    proxy = await live()
    await proxy.get("/api/prices/A1")
    for header in ("X-HTTP-Method-Override: DELETE", "X-HTTP-Method: PURGE", "X-Method-Override: POST"):
        answer = await proxy.get("/api/prices/A1", header)
        assert answer.header("X-Cache") == "HIT"  # still the stored copy: nothing was invalidated
    assert [s.method for s in origin.seen] == ["GET"]


# -- cache deception: an entry is served only for the route and key that stored it ------------

DECEPTIONS = [
    "/api/prices/A1/x.css",
    "/api/prices/A1.css",
    "/api/prices/A1%2fx.css",
    "/api/prices/A1;x.css",
    "/api/prices/A1%3bx.css",
    "/api/prices/A1%00.css",
    "/api/prices/A1/",
    "/api/prices//A1",
    "/API/prices/A1",
    "/api/prices/A1%23.css",
    "/api/prices/A1/..%2fx.css",
    "/api/prices/A1%0a.css",
    "/api/prices/./A1",
    "/api/prices/A1/.",
    "/api/prices/%41%31",
    "/api/prices/a1",
    "/api/catalog/../prices/A1",
    "/api/session/A1",
    "/api/shared/A1",
]


async def test_a_stored_entry_is_only_served_for_its_own_key(live: Start, origin: Origin) -> None:
    origin.always("/prices/A1", cached({**PRICE, "secret": "A1-only"}))
    proxy = await live()
    assert (await proxy.get("/api/prices/A1")).header("X-Cache") == "MISS"
    assert (await proxy.get("/api/prices/A1")).header("X-Cache") == "HIT"
    for target in DECEPTIONS:
        before = len(origin.seen)
        answer = await proxy.get(target)
        assert answer.header("X-Cache") not in ("HIT", "STALE"), (target, answer)
        if b"A1-only" in answer.body:  # only as the vendor's own answer to that distinct request
            assert len(origin.seen) == before + 1 and origin.seen[-1].path != "/prices/A1", target
    with_query = await proxy.get("/api/prices/A1?x.css")
    assert with_query.header("X-Cache") == "MISS"  # its own key, fetched on its own
    assert origin.seen[-1].path == "/prices/A1?x.css"
    # Every stored entry sits under the key of the very request that fetched it: its route and
    # path (rewritten as the route does) name exactly the URL the vendor was asked.
    rewrites = {
        "prices": ("/api/prices/", "/prices/"),
        "session": ("/api/session/", "/session/"),
        "shared": ("/api/shared/", "/session/"),
        "catalog": ("/api/catalog/", "/v1/catalog/"),
    }
    for key, entry in proxy.state.store.items():
        route, _, rest = key.partition("\x1f")
        path = rest.split("\x1f")[0].split("?")[0]
        assert entry.url.split("?")[0] == path.replace(*rewrites[route], 1), (key, entry.url)
    assert any(k == "prices\x1f/api/prices/A1" for k, _ in proxy.state.store.items())


# -- credentials are never shared unless the route says so ---------------------------------------


class Sessions:
    """A vendor that answers each request with a fresh session cookie and the caller's identity."""

    def __init__(self) -> None:
        self.count = 0
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.count += 1
        who = request.headers.get("Authorization", "") + request.headers.get("Cookie", "")
        return web.json_response(
            {"who": who, "n": self.count},
            headers={"Cache-Control": "max-age=60", "Set-Cookie": f"sid=s{self.count}"},
        )


@pytest.fixture
async def sessions(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> Sessions:
    s = Sessions()
    app = web.Application()
    app.router.add_get("/session/{id}", s.handle)
    server = await aiohttp_server(app)
    s.url = str(server.make_url("")).rstrip("/")
    return s


async def test_set_cookie_responses_are_never_shared(live: Start, sessions: Sessions) -> None:
    proxy = await live(url=sessions.url)
    answers = list(await asyncio.gather(*(proxy.get("/api/session/S") for _ in range(5))))
    answers += [await proxy.get("/api/session/S") for _ in range(5)]
    cookies = [a.header("Set-Cookie") for a in answers]
    assert all(a.status == 200 for a in answers)
    assert len({c for c in cookies if c}) == len([c for c in cookies if c])  # no cookie went to two clients
    assert sessions.count == 10
    assert not any(a.header("X-Cache") == "HIT" for a in answers)
    assert not any("set-cookie" in {k.lower() for k, _ in e.headers} for _, e in proxy.state.store.items())


@pytest.mark.parametrize("credential", ["Authorization: Bearer alice-token", "Cookie: session=alice"])
async def test_answers_to_credentialed_requests_are_never_shared(
    live: Start, reflector: Reflector, credential: str
) -> None:
    proxy = await live(url=reflector.url)
    alice = await proxy.get("/api/prices/P1", credential)
    assert b"alice" in alice.body
    bob = await proxy.get("/api/prices/P1")
    assert bob.header("X-Cache") == "MISS" and b"alice" not in bob.body
    assert len(reflector.seen) == 2


async def test_concurrent_credentialed_requests_are_not_coalesced_into_one_answer(
    live: Start, sessions: Sessions
) -> None:
    proxy = await live(url=sessions.url)
    names = [f"user{i}" for i in range(6)]
    answers = await asyncio.gather(
        *(proxy.get("/api/session/S", f"Authorization: Bearer {n}") for n in names)
    )
    for name, answer in zip(names, answers, strict=True):
        assert json.loads(answer.body)["who"] == f"Bearer {name}"


async def test_a_route_may_opt_in_to_sharing(live: Start, sessions: Sessions) -> None:
    """`store_set_cookie` and `share_authorized`: the route says so, so the copy is shared."""
    proxy = await live(url=sessions.url)
    first = await proxy.get("/api/shared/S", "Authorization: Bearer alice")
    second = await proxy.get("/api/shared/S")
    assert second.header("X-Cache") == "HIT" and second.body == first.body
    assert sessions.count == 1


# -- what comes back from the upstream ---------------------------------------------------------

GOOD = b'{"sku": "A1", "price": 9.5, "currency": "GBP"}'
CT, CC = "Content-Type: application/json", "Cache-Control: max-age=60"
BAD_UPSTREAM = {
    "header-bare-cr": raw_reply("HTTP/1.1 200 OK", CT, CC, "X-A: a\rSet-Cookie: evil=1", body=GOOD),
    "header-nul": raw_reply("HTTP/1.1 200 OK", CT, CC, "X-A: a\x00Set-Cookie: evil=1", body=GOOD),
    "header-100kb": raw_reply("HTTP/1.1 200 OK", CT, CC, "X-Big: " + "a" * 100_000, body=GOOD),
    "headers-300": raw_reply("HTTP/1.1 200 OK", CT, CC, *[f"X-N{i}: v" for i in range(300)], body=GOOD),
    "status-2000": raw_reply("HTTP/1.1 2000 OK", CT, CC, body=GOOD),
    "status-missing": raw_reply("HTTP/1.1 OK", CT, CC, body=GOOD),
    "status-negative": raw_reply("HTTP/1.1 -200 OK", CT, CC, body=GOOD),
    "protocol-typo": raw_reply("HTP/1.1 200 OK", CT, CC, body=GOOD),
    "protocol-icy": raw_reply("ICY 200 OK", CT, CC, body=GOOD),
    "version-9.9": raw_reply("HTTP/9.9 200 OK", CT, CC, body=GOOD),
    "status-600": raw_reply("HTTP/1.1 600 Weird", CT, CC, body=GOOD),
    "cl-and-te": raw_reply(
        "HTTP/1.1 200 OK",
        CT,
        CC,
        "Transfer-Encoding: chunked",
        "Content-Length: 5",
        body=b"%x\r\n%s\r\n0\r\n\r\n" % (len(GOOD), GOOD),
        length=False,
    ),
    "two-cl": raw_reply(
        "HTTP/1.1 200 OK",
        CT,
        CC,
        f"Content-Length: {len(GOOD)}",
        f"Content-Length: {len(GOOD) + 1}",
        body=GOOD,
        length=False,
    ),
    "negative-cl": raw_reply("HTTP/1.1 200 OK", CT, CC, "Content-Length: -1", body=GOOD, length=False),
    "bad-chunk-size": raw_reply(
        "HTTP/1.1 200 OK",
        CT,
        CC,
        "Transfer-Encoding: chunked",
        body=b"zz\r\n" + GOOD + b"\r\n0\r\n\r\n",
        length=False,
    ),
    "204-with-body": raw_reply("HTTP/1.1 204 No Content", CC, body=GOOD),
    "not-http": b"this is not http\r\n\r\n",
    "status-099": raw_reply("HTTP/1.1 099 Odd", CT, CC, body=GOOD),
    "status-101": raw_reply(
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        body=b"",
        length=False,
    ),
    # A lenient parser would start a new header at a bare LF inside a value (response
    # splitting); llhttp's strict default, which proxy/http1.py keeps, refuses it.
    "header-bare-lf": raw_reply("HTTP/1.1 200 OK", CT, CC, "X-A: a\nSet-Cookie: evil=1", body=GOOD),
}


@pytest.fixture
async def raw_origin() -> AsyncIterator[RawOrigin]:
    o = await RawOrigin().start()
    yield o
    await o.close()


async def bad_upstream_case(
    live: Start, raw_origin: RawOrigin, clock: FakeClock, raw: bytes, with_copy: bool
) -> None:
    proxy = await live(url=raw_origin.url)
    if with_copy:
        raw_origin.always(raw_reply("HTTP/1.1 200 OK", CT, "Cache-Control: max-age=1", body=GOOD))
        assert (await proxy.get("/api/prices/A1")).status == 200
        clock.advance(5)  # past freshness, within stale-if-error
    raw_origin.always(raw, CLOSE)
    answer = await proxy.get("/api/prices/A1")
    assert answer.header("Set-Cookie") is None and "x-a" not in answer.names()
    if with_copy:  # the last good copy, stale, served while a refresh runs
        assert (answer.status, answer.header("X-Cache"), answer.body) == (
            200,
            "UPDATING",
            GOOD,
        )  # stale, a refresh running
    else:
        assert answer.status == 502, answer
        assert json.loads(answer.body)["error"] in ("upstream_error", "upstream_status")
    stored = [e for _, e in proxy.state.store.items()]
    assert all(e.body == GOOD and e.status == 200 for e in stored)  # nothing bad was stored
    raw_origin.always(raw_reply("HTTP/1.1 200 OK", CT, CC, body=b'{"sku": "A1", "fixed": true}'))
    if with_copy:
        clock.advance(3600)  # past stale-if-error: only the vendor's answer will do
    fixed = await proxy.get("/api/prices/A1")
    assert (fixed.status, fixed.header("X-Cache"), json.loads(fixed.body)) == (
        200,
        "MISS",
        {"sku": "A1", "fixed": True},
    )


@pytest.mark.parametrize("with_copy", [False, True], ids=["no-copy", "with-copy"])
@pytest.mark.parametrize("case", BAD_UPSTREAM)
async def test_a_broken_upstream_answer_is_a_clean_502_and_never_stored(
    live: Start, raw_origin: RawOrigin, clock: FakeClock, case: str, with_copy: bool
) -> None:
    await bad_upstream_case(live, raw_origin, clock, BAD_UPSTREAM[case], with_copy)


async def test_obs_fold_from_upstream_is_refused(live: Start, raw_origin: RawOrigin) -> None:
    """RFC 9112 5.2 lets a proxy discard a response with obs-fold and answer 502 (the strict
    parser does): no header appears from it, and nothing is stored."""
    raw_origin.always(raw_reply("HTTP/1.1 200 OK", CT, CC, "X-A: a\r\n Set-Cookie: evil=1", body=GOOD))
    proxy = await live(url=raw_origin.url)
    for _ in range(2):
        answer = await proxy.get("/api/prices/A1")
        assert answer.status == 502 and answer.header("Set-Cookie") is None
    assert len(proxy.state.store) == 0


# -- the admin API is not on the public port ----------------------------------------------------


@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("GET", "/metrics"),
        ("GET", "/status"),
        ("GET", "/health"),
        ("GET", "/ready"),
        ("GET", "/config"),
        ("POST", "/purge"),
        ("POST", "/reload"),
        ("POST", "/breakers/vendor/open"),
        ("GET", "/quarantine"),
        ("GET", "/admin"),
        ("GET", "/api/metrics"),
        ("DELETE", "/purge"),
    ],
)
async def test_admin_paths_do_not_exist_on_the_public_port(
    live: Start, origin: Origin, method: str, target: str
) -> None:
    proxy = await live()
    answer = await proxy.send(
        request(method, target, "Authorization: Bearer guess", "Content-Length: 2", body="{}")
    )
    assert answer.status == 404 and json.loads(answer.body)["error"] == "no_route"
    assert b"rproxy_" not in answer.body
    assert origin.count() == 0
