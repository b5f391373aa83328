"""Sanity guards end to end: a real scripted origin, the proxy built by `build_app`, a FakeClock.

The vendor is up but lying (zero price, empty or shrunk catalogue, an HTML page or broken JSON
with 200, a missing field): the client gets the last good copy marked STALE, or an error, and
never the bad body; the bad body is not stored, it is quarantined, counted and alerted.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from proxy.clock import FakeClock
from tests.conftest import MakeProxy, Proxy
from tests.origin import Hook as Receiver
from tests.origin import Origin, Reply
from tests.routes import CATALOGUE as CATALOGUE_ROUTE
from tests.routes import PRICES

Hook = tuple[str, list[dict[str, Any]]]  # the webhook's URL and the events it received

ROUTES = (
    """
routes:
"""
    + PRICES
    + """    cache: {ttl: 30s, stale_if_error: 1h}
    guards:
      - {path: $.price, gt: 0}
      - {path: $.currency, one_of: [GBP, EUR, USD]}
      - {required: [$.sku, $.price]}
"""
    + CATALOGUE_ROUTE
    + """    cache: {ttl: 30s, stale_if_error: 1h}
    guards:
      - {path: $.items, min_items: 1}
      - {path: $.items, max_shrink: 50%}
      - {path: "$.items[*].price", gt: 0}
