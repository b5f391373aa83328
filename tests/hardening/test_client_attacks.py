"""Stop 28, client-side attacks: raw bytes against the public listener, as an attacker sends them.

The cases `test_attacks` (smuggling, open proxy, traversal, limits, slow clients), `test_fuzz` and
`tests/listener/test_protocol.py` already cover are not repeated here. Each case checks what the
attacker gets, what the origin saw, and that an honest request still works after.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import struct

import pytest

from proxy.framing import SLICE
from proxy.pipeline import MAX_PIPELINE
from tests.hardening import test_attacks
from tests.hardening.rawhttp import request
from tests.hardening.test_attacks import (
    POST,
    PRICE,
    SMUGGLED,
    Start,
    assert_healthy,
    cached,
)
from tests.loops import event_loop_policy  # noqa: F401  (a fixture: every case on both loops)
from tests.origin import Origin, Reply
from tests.waiting import until

# The attack suite's fixtures, under their own names: the real app on a FakeClock behind PublicSite.
exits, live = test_attacks.exits, test_attacks.live
pytestmark = pytest.mark.filterwarnings('ignore:Overriding the "event_loop_policy" fixture')

GET = "GET /api/prices/A1 HTTP/1.1\r\nHost: x\r\n"
CHUNKED_ABC = "\r\n\r\n3\r\nabc\r\n0\r\n\r\n"


def chunked(codings: str, body: str = "3\r\nabc\r\n0\r\n\r\n") -> str:
    return POST + codings + "\r\n\r\n" + body + SMUGGLED


# -- refused, the connection closed, nothing forwarded ----------------------------------------------

REFUSED = {
    # Transfer-Encoding (RFC 9112 6.1, 7): chunked once and last, and nothing we would not decode
    "te-chunked-identity": (chunked("Transfer-Encoding: chunked, identity"), 400),
    "te-chunked-trailing-comma": (chunked("Transfer-Encoding: chunked,"), 400),
    "te-empty": (chunked("Transfer-Encoding: "), 400),
    "te-chunked-tab": (chunked("Transfer-Encoding: chunked\t"), 400),
    "te-identity-chunked": (chunked("Transfer-Encoding: identity, chunked"), 501),
    "te-gzip-chunked": (chunked("Transfer-Encoding: gzip, chunked"), 501),
    "te-gzip-then-chunked-lines": (chunked("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked"), 501),
    # Content-Length (RFC 9112 6.3, RFC 9110 8.6): 1*DIGIT, one value
    "cl-minus": (POST + "Content-Length: -3\r\n\r\nabc" + SMUGGLED, 400),
    "cl-empty": (POST + "Content-Length: \r\n\r\nabc" + SMUGGLED, 400),
    "cl-inner-space": (POST + "Content-Length: 1 2\r\n\r\nabcdefghijkl" + SMUGGLED, 400),
    "cl-19-digits": (POST + "Content-Length: 9223372036854775807\r\n\r\nabc" + SMUGGLED, 400),
    "cl-huge": (POST + "Content-Length: " + "9" * 40 + "\r\n\r\nabc" + SMUGGLED, 400),
    # chunk lines (RFC 9112 7.1)
    "chunk-size-2**64": (chunked("Transfer-Encoding: chunked", "1" + "0" * 16 + "\r\nabc\r\n0\r\n\r\n"), 400),
    "chunk-size-0X": (chunked("Transfer-Encoding: chunked", "0X3\r\nabc\r\n0\r\n\r\n"), 400),
    "chunk-ext-open-quote": (chunked("Transfer-Encoding: chunked", '3;a="b\r\nabc\r\n0\r\n\r\n'), 400),
    "chunk-ext-quote-over-crlf": (
        chunked("Transfer-Encoding: chunked", '3;a="b\r\nc"\r\nabc\r\n0\r\n\r\n'),
        400,
    ),
    "chunk-data-bare-lf": (chunked("Transfer-Encoding: chunked", "3\r\nabc\n0\r\n\r\n"), 400),
    "last-chunk-bare-lf": (chunked("Transfer-Encoding: chunked", "3\r\nabc\r\n0\n\r\n"), 400),
    "trailer-bare-lf": (chunked("Transfer-Encoding: chunked", "3\r\nabc\r\n0\r\nX: y\n\r\n"), 400),
    "trailer-content-length": (
        chunked("Transfer-Encoding: chunked", "3\r\nabc\r\n0\r\nContent-Length: 50\r\n\r\n"),
        400,
    ),
    # field names and values (RFC 9110 5.1, 5.5; RFC 9112 5.1)
    "nul-in-name": (GET + "X-\x00A: b\r\n\r\n", 400),
    "cr-in-name": (GET + "X-\rA: b\r\n\r\n", 400),
    "del-in-name": (GET + "X-\x7fA: b\r\n\r\n", 400),
    "del-in-value": (GET + "X-A: a\x7fb\r\n\r\n", 400),
    "ctl-in-value": (GET + "X-A: a\x01b\r\n\r\n", 400),
    "space-before-colon": (GET + "X-A : b\r\n\r\n", 400),
    "tab-before-colon": (GET + "X-A\t: b\r\n\r\n", 400),
    "empty-name": (GET + ": b\r\n\r\n", 400),
    "no-colon": (GET + "X-A b\r\n\r\n", 400),
    "first-field-indented": (GET.replace("\r\nHost", "\r\n Host") + "\r\n", 400),
    # the request line (RFC 9112 3)
    "tab-after-method": ("GET\t/api/prices/A1 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "tab-before-version": ("GET /api/prices/A1\tHTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "space-after-version": ("GET /api/prices/A1 HTTP/1.1 \r\nHost: x\r\n\r\n", 400),
    "lower-case-method": ("get /api/prices/A1 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "unknown-method": ("FOO /api/prices/A1 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "http-1.2": ("GET /api/prices/A1 HTTP/1.2\r\nHost: x\r\n\r\n", 400),
    "http-01.1": ("GET /api/prices/A1 HTTP/01.1\r\nHost: x\r\n\r\n", 400),
    "target-query-only": ("GET ? HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    # Host (RFC 9112 3.2): exactly one on HTTP/1.1, at most one on 1.0, and a valid one
    "no-host": ("GET /api/prices/A1 HTTP/1.1\r\n\r\n" + SMUGGLED, 400),
    "two-hosts": ("GET /api/prices/A1 HTTP/1.1\r\nHost: x\r\nHost: evil.example\r\n\r\n" + SMUGGLED, 400),
    "two-equal-hosts": ("GET /api/prices/A1 HTTP/1.1\r\nHost: x\r\nHost: x\r\n\r\n" + SMUGGLED, 400),
    "two-hosts-http-1.0": ("GET /api/prices/A1 HTTP/1.0\r\nHost: x\r\nHost: y\r\n\r\n", 400),
    "host-list": ("GET /api/prices/A1 HTTP/1.1\r\nHost: x, evil.example\r\n\r\n" + SMUGGLED, 400),
    "host-userinfo": ("GET /api/prices/A1 HTTP/1.1\r\nHost: x@evil.example\r\n\r\n" + SMUGGLED, 400),
    "host-path": ("GET /api/prices/A1 HTTP/1.1\r\nHost: evil.example/x\r\n\r\n" + SMUGGLED, 400),
    "host-space": ("GET /api/prices/A1 HTTP/1.1\r\nHost: evil example\r\n\r\n" + SMUGGLED, 400),
}


@pytest.mark.parametrize("case", REFUSED)
async def test_malformed_requests_are_refused_closed_and_never_forwarded(
    live: Start, origin: Origin, case: str
) -> None:
    origin.always("/prices/A1", cached())
    origin.always("/prices/SMUGGLED", cached({"smuggled": True}))
    proxy = await live()
    raw, status = REFUSED[case]
    client = await proxy.connect()
    await client.send(raw)
    answer = await client.response()
    assert answer.status == status, answer
    assert json.loads(answer.body)["error"] and "evil" not in answer.body.decode()
    assert await client.closed(2.0), "the connection must not stay open for what follows"
    await client.close()
    assert origin.count() == 0, [s.path for s in origin.seen]
    await assert_healthy(proxy, origin)


# -- accepted: lawful spellings the strict parse must not refuse ------------------------------------

ACCEPTED = {
    "cl-leading-ows": POST + "Content-Length:   3\r\n\r\nabc",
    "cl-trailing-ows": POST + "Content-Length: 3 \t\r\n\r\nabc",
    "cl-leading-zeros": POST + "Content-Length: 0003\r\n\r\nabc",
    "te-trailing-ows": POST + "Transfer-Encoding: chunked " + CHUNKED_ABC,
    "te-upper-case": POST + "Transfer-Encoding: CHUNKED" + CHUNKED_ABC,
    "te-empty-list-element": POST + "Transfer-Encoding: , chunked" + CHUNKED_ABC,  # RFC 9110 5.6.1
    "chunk-size-leading-zeros": POST
    + "Transfer-Encoding: chunked\r\n\r\n"
    + "0" * 16
    + "3\r\nabc\r\n0\r\n\r\n",
    "chunk-ext-100-kb": POST
    + "Transfer-Encoding: chunked\r\n\r\n3;"
    + "e" * 100_000
    + "\r\nabc\r\n0\r\n\r\n",
    "chunk-ext-many": POST + "Transfer-Encoding: chunked\r\n\r\n3" + ";e=1" * 10_000 + "\r\nabc\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("case", ACCEPTED)
async def test_lawful_framing_spellings_pass_with_the_body_intact(
    live: Start, origin: Origin, case: str
) -> None:
    origin.always("/prices/A1", cached({"ok": True}))
    proxy = await live()
    client = await proxy.connect()
    await client.send(ACCEPTED[case].replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n", 1) + SMUGGLED)
    answer = await client.response()
    assert answer.status == 200 and json.loads(answer.body) == {"ok": True}, answer
    assert await client.rest(2.0) == b""  # closed, and what followed was never read
    await client.close()
    assert [(s.method, s.path, s.body) for s in origin.seen] == [("POST", "/prices/A1", b"abc")]


# -- Connection: close wins (RFC 9112 9.3), and HTTP/1.0 keep-alive ----------------------------------

ONE_ANSWER = {
    "1.1-close-keep-alive": "GET /api/prices/A1 HTTP/1.1\r\nHost: x\r\nConnection: close, keep-alive\r\n\r\n",
    "1.1-keep-alive-close": "GET /api/prices/A1 HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, close\r\n\r\n",
    "1.1-two-lines": (
        "GET /api/prices/A1 HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n"
    ),
    "1.0-plain": "GET /api/prices/A1 HTTP/1.0\r\n\r\n",
    "1.0-keep-alive-close": "GET /api/prices/A1 HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
    "1.0-close-keep-alive": "GET /api/prices/A1 HTTP/1.0\r\nConnection: Close, Keep-Alive\r\n\r\n",
    "1.0-two-lines": "GET /api/prices/A1 HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n",
}


@pytest.mark.parametrize("case", ONE_ANSWER)
async def test_close_among_the_connection_options_closes(live: Start, origin: Origin, case: str) -> None:
    """Whatever else `Connection` says, `close` ends the connection after this answer: the request
    pipelined behind it is never read, so never forwarded."""
    origin.always("/prices/A1", cached())
    origin.always("/prices/SMUGGLED", cached({"smuggled": True}))
    proxy = await live()
    client = await proxy.connect()
    await client.send(ONE_ANSWER[case] + SMUGGLED)
    answer = await client.response()
    assert answer.status == 200 and json.loads(answer.body) == PRICE
    assert (answer.header("connection") or "").lower() == "close", answer
    assert await client.rest(2.0) == b""
    await client.close()
    assert [s.path for s in origin.seen] == ["/prices/A1"]


@pytest.mark.parametrize("spelling", ["keep-alive", "Keep-Alive", "KEEP-ALIVE"])
async def test_http_1_0_keep_alive_keeps_the_connection_for_the_next_request(
    live: Start, origin: Origin, spelling: str
) -> None:
    """RFC 9112 9.3: an HTTP/1.0 `keep-alive` is honoured, however spelled; a POST with no length
    has an empty body (6.3), so what follows it is the next request, answered in order."""
    origin.always("/prices/A1", cached())
    origin.always("/prices/B2", cached({**PRICE, "sku": "B2"}))
    proxy = await live()
    client = await proxy.connect()
    await client.send(
        f"POST /api/prices/A1 HTTP/1.0\r\nConnection: {spelling}\r\n\r\n"
        f"GET /api/prices/B2 HTTP/1.0\r\nConnection: {spelling}\r\n\r\n"
        + request("GET", "/api/prices/A1", version="HTTP/1.0", close=False).decode()
    )
    first, second, third = await client.response(), await client.response(), await client.response()
    assert [first.status, second.status, third.status] == [200, 200, 200]
    assert [a.header("connection") for a in (first, second)] == ["keep-alive", "keep-alive"]
    assert json.loads(second.body)["sku"] == "B2"
    assert await client.closed(2.0)  # the third asked for no keep-alive
    await client.close()
    assert [(s.method, s.path, s.body) for s in origin.seen] == [
        ("POST", "/prices/A1", b""),
        ("GET", "/prices/B2", b""),
        ("GET", "/prices/A1", b""),
    ]


# -- floods and odd connection lifetimes -----------------------------------------------------------


async def test_a_flood_of_pipelined_requests_is_parsed_no_further_than_the_queue_mark(
    live: Start, origin: Origin
) -> None:
    """10,000 requests in one write while the first is a slow miss: the proxy parses up to its
    pipeline mark (one slice past it at most) and stops reading, rather than holding a Request for
    every head of a 256 KB read; once the vendor answers, all 10,000 are answered, in order."""
    hold = asyncio.Event()
    origin.always("/prices/A1", Reply(200, PRICE, cached().headers, hold=hold))
    proxy = await live()
    client = await proxy.connect()
    one = b"GET /api/prices/A1 HTTP/1.1\r\nHost:x\r\n\r\n"
    await client.send(one * 10_000)
    await origin.reached("/prices/A1", 1)
    (conn,) = proxy.served.guard.connections
    await until(lambda: not conn.reading, what="the proxy stops reading")
    assert len(conn._pipe.queue) <= MAX_PIPELINE + SLICE // len(one) + 1
    hold.set()
    for _ in range(10_000):
        answer = await client.response()
        assert answer.status == 200 and json.loads(answer.body) == PRICE
    await client.close()
    assert origin.count() == 1  # one miss, then hits
    await assert_healthy(proxy, origin)


async def test_a_body_refused_413_is_never_read_as_requests(live: Start, origin: Origin) -> None:
    """A POST over the route's 1 KB whose body is nothing but requests, then an honest one: the
    413, then the body is read past (never parsed as requests) and the next request is parsed at
    the right offset and answered."""
    origin.always("/prices/A1", cached())
    origin.always("/prices/SMUGGLED", cached({"smuggled": True}))
    proxy = await live()
    filler = SMUGGLED * (2048 // len(SMUGGLED) + 1)
    client = await proxy.connect()
    await client.send(
        POST + f"Content-Length: {len(filler)}\r\n\r\n" + filler + request("GET", "/api/prices/A1").decode()
    )
    refused, honest = await client.response(), await client.response()
    assert refused.status == 413 and json.loads(refused.body)["error"] == "payload_too_large"
    assert honest.status == 200 and json.loads(honest.body) == PRICE
    assert await client.rest(2.0) == b""
    await client.close()
    assert [s.path for s in origin.seen] == ["/prices/A1"]


async def test_a_large_body_refused_413_is_not_read_the_connection_closes(
    live: Start, origin: Origin
) -> None:
    """64 MB announced on a 1 KB route: 413 at once, and the connection closes rather than read
    (or parse) what follows: the client's next bytes reach no one."""
    origin.always("/prices/A1", cached())
    proxy = await live()
    client = await proxy.connect()
    await client.send(POST + f"Content-Length: {64 << 20}\r\n\r\n" + "x" * 1000 + SMUGGLED)
    answer = await client.response()
    assert answer.status == 413 and answer.header("connection") == "close", answer  # it says so
    assert await client.closed(2.0)
    await client.close()
    assert origin.count() == 0
    await assert_healthy(proxy, origin)


