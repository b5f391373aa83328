"""Issue 8, chaos: a vendor that misbehaves, and a proxy that must keep its head.

The proxy is `build_app` on a FakeClock behind `PublicSite` on loopback; the vendor is a raw
TCP server (`RawOrigin`) or a small aiohttp app. Each fault is checked for: the status the client
gets (the last good copy where the route allows one), that nothing bad was stored (once the vendor
is fixed, the next answer is its good one), and that the proxy is healthy afterwards. The few real
delays are the vendor's (slow trickles against a 0.5 s upstream timeout) and are bounded.
SIGTERM under load runs the real `python -m proxy run` as a subprocess.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from benchmarks.procs import free_port
from proxy.app import build_app
from proxy.clock import FakeClock
from proxy.config import parse_config
from proxy.core.limits import ConnLimits
from tests.hardening.rawhttp import (
    CLOSE,
    RESET,
    Live,
    Pause,
    RawOrigin,
    Step,
    Trickle,
    raw_reply,
    request,
    serve_guarded,
)
from tests.origin import serve_in_thread
from tests.parts import Parts
from tests.routes import PRICES
from tests.waiting import until

ROOT = Path(__file__).resolve().parents[2]
GOOD = b'{"sku": "A1", "price": 9.5, "currency": "GBP"}'
FIXED = b'{"sku": "A1", "price": 9.75, "currency": "GBP"}'
CT = "Content-Type: application/json"
ROUTES = (
    """
routes:
"""
    + PRICES
    + """    cache: {ttl: 30s, stale_while_revalidate: 0s, stale_if_error: 1h}
    guards:
      - {path: $.price, gt: 0}
      - {path: $.currency, one_of: [GBP, EUR, USD]}
      - {required: [$.sku, $.price]}
  - name: catalogue
    match: /api/catalogue/{name}
    methods: [GET]
    upstream: vendor
    rewrite: /catalogue/{name}
    cache: {ttl: 30s, stale_if_error: 1h}
    guards:
      - {path: $.items, min_items: 1}
      - {path: "$.items[*].price", gt: 0}
  - name: big
    match: /api/big/{name}
    methods: [GET]
    upstream: vendor
    rewrite: /big/{name}
    cache: {ttl: 30s}
    max_object_size: 1MB
