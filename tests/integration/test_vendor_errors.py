"""The vendor's own error answer (issue 14): with no usable copy, a route with
`upstream_errors: pass` relays the vendor's 5xx/429 as sent (status, body, Retry-After), marked
and never stored; by default (`replace`) it is our JSON 502, as DESIGN.md promises."""

from __future__ import annotations

from proxy.clock import FakeClock
from tests.conftest import MakeProxy
from tests.origin import Origin, Reply
from tests.routes import PRICES, WRITES

DOWN = Reply(503, b"<h1>maintenance until 10:00</h1>", {"Content-Type": "text/html", "Retry-After": "120"})


def routes(errors: str) -> str:
    return (
        f"\nroutes:\n{PRICES}    cache: {{ttl: 60s, stale_if_error: 1h}}\n    upstream_errors: {errors}\n"
        f"{WRITES}    upstream_errors: {errors}\n"
    )


async def test_pass_relays_the_vendors_answer_unstored(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock
) -> None:
    origin.always("/prices/A1", DOWN)
    proxy = await make_proxy(routes("pass"))
    for _ in range(2):
        answer = await proxy.get("/api/prices/A1")
        assert answer.status == 503 and await answer.read() == DOWN.body
        assert answer.headers["Retry-After"] == "120" and answer.headers["Content-Type"] == "text/html"
        assert answer.headers["X-Cache"] == "MISS"
        assert answer.headers["Cache-Status"] == (
            'resilient-proxy; fwd=miss; fwd-status=503; detail="upstream-status"'
        )
    assert list(proxy.state.store.items()) == [] and origin.count("/prices/A1") == 2


async def test_pass_relays_a_write_error(origin: Origin, make_proxy: MakeProxy) -> None:
    origin.always("/prices/A1", Reply(500, {"error": "sku locked"}, {"Content-Type": "application/json"}))
    proxy = await make_proxy(routes("pass"))
    answer = await proxy.request("POST", "/api/prices/A1", json={"price": 2})
    assert answer.status == 500 and await answer.json() == {"error": "sku locked"}
    assert answer.headers["X-Cache"] == "BYPASS"


async def test_a_copy_still_wins_over_the_vendors_error(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock
) -> None:
    origin.always("/prices/A1", Reply(200, {"price": 1}, {"Content-Type": "application/json"}))
    proxy = await make_proxy(routes("pass"))
    await proxy.get("/api/prices/A1")
    clock.advance(61)
    origin.always("/prices/A1", DOWN)
    stale = await proxy.get("/api/prices/A1")
    assert stale.status == 200 and stale.headers["X-Cache"] == "STALE" and await stale.json() == {"price": 1}


async def test_replace_is_the_default_json_502(origin: Origin, make_proxy: MakeProxy) -> None:
    origin.always("/prices/A1", DOWN)
    proxy = await make_proxy(routes("replace"))
    answer = await proxy.get("/api/prices/A1")
    assert answer.status == 502
    doc = await answer.json()
    assert (doc["error"], doc["upstream_status"]) == ("upstream_status", 503)
    write = await proxy.request("POST", "/api/prices/A1", json={"price": 2})
    assert write.status == 502 and (await write.json())["error"] == "upstream_status"
