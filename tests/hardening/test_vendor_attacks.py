"""A hostile or broken vendor on the wire: heads, framing, codings and connections.

What tests/upstream/test_faults.py and test_attacks.py's BAD_UPSTREAM do not already cover. For
each attack, the three things: what the client got (the last good copy marked STALE, or a JSON
502; never the vendor's bad bytes as if fine), what is cached afterwards (a clean request gets
the vendor's next good answer), and what the vendor received (one exchange per request: nothing
retried). The proxy runs on the test's FakeClock; no test sleeps to make time pass.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator

import pytest

from proxy.clock import FakeClock
from tests.hardening.hostile import (
    CT,
    FIN,
    FIXED,
    GOOD,
    RST,
    SINK,
    Hostile,
    Proxy,
    Step,
    hostile_and_proxy,
    ok,
)
from tests.hardening.rawhttp import raw_reply, request


@pytest.fixture
async def pair(clock: FakeClock) -> AsyncIterator[tuple[Hostile, Proxy]]:
    async with hostile_and_proxy(clock) as both:
        yield both


async def refused(
    pair: tuple[Hostile, Proxy], clock: FakeClock, steps: list[Step], path: str = "/api/plain/A1"
) -> Proxy:
    """The attack answered twice: over a good copy (STALE), then cold (a JSON 502)."""
    vendor, proxy = pair
    vendor.always(ok())
    assert (await proxy.get(path)).body == GOOD
    clock.advance(5)  # past max-age=1, within stale-if-error
    vendor.always(*steps)
    answer = await proxy.get(path)
    assert (answer.status, answer.header("X-Cache"), answer.body) == (200, "STALE", GOOD), answer
    assert proxy.stored() == [GOOD]
    proxy.state.store.clear()
    cold = await proxy.get(path)
    assert cold.status == 502 and cold.header("Content-Type") == "application/json", cold
    assert json.loads(cold.body)["error"] == "upstream_error" and proxy.stored() == []
    vendor.always(ok(FIXED))
    fixed = await proxy.get(path)
    assert (fixed.status, fixed.header("X-Cache"), fixed.body) == (200, "MISS", FIXED)
    assert vendor.count() == 4  # one exchange per request: nothing retried
    return proxy


def head(status_line: str, *lines: str) -> bytes:
    return ("\r\n".join((status_line, *lines)) + "\r\n\r\n").encode("latin-1")


CHUNKED = head("HTTP/1.1 200 OK", CT, "Cache-Control: max-age=100", "Transfer-Encoding: chunked")
GOOD_CHUNK = b"%x\r\n%s\r\n" % (len(GOOD), GOOD)
LENGTH = f"Content-Length: {len(GOOD)}"

# Refused by llhttp in its strict default or by proxy/http1.py: a clean 502, nothing stored.
MALFORMED: dict[str, bytes] = {
    "chunk-size-overflow": CHUNKED + b"ffffffffffffffffff\r\nhi\r\n0\r\n\r\n",
    "content-length-in-the-trailer": CHUNKED + GOOD_CHUNK + b"0\r\nContent-Length: 3\r\n\r\n",
    "nul-in-a-value": head("HTTP/1.1 200 OK", CT, "X-A: a\x00b", LENGTH) + GOOD,
    "del-in-a-value": head("HTTP/1.1 200 OK", CT, "X-A: a\x7fb", LENGTH) + GOOD,
    "space-before-the-colon": head("HTTP/1.1 200 OK", CT, "Cache-Control : no-store", LENGTH) + GOOD,
    "obs-text-in-a-name": head("HTTP/1.1 200 OK", CT, "X-\xe9: b", LENGTH) + GOOD,
    "empty-name": head("HTTP/1.1 200 OK", CT, ": b", LENGTH) + GOOD,
    "101-without-upgrade": head("HTTP/1.1 101 Switching Protocols") + ok(),
    "lower-case-version": head("http/1.1 200 OK", CT, LENGTH) + GOOD,
    "two-spaces-before-the-status": head("HTTP/1.1  200 OK", CT, LENGTH) + GOOD,
    "transfer-encoding-identity": head("HTTP/1.1 200 OK", CT, "Transfer-Encoding: identity", LENGTH) + GOOD,
    "transfer-encoding-gzip-chunked": head("HTTP/1.1 200 OK", CT, "Transfer-Encoding: gzip, chunked")
    + GOOD_CHUNK
    + b"0\r\n\r\n",
    # RFC 9110 7.6.1: no connection option names a field meant for every recipient
    "connection-names-content-encoding": raw_reply(
        "HTTP/1.1 200 OK",
        CT,
        "Content-Encoding: gzip",
        "Connection: Content-Encoding",
        body=gzip.compress(GOOD),
    ),
    "connection-names-cache-control": raw_reply(
        "HTTP/1.1 200 OK", CT, "Cache-Control: no-store", "Connection: Cache-Control", body=GOOD
    ),
    "connection-names-vary": raw_reply(
        "HTTP/1.1 200 OK", CT, "Vary: Accept-Language", "Connection: keep-alive, Vary", body=GOOD
    ),
}


@pytest.mark.parametrize("raw", list(MALFORMED.values()), ids=list(MALFORMED))
async def test_a_malformed_head_or_framing_is_a_clean_502(
    pair: tuple[Hostile, Proxy], clock: FakeClock, raw: bytes
) -> None:
    proxy = await refused(pair, clock, [raw, FIN])
    assert sum(proxy.protocol_errors().values()) == 2  # the warm and the cold attempt, counted


async def test_a_connection_option_naming_an_end_to_end_field_is_counted_as_such(
    pair: tuple[Hostile, Proxy], clock: FakeClock
) -> None:
    # Before the fix the gzip body was stored and served as identity (binary under JSON's type),
    # a no-store answer was stored for the route's TTL and a Vary was ignored.
    proxy = await refused(pair, clock, [MALFORMED["connection-names-content-encoding"]])
    assert proxy.protocol_errors() == {"connection_option": 2}


# Odd but lawful, or harmless: accepted, stored by the head, and nothing from the oddity kept.
LAWFUL: dict[str, bytes] = {
    "no-reason-phrase": head("HTTP/1.1 200", CT, "Cache-Control: max-age=100", LENGTH) + GOOD,
    "unasked-100-continue": head("HTTP/1.1 100 Continue") + ok(cache_control="max-age=100"),
    "102-then-103-then-the-answer": head("HTTP/1.1 102 Processing")
    + head("HTTP/1.1 103 Early Hints", "Link: </a.css>; rel=preload")
    + ok(cache_control="max-age=100"),
    "a-blank-line-before-the-status": b"\r\n" + ok(cache_control="max-age=100"),
    "a-100-kb-chunk-extension": CHUNKED + b"%x;e=%s\r\n%s\r\n0\r\n\r\n" % (len(GOOD), b"x" * 100_000, GOOD),
    # trailers never reach the head (RFC 9110 6.5.1): their Set-Cookie, no-store and Vary do nothing
    "trailers-say-set-cookie-no-store-vary-star": CHUNKED
    + GOOD_CHUNK
    + b"0\r\nSet-Cookie: s=evil\r\nCache-Control: no-store\r\nVary: *\r\n\r\n",
}


@pytest.mark.parametrize("raw", list(LAWFUL.values()), ids=list(LAWFUL))
async def test_an_odd_but_lawful_answer_is_served_and_stored_as_its_head_says(
    pair: tuple[Hostile, Proxy], raw: bytes
) -> None:
    vendor, proxy = pair
    vendor.always(raw)
    client = await proxy.connect()
    try:
        await client.send(request("GET", "/api/plain/A1"))
        answer = await client.response()
        while answer.status < 200:  # interim answers are relayed (RFC 9110 15.2), then the final
            answer = await client.response()
    finally:
        await client.close()
    assert (answer.status, answer.header("X-Cache"), answer.body) == (200, "MISS", GOOD)
    assert answer.header("Set-Cookie") is None and answer.header("Vary") is None
    again = await proxy.get("/api/plain/A1")
    assert (again.header("X-Cache"), again.body) == ("HIT", GOOD)
    assert proxy.stored() == [GOOD] and vendor.count() == 1 and proxy.protocol_errors() == {}
    [(_, entry)] = proxy.state.store.items()
    assert {k.lower() for k, _ in entry.headers} <= {"content-type", "cache-control"}


CLOSE_DELIMITED = raw_reply(
    "HTTP/1.1 200 OK", CT, "Cache-Control: max-age=100", body=b'{"sku": "A1", "pri', length=False
)


async def test_a_reset_mid_close_delimited_body_is_no_end_of_it(
    pair: tuple[Hostile, Proxy], clock: FakeClock
) -> None:
    """RFC 9112 8: a body that runs to the close is complete unless the connection indicated an
    error. Before the fix a reset ended it like a FIN: the cut JSON was stored for 100 s."""
    proxy = await refused(pair, clock, [CLOSE_DELIMITED, RST])
    assert proxy.protocol_errors() == {"truncated": 2}


async def test_a_clean_close_still_ends_a_close_delimited_body(pair: tuple[Hostile, Proxy]) -> None:
    vendor, proxy = pair
    vendor.always(
        raw_reply("HTTP/1.1 200 OK", CT, "Cache-Control: max-age=100", body=GOOD, length=False), FIN
    )
    assert (await proxy.get("/api/plain/A1")).body == GOOD
    assert (await proxy.get("/api/plain/A1")).header("X-Cache") == "HIT"
    assert proxy.stored() == [GOOD] and vendor.count() == 1


async def test_a_response_then_a_reset_keeps_the_response(pair: tuple[Hostile, Proxy]) -> None:
    vendor, proxy = pair
    vendor.always(ok(cache_control="max-age=100"), RST)
    assert (await proxy.get("/api/plain/A1")).body == GOOD
    assert proxy.stored() == [GOOD] and vendor.count() == 1 and proxy.protocol_errors() == {}


async def test_an_early_answer_to_a_write_never_hands_its_connection_on(pair: tuple[Hostile, Proxy]) -> None:
    """A vendor answers 413 as soon as the head is in, keeps the connection and never reads the
    body. Before the fix the connection went back to the pool with megabytes of that body still
    to write: the next request queued behind it, for the vendor to read the body as requests;
    and a discarded connection still sent the vendor all of it (RFC 9112 9.5: cease sending)."""
    vendor, proxy = pair
    vendor.read_body = False
    vendor.always(ok(cache_control="max-age=100"))
    vendor.then(raw_reply("HTTP/1.1 413 Payload Too Large", CT, body=b'{"error": "too large"}'), SINK)
    body = b"x" * (16 << 20)  # far beyond the socket buffers: most of it is still ours to write
    client = await proxy.connect()
    try:
        await client.send(request("POST", "/api/w/A1", CT, f"Content-Length: {len(body)}", body=body))
        early = await client.response()
    finally:
        await client.close()
    assert (early.status, early.body) == (413, b'{"error": "too large"}')
    await vendor.closed_by_peer(0)  # the proxy let that connection go, the rest of the body unsent
    assert vendor.sunk < len(body) // 2
    assert (await proxy.get("/api/plain/A1")).body == GOOD  # on a connection of its own
    assert (vendor.connections, vendor.count("POST"), vendor.count("GET")) == (2, 1, 1)
    assert [s.conn for s in vendor.seen] == [0, 1]


def twice_gzipped(body: bytes) -> bytes:
    return gzip.compress(gzip.compress(body))


async def test_gzip_on_two_content_encoding_lines_is_gzip_twice(
    pair: tuple[Hostile, Proxy], clock: FakeClock
) -> None:
    """RFC 9110 5.3: two field lines are one list. Before the fix the first line alone was read:
    one gzip layer was taken off, both lines dropped, and gzip bytes were stored and served as
    identity JSON. Now it is the coding list `gzip, gzip`, which the proxy does not decode."""
    vendor, proxy = pair
    lines = ("Content-Encoding: gzip", "Content-Encoding: gzip")
    vendor.always(ok(twice_gzipped(GOOD), *lines, cache_control="max-age=100"))
    answer = await proxy.get("/api/plain/A1")
    assert answer.status == 502 and json.loads(answer.body)["error"] == "upstream_status"
    assert "gzip, gzip" in json.loads(answer.body)["message"] and proxy.stored() == []
    guarded = await proxy.get("/api/prices/A1")
    assert guarded.status == 502 and json.loads(guarded.body)["message"] == "guard: encoding at $"
    vendor.always(ok(FIXED, cache_control="max-age=100"))
    assert (await proxy.get("/api/plain/A1")).body == FIXED
    assert vendor.count() == 3


async def test_a_streamed_body_on_two_coding_lines_keeps_both_for_the_client(
    pair: tuple[Hostile, Proxy],
) -> None:
    """Too large to store, relayed: inflated for a client that did not ask for gzip only when
    the proxy can read the whole coding; `gzip, gzip` goes as sent, and says so."""
    vendor, proxy = pair
    big = json.dumps({"items": [f"{i:08x}" * 16 for i in range(2000)]}).encode()
    coded = twice_gzipped(big)
    vendor.always(ok(coded, "Content-Encoding: gzip", "Content-Encoding: gzip", cache_control="max-age=100"))
    answer = await proxy.get("/api/big/A1")  # no Accept-Encoding
    assert answer.status == 200 and answer.body == coded
    assert [v for k, v in answer.headers if k.lower() == "content-encoding"] == ["gzip", "gzip"]
    assert proxy.stored() == [] and vendor.count() == 1


GZ = gzip.compress(GOOD)
UNREADABLE_CODINGS: dict[str, tuple[str, bytes]] = {  # refused as they were: none is ever decoded wrongly
    "br-we-never-offered": ("br", GOOD),
    "gzip-gzip-on-one-line": ("gzip, gzip", twice_gzipped(GOOD)),
    "identity-then-gzip": ("identity, gzip", GZ),
    "gzip-of-nothing": ("gzip", b""),
    "gzip-then-garbage": ("gzip", GZ + b"xxxxx"),
    "two-gzip-members": ("gzip", GZ + GZ),
    "deflate-that-is-not": ("deflate", b"xxxxx"),
}


@pytest.mark.parametrize(("coding", "body"), list(UNREADABLE_CODINGS.values()), ids=list(UNREADABLE_CODINGS))
async def test_a_coding_the_proxy_cannot_read_is_refused_and_never_stored(
    pair: tuple[Hostile, Proxy], coding: str, body: bytes
) -> None:
    vendor, proxy = pair
    vendor.always(ok(body, f"Content-Encoding: {coding}", cache_control="max-age=100"))
    plain = await proxy.get("/api/plain/A1")
    assert plain.status == 502 and json.loads(plain.body)["error"] == "upstream_status"
    guarded = await proxy.get("/api/prices/A1")
    assert guarded.status == 502 and json.loads(guarded.body)["message"] == "guard: encoding at $"
    assert proxy.stored() == [] and vendor.count() == 2


async def test_a_304_that_names_its_coding_revalidates_the_copy(
    pair: tuple[Hostile, Proxy], clock: FakeClock
) -> None:
    """A 304 has no content to decode (RFC 9110 15.4.5). Before the fix its Content-Encoding
    sent the empty body to the inflater: the revalidation failed, as a guard rejection on a
    guarded route, and the copy went stale until stale-if-error ran out."""
    vendor, proxy = pair
    vendor.always(ok(GOOD, 'ETag: "v1"'))
    for path in ("/api/prices/A1", "/api/plain/A1"):
        assert (await proxy.get(path)).body == GOOD
    clock.advance(5)
    vendor.always(
        raw_reply(
            "HTTP/1.1 304 Not Modified", 'ETag: "v1"', "Cache-Control: max-age=60", "Content-Encoding: gzip"
        )
    )
    for path in ("/api/prices/A1", "/api/plain/A1"):
        answer = await proxy.get(path)
        assert (answer.status, answer.header("X-Cache"), answer.body) == (200, "REVALIDATED", GOOD)
        assert answer.header("Content-Encoding") is None
        assert (await proxy.get(path)).header("X-Cache") == "HIT"
    assert vendor.count() == 4 and proxy.state.runtime.by_name["prices"].guard_rejections == 0


async def test_a_204_that_names_a_coding_is_relayed(pair: tuple[Hostile, Proxy]) -> None:
    vendor, proxy = pair
    vendor.always(raw_reply("HTTP/1.1 204 No Content", "Content-Encoding: gzip", length=False))
    answer = await proxy.get("/api/plain/A1")
    assert (answer.status, answer.body) == (204, b"") and vendor.count() == 1