"""
)
UPSTREAM = "timeout: {connect: 500ms, total: 500ms}"

Start = Callable[..., Awaitable[Live]]


def config_text(url: str, routes: str = ROUTES, upstream: str = UPSTREAM) -> str:
    return (
        f"server: {{listen: 127.0.0.1:0}}\nlog: {{access: off}}\nupstreams:\n  vendor:\n"
        f"    url: {url}\n    retries: {{attempts: 0}}\n"
        f"{textwrap.indent(textwrap.dedent(upstream).strip(), '    ')}\n{textwrap.dedent(routes)}"
    )


@pytest.fixture
async def exits() -> AsyncIterator[contextlib.AsyncExitStack]:
    async with contextlib.AsyncExitStack() as stack:
        yield stack


@pytest.fixture
def live(exits: contextlib.AsyncExitStack, clock: FakeClock) -> Start:
    async def start(
        url: str, upstream: str = UPSTREAM, routes: str = ROUTES, limits: ConnLimits | None = None
    ) -> Live:
        config = parse_config(config_text(url, routes, upstream), "chaos.yaml", {})
        app = build_app(config, clock=clock)
        served = await exits.enter_async_context(serve_guarded(app, limits))
        return Live(served, Parts(app))

    return start


@pytest.fixture
async def raw_origin() -> AsyncIterator[RawOrigin]:
    o = await RawOrigin().start()
    yield o
    await o.close()


def ok(body: bytes = GOOD, cache_control: str = "max-age=1") -> bytes:
    return raw_reply("HTTP/1.1 200 OK", CT, f"Cache-Control: {cache_control}", body=body)


def stored_bodies(proxy: Live) -> list[bytes]:
    return [entry.body for _, entry in proxy.state.store.items()]


# -- transport faults ----------------------------------------------------------------------------

HEAD_1000 = raw_reply(
    "HTTP/1.1 200 OK", CT, "Cache-Control: max-age=60", "Content-Length: 1000", length=False
)
FAULTS: dict[str, tuple[list[Step], int]] = {
    "reset-before-answer": ([RESET], 502),
    "reset-mid-body": ([HEAD_1000 + b'{"sku": "A1", "pri', RESET], 502),
    "body-shorter-than-content-length": ([HEAD_1000 + GOOD, CLOSE], 502),
    "chunked-body-cut": (
        [
            raw_reply("HTTP/1.1 200 OK", CT, "Transfer-Encoding: chunked", length=False)
            + b"10\r\n0123456789",
            CLOSE,
        ],
        502,
    ),
    "garbage": ([b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n", CLOSE], 502),
    "empty-answer": ([CLOSE], 502),
    "hang": ([Pause(5.0)], 504),
    "slow-trickle-of-the-head": ([Trickle(ok(cache_control="max-age=60"), 0.05)], 504),
    "slow-trickle-of-the-body": ([HEAD_1000, Trickle(b"x" * 1000, 0.05)], 504),
    "stall-mid-body": ([HEAD_1000 + b'{"sku"', Pause(5.0)], 504),
}


@pytest.mark.parametrize("with_copy", [False, True], ids=["no-copy", "with-copy"])
@pytest.mark.parametrize("fault", FAULTS)
async def test_a_misbehaving_vendor(
    live: Start, raw_origin: RawOrigin, clock: FakeClock, fault: str, with_copy: bool
) -> None:
    steps, status = FAULTS[fault]
    proxy = await live(raw_origin.url)
    if with_copy:
        raw_origin.always(ok())
        assert (await proxy.get("/api/prices/A1")).body == GOOD
        clock.advance(5)  # stale now, within stale-if-error
    raw_origin.always(*steps)
    # The stalls outlast the upstream timeout (0.5 s): without a copy their 504 says it fired.
    answer = await proxy.get("/api/prices/A1")
    if with_copy:
        assert (answer.status, answer.header("X-Cache"), answer.body) == (200, "STALE", GOOD)
    else:
        assert answer.status == status, answer
        assert answer.header("Content-Type") == "application/json"
        assert json.loads(answer.body)["upstream"] == "vendor"
    assert all(body == GOOD for body in stored_bodies(proxy))  # nothing bad was stored
    raw_origin.always(ok(FIXED))
    clock.advance(7200)  # past stale-if-error: only the vendor's answer will do
    fixed = await proxy.get("/api/prices/A1")
    assert (fixed.status, fixed.header("X-Cache"), fixed.body) == (200, "MISS", FIXED)


async def test_faults_in_a_row_never_take_the_proxy_down(live: Start, raw_origin: RawOrigin) -> None:
    proxy = await live(raw_origin.url, upstream=UPSTREAM + "\ncircuit_breaker: {minimum_calls: 1000}")
    for steps, status in FAULTS.values():
        if status == 504:
            continue  # the slow ones are covered above
        raw_origin.always(*steps)
        assert (await proxy.get("/api/prices/A1")).status == status
    raw_origin.always(ok(FIXED))
    assert (await proxy.get("/api/prices/A1")).body == FIXED


async def test_an_absurd_retry_after_does_not_silence_the_vendor_for_a_year(
    live: Start, raw_origin: RawOrigin, clock: FakeClock
) -> None:
    proxy = await live(raw_origin.url)
    raw_origin.always(raw_reply("HTTP/1.1 429 Too Many Requests", "Retry-After: 31536000"), CLOSE)
    assert (await proxy.get("/api/prices/A1")).status >= 500
    raw_origin.always(ok(FIXED))
    clock.advance(3600)  # an hour later the vendor is fine again
    answer = await proxy.get("/api/prices/A1")
    assert (answer.status, answer.body) == (200, FIXED)


# -- bad data: zero prices, empty catalogues, and the JSON around them ---------------------------------

# What tests/integration/test_guards_flow.py does not already cover.
BAD_DATA = [
    ("price null", "/api/prices/A1", b'{"sku": "A1", "price": null, "currency": "GBP"}'),
    ("price as a string", "/api/prices/A1", b'{"sku": "A1", "price": "9.5", "currency": "GBP"}'),
    ("price negative", "/api/prices/A1", b'{"sku": "A1", "price": -9.5, "currency": "GBP"}'),
    ("price -0.0", "/api/prices/A1", b'{"sku": "A1", "price": -0.0, "currency": "GBP"}'),
    ("price NaN", "/api/prices/A1", b'{"sku": "A1", "price": NaN, "currency": "GBP"}'),
    ("price a boolean", "/api/prices/A1", b'{"sku": "A1", "price": true, "currency": "GBP"}'),
    ("price missing", "/api/prices/A1", b'{"sku": "A1", "currency": "GBP"}'),
    (
        "the last of two price keys is zero",
        "/api/prices/A1",
        b'{"sku": "A1", "price": 9.5, "price": 0, "currency": "GBP"}',
    ),
    ("top-level array", "/api/prices/A1", b"[]"),
    ("top-level null", "/api/prices/A1", b"null"),
    ("empty body", "/api/prices/A1", b""),
    ("nested 100000 deep", "/api/prices/A1", b"[" * 100_000 + b"]" * 100_000),
    ("items null", "/api/catalogue/all", b'{"items": null}'),
    ("items an object", "/api/catalogue/all", b'{"items": {}}'),
    ("items a string", "/api/catalogue/all", b'{"items": "[]"}'),
    ("items missing", "/api/catalogue/all", b"{}"),
    ("an item without a price", "/api/catalogue/all", b'{"items": [{"sku": "S1"}]}'),
]
BAD_DATA_GAPS = [
    ("price Infinity", "/api/prices/A1", b'{"sku": "A1", "price": Infinity, "currency": "GBP"}'),
    ("price 1e999", "/api/prices/A1", b'{"sku": "A1", "price": 1e999, "currency": "GBP"}'),
]
GAP = (
    "proxy/core/guards.py check_body: json.loads accepts Infinity and 1e999 (float inf), so `gt: 0` "
    "passes a price no browser can parse (JSON.parse rejects Infinity) or that means nothing"
)
GOOD_DOCS = {"/api/prices/A1": GOOD, "/api/catalogue/all": b'{"items": [{"sku": "S1", "price": 1.5}]}'}


async def bad_data_case(live: Start, raw_origin: RawOrigin, clock: FakeClock, path: str, body: bytes) -> None:
    proxy = await live(raw_origin.url)
    good = GOOD_DOCS[path]
    raw_origin.always(ok(good))
    assert (await proxy.get(path)).body == good
    clock.advance(5)
    raw_origin.always(ok(body))
    answer = await proxy.get(path)
    assert (answer.status, answer.header("X-Cache"), answer.body) == (200, "STALE", good)
    assert "guard" in (answer.header("Cache-Status") or "")
    assert all(b == good for b in stored_bodies(proxy))
    proxy.state.store.clear()  # the same bad answer with no copy to fall back on: a 502, not the data
    cold = await proxy.get(path)
    assert cold.status == 502 and json.loads(cold.body)["error"] == "upstream_data_rejected"


@pytest.mark.parametrize(("case", "path", "body"), BAD_DATA, ids=[c[0] for c in BAD_DATA])
async def test_bad_data_is_never_stored_or_shown(
    live: Start, raw_origin: RawOrigin, clock: FakeClock, case: str, path: str, body: bytes
) -> None:
    await bad_data_case(live, raw_origin, clock, path, body)


@pytest.mark.parametrize(("case", "path", "body"), BAD_DATA_GAPS, ids=[c[0] for c in BAD_DATA_GAPS])
async def test_non_finite_prices_are_rejected(
    live: Start, raw_origin: RawOrigin, clock: FakeClock, case: str, path: str, body: bytes
) -> None:
    await bad_data_case(live, raw_origin, clock, path, body)


# -- a very large body ---------------------------------------------------------------------------------

BIG = 64 << 20
PIECE = bytes(range(256)) * 4096  # 1 MB


async def big_vendor(request: web.Request) -> web.StreamResponse:
    """64 MB, streamed a megabyte at a time; `/big/cut` resets the connection half way."""
    resp = web.StreamResponse(
        headers={
            "Content-Type": "application/octet-stream",
            "Cache-Control": "max-age=60",
            "Content-Length": str(BIG),
        }
    )
    await resp.prepare(request)
    for i in range(BIG // len(PIECE)):
        if request.match_info["name"] == "cut" and i == 10:
            assert request.transport is not None
            request.transport.abort()
            return resp
        await resp.write(PIECE)
    await resp.write_eof()
    return resp


@pytest.fixture
async def big_origin(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> str:
    app = web.Application()
    app.router.add_get("/big/{name}", big_vendor)
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/")


async def test_a_64mb_body_streams_through_in_bounded_memory_and_is_not_stored(
    live: Start, big_origin: str
) -> None:
    """The 1 GB case is the soak's (`python -m benchmarks.soak --gigabyte`): the same path, longer."""
    proxy = await live(big_origin, upstream="timeout: {connect: 1s, total: 60s}")
    digest, expected = hashlib.sha256(), hashlib.sha256()
    for _ in range(BIG // len(PIECE)):
        expected.update(PIECE)
    received = 0
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{proxy.port}/api/big/file") as resp,
        ):
            assert resp.status == 200 and resp.headers["X-Cache"] == "MISS"
            async for chunk in resp.content.iter_chunked(1 << 16):
                digest.update(chunk)
                received += len(chunk)
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()
    assert received == BIG and digest.digest() == expected.digest()
    assert peak < 16 << 20, f"peak {peak / 2**20:.1f} MB for a 64 MB body"
    assert len(proxy.state.store) == 0  # over max_object_size: relayed, never stored


