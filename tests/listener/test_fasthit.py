"""Fresh hits written in one go (proxy/fasthit.py) say exactly what the full path says.

A request that must take the full path (`Connection: close`, HTTP/1.0) is answered from the same
stored entry by `Driver.handle` and `deliver`; a keep-alive HTTP/1.1 GET or HEAD from the
entry's prepared bytes. Both are read as raw bytes from the real listener, and compared.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from proxy.clock import FakeClock
from proxy.driver import Driver
from proxy.exchange import Request
from proxy.fasthit import MAX_PLANS, FastHits
from proxy.publicport import PUBLIC
from tests.conftest import MakeProxy, Origin, Proxy, Reply, config_text
from tests.hardening.rawhttp import RawClient, RawResponse, request
from tests.public import PublicTestServer
from tests.routes import PRICES
from tests.waiting import until

PRICE = {"sku": "A1", "price": 9.5}
HEADERS = {
    "Content-Type": "application/json",
    "Cache-Control": "max-age=30",
    "ETag": '"v1"',
    "Last-Modified": "Tue, 14 Nov 2023 22:00:00 GMT",
    "X-Vendor": "kept",
}
PER_REQUEST = {"x-request-id", "connection", "date"}


def port_of(proxy: Proxy) -> int:
    server = proxy.client.server
    assert isinstance(server, PublicTestServer) and server.port is not None
    return server.port


async def ask(proxy: Proxy, raw: bytes, method: str = "GET") -> RawResponse:
    client = await RawClient.connect(port_of(proxy))
    try:
        await client.send(raw)
        return await client.response(method=method)
    finally:
        await client.close()


def comparable(answer: RawResponse) -> tuple[int, list[tuple[str, str]], bytes]:
    kept = [(k.lower(), v) for k, v in answer.headers if k.lower() not in PER_REQUEST]
    return answer.status, sorted(kept), answer.body


async def stored(make_proxy: MakeProxy, origin: Origin) -> Proxy:
    origin.always("/prices/A1", Reply(200, PRICE, HEADERS))
    proxy = await make_proxy()
    first = await ask(proxy, request("GET", "/api/prices/A1"))
    assert first.header("x-cache") == "MISS"
    return proxy


def no_date() -> bytes:
    return b""  # the origin's answers carry their own Date


def hits_of(proxy: Proxy) -> FastHits:
    server = proxy.client.server
    assert isinstance(server, PublicTestServer)
    handler = server.app[PUBLIC]
    assert isinstance(handler, Driver)
    return handler.hits


def fast_hits(proxy: Proxy) -> int:
    return sum(1 for _ in hits_of(proxy)._wires)


async def test_a_fresh_hit_says_what_the_full_path_says(make_proxy: MakeProxy, origin: Origin) -> None:
    proxy = await stored(make_proxy, origin)
    full = await ask(proxy, request("GET", "/api/prices/A1"))  # Connection: close: full path
    fast = await ask(proxy, request("GET", "/api/prices/A1", close=False))
    assert fast_hits(proxy) == 1  # the keep-alive one was the prepared answer
    assert comparable(fast) == comparable(full)
    assert fast.header("x-cache") == "HIT" and fast.header("cache-status") == "resilient-proxy; hit; ttl=30"
    assert fast.header("x-vendor") == "kept" and fast.header("age") == "0"
    assert json.loads(fast.body) == PRICE
    assert fast.header("server") is None and fast.header("connection") is None
    assert fast.header("x-request-id") and fast.header("x-request-id") != full.header("x-request-id")
    assert origin.count("/prices/A1") == 1


async def test_age_and_ttl_follow_the_clock(make_proxy: MakeProxy, origin: Origin, clock: FakeClock) -> None:
    proxy = await stored(make_proxy, origin)
    clock.advance(12)
    fast = await ask(proxy, request("GET", "/api/prices/A1", close=False))
    assert (fast.header("age"), fast.header("cache-status")) == ("12", "resilient-proxy; hit; ttl=18")


async def test_head_and_conditionals_on_a_fresh_entry(make_proxy: MakeProxy, origin: Origin) -> None:
    proxy = await stored(make_proxy, origin)
    for extra in ((), ('If-None-Match: "v1"',), ("If-Modified-Since: Tue, 14 Nov 2023 23:00:00 GMT",)):
        for method in ("GET", "HEAD"):
            full = await ask(proxy, request(method, "/api/prices/A1", *extra), method)
            fast = await ask(proxy, request(method, "/api/prices/A1", *extra, close=False), method)
            assert comparable(fast) == comparable(full), (method, extra)
    not_modified = await ask(proxy, request("GET", "/api/prices/A1", 'If-None-Match: "v1"', close=False))
    assert not_modified.status == 304 and not_modified.header("content-type") is None
    assert not_modified.header("etag") == '"v1"' and not_modified.body == b""
    head = await ask(proxy, request("HEAD", "/api/prices/A1", close=False), "HEAD")
    assert head.header("content-length") == str(len(json.dumps(PRICE)))


async def test_a_client_request_id_is_kept_and_the_hit_is_counted(
    make_proxy: MakeProxy, origin: Origin
) -> None:
    proxy = await stored(make_proxy, origin)
    before = proxy.state.telemetry.requests.value(("prices", "GET", "200", "HIT"))
    fast = await ask(proxy, request("GET", "/api/prices/A1", "X-Request-Id: trace-1", close=False))
    assert fast.header("x-request-id") == "trace-1"
    assert proxy.state.telemetry.requests.value(("prices", "GET", "200", "HIT")) == before + 1


async def test_pipelined_hits_and_misses_stay_in_order(make_proxy: MakeProxy, origin: Origin) -> None:
    proxy = await stored(make_proxy, origin)
    origin.always("/prices/B2", Reply(200, {"sku": "B2"}, {"Cache-Control": "max-age=30"}))
    client = await RawClient.connect(port_of(proxy))
    await client.send(
        request("GET", "/api/prices/B2", close=False)  # a miss: the full path, in a task
        + request("GET", "/api/prices/A1", close=False)  # a hit behind it waits its turn
        + request("GET", "/api/prices/B2")
    )
    answers = [await client.response() for _ in range(3)]
    assert [a.header("x-cache") for a in answers] == ["MISS", "HIT", "HIT"]
    assert [json.loads(a.body)["sku"] for a in answers] == ["B2", "A1", "B2"]
    await client.close()


async def test_a_client_that_does_not_read_its_answers_is_not_read_either(
    make_proxy: MakeProxy, origin: Origin
) -> None:
    """Backpressure toward the client: hits pipelined by a client that reads nothing stop being
    read once its answers fill the transport (its high-water mark), instead of piling up in our
    memory as bytes; read at last, every answer comes, in order."""
    proxy = await stored(make_proxy, origin)
    client = await RawClient.connect(port_of(proxy))
    client.writer.transport.pause_reading()  # type: ignore[attr-defined]
    server = proxy.client.server
    assert isinstance(server, PublicTestServer)
    hits = proxy.state.telemetry.requests
    before = hits.value(("prices", "GET", "200", "HIT"))
    many = 30_000  # ~30 MB of answers, far more than the sockets hold
    client.writer.write(request("GET", "/api/prices/A1", close=False) * many)
    (conn,) = server.listener.connections
    await until(lambda: not conn.reading, what="the proxy stopped reading the connection")
    for _ in range(50):
        await asyncio.sleep(0)
    # what the sockets took, the transport's mark and one read's answers, not every answer
    assert hits.value(("prices", "GET", "200", "HIT")) - before < many // 2
    client.writer.transport.resume_reading()  # type: ignore[attr-defined]
    answers = [await client.response() for _ in range(many)]
    assert {a.header("x-cache") for a in answers} == {"HIT"} and len(answers) == many
    await client.close()


async def test_a_stale_entry_takes_the_full_path(
    make_proxy: MakeProxy, origin: Origin, clock: FakeClock
) -> None:
    proxy = await stored(make_proxy, origin)
    clock.advance(31)
    answer = await ask(proxy, request("GET", "/api/prices/A1", close=False))
    assert answer.header("x-cache") in ("STALE", "UPDATING")
    await proxy.settle()


async def test_a_reload_plans_every_target_again(
    make_proxy: MakeProxy, origin: Origin, tmp_path: Path
) -> None:
    proxy = await stored(make_proxy, origin)
    assert (await ask(proxy, request("GET", "/api/prices/A1", close=False))).header("x-cache") == "HIT"
    # A route listed first now takes the same paths uncached; `prices` and its entries stay.
    first = PRICES.replace("name: prices", "name: live") + "    cache: off\n"
    path = tmp_path / "proxy.yaml"
    path.write_text(config_text(origin.url, "routes:\n" + first + PRICES + "    cache: {ttl: 30s}\n"))
    result = proxy.state.reloader.from_file(str(path))
    assert result.errors == [] and "prices" not in result.purged
    answer = await ask(proxy, request("GET", "/api/prices/A1", close=False))
    assert answer.header("x-cache") == "BYPASS" and origin.count("/prices/A1") == 2


async def test_pipelined_requests_keep_their_own_request_ids(make_proxy: MakeProxy, origin: Origin) -> None:
    proxy = await stored(make_proxy, origin)
    origin.always("/prices/B2", Reply(200, {"sku": "B2"}, {"Cache-Control": "max-age=30"}))
    client = await RawClient.connect(port_of(proxy))
    await client.send(
        request("GET", "/api/prices/B2", close=False)  # no id: ours
        + request("GET", "/api/prices/A1", "X-Request-Id: trace-2", close=False)
        + request("GET", "/api/prices/B2", "X-Request-Id: trace-3")
    )
    ids = [(await client.response()).header("x-request-id") for _ in range(3)]
    assert ids[0] not in ("trace-2", "trace-3") and ids[1:] == ["trace-2", "trace-3"]
    await client.close()


async def test_age_ttl_and_counts_of_hits_within_and_across_seconds(
    make_proxy: MakeProxy, origin: Origin, clock: FakeClock
) -> None:
    """The bytes around the request id are reused within a second and made again when `Age` or
    `ttl` would change, at fractional instants too; every hit is counted."""
    proxy = await stored(make_proxy, origin)
    telemetry = proxy.state.telemetry
    labels = ("prices", "GET", "200", "HIT")
    before, timed = telemetry.requests.value(labels), telemetry.duration.count(("prices",))
    seen = []
    ids = set()
    for step in (0.0, 0.25, 0.5, 0.3, 0.0, 4.2, 0.79, 0.01, 23.9):
        clock.advance(step)
        fast = await ask(proxy, request("GET", "/api/prices/A1", close=False))
        assert fast.status == 200 and json.loads(fast.body) == PRICE
        seen.append((fast.header("age"), fast.header("cache-status")))
        ids.add(fast.header("x-request-id"))
    ttl = "resilient-proxy; hit; ttl="
    assert seen == [
        ("0", ttl + "30"),  # t = 0
        ("0", ttl + "29"),  # 0.25
        ("0", ttl + "29"),  # 0.75
        ("1", ttl + "28"),  # 1.05
        ("1", ttl + "28"),  # 1.05 again
        ("5", ttl + "24"),  # 5.25
        ("6", ttl + "23"),  # 6.04
        ("6", ttl + "23"),  # 6.05
        ("29", ttl + "0"),  # 29.95: fresh for another 0.05 s
    ]
    assert len(ids) == len(seen)  # a request id of its own each, the rest reused
    assert telemetry.requests.value(labels) == before + len(seen)
    assert telemetry.duration.count(("prices",)) == timed + len(seen)
    head = await ask(proxy, request("HEAD", "/api/prices/A1", close=False), "HEAD")
    assert head.body == b"" and head.header("content-length") == str(len(json.dumps(PRICE)))
    assert telemetry.requests.value(("prices", "HEAD", "200", "HIT")) == 1


async def test_plans_are_bounded_and_the_oldest_goes_first(make_proxy: MakeProxy, origin: Origin) -> None:
    hits = hits_of(await stored(make_proxy, origin))
    # Targets no route takes: refused, and the refusal memoised at once.
    targets = [f"/nowhere/B{i}" for i in range(MAX_PLANS + 10)]
    for target in targets:
        assert hits.answer(Request("GET", target, [(b"host", b"x")], hints={}), no_date) is None
    plans = list(hits._plans)
    assert len(plans) == MAX_PLANS
    assert plans[0] == ("GET", targets[10]) and plans[-1] == ("GET", targets[-1])


async def test_a_plan_is_kept_once_its_key_is_found_stored(make_proxy: MakeProxy, origin: Origin) -> None:
    """A run of misses on new keys leaves the memo as it was; a fresh hit is planned once."""
    hits = hits_of(await stored(make_proxy, origin))
    kept = list(hits._plans)
    for i in range(100):
        assert hits.answer(Request("GET", f"/api/prices/B{i}", [(b"host", b"x")], hints={}), no_date) is None
    assert list(hits._plans) == kept
    hit = Request("GET", "/api/prices/A1", [(b"host", b"x")], hints={})
    assert hits.answer(hit, no_date) is not None
    assert list(hits._plans) == [*kept, ("GET", "/api/prices/A1")]
