"""The request fields a miss reads from what the listener noted while parsing (`Request.first`,
`has`, `field`, `framing.HINTED`) instead of a header multimap: the same answers as the
multimap gives, for a field sent once, sent twice, or named by Connection (RFC 9110 5.3, 7.6.1).
Raw requests, so no client library merges or drops lines first."""

from __future__ import annotations

from tests.conftest import MakeProxy, Origin, Proxy, Reply
from tests.hardening.rawhttp import RawClient, RawResponse, request
from tests.public import PublicTestServer

PRICE = Reply(200, {"sku": "A1", "price": 9.5}, {"Cache-Control": "max-age=60"})


async def ask(proxy: Proxy, *headers: str) -> RawResponse:
    server = proxy.client.server
    assert isinstance(server, PublicTestServer) and server.port is not None
    client = await RawClient.connect(server.port)
    try:  # keep-alive and no Connection field: the noted values answer, not the multimap
        await client.send(request("GET", "/api/prices/A1", *headers, close=False))
        return await client.response()
    finally:
        await client.close()


async def test_credentials_reach_the_vendor_as_sent_once_or_joined(
    make_proxy: MakeProxy, origin: Origin
) -> None:
    origin.always("/prices/A1", PRICE)
    proxy = await make_proxy()
    once = await ask(proxy, "Authorization: Bearer a")
    twice = await ask(proxy, "Authorization: Bearer a", "Authorization: Bearer b")
    assert once.status == twice.status == 200
    assert [seen.headers.get("Authorization") for seen in origin.seen] == ["Bearer a", "Bearer a, Bearer b"]
    plain = await ask(proxy)  # answers to credentials were not stored for everyone (RFC 9111 3.5)
    assert plain.status == 200 and len(origin.seen) == 3


async def test_a_credential_named_by_connection_never_reaches_the_vendor(
    make_proxy: MakeProxy, origin: Origin
) -> None:
    origin.always("/prices/A1", PRICE)
    proxy = await make_proxy()
    answer = await ask(proxy, "Connection: keep-alive, authorization", "Authorization: Bearer a")
    assert answer.status == 200 and len(origin.seen) == 1
    assert "Authorization" not in origin.seen[0].headers


async def test_only_if_cached_counts_on_any_cache_control_line(make_proxy: MakeProxy, origin: Origin) -> None:
    origin.always("/prices/A1", PRICE)
    proxy = await make_proxy()
    alone = await ask(proxy, "Cache-Control: only-if-cached")
    second = await ask(proxy, "Cache-Control: max-age=0", "Cache-Control: only-if-cached")
    assert alone.status == second.status == 504 and origin.seen == []
    fetched = await ask(proxy, "Cache-Control: max-age=0")
    assert fetched.status == 200 and len(origin.seen) == 1