async def test_a_large_body_cut_half_way_is_not_stored_and_the_proxy_carries_on(
    live: Start, big_origin: str
) -> None:
    proxy = await live(big_origin, upstream="timeout: {connect: 1s, total: 60s}")
    received = 0
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientPayloadError):
            async with session.get(f"http://127.0.0.1:{proxy.port}/api/big/cut") as resp:
                assert resp.status == 200  # the status line had gone before the vendor broke
                async for chunk in resp.content.iter_chunked(1 << 16):
                    received += len(chunk)
    assert 0 < received < BIG
    assert len(proxy.state.store) == 0
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{proxy.port}/api/big/file") as resp,
    ):
        assert resp.status == 200 and len(await resp.read()) == BIG


async def test_a_client_that_stops_reading_a_large_body_is_cut_and_the_vendor_let_go(
    live: Start, aiohttp_server: Callable[..., Awaitable[TestServer]]
) -> None:
    """`send_timeout`: a client takes the first bytes of a 64 MB relay, then nothing. Its
    connection is reset once the deadline passes (a real timer here, as the other listener
    deadlines in tests/hardening), and the vendor's connection, paused behind it, is closed
    rather than kept or pooled half-read."""
    let_go = asyncio.Event()

    async def vendor(request: web.Request) -> web.StreamResponse:
        try:
            return await big_vendor(request)
        except (ConnectionError, asyncio.CancelledError):  # aiohttp cancels it when we close
            let_go.set()
            raise

    async def price(request: web.Request) -> web.Response:
        return web.Response(body=GOOD, content_type="application/json")

    app = web.Application()
    app.router.add_get("/big/{name}", vendor)
    app.router.add_get("/prices/{sku}", price)
    server = await aiohttp_server(app)
    proxy = await live(
        str(server.make_url("")).rstrip("/"),
        upstream="timeout: {connect: 1s, total: 60s}",
        limits=ConnLimits(send_timeout=0.5),
    )
    client = await proxy.connect()
    await client.send(request("GET", "/api/big/file"))
    assert (await client.reader.readexactly(1 << 16))[:15] == b"HTTP/1.1 200 OK"
    client.writer.transport.pause_reading()  # type: ignore[attr-defined]
    guard = proxy.served.guard
    await until(lambda: guard.stats.send_timeouts == 1, what="the client was cut")
    await asyncio.wait_for(let_go.wait(), 10)  # the vendor's write failed: we closed on it
    client.writer.transport.resume_reading()  # type: ignore[attr-defined]
    assert await client.closed()
    assert guard.slow_total.value(("send",)) == 1 and len(proxy.state.store) == 0
    assert (await proxy.get("/api/prices/A1")).body == GOOD  # the proxy carries on