async def test_expect_100_continue_on_a_body_the_route_refuses_is_413_without_reading_it(
    live: Start, origin: Origin
) -> None:
    proxy = await live()
    client = await proxy.connect()
    await client.send(POST + f"Content-Length: {64 << 20}\r\nExpect: 100-continue\r\n\r\n")
    answer = await client.response()
    assert answer.status == 413, answer  # no 100 Continue first: the body is never asked for
    assert await client.closed(2.0)
    await client.close()
    assert origin.count() == 0
    await assert_healthy(proxy, origin)


@pytest.mark.parametrize("requests", [1, 3])
async def test_a_client_that_half_closes_after_its_requests_still_gets_every_answer(
    live: Start, origin: Origin, requests: int
) -> None:
    """RFC 9112 9.6: the client shuts its write side right after sending (the vendor still
    thinking); each answer is still delivered, in order, then the proxy closes."""
    hold = asyncio.Event()
    origin.always("/prices/A1", Reply(200, PRICE, {"Content-Type": "application/json"}, hold=hold))
    proxy = await live()
    client = await proxy.connect()
    await client.send(request("GET", "/api/prices/A1", close=False) * requests)
    client.writer.write_eof()
    await origin.reached("/prices/A1", 1)
    hold.set()
    for _ in range(requests):
        answer = await client.response()
        assert answer.status == 200 and json.loads(answer.body) == PRICE
    assert await client.closed(2.0)
    await client.close()
    assert origin.count() == 1  # the first was stored (the route's ttl); the others are hits


