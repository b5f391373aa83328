"""What may never cross the proxy: hop-by-hop headers, traversal, foreign request targets.

Raw requests go over a plain socket so that no client library normalises them first; the origin's
log (`origin.seen`) shows what actually reached the vendor.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass

import pytest

from tests.conftest import MakeProxy, Proxy
from tests.origin import Origin, Reply

PRICE = {"sku": "A1", "price": 9.5, "currency": "GBP"}
JSON = "application/json"


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


async def raw_request(proxy: Proxy, head: str, timeout: float = 5.0) -> RawResponse:
    """Send `head` byte for byte and read one response (bounded wait, no sleeping)."""
    server = proxy.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(head.encode("latin-1"))
        await writer.drain()
        status_and_headers = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        lines = status_and_headers.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        body = await asyncio.wait_for(reader.readexactly(length), timeout) if length else b""
        return RawResponse(int(lines[0].split()[1]), headers, body)
    finally:
        writer.close()


def cached(body: object = PRICE, /, **headers: str) -> Reply:
    return Reply(200, body, {"Content-Type": JSON, "Cache-Control": "max-age=60", **headers})


def get(target: str, *extra: str) -> str:
    return "\r\n".join([f"GET {target} HTTP/1.1", "Host: proxy.test", "Connection: close", *extra, "", ""])


# -- hop-by-hop headers (RFC 9110 7.6.1) ------------------------------------------------------


HOP_NAMES = ("x-foo", "keep-alive", "proxy-authorization", "proxy-connection", "te", "trailer")


async def test_hop_by_hop_request_headers_are_not_forwarded(origin: Origin, make_proxy: MakeProxy) -> None:
    """Not even when the operator lists them in `forward_headers`."""
    origin.always("/prices/A1", cached())
    proxy = await make_proxy(upstream_extra=f"forward_headers: [x-end-to-end, {', '.join(HOP_NAMES)}]")
    answer = await raw_request(
        proxy,
        get(
            "/api/prices/A1",
            "Connection: X-Foo",
            "X-Foo: named-in-connection",
            "Keep-Alive: timeout=5",
            "Proxy-Authorization: Basic c2VjcmV0",
            "Proxy-Connection: keep-alive",
            "TE: trailers",
            "Trailer: X-Checksum",
            "X-End-To-End: kept",
        ),
    )
    assert answer.status == 200
    assert len(origin.seen) == 1
    sent = {k.lower() for k in origin.seen[0].headers}
    assert "x-end-to-end" in sent  # control: an allowed ordinary header does go through
    for name in HOP_NAMES:
        assert name not in sent, name


async def test_hop_by_hop_response_headers_are_not_relayed(origin: Origin, make_proxy: MakeProxy) -> None:
    origin.always(
        "/prices/A1",
        Reply(
            200,
            PRICE,
            {
                "Content-Type": JSON,
                "Cache-Control": "max-age=60",
                "Connection": "X-Bar",
                "X-Bar": "hop",
                "Keep-Alive": "timeout=5",
                "Proxy-Authenticate": "Basic realm=vendor",
                "Trailer": "X-Sum",
                "Upgrade": "h2c",
                "X-End-To-End": "kept",
            },
        ),
    )
    proxy = await make_proxy()
    for expected in ("MISS", "HIT"):  # relayed directly, then from the stored copy
        answer = await proxy.get("/api/prices/A1")
        assert answer.headers["X-Cache"] == expected
        assert answer.headers["X-End-To-End"] == "kept"
        for name in ("X-Bar", "Keep-Alive", "Proxy-Authenticate", "Trailer", "Upgrade"):
            assert name not in answer.headers, (expected, name)
        assert answer.headers.get("Connection", "keep-alive").lower() in ("keep-alive", "close")


async def test_client_host_and_forwarding_headers_never_reach_the_vendor(
    origin: Origin, make_proxy: MakeProxy
) -> None:
    """Unkeyed headers that could change a shared response are dropped (cache poisoning)."""
    origin.always("/prices/A1", cached())
    proxy = await make_proxy()
    await raw_request(
        proxy,
        get(
            "/api/prices/A1",
            "X-Forwarded-Host: evil.example",
            "X-Original-URL: /admin",
            "X-HTTP-Method-Override: DELETE",
        ),
    )
    sent = {k.lower(): v for k, v in origin.seen[0].headers.items()}
    assert sent["host"] != "proxy.test" and sent["host"].startswith("127.0.0.1:")
    for name in ("x-forwarded-host", "x-original-url", "x-http-method-override"):
        assert name not in sent, name


async def test_client_cache_control_cannot_force_vendor_traffic(
    origin: Origin, make_proxy: MakeProxy
) -> None:
    origin.always("/prices/A1", cached())
    proxy = await make_proxy()
    await proxy.get("/api/prices/A1")
    for value in ("no-cache", "max-age=0", "no-store"):
        answer = await proxy.get("/api/prices/A1", headers={"Cache-Control": value, "Pragma": "no-cache"})
        assert answer.headers["X-Cache"] == "HIT"
    assert origin.count("/prices/A1") == 1


# -- request ids ------------------------------------------------------------------------------


async def test_request_id_is_kept_or_generated(origin: Origin, make_proxy: MakeProxy) -> None:
    origin.always("/prices/A1", cached())
    proxy = await make_proxy()
    kept = await proxy.get("/api/prices/A1", headers={"X-Request-Id": "req-42.a:b"})
    assert kept.headers["X-Request-Id"] == "req-42.a:b"
    generated = [(await proxy.get("/api/prices/A1")).headers["X-Request-Id"] for _ in range(3)]
    assert all(re.fullmatch(r"[A-Za-z0-9._:-]{8,128}", rid) for rid in generated)
    assert len(set(generated)) == 3
    # A value that could break a log line or a header is replaced, not echoed.
    for bad in ("has spaces", "x" * 200, "semi;colon", "<script>"):
        replaced = (await proxy.get("/api/prices/A1", headers={"X-Request-Id": bad})).headers["X-Request-Id"]
        assert replaced != bad and re.fullmatch(r"[A-Za-z0-9._:-]{8,128}", replaced)
    # Errors the proxy generates carry it too, in the header and the body.
    missing = await proxy.get("/nowhere", headers={"X-Request-Id": "req-43"})
    assert missing.headers["X-Request-Id"] == "req-43"
    assert (await missing.json())["request_id"] == "req-43"


# -- routing refusals -------------------------------------------------------------------------


async def test_no_route_is_404_json(origin: Origin, make_proxy: MakeProxy) -> None:
    proxy = await make_proxy()
    answer = await proxy.get("/admin")
    assert answer.status == 404 and answer.headers["Content-Type"] == JSON
    assert (await answer.json())["error"] == "no_route"
    assert "Cache-Status" in answer.headers
    assert origin.count() == 0


async def test_method_not_on_the_route_is_405_with_allow(origin: Origin, make_proxy: MakeProxy) -> None:
    proxy = await make_proxy()
    answer = await proxy.request("OPTIONS", "/api/prices/A1")
    assert answer.status == 405
    assert set(answer.headers["Allow"].split(", ")) == {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"}
    doc = await answer.json()
    assert doc["error"] == "method_not_allowed"
    assert doc["route"] == "prices"  # the path matched a route: name it (issue 15)
    assert origin.count() == 0
    metrics = proxy.state.telemetry.registry.render()
    assert 'rproxy_requests_total{route="prices",method="OPTIONS",status="405"' in metrics


TRAVERSALS = [
    "/api/prices/../../admin",
    "/api/prices/A1/../../../etc/passwd",
    "/api/prices/%2e%2e/%2e%2e/admin",
    "/api/prices/%2E%2E%2Fadmin",
    "/api/prices/A1%2f..%2f..%2fadmin",
    "/api/prices/..%5c..%5cadmin",
    "/api/prices/%252e%252e/admin",
    "/api/prices/..;/admin",
    "/api/prices/A1%00",
    "/api/prices/A1%0d%0aX-Injected:%201",
    "//evil.example/api/prices/A1",
    "/api/prices/./A1",
]


@pytest.mark.parametrize("target", TRAVERSALS)
async def test_traversal_attempts_never_reach_the_origin(
    origin: Origin, make_proxy: MakeProxy, target: str
) -> None:
    origin.json("/prices/A1", PRICE)
    origin.json("/admin", {"secret": True})
    proxy = await make_proxy()
    answer = await raw_request(proxy, get(target))
    assert answer.status == 400
    assert answer.headers["content-type"] == JSON
    assert json.loads(answer.body)["error"] == "bad_request"
    assert origin.count() == 0
    control = await raw_request(proxy, get("/api/prices/A1"))  # the same socket path works otherwise
    assert control.status == 200 and [s.path for s in origin.seen] == ["/prices/A1"]


@pytest.mark.parametrize(
    "target",
    [
        "http://evil.example/",
        "http://evil.example/api/prices/A1",
        "https://evil.example:443/api/prices/A1",
        "ORIGIN/prices/A1",  # the vendor's own address, in absolute form
    ],
)
async def test_absolute_form_targets_are_refused(origin: Origin, make_proxy: MakeProxy, target: str) -> None:
    origin.json("/prices/A1", PRICE)
    proxy = await make_proxy()
    answer = await raw_request(proxy, get(target.replace("ORIGIN", origin.url)))
    assert answer.status == 400
    assert json.loads(answer.body)["error"] == "bad_request"
    assert origin.count() == 0


@pytest.mark.parametrize("target", ["evil.example:443", "/api/prices/A1"])
async def test_connect_is_never_forwarded(origin: Origin, make_proxy: MakeProxy, target: str) -> None:
    proxy = await make_proxy()
    answer = await raw_request(
        proxy, f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n"
    )
    assert 400 <= answer.status < 500
    assert origin.count() == 0


async def test_connect_is_405_json(origin: Origin, make_proxy: MakeProxy) -> None:
    proxy = await make_proxy()
    answer = await raw_request(
        proxy, "CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\nConnection: close\r\n\r\n"
    )
    assert answer.status == 405
    assert answer.headers["content-type"] == JSON and "x-request-id" in answer.headers