"""
)
JSON_TYPE = {"Content-Type": "application/json"}
PRICE = {"sku": "A1", "price": 9.5, "currency": "GBP"}
CATALOGUE = {"items": [{"sku": f"S{i}", "price": 1.0 + i} for i in range(100)]}
ETAG = '"v1"'


def good(doc: Any) -> Reply:
    return Reply(200, doc, {**JSON_TYPE, "ETag": ETAG})


def bad(body: Any, content_type: str = "application/json") -> Reply:
    return Reply(200, body, {"Content-Type": content_type})


def encoded(reply: Reply) -> bytes:
    return reply.encoded()


# (case, client path, origin path, good document, bad reply, Cache-Status detail)
BAD_DATA = [
    ("zero price", "/api/prices/A1", "/prices/A1", PRICE, bad({**PRICE, "price": 0}), "guard: gt at $.price"),
    (
        "empty catalogue",
        "/api/catalogue/all",
        "/catalogue/all",
        CATALOGUE,
        bad({"items": []}),
        "guard: min_items at $.items",
    ),
    (
        "catalogue shrunk by 95%",
        "/api/catalogue/all",
        "/catalogue/all",
        CATALOGUE,
        bad({"items": CATALOGUE["items"][:5]}),
        "guard: max_shrink at $.items",
    ),
    (
        "HTML page with 200",
        "/api/prices/A1",
        "/prices/A1",
        PRICE,
        bad("<html><body>Service temporarily unavailable</body></html>", "text/html"),
        "guard: json at $",
    ),
    (
        "invalid JSON with 200",
        "/api/prices/A1",
        "/prices/A1",
        PRICE,
        bad('{"sku": "A1", "price": '),
        "guard: json at $",
    ),
    (
        "missing required field",
        "/api/prices/A1",
        "/prices/A1",
        PRICE,
        bad({"price": 9.5, "currency": "GBP"}),
        "guard: required at $.sku",
    ),
    (
        "one zero price in a catalogue",
        "/api/catalogue/all",
        "/catalogue/all",
        CATALOGUE,
        bad({"items": [*CATALOGUE["items"][:99], {"sku": "S99", "price": 0}]}),
        "guard: gt at $.items[*].price",
    ),
]


def bodies_in_store(proxy: Proxy) -> list[bytes]:
    return [entry.body for _, entry in proxy.state.store.items()]


@pytest.mark.parametrize(
    ("case", "path", "upath", "doc", "reply", "detail"), BAD_DATA, ids=[c[0] for c in BAD_DATA]
)
async def test_bad_data_serves_the_last_good_copy(
    origin: Origin,
    make_proxy: MakeProxy,
    clock: FakeClock,
    case: str,
    path: str,
    upath: str,
    doc: Any,
    reply: Reply,
    detail: str,
) -> None:
    origin.always(upath, good(doc))
    proxy = await make_proxy(ROUTES)
    first = await proxy.get(path)
    assert first.headers["X-Cache"] == "MISS" and await first.json() == doc
    good_body = json.dumps(doc).encode()

    clock.advance(40)  # past the 30s freshness: the next request goes to the vendor
    origin.always(upath, reply)
    answer = await proxy.get(path)
    assert answer.status == 200
    assert answer.headers["X-Cache"] == "STALE"
    assert (
        answer.headers["Cache-Status"]
        == f'resilient-proxy; fwd=stale; fwd-status=200; ttl=-10; detail="{detail}"'
    )
    assert answer.headers["Age"] == "40"
    assert await answer.read() == good_body
    assert origin.count(upath) == 2
    assert bodies_in_store(proxy) == [good_body]  # the bad body was not stored

    # The vendor is fixed and confirms our copy with a 304: only a kept copy can answer that.
    origin.always(upath, Reply(304, b"", {"ETag": ETAG}))
    after = await proxy.get(path)
    assert origin.seen[-1].headers.get("If-None-Match") == ETAG
    assert after.status == 200 and await after.read() == good_body
    assert "fwd=stale; fwd-status=304" in after.headers["Cache-Status"]
    assert (await proxy.get(path)).headers["X-Cache"] == "HIT"


ABSOLUTE = [c for c in BAD_DATA if "max_shrink" not in c[5]]  # relative rules need a good copy


@pytest.mark.parametrize(
    ("case", "path", "upath", "doc", "reply", "detail"), ABSOLUTE, ids=[c[0] for c in ABSOLUTE]
)
async def test_bad_data_without_a_good_copy_is_a_502(
    origin: Origin,
    make_proxy: MakeProxy,
    case: str,
    path: str,
    upath: str,
    doc: Any,
    reply: Reply,
    detail: str,
) -> None:
    origin.always(upath, reply)
    proxy = await make_proxy(ROUTES)
    answer = await proxy.get(path)
    assert answer.status == 502
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.headers["X-Cache"] == "MISS"
    raw = await answer.read()
    assert raw != encoded(reply)
    body = json.loads(raw)
    assert body["error"] == "upstream_data_rejected"
    assert body["rules"][0] == detail.removeprefix("guard: ")
    assert body["message"] == detail
    assert body["request_id"] == answer.headers["X-Request-Id"]
    assert bodies_in_store(proxy) == []


async def test_no_good_copy_gives_the_route_fallback(origin: Origin, make_proxy: MakeProxy) -> None:
    routes = ROUTES.replace(
        "      - {required: [$.sku, $.price]}\n",
        "      - {required: [$.sku, $.price]}\n"
        "    fallback: {status: 503, json: {error: prices unavailable}}\n",
        1,
    )
    origin.always("/prices/A1", bad({**PRICE, "price": 0}))
    proxy: Proxy = await make_proxy(routes)
    answer = await proxy.get("/api/prices/A1")
    assert answer.status == 503
    assert await answer.json() == {"error": "prices unavailable"}
    assert answer.headers["X-Cache"] == "FALLBACK"  # synthetic, nothing was cached: not STALE
    assert answer.headers["Retry-After"] == "5"
    assert (
        answer.headers["Cache-Status"]
        == 'resilient-proxy; fwd=miss; fwd-status=200; detail="fallback: upstream-data-rejected"'
    )
    metrics = proxy.state.telemetry.registry.render()
    assert 'rproxy_fallbacks_total{route="prices",reason="upstream-data-rejected"} 1' in metrics
    assert "rproxy_stale_served_total{" not in metrics
    route = proxy.state.runtime.by_name["prices"]
    assert (route.fallbacks, route.stale) == (1, 0)
    assert bodies_in_store(proxy) == []


async def test_several_violations_are_all_listed(origin: Origin, make_proxy: MakeProxy) -> None:
    origin.always("/prices/A1", bad({"sku": "A1", "price": -1, "currency": "XXX"}))
    proxy: Proxy = await make_proxy(ROUTES)
    body = await (await proxy.get("/api/prices/A1")).json()
    assert body["rules"] == ["gt at $.price", "one_of at $.currency"]


# -- hysteresis: a real change goes through, a glitch does not ------------------------------------


@pytest.mark.parametrize("confirm_after", [None, 2, 5])
async def test_consistent_shrink_is_accepted_on_the_nth_response(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock, confirm_after: int | None
) -> None:
    routes = (
        ROUTES
        if confirm_after is None
        else ROUTES.replace(
            "    rewrite: /catalogue/{name}\n",
            f"    rewrite: /catalogue/{{name}}\n    confirm_after: {confirm_after}\n",
        )
    )
    needed = confirm_after or 3  # the default
    origin.always("/catalogue/all", good(CATALOGUE))
    proxy: Proxy = await make_proxy(routes)
    await proxy.get("/api/catalogue/all")
    shrunk = {"items": CATALOGUE["items"][:5]}
    origin.always("/catalogue/all", bad(shrunk))
    for _ in range(needed - 1):
        clock.advance(40)
        answer = await proxy.get("/api/catalogue/all")
        assert answer.headers["X-Cache"] == "STALE" and await answer.json() == CATALOGUE
    clock.advance(40)
    accepted = await proxy.get("/api/catalogue/all")
    assert accepted.headers["X-Cache"] == "MISS"
    assert await accepted.json() == shrunk
    hit = await proxy.get("/api/catalogue/all")
    assert hit.headers["X-Cache"] == "HIT" and await hit.json() == shrunk
    events = proxy.state.telemetry.events
    assert events.value(("guard_rejected",)) == needed - 1
    assert events.value(("guard_change_confirmed",)) == 1


async def test_a_glitch_between_good_responses_is_never_accepted(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock
) -> None:
    origin.always("/catalogue/all", good(CATALOGUE))
    proxy: Proxy = await make_proxy(ROUTES)
    await proxy.get("/api/catalogue/all")
    shrunk = {"items": CATALOGUE["items"][:5]}
    for reply in [bad(shrunk), bad(shrunk), good(CATALOGUE), bad(shrunk), bad(shrunk)]:
        origin.always("/catalogue/all", reply)
        clock.advance(40)
        answer = await proxy.get("/api/catalogue/all")
        assert await answer.json() == CATALOGUE
    assert proxy.state.telemetry.events.value(("guard_change_confirmed",)) == 0


async def test_disagreeing_shrinks_do_not_confirm_each_other(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock
) -> None:
    origin.always("/catalogue/all", good(CATALOGUE))
    proxy: Proxy = await make_proxy(ROUTES)
    await proxy.get("/api/catalogue/all")
    for size in (5, 30, 5, 30):  # each differs from the one before by far more than 5 %
        origin.always("/catalogue/all", bad({"items": CATALOGUE["items"][:size]}))
        clock.advance(40)
        assert await (await proxy.get("/api/catalogue/all")).json() == CATALOGUE


# -- data faults are their own class: metrics, events, quarantine, breaker -----------------------


@pytest.fixture
async def webhook(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> Hook:
    receiver = Receiver()
    server = await aiohttp_server(receiver.app())
    return str(server.make_url("/hook")), receiver.events


async def test_rejections_are_counted_alerted_and_quarantined(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock, webhook: Hook
) -> None:
    url, received = webhook
    origin.always("/prices/A1", good(PRICE))
    proxy: Proxy = await make_proxy(ROUTES + f"alerts: {{webhook: {url}}}\n")
    await proxy.get("/api/prices/A1")
    zero = bad({**PRICE, "price": 0})
    html = bad("<html>oops</html>", "text/html")
    for reply in (zero, html):
        origin.always("/prices/A1", reply)
        clock.advance(40)
        assert (await proxy.get("/api/prices/A1")).headers["X-Cache"] == "STALE"

    t = proxy.state.telemetry
    assert t.guard_rejections.value(("prices", "gt")) == 1
    assert t.guard_rejections.value(("prices", "json")) == 1
    assert t.data_faults.value(("vendor",)) == 2
    assert t.transport_faults.samples() == []  # the vendor is up: not a transport fault
    assert proxy.state.runtime.by_name["prices"].guard_rejections == 2

    listed = proxy.state.quarantine.list("prices")
    assert [q.violations for q in listed] == [("json at $",), ("gt at $.price",)]  # newest first
    assert [q.status for q in listed] == [200, 200]
    kept = [proxy.state.quarantine.get(q.id) for q in listed]
    assert [k.body for k in kept if k is not None] == [encoded(html), encoded(zero)]

    await t.alerts.flush(timeout=5.0)
    rejected = [e for e in received if e["event"] == "guard_rejected"]
    assert [e["violations"] for e in rejected] == [
        [{"rule": "gt", "path": "$.price", "value": "0"}],
        [{"rule": "json", "path": "$", "value": repr(b"<html>oops</html>")}],
    ]
    assert {(e["route"], e["upstream"]) for e in rejected} == {("prices", "vendor")}


async def test_offending_value_is_truncated_in_the_alert(
    origin: Origin, make_proxy: MakeProxy, webhook: Hook
) -> None:
    url, received = webhook
    origin.always("/prices/A1", bad({**PRICE, "currency": "X" * 5000}))
    proxy: Proxy = await make_proxy(ROUTES + f"alerts: {{webhook: {url}}}\n")
    assert (await proxy.get("/api/prices/A1")).status == 502
    await proxy.state.telemetry.alerts.flush(timeout=5.0)
    (event,) = [e for e in received if e["event"] == "guard_rejected"]
    value = event["violations"][0]["value"]
    assert len(value) <= 80 and value.endswith("...")


async def test_contract_drift_is_alerted_once_per_change(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock, webhook: Hook
) -> None:
    url, received = webhook
    proxy: Proxy = await make_proxy(ROUTES + f"alerts: {{webhook: {url}}}\n")
    versions = [
        PRICE,
        PRICE,
        {**PRICE, "discount": 0.1},
        {**PRICE, "discount": 0.2},
        {**PRICE, "discount": 0.3},
    ]
    for doc in versions:
        origin.always("/prices/A1", good(doc))
        clock.advance(40)
        answer = await proxy.get("/api/prices/A1")
        assert answer.headers["X-Cache"] == "MISS" and await answer.json() == doc
    assert proxy.state.telemetry.events.value(("contract_drift",)) == 1
    assert proxy.state.telemetry.drift.value(("prices",)) == 1
    await proxy.state.telemetry.alerts.flush(timeout=5.0)
    drift = [e for e in received if e["event"] == "contract_drift"]
    assert [(e["route"], e["upstream"], e["change"]) for e in drift] == [
        ("prices", "vendor", "added $.discount (number)")
    ]


BREAKER = "circuit_breaker: {failure_rate: 50%, minimum_calls: 4, window: 5m, open_for: 1m}"


def trip_routes(trip: bool) -> str:
    return ROUTES.replace(
        "    rewrite: /prices/{sku}\n",
        f"    rewrite: /prices/{{sku}}\n    guards_trip_breaker: {str(trip).lower()}\n",
    )


async def _one_good_then_rejections(origin: Origin, proxy: Proxy, clock: FakeClock, n: int) -> None:
    origin.always("/prices/A1", good(PRICE))
    await proxy.get("/api/prices/A1")
    origin.always("/prices/A1", bad({**PRICE, "price": 0}))
    for _ in range(n):
        clock.advance(40)
        answer = await proxy.get("/api/prices/A1")
        assert answer.headers["X-Cache"] == "STALE" and await answer.json() == PRICE


@pytest.mark.parametrize(("trip", "failures"), [(True, 3), (False, 0)])
async def test_guards_trip_breaker_counts_rejections(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock, trip: bool, failures: int
) -> None:
    proxy: Proxy = await make_proxy(trip_routes(trip), upstream_extra=BREAKER)
    await _one_good_then_rejections(origin, proxy, clock, 3)
    upstream = proxy.state.runtime.upstreams["vendor"]
    assert upstream.breaker.snapshot(clock.now())["failures"] == failures
    assert upstream.track.data_faults == 3  # counted as data faults either way


async def test_guards_trip_breaker_opens_on_a_lying_vendor(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock
) -> None:
    proxy: Proxy = await make_proxy(trip_routes(True), upstream_extra=BREAKER)
    await _one_good_then_rejections(origin, proxy, clock, 3)  # 4 calls, 3 of them bad: 75 %
    upstream = proxy.state.runtime.upstreams["vendor"]
    assert upstream.state(clock.now()).value == "open"
    hits = origin.count("/prices/A1")
    clock.advance(40)  # open: the good copy is served without asking the lying vendor again
    answer = await proxy.get("/api/prices/A1")
    assert answer.headers["X-Cache"] == "STALE" and await answer.json() == PRICE
    assert 'detail="circuit-open"' in answer.headers["Cache-Status"]
    await proxy.settle()
    assert origin.count("/prices/A1") == hits


async def test_bad_body_never_reaches_coalesced_clients(origin: Origin, make_proxy: MakeProxy) -> None:
    import asyncio

    zero = {**PRICE, "price": 0}
    origin.always("/prices/A1", Reply(200, zero, JSON_TYPE, delay=0.2))
    proxy: Proxy = await make_proxy(ROUTES)
    answers = await asyncio.gather(*(proxy.get("/api/prices/A1") for _ in range(20)))
    assert origin.count("/prices/A1") == 1
    assert {a.status for a in answers} == {502}
    for a in answers:
        assert (await a.json())["error"] == "upstream_data_rejected"


async def test_gzip_bodies_are_checked_after_decoding(origin: Origin, make_proxy: MakeProxy) -> None:
    import gzip

    zero = gzip.compress(json.dumps({**PRICE, "price": 0}).encode())
    origin.always("/prices/A1", Reply(200, zero, {**JSON_TYPE, "Content-Encoding": "gzip"}))
    proxy: Proxy = await make_proxy(ROUTES)
    answer = await proxy.get("/api/prices/A1", auto_decompress=False)
    assert answer.status == 502
    assert (await answer.json())["rules"] == ["gt at $.price"]
