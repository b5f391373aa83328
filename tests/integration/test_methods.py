"""Methods the proxy does not know (RFC 9110 9.1: the set is open; RFC 9111 4.4), issue 14: on a
route that allows all methods they are passed through once, never cached, and invalidate the
URL like any unsafe method; elsewhere they get our 405."""

from __future__ import annotations

from proxy.config import parse_config
from tests.conftest import MakeProxy, config_text
from tests.origin import Origin, Reply

ROUTES = """
routes:
  - name: devices
    match: /api/devices/{id}
    upstream: vendor
    rewrite: /devices/{id}
    cache: {ttl: 60s}
  - name: listed
    match: /api/dav/{id}
    methods: [GET, PROPFIND]
    upstream: vendor
    rewrite: /dav/{id}
  - name: strict
    match: /api/prices/{id}
    methods: [GET, HEAD]
    upstream: vendor
    rewrite: /prices/{id}
"""
JSON = {"Content-Type": "application/json", "Cache-Control": "max-age=60"}


async def test_an_extension_method_passes_once_and_invalidates(origin: Origin, make_proxy: MakeProxy) -> None:
    origin.always("/devices/1", Reply(200, {"device": 1}, JSON))
    proxy = await make_proxy(ROUTES)
    assert (await proxy.get("/api/devices/1")).headers["X-Cache"] == "MISS"
    assert (await proxy.get("/api/devices/1")).headers["X-Cache"] == "HIT"
    for _ in range(2):
        search = await proxy.request("M-SEARCH", "/api/devices/1")
        assert search.status == 200 and search.headers["X-Cache"] == "BYPASS"  # never from cache
    assert [s.method for s in origin.seen] == ["GET", "M-SEARCH", "M-SEARCH"]
    again = await proxy.get("/api/devices/1")
    assert again.headers["X-Cache"] == "MISS"  # the unsafe method invalidated the URL (RFC 9111 4.4)


async def test_an_extension_method_is_never_retried(origin: Origin, make_proxy: MakeProxy) -> None:
    origin.always("/devices/1", Reply(503, {"busy": True}, {"Content-Type": "application/json"}))
    text = config_text(origin.url, ROUTES).replace("retries: {attempts: 0}", "retries: {attempts: 3}")
    proxy = await make_proxy(config=parse_config(text, "test.yaml", {}))
    answer = await proxy.request("M-SEARCH", "/api/devices/1")
    assert answer.status >= 500
    assert [s.method for s in origin.seen] == ["M-SEARCH"]  # not idempotent as far as we know


async def test_a_listed_extension_method_passes(origin: Origin, make_proxy: MakeProxy) -> None:
    origin.always("/dav/1", Reply(207, b"<multistatus/>", {"Content-Type": "application/xml"}))
    proxy = await make_proxy(ROUTES)
    answer = await proxy.request("PROPFIND", "/api/dav/1")
    assert answer.status == 207 and await answer.read() == b"<multistatus/>"
    refused = await proxy.request("M-SEARCH", "/api/dav/1")
    assert refused.status == 405 and (await refused.json())["error"] == "method_not_allowed"
    assert refused.headers["Allow"] == "GET, HEAD, PROPFIND"


async def test_a_route_with_listed_methods_refuses_others(origin: Origin, make_proxy: MakeProxy) -> None:
    proxy = await make_proxy(ROUTES)
    refused = await proxy.request("M-SEARCH", "/api/prices/1")
    assert refused.status == 405 and (await refused.json())["error"] == "method_not_allowed"
    assert origin.count() == 0
