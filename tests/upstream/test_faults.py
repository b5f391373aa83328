"""A vendor that misbehaves at the HTTP/1.1 level, through the whole proxy.

For each fault: what the client got, what is cached afterwards (a second, clean request), and
what the vendor received. None may show a wrong body, a second write, or a stall of unrelated
requests.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from proxy.collectors import register_collectors
from proxy.config import parse_config
from proxy.core.config.model import Config
from tests.conftest import MakeProxy, Proxy
from tests.routes import PRICES, WRITES
from tests.upstream.vendor import CLOSE, HANG, Seen, Step, Vendor, ok, ok_bytes, own_body, response
from tests.waiting import until

CT = "Content-Type: application/json"


def config(url: str, retries: int = 0) -> Config:
    text = (
        "server: {listen: 127.0.0.1:0}\nlog: {access: off}\n"
        f"upstreams:\n  vendor:\n    url: {url}\n"
        f"    retries: {{attempts: {retries}, backoff: 1ms, max_backoff: 1ms}}\n"
        f"routes:\n{PRICES}    cache: {{ttl: 30s}}\n{WRITES}"
    )
    return parse_config(text, "test.yaml", {})


@pytest.fixture
async def vendor() -> AsyncIterator[Vendor]:
    v = await Vendor().start()
    yield v
    await v.close()


def errors(proxy: Proxy) -> dict[str, int]:
    return dict(proxy.state.runtime.upstreams["vendor"].transport.protocol_errors)


async def body_of(
    proxy: Proxy, path: str, method: str = "GET", **kw: object
) -> tuple[int, dict[str, object]]:
    answer = await proxy.request(method, path, **kw)
    return answer.status, json.loads(await answer.read())


async def test_an_unsolicited_response_on_an_idle_connection_shifts_nothing(
    vendor: Vendor, make_proxy: MakeProxy
) -> None:
    proxy = await make_proxy(config=config(vendor.url))
    assert await body_of(proxy, "/api/prices/A0") == (200, {"path": "/prices/A0", "n": 1, "price": 1.5})
    stray = response("200 OK", CT, body=b'{"path": "/prices/STRAY", "price": 0}')
    await vendor.inject(0, stray)
    await vendor.closed_by_peer(0)  # the proxy dropped the connection the stray came on
    for i in range(1, 9):
        status, body = await body_of(proxy, f"/api/prices/B{i}")
        assert (status, body["path"]) == (200, f"/prices/B{i}")
    for i in range(1, 9):  # and what was stored is each request's own answer
        answer = await proxy.get(f"/api/prices/B{i}")
        assert answer.headers["X-Cache"] == "HIT"
        assert json.loads(await answer.read())["path"] == f"/prices/B{i}"
    assert vendor.count() == 9
    assert errors(proxy) == {"idle_bytes": 1}


async def test_a_stray_408_with_close_on_an_idle_connection_is_nobody_s_answer(
    vendor: Vendor, make_proxy: MakeProxy
) -> None:
    proxy = await make_proxy(config=config(vendor.url))
    assert (await body_of(proxy, "/api/prices/A1"))[0] == 200
    await vendor.inject(0, response("408 Request Timeout", "Connection: close", body=b"timeout"))
    await vendor.closed_by_peer(0)
    assert await body_of(proxy, "/api/prices/A2") == (200, {"path": "/prices/A2", "n": 2, "price": 1.5})
    assert (vendor.count(), vendor.connections) == (2, 2)
    assert errors(proxy) == {"idle_bytes": 1}


async def test_extra_bytes_right_after_a_response_refuse_it_and_store_nothing(
    vendor: Vendor, make_proxy: MakeProxy
) -> None:
    def reply(seen: Seen, n: int) -> list[Step]:
        if n == 1:  # a complete answer and the start of another, in one write
            return [ok_bytes(seen, n) + response("200 OK", CT, body=b'{"price": 0}')]
        return ok(seen, n)

    vendor.reply = reply
    proxy = await make_proxy(config=config(vendor.url))
    first = await proxy.get("/api/prices/A1")
    assert first.status == 502 and (await first.json())["error"] == "upstream_error"
    assert await body_of(proxy, "/api/prices/A1") == (200, {"path": "/prices/A1", "n": 2, "price": 1.5})
    assert (await proxy.get("/api/prices/A1")).headers["X-Cache"] == "HIT"
    assert vendor.count() == 2
    assert errors(proxy) == {"unsolicited": 1}


async def test_late_bytes_after_a_complete_response_discard_the_connection(
    vendor: Vendor, make_proxy: MakeProxy
) -> None:
    proxy = await make_proxy(config=config(vendor.url))
    assert (await body_of(proxy, "/api/prices/A1"))[0] == 200
    await vendor.inject(0, b"\r\n0\r\n\r\n")  # a late tail of something
    await vendor.closed_by_peer(0)
    assert await body_of(proxy, "/api/prices/A2") == (200, {"path": "/prices/A2", "n": 2, "price": 1.5})
    assert vendor.connections == 2 and errors(proxy) == {"idle_bytes": 1}


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
async def test_a_write_the_vendor_read_then_dropped_is_sent_once_and_unknown(
    vendor: Vendor, make_proxy: MakeProxy, method: str
) -> None:
    vendor.reply = lambda seen, n: [CLOSE] if seen.method == method else ok(seen, n)
    proxy = await make_proxy(config=config(vendor.url, retries=3))
    answer = await proxy.request(method, "/api/prices/A1", data=b'{"qty": 1}')
    body = await answer.json()
    assert (answer.status, body["error"]) == (502, "upstream_outcome_unknown")
    assert "may or may not" in body["message"]
    assert vendor.count(method) == 1  # never a second time, retries or not
    assert vendor.seen[0].body == b'{"qty": 1}'


async def test_a_write_on_a_pooled_connection_is_also_sent_once(
    vendor: Vendor, make_proxy: MakeProxy
) -> None:
    vendor.reply = lambda seen, n: [CLOSE] if seen.method == "PUT" else ok(seen, n)
    proxy = await make_proxy(config=config(vendor.url, retries=3))
    assert (await proxy.get("/api/prices/A1")).status == 200  # leaves an idle connection
    answer = await proxy.request("PUT", "/api/prices/A1", data=b"{}")
    assert (answer.status, (await answer.json())["error"]) == (502, "upstream_outcome_unknown")
    assert vendor.count("PUT") == 1


async def test_a_write_with_an_idempotency_key_may_be_retried(vendor: Vendor, make_proxy: MakeProxy) -> None:
    vendor.reply = lambda seen, n: [CLOSE] if n == 1 else ok(seen, n)
    proxy = await make_proxy(config=config(vendor.url, retries=3))
    answer = await proxy.request("POST", "/api/prices/A1", data=b"{}", headers={"Idempotency-Key": "k-1"})
    assert answer.status == 200 and (await answer.json())["n"] == 2
    assert [s.header("Idempotency-Key") for s in vendor.seen] == ["k-1", "k-1"]


GOOD = b'{"path": "/prices/A1", "price": 2.5}'
BAD_ANSWERS = {
    "bare-lf": response("200 OK", CT, "X-A: a\nSet-Cookie: evil=1", body=GOOD),
    "bare-cr": response("200 OK", CT, "X-A: a\rb", body=GOOD),
    "obs-fold": response("200 OK", CT, "X-A: a\r\n b", body=GOOD),
    "http-2.0": response("200 OK", CT, body=GOOD, version="HTTP/2.0"),
    "http-0.9": response("200 OK", CT, body=GOOD, version="HTTP/0.9"),
    "status-600": response("600 Odd", CT, body=GOOD),
    "duplicate-cl": response("200 OK", CT, f"Content-Length: {len(GOOD)}", body=GOOD),
    "cl-plus-sign": response("200 OK", CT, f"Content-Length: +{len(GOOD)}", body=GOOD, length=False),
    "cl-over-2^53": response("200 OK", CT, "Content-Length: 18014398509481984", body=GOOD, length=False),
    "cl-and-te": response("200 OK", CT, "Transfer-Encoding: chunked", body=b"2\r\n{}\r\n0\r\n\r\n"),
    "te-gzip": response("200 OK", CT, "Transfer-Encoding: gzip", body=GOOD, length=False),
    "te-in-1.0": response(
        "200 OK",
        CT,
        "Transfer-Encoding: chunked",
        body=b"2\r\n{}\r\n0\r\n\r\n",
        length=False,
        version="HTTP/1.0",
    ),
    "bad-chunk": response(
        "200 OK", CT, "Transfer-Encoding: chunked", body=b"zz\r\n{}\r\n0\r\n\r\n", length=False
    ),
    "204-with-body": response("204 No Content", body=b"{}"),
    "100-with-cl": response("100 Continue", "Content-Length: 2", body=b"{}", length=False)
    + response(body=GOOD),
    "101-switch": response("101 Switching", "Upgrade: x", "Connection: upgrade", length=False),
    "101-headers": response("200 OK", CT, *[f"X-{i}: v" for i in range(101)], body=GOOD),
    "head-over-64kb": response("200 OK", CT, "X-Big: " + "a" * 70_000, body=GOOD),
    "body-longer-than-cl": response(
        "200 OK", CT, f"Content-Length: {len(GOOD) - 5}", body=GOOD, length=False
    ),
    "eleven-interims": response("103 Early Hints", "Link: </a>", length=False) * 11 + response(body=GOOD),
}


@pytest.mark.parametrize("raw", list(BAD_ANSWERS.values()), ids=list(BAD_ANSWERS))
async def test_a_malformed_answer_is_a_clean_502_never_stored(
    vendor: Vendor, make_proxy: MakeProxy, raw: bytes
) -> None:
    vendor.reply = lambda seen, n: [raw, CLOSE] if n == 1 else ok(seen, n)
    proxy = await make_proxy(config=config(vendor.url))
    answer = await proxy.get("/api/prices/A1")
    assert answer.status == 502 and (await answer.json())["error"] == "upstream_error"
    assert "Set-Cookie" not in answer.headers and "X-A" not in answer.headers
    assert len(proxy.state.store) == 0
    assert await body_of(proxy, "/api/prices/A1") == (200, {"path": "/prices/A1", "n": 2, "price": 1.5})
    assert vendor.count() == 2
    assert sum(errors(proxy).values()) == 1


async def test_a_body_shorter_than_its_length_is_a_502(vendor: Vendor, make_proxy: MakeProxy) -> None:
    cut = response("200 OK", CT, "Content-Length: 100", body=GOOD, length=False)
    vendor.reply = lambda seen, n: [cut, CLOSE] if n == 1 else ok(seen, n)
    proxy = await make_proxy(config=config(vendor.url))
    answer = await proxy.get("/api/prices/A1")
    assert answer.status == 502 and len(proxy.state.store) == 0
    assert (await body_of(proxy, "/api/prices/A1"))[1]["n"] == 2
    assert errors(proxy) == {"truncated": 1}


async def test_an_endless_trailer_is_refused_not_buffered(vendor: Vendor, make_proxy: MakeProxy) -> None:
    """A chunked answer whose trailer field never ends (llhttp would hold it whole): a 502 once
    the framing outgrows its bound, nothing stored, the connection discarded and counted."""
    head = b"HTTP/1.1 200 OK\r\n" + CT.encode() + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = b"%x\r\n%s\r\n0\r\nX-Trailer: " % (len(GOOD), GOOD)
    vendor.reply = lambda seen, n: [head + chunk + b"a" * 400_000, HANG] if n == 1 else ok(seen, n)
    proxy = await make_proxy(config=config(vendor.url))
    answer = await proxy.get("/api/prices/A1")
    assert answer.status == 502 and len(proxy.state.store) == 0
    assert errors(proxy) == {"framing_too_large": 1}
    assert (await body_of(proxy, "/api/prices/A1"))[1]["n"] == 2
    assert vendor.count() == 2


async def test_an_interim_103_is_skipped_and_the_final_answer_stored(
    vendor: Vendor, make_proxy: MakeProxy
) -> None:
    early = response("103 Early Hints", "Link: </style.css>; rel=preload", length=False)
    vendor.reply = lambda seen, n: [early + ok_bytes(seen, n)]
    proxy = await make_proxy(config=config(vendor.url))
    assert await body_of(proxy, "/api/prices/A1") == (200, {"path": "/prices/A1", "n": 1, "price": 1.5})
    assert (await proxy.get("/api/prices/A1")).headers["X-Cache"] == "HIT"
    assert (vendor.count(), errors(proxy)) == (1, {})


async def test_a_hanging_exchange_does_not_stall_unrelated_requests(
    vendor: Vendor, make_proxy: MakeProxy
) -> None:
    vendor.reply = lambda seen, n: [HANG] if seen.path == "/prices/SLOW" else ok(seen, n)
    proxy = await make_proxy(config=config(vendor.url))
    slow = asyncio.ensure_future(proxy.get("/api/prices/SLOW"))
    await until(lambda: vendor.count() > 0, what="the slow request reached the vendor")
    for i in range(3):
        assert (await body_of(proxy, f"/api/prices/F{i}"))[1]["path"] == f"/prices/F{i}"
    assert not slow.done()
    slow.cancel()


async def test_connections_are_reused_only_after_a_clean_keep_alive_answer(
    vendor: Vendor, make_proxy: MakeProxy
) -> None:
    def reply(seen: Seen, n: int) -> list[Step]:
        if seen.path == "/prices/CLOSE":
            return [response("200 OK", CT, "Connection: close", body=own_body(seen, n))]
        if seen.path == "/prices/OLD":
            return [response("200 OK", CT, body=own_body(seen, n), version="HTTP/1.0")]
        return ok(seen, n)

    vendor.reply = reply
    proxy = await make_proxy(config=config(vendor.url))
    for i in range(5):
        assert (await proxy.get(f"/api/prices/K{i}")).status == 200
    assert vendor.connections == 1  # one keep-alive connection for five answers
    assert (await proxy.get("/api/prices/CLOSE")).status == 200
    assert (await proxy.get("/api/prices/K9")).status == 200
    assert vendor.connections == 2  # Connection: close was honoured
    assert (await proxy.get("/api/prices/OLD")).status == 200
    assert (await proxy.get("/api/prices/K8")).status == 200
    assert vendor.connections == 3  # HTTP/1.0 without keep-alive too
    assert errors(proxy) == {}  # ordinary closes are no protocol errors


async def test_protocol_errors_are_a_metric(vendor: Vendor, make_proxy: MakeProxy) -> None:
    vendor.reply = lambda seen, n: [BAD_ANSWERS["bare-lf"], CLOSE]
    proxy = await make_proxy(config=config(vendor.url))
    register_collectors(proxy.state.app)
    assert (await proxy.get("/api/prices/A1")).status == 502
    text = proxy.state.telemetry.registry.render()
    assert 'rproxy_upstream_protocol_errors{upstream="vendor",reason="malformed"} 1' in text


@pytest.mark.parametrize("retries", [0, 1])
async def test_a_get_on_a_pooled_connection_that_dies_is_retried_by_our_policy_only(
    vendor: Vendor, make_proxy: MakeProxy, retries: int
) -> None:
    # The vendor drops the second request on the kept-alive connection, unanswered.
    vendor.reply = lambda seen, n: [CLOSE] if n == 2 else ok(seen, n)
    proxy = await make_proxy(config=config(vendor.url, retries=retries))
    assert (await proxy.get("/api/prices/A1")).status == 200
    answer = await proxy.get("/api/prices/A2")
    if retries:  # our retry, on a new connection
        assert (answer.status, (await answer.json())["path"]) == (200, "/prices/A2")
    else:  # the client library would have re-sent it; we do not
        assert answer.status == 502 and (await answer.json())["error"] == "upstream_error"
    assert [s.path for s in vendor.seen] == ["/prices/A1", "/prices/A2", "/prices/A2"][: 2 + retries]


# -- interim answers relayed (RFC 9110 15.2, issue 14) -----------------------------------

EARLY = response("103 Early Hints", "Link: </style.css>; rel=preload", length=False)


async def raw_get(proxy: Proxy, target: str, version: str = "HTTP/1.1") -> bytes:
    """Every byte the proxy writes for one request on a connection it then closes."""
    server = proxy.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(f"GET {target} {version}\r\nHost: proxy.test\r\nConnection: close\r\n\r\n".encode())
        return await asyncio.wait_for(reader.read(-1), 10)
    finally:
        writer.close()


async def test_early_hints_go_first_and_are_never_stored(vendor: Vendor, make_proxy: MakeProxy) -> None:
    vendor.reply = lambda seen, n: [EARLY + ok_bytes(seen, n)]
    proxy = await make_proxy(config=config(vendor.url))
    miss = await raw_get(proxy, "/api/prices/A1")
    assert miss.startswith(
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\n"
    )
    assert b"X-Cache: MISS" in miss
    hit = await raw_get(proxy, "/api/prices/A1")
    assert hit.startswith(b"HTTP/1.1 200 OK\r\n") and b"X-Cache: HIT" in hit  # not replayed
    assert b"103" not in hit.split(b"\r\n\r\n", 1)[0]
    assert vendor.count() == 1


async def test_no_interim_answer_for_an_http10_client(vendor: Vendor, make_proxy: MakeProxy) -> None:
    vendor.reply = lambda seen, n: [EARLY + ok_bytes(seen, n)]
    proxy = await make_proxy(config=config(vendor.url))
    answer = await raw_get(proxy, "/api/prices/A1", "HTTP/1.0")
    assert answer.startswith(b"HTTP/1.0 200 OK\r\n")  # HTTP/1.0 has no 1xx (RFC 9110 15.2)