async def test_a_client_that_resets_mid_answer_leaves_no_error_storm_and_the_fetch_completes(
    live: Start, origin: Origin, caplog: pytest.LogCaptureFixture
) -> None:
    """A miss with a 4 MB answer; the client reads its first bytes and resets (RST). The proxy
    logs no error for it, the connection is released, and the vendor's answer was still stored
    whole: the next client is served it from the cache."""
    big = {"sku": "BIG", "items": ["x" * 100] * 40_000}
    origin.always("/prices/BIG", cached(big))
    proxy = await live()
    client = await proxy.connect()
    await client.send(request("GET", "/api/prices/BIG", close=False))
    with caplog.at_level(logging.INFO):
        assert await client.reader.readexactly(1024)
        sock = client.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.writer.transport.abort()
        await until(lambda: not proxy.served.guard.connections, what="the connection is released")
        answer = await proxy.get("/api/prices/BIG")
    assert answer.status == 200 and json.loads(answer.body) == big
    assert origin.count() == 1
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    await assert_healthy(proxy, origin)


@pytest.mark.parametrize(("lines", "ended"), [(10_000, True), (20_000, False)])
async def test_thousands_of_tiny_header_lines_are_431(
    live: Start, origin: Origin, lines: int, ended: bool
) -> None:
    """10,000 `X: v` lines (60 KB, within the 64 KB head): 431 once the head ends (over the
    handler's 100 fields), and the connection goes on. 20,000 that never end: 431 at the head
    limit, not 408 at the header deadline (10 s), and closed. Neither reaches the vendor."""
    proxy = await live()
    client = await proxy.connect()
    await client.send(GET + "X: v\r\n" * lines + ("\r\n" if ended else ""))
    answer = await client.response(timeout=5.0)
    assert answer.status == 431, answer
    if ended:  # a whole head, framed as any other: the connection carries on at the right offset
        origin.always("/prices/A1", cached())
        await client.send(request("GET", "/api/prices/A1"))
        assert json.loads((await client.response()).body) == PRICE
        assert [s.path for s in origin.seen] == ["/prices/A1"]
    else:
        assert await client.closed(2.0)
        assert origin.count() == 0
    await client.close()
    await assert_healthy(proxy, origin)


