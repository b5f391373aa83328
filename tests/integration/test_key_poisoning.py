"""A key nobody can poison (issue 12): on a cached route the vendor gets exactly what the key
holds, so no answer built for one client's unkeyed input is served to everyone.

Each attack: what the vendor received, and whether another client could be served the answer.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import MakeProxy
from tests.integration.test_security_basics import get, raw_request
from tests.origin import Origin, Reply
from tests.routes import PRICES

JSON = {"Content-Type": "application/json", "Cache-Control": "max-age=60"}
KEYED = f"""
routes:
{PRICES}    cache:
      ttl: 60s
      key: {{query: [q], headers: [accept-language]}}
"""


def answer(origin: Origin) -> None:
    origin.always("/prices/A1", Reply(200, {"price": 1}, JSON))


async def test_a_header_named_in_connection_is_neither_sent_nor_keyed(
    origin: Origin, make_proxy: MakeProxy
) -> None:
    answer(origin)
    proxy = await make_proxy(KEYED)
    hop = await raw_request(
        proxy, get("/api/prices/A1", "Connection: close, Accept-Language", "Accept-Language: fr")
    )
    assert hop.status == 200 and hop.headers["x-cache"] == "MISS"
    assert "Accept-Language" not in origin.seen[-1].headers
    french = await proxy.get("/api/prices/A1", headers={"Accept-Language": "fr"})
    assert french.headers["X-Cache"] == "MISS"  # the no-language answer is not under `fr`
    assert origin.seen[-1].headers["Accept-Language"] == "fr"
    bare = await proxy.get("/api/prices/A1", headers={"Accept-Language": ""})
    assert bare.headers["X-Cache"] == "HIT"  # it is keyed as what was sent: nothing


async def test_a_keyed_header_sent_twice_is_keyed_and_sent_as_one_value(
    origin: Origin, make_proxy: MakeProxy
) -> None:
    answer(origin)
    proxy = await make_proxy(KEYED)
    twice = await raw_request(proxy, get("/api/prices/A1", "Accept-Language: en", "Accept-Language: fr"))
    assert twice.headers["x-cache"] == "MISS"
    assert origin.seen[-1].headers["Accept-Language"] == "en, fr"  # one line, both values
    joined = await proxy.get("/api/prices/A1", headers={"Accept-Language": "en, fr"})
    assert joined.headers["X-Cache"] == "HIT"
    first_only = await proxy.get("/api/prices/A1", headers={"Accept-Language": "en"})
    assert first_only.headers["X-Cache"] == "MISS"
    assert origin.count("/prices/A1") == 2


UNKEYED = {
    "X-Forwarded-Port": "8443",
    "X-Forwarded-Prefix": "/evil",
    "X-Forwarded-Path": "/evil",
    "X-Host": "evil.example",
    "X-Original-Host": "evil.example",
    "X-HTTP-Host-Override": "evil.example",
    "X-Override-URL": "/admin",
    "Origin": "https://evil.example",
    "Referer": "https://evil.example/",
    "True-Client-IP": "6.6.6.6",
    "Via": "1.1 evil",
    "Max-Forwards": "0",
    "User-Agent": "evil-bot",
    "Accept": "text/evil",
    "X-Anything-Else": "1",
}


async def test_unkeyed_headers_never_reach_the_vendor_on_a_cached_route(
    origin: Origin, make_proxy: MakeProxy
) -> None:
    answer(origin)
    proxy = await make_proxy(KEYED)
    first = await proxy.get(
        "/api/prices/A1", headers={**UNKEYED, "X-Forwarded-For": "6.6.6.6", "Accept-Language": "en"}
    )
    assert first.status == 200
    sent = {k.lower(): v for k, v in origin.seen[-1].headers.items()}
    for name in UNKEYED:
        assert name.lower() not in sent, name
    assert sent["x-forwarded-for"] == "127.0.0.1"  # ours, never the client's verbatim
    assert sent["accept-language"] == "en" and sent["accept-encoding"] == "gzip, deflate"


async def test_an_upstream_may_allow_named_headers(origin: Origin, make_proxy: MakeProxy) -> None:
    answer(origin)
    proxy = await make_proxy(KEYED, upstream_extra="forward_headers: [Accept]")
    await proxy.get("/api/prices/A1", headers={"Accept": "application/json", "User-Agent": "shop/1"})
    assert origin.seen[-1].headers["Accept"] == "application/json"
    assert "User-Agent" not in origin.seen[-1].headers  # not allowed: not sent


@pytest.mark.parametrize(
    ("query", "forwarded"),
    [
        ("q=shoes&callback=evilFn", "q=shoes"),
        ("callback=evilFn&q=shoes", "q=shoes"),
        ("q=shoes;q=evil", "q=shoes%3Bq%3Devil"),
        ("q=a+b", "q=a%20b"),
        ("utm_source=x", ""),
    ],
)
async def test_the_vendor_gets_exactly_the_keyed_query(
    origin: Origin, make_proxy: MakeProxy, query: str, forwarded: str
) -> None:
    answer(origin)
    proxy = await make_proxy(KEYED)
    await proxy.get(f"/api/prices/A1?{query}")
    assert origin.seen[-1].path == "/prices/A1" + (f"?{forwarded}" if forwarded else "")


async def test_bytes_that_are_not_utf8_are_distinct_keys(origin: Origin, make_proxy: MakeProxy) -> None:
    answer(origin)
    proxy = await make_proxy(KEYED)
    for target in ("/api/prices/A1?q=%ff", "/api/prices/A1?q=%fe"):
        assert (await proxy.get(target)).headers["X-Cache"] == "MISS"
    assert [s.path for s in origin.seen] == ["/prices/A1?q=%FF", "/prices/A1?q=%FE"]
    assert (await proxy.get("/api/prices/A1?q=%FF")).headers["X-Cache"] == "HIT"


@pytest.mark.parametrize(
    "path",
    [
        "/api/prices/%c0%ae%c0%ae",  # overlong UTF-8 for ".."
        "/api/prices/%u002e%u002e",  # IIS's %u encoding
        "/api/prices/%25u002e%25u002e",  # the same, encoded once more
        "/api/prices/%ef%bc%8e%ef%bc%8e",  # fullwidth dots: ".." after NFKC
        "/api/prices/%ef%bc%8fetc",  # fullwidth solidus
        "/api/prices/%ff",
    ],
)
async def test_dot_segments_in_any_encoding_are_refused(
    origin: Origin, make_proxy: MakeProxy, path: str
) -> None:
    answer(origin)
    proxy = await make_proxy(KEYED)
    refused = await raw_request(proxy, get(path))  # byte for byte: no client library re-encoding
    assert refused.status == 400
    assert json.loads(refused.body)["error"] == "bad_request"
    assert origin.count() == 0