# -- DNS and TLS ---------------------------------------------------------------------------------------

FALLBACK_ROUTES = (
    ROUTES
    + """
  - name: quotes
    match: /api/quotes/{sku}
    methods: [GET]
    upstream: vendor
    rewrite: /quotes/{sku}
    cache: {ttl: 30s}
    fallback: {status: 503, json: {error: quotes unavailable}}
"""
)


async def test_dns_failure_is_a_fast_502_and_the_fallback_where_configured(live: Start) -> None:
    proxy = await live(
        "http://nonexistent.invalid:8080",
        upstream="timeout: {connect: 2s, total: 3s}",
        routes=FALLBACK_ROUTES,
    )
    answer = await proxy.get("/api/prices/A1")
    # Unreachable at once, not a 504 after waiting out the 2 s connect timeout.
    assert answer.status == 502 and json.loads(answer.body)["error"] == "upstream_unreachable"
    quotes = await proxy.get("/api/quotes/Q1")
    assert (quotes.status, json.loads(quotes.body)) == (503, {"error": "quotes unavailable"})
    assert (await proxy.get("/nowhere")).status == 404  # and the proxy is still answering
    assert len(proxy.state.store) == 0


def make_cert(
    directory: Path,
    *,
    names: tuple[str, ...] = ("localhost",),
    ips: tuple[str, ...] = ("127.0.0.1",),
    expired: bool = False,
) -> tuple[Path, Path]:
    """A self-signed certificate and its key, written as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = dt.datetime.now(dt.UTC)
    start, end = (
        (now - dt.timedelta(days=30), now - dt.timedelta(days=1))
        if expired
        else (now - dt.timedelta(days=1), now + dt.timedelta(days=30))
    )
    alt = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / f"{names[0]}-{expired}.pem", directory / f"{names[0]}-{expired}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


async def tls_vendor(aiohttp_server: Callable[..., Awaitable[TestServer]], cert: Path, key: Path) -> str:
    import ssl

    async def price(request: web.Request) -> web.Response:
        return web.Response(
            body=GOOD, content_type="application/json", headers={"Cache-Control": "max-age=60"}
        )

    app = web.Application()
    app.router.add_get("/prices/{sku}", price)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    server = await aiohttp_server(app, ssl=ctx)
    return f"https://127.0.0.1:{server.port}"


@pytest.mark.parametrize(
    ("tls", "status"),
    [
        ("", 502),  # self-signed: not trusted by default
        ("tls: {ca_file: CERT}", 200),  # trusted through the private CA file
        ("tls: {verify: false}", 200),  # the explicit opt-out
        ("tls: {ca_file: OTHER}", 502),  # a CA that did not sign it
    ],
    ids=["verify-default", "ca-file", "verify-off", "wrong-ca"],
)
async def test_tls_failure_and_trust(
    live: Start, aiohttp_server: Callable[..., Awaitable[TestServer]], tmp_path: Path, tls: str, status: int
) -> None:
    cert, key = make_cert(tmp_path)
    other, _ = make_cert(tmp_path, names=("other.example",))
    url = await tls_vendor(aiohttp_server, cert, key)
    tls = tls.replace("CERT", str(cert)).replace("OTHER", str(other))
    proxy = await live(url, upstream=UPSTREAM + "\n" + tls)
    answer = await proxy.get("/api/prices/A1")
    assert answer.status == status, answer
    if status == 502:
        assert json.loads(answer.body)["error"] == "upstream_unreachable"
        assert len(proxy.state.store) == 0
    else:
        assert answer.body == GOOD


@pytest.mark.parametrize("problem", ["expired", "wrong-name"])
async def test_a_bad_certificate_is_refused_even_from_a_trusted_ca(
    live: Start, aiohttp_server: Callable[..., Awaitable[TestServer]], tmp_path: Path, problem: str
) -> None:
    cert, key = make_cert(
        tmp_path,
        expired=problem == "expired",
        names=("other.example",) if problem == "wrong-name" else ("localhost",),
        ips=() if problem == "wrong-name" else ("127.0.0.1",),
    )
    url = await tls_vendor(aiohttp_server, cert, key)
    proxy = await live(url, upstream=UPSTREAM + f"\ntls: {{ca_file: {cert}}}")
    answer = await proxy.get("/api/prices/A1")
    assert answer.status == 502 and json.loads(answer.body)["error"] == "upstream_unreachable"


async def test_the_connection_guard_also_guards_a_tls_listener(
    clock: FakeClock, raw_origin: RawOrigin, tmp_path: Path
) -> None:
    """`server.tls`: the guard sits behind the TLS layer (it sees plaintext) and a client that never
    completes its handshake is cut by the handshake timeout, which is the header timeout."""
    import ssl

    from proxy.core.limits import ConnLimits

    cert, key = make_cert(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))
    raw_origin.always(ok(cache_control="max-age=60"))
    app = build_app(parse_config(config_text(raw_origin.url), "tls.yaml", {}), clock=clock)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    from proxy.publicport import PublicSite

    site = PublicSite(
        runner, "127.0.0.1", 0, ssl_context=server_ctx, limits=ConnLimits(header_timeout=0.5, per_address=2)
    )
    await site.start()
    try:
        port = site.bound_port
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_ctx, server_hostname="localhost"
        )
        writer.write(b"GET /api/prices/A1 HTTP/1.1\r\nHost: p\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200")
        silent_r, silent_w = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_ctx, server_hostname="localhost"
        )
        shed_r, shed_w = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_ctx, server_hostname="localhost"
        )
        answer = await asyncio.wait_for(shed_r.read(), 5)  # a third from one address: 503, over TLS
        assert answer.startswith(b"HTTP/1.1 503"), answer[:80]
        answer = await asyncio.wait_for(silent_r.read(), 5)  # the silent one: 408, then the close
        assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
        for w in (writer, silent_w, shed_w):
            w.close()
        no_handshake_r, no_handshake_w = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(no_handshake_r.read(), 5) == b""  # cut, without a word
        no_handshake_w.close()
    finally:
        await runner.cleanup()


# -- SIGTERM under load: a real `python -m proxy run` ------------------------------------------------


class SlowVendor:
    """Answers every price after `delay` real seconds; counts arrivals so the test knows when all
    its requests are in flight."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.arrived = 0
        self.all_in = threading.Event()
        self.expect = 0

    async def price(self, request: web.Request) -> web.Response:
        self.arrived += 1
        if self.arrived >= self.expect:
            self.all_in.set()
        await asyncio.sleep(self.delay)
        sku = request.match_info["sku"]
        return web.json_response({"sku": sku, "price": 9.5, "currency": "GBP"})