async def test_a_chunked_get_is_framed_like_any_request(live: Start, origin: Origin) -> None:
    """Transfer-Encoding on a GET: its body is read (and not forwarded), and what follows the
    last chunk is the next request, answered in order, not a hidden one."""
    origin.always("/prices/A1", cached())
    origin.always("/prices/SMUGGLED", cached({"smuggled": True}))
    proxy = await live()
    client = await proxy.connect()
    await client.send(GET + "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" + SMUGGLED)
    first, second = await client.response(), await client.response()
    assert json.loads(first.body) == PRICE and json.loads(second.body) == {"smuggled": True}
    await client.close()
    assert [(s.method, s.path, s.body) for s in origin.seen] == [
        ("GET", "/prices/A1", b""),
        ("GET", "/prices/SMUGGLED", b""),
    ]


@pytest.mark.parametrize(
    ("line", "status", "forwarded"),
    [
        # RFC 9112 3: a recipient MAY split on whitespace; we forward our own single-space line
        ("GET  /api/prices/A1 HTTP/1.1", 200, "/prices/A1"),
        ("GET /api/prices/A1  HTTP/1.1", 200, "/prices/A1"),
        ("GET /api/prices/A1? HTTP/1.1", 200, "/prices/A1"),  # an empty query is no query
        ("GET /api/prices/A1#frag HTTP/1.1", 400, None),  # a fragment is never sent (RFC 9110 4.2.4)
        ("GET /api/prices/A1#/../../admin HTTP/1.1", 400, None),
        ("GET /api/prices/A1?a#x HTTP/1.1", 200, "/prices/A1?a%23x"),  # query data, sent encoded
    ],
)
async def test_odd_request_lines_reach_the_vendor_normalised_or_not_at_all(
    live: Start, origin: Origin, line: str, status: int, forwarded: str | None
) -> None:
    origin.always("/prices/A1", cached())
    proxy = await live()
    answer = await proxy.send(f"{line}\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.status == status, answer
    assert [s.path for s in origin.seen] == ([forwarded] if forwarded else [])
    await assert_healthy(proxy, origin)