def vendor_thread(vendor: SlowVendor) -> contextlib.AbstractContextManager[str]:
    app = web.Application()
    app.router.add_get("/prices/{sku}", vendor.price)
    return serve_in_thread(app)


def fetch(url: str) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_under_load_answers_every_request_in_flight(tmp_path: Path) -> None:
    in_flight = 48
    vendor = SlowVendor(delay=1.0)
    vendor.expect = in_flight
    port = free_port()
    with vendor_thread(vendor) as url, ThreadPoolExecutor(in_flight + 8) as pool:
        config = tmp_path / "proxy.yaml"
        config.write_text(
            textwrap.dedent(f"""\
            server: {{listen: 127.0.0.1:{port}, shutdown_grace: 15s}}
            admin: {{listen: 127.0.0.1:{free_port()}}}
            log: {{access: off}}
            upstreams:
              vendor: {{url: {url}, retries: {{attempts: 0}}, max_connections: 200,
                        timeout: {{connect: 2s, total: 10s}}}}
            routes:
              - name: prices
                match: /api/prices/{{sku}}
                methods: [GET]
                upstream: vendor
                rewrite: /prices/{{sku}}
                cache: {{ttl: 30s}}
            """)
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "proxy", "run", "--config", str(config)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            assert proc.stdout is not None
            deadline = time.monotonic() + 30
            for line in proc.stdout:  # wait for the listening line (a real event)
                if "listening on" in line or time.monotonic() > deadline:
                    break
            base = f"http://127.0.0.1:{port}/api/prices"
            futures = [pool.submit(fetch, f"{base}/K{i}") for i in range(in_flight)]
            assert vendor.all_in.wait(timeout=20), f"only {vendor.arrived} requests reached the vendor"
            proc.send_signal(signal.SIGTERM)
            answers = [f.result(timeout=30) for f in futures]
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    statuses = [status for status, _ in answers]
    assert statuses == [200] * in_flight, statuses
    assert [json.loads(body)["sku"] for _, body in answers] == [f"K{i}" for i in range(in_flight)]
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass  # and it no longer listens
