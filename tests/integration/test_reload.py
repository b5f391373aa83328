"""Hot reload: POST /reload and SIGHUP. A broken file is refused and the old config keeps serving
with its cache; a good one is swapped in, keeping what did not change."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from benchmarks.procs import free_port
from proxy.admin import build_admin_app
from proxy.clock import FakeClock
from proxy.config import load_config
from proxy.health import HEALTH
from proxy.reload import restart_needed, routes_to_purge
from tests.conftest import Proxy, config_text, make_config
from tests.origin import Origin, Reply
from tests.routes import PRICES

ROOT = Path(__file__).resolve().parents[2]
JSON_TYPE = {"Content-Type": "application/json"}
PRICE = {"sku": "A1", "price": 9.5, "currency": "GBP"}
PRICES = (
    """
"""
    + PRICES
    + """    cache: {ttl: 30s, stale_if_error: 1h}
"""
)
STOCK = """
  - name: stock
    match: /api/stock/{sku}
    methods: [GET]
    upstream: vendor
    rewrite: /stock/{sku}
    cache: {ttl: 30s}
"""
AdminClient = TestClient[Any, Any]


def routes(*parts: str) -> str:
    return "routes:" + "".join(parts)


def cached(origin: Origin, path: str, doc: Any = PRICE) -> None:
    origin.always(path, Reply(200, doc, {**JSON_TYPE, "Cache-Control": "max-age=60"}))


@pytest.fixture
def start(
    tmp_path: Path,
    origin: Origin,
    make_proxy: Callable[..., Awaitable[Proxy]],
    aiohttp_client: Callable[..., Awaitable[AdminClient]],
) -> Callable[[str], Awaitable[tuple[Proxy, AdminClient, Path]]]:
    """A proxy loaded from a real file, and its admin client; rewrite the file, then reload."""

    async def factory(body: str) -> tuple[Proxy, AdminClient, Path]:
        path = tmp_path / "proxy.yaml"
        path.write_text(config_text(origin.url, body))
        proxy = await make_proxy(config=load_config(str(path)))
        server = proxy.client.server
        assert isinstance(server, TestServer)
        return proxy, await aiohttp_client(build_admin_app(server.app)), path

    return factory


Start = Callable[[str], Awaitable[tuple[Proxy, AdminClient, Path]]]


# -- which routes lose their cache: pure decisions over two configs -----------------------------

_BASE = routes(PRICES, STOCK)


@pytest.mark.parametrize(
    ("new_body", "purged"),
    [
        (_BASE, ()),
        (_BASE.replace("ttl: 30s, stale_if_error: 1h", "ttl: 5m"), ()),  # lifetimes: keep
        (routes(PRICES, STOCK.replace("methods: [GET]", "methods: [GET, HEAD]")), ()),
        (routes(PRICES, STOCK.replace("rewrite: /stock/{sku}", "rewrite: /v2/stock/{sku}")), ("stock",)),
        (routes(PRICES, STOCK.replace("match: /api/stock/{sku}", "match: /api/stk/{sku}")), ("stock",)),
        (
            routes(PRICES, STOCK.replace("cache: {ttl: 30s}", "cache: {ttl: 30s, key: {query: none}}")),
            ("stock",),
        ),
        (
            routes(PRICES, STOCK.replace("cache: {ttl: 30s}", "cache: {ttl: 30s, key: {headers: [Accept]}}")),
            ("stock",),
        ),
        (routes(PRICES, STOCK.replace("cache: {ttl: 30s}", "cache: off")), ("stock",)),
        (routes(PRICES), ("stock",)),  # removed
        (routes(PRICES, STOCK.replace("name: stock", "name: stock2")), ("stock",)),  # renamed
        (routes(PRICES.replace("cache: {", "guards: [{path: $.price, gt: 0}]\n    cache: {"), STOCK), ()),
    ],
)
def test_routes_to_purge(new_body: str, purged: tuple[str, ...]) -> None:
    old = make_config("http://127.0.0.1:9001", _BASE)
    new = make_config("http://127.0.0.1:9001", new_body)
    assert routes_to_purge(old, new) == purged


def test_a_new_upstream_url_purges_every_route_on_it() -> None:
    old = make_config("http://127.0.0.1:9001", _BASE)
    new = make_config("http://127.0.0.1:9002", _BASE)
    assert routes_to_purge(old, new) == ("prices", "stock")


def test_restart_needed_names_what_a_reload_cannot_change() -> None:
    old = make_config("http://127.0.0.1:9001", _BASE)
    same = make_config("http://127.0.0.1:9001", routes(PRICES))
    moved = make_config(
        "http://127.0.0.1:9001", "admin: {listen: 127.0.0.1:9999}\ncache: {max_bytes: 1MB}\n" + _BASE
    )
    assert restart_needed(old, same) == ()
    assert restart_needed(old, moved) == ("admin", "cache")


# -- POST /reload --------------------------------------------------------------------------------


async def test_broken_file_is_refused_and_the_old_config_keeps_serving(start: Start, origin: Origin) -> None:
    cached(origin, "/prices/A1")
    proxy, admin, path = await start(routes(PRICES))
    await proxy.get("/api/prices/A1")
    before = proxy.state.runtime
    path.write_text(
        path.read_text()
        + STOCK.replace("upstream: vendor", "upstream: nobody").replace("ttl: 30s", "ttl: soon")
    )
    answer = await admin.post("/reload")
    assert answer.status == 400
    doc = await answer.json()
    assert doc["error"] == "invalid_config" and len(doc["errors"]) == 2
    assert all(e.startswith(f"{path}:") for e in doc["errors"])
    assert any("nobody" in e for e in doc["errors"]) and any("ttl" in e for e in doc["errors"])
    assert proxy.state.runtime is before
    hit = await proxy.get("/api/prices/A1")
    assert hit.headers["X-Cache"] == "HIT" and origin.count("/prices/A1") == 1
    assert (await proxy.get("/api/stock/A1")).status == 404


async def test_yaml_syntax_error_is_refused(start: Start) -> None:
    proxy, _, path = await start(routes(PRICES))
    path.write_text("routes: [\n  {name: x\n")
    result = proxy.state.reloader.from_file()
    assert result.errors and "(syntax)" in result.errors[0]
    assert [r.config.name for r in proxy.state.runtime.routes] == ["prices"]


async def test_new_route_applies_and_cache_and_upstream_are_kept(start: Start, origin: Origin) -> None:
    cached(origin, "/prices/A1")
    cached(origin, "/stock/A1", {"sku": "A1", "stock": 3})
    proxy, admin, path = await start(routes(PRICES))
    await proxy.get("/api/prices/A1")
    upstream = proxy.state.runtime.upstreams["vendor"]
    path.write_text(config_text(origin.url, routes(PRICES, STOCK)))
    answer = await admin.post("/reload")
    assert answer.status == 200
    doc = await answer.json()
    assert (doc["added"], doc["purged"], doc["kept_upstreams"]) == (["stock"], [], ["vendor"])
    assert proxy.state.runtime.upstreams["vendor"] is upstream
    assert (await proxy.get("/api/prices/A1")).headers["X-Cache"] == "HIT"
    stock = await proxy.get("/api/stock/A1")
    assert stock.status == 200 and (await stock.json())["stock"] == 3


async def test_only_routes_whose_key_inputs_changed_lose_their_cache(start: Start, origin: Origin) -> None:
    cached(origin, "/prices/A1")
    cached(origin, "/stock/A1", {"sku": "A1", "stock": 3})
    cached(origin, "/v2/stock/A1", {"sku": "A1", "stock": 4})
    proxy, admin, path = await start(routes(PRICES, STOCK))
    await proxy.get("/api/prices/A1")
    await proxy.get("/api/stock/A1")
    path.write_text(
        config_text(
            origin.url,
            routes(
                PRICES.replace("ttl: 30s", "ttl: 2m"),
                STOCK.replace("rewrite: /stock/", "rewrite: /v2/stock/"),
            ),
        )
    )
    doc = await (await admin.post("/reload")).json()
    assert (doc["purged"], doc["purged_entries"]) == (["stock"], 1)
    assert (await proxy.get("/api/prices/A1")).headers["X-Cache"] == "HIT"
    moved = await proxy.get("/api/stock/A1")
    assert moved.headers["X-Cache"] == "MISS" and (await moved.json())["stock"] == 4


async def test_removed_route_is_gone_with_its_entries(start: Start, origin: Origin) -> None:
    cached(origin, "/stock/A1", {"sku": "A1", "stock": 3})
    proxy, admin, path = await start(routes(PRICES, STOCK))
    await proxy.get("/api/stock/A1")
    path.write_text(config_text(origin.url, routes(PRICES)))
    doc = await (await admin.post("/reload")).json()
    assert doc["removed"] == ["stock"] and doc["purged_entries"] == 1
    assert len(proxy.state.store) == 0
    assert (await proxy.get("/api/stock/A1")).status == 404


async def test_in_flight_request_finishes_and_the_retired_upstream_is_closed(
    start: Start, origin: Origin
) -> None:
    origin.always("/prices/A1", Reply(200, PRICE, {**JSON_TYPE, "Cache-Control": "max-age=60"}, delay=0.3))
    proxy, _, path = await start(routes(PRICES))
    old = proxy.state.runtime.upstreams["vendor"]
    pending = asyncio.ensure_future(proxy.get("/api/prices/A1"))
    async with asyncio.timeout(5):
        while origin.count("/prices/A1") == 0:  # a real event: the request reached the vendor
            await asyncio.sleep(0.005)
    path.write_text(config_text("http://127.0.0.1:9", routes(PRICES)))
    result = proxy.state.reloader.from_file(retire_after=1.0)  # longer than the request
    assert result.retired_upstreams == ("vendor",) and result.new_upstreams == ("vendor",)
    answer = await pending
    assert answer.status == 200 and await answer.json() == PRICE
    await proxy.settle()
    assert old.transport.closed  # closed once the grace period passed
    assert (await proxy.get("/api/prices/B2")).status == 502  # the new URL serves now


async def test_an_idle_retired_upstream_closes_at_once(start: Start, origin: Origin) -> None:
    """Its grace is for calls in flight; with none, nothing waits for it (nor does shutdown)."""
    proxy, _, path = await start(routes(PRICES))
    old = proxy.state.runtime.upstreams["vendor"]
    path.write_text(config_text("http://127.0.0.1:9", routes(PRICES)))
    assert proxy.state.reloader.from_file(retire_after=3600.0).retired_upstreams == ("vendor",)
    await proxy.settle()  # would give up after 5 s with the pool still open if it waited the grace
    assert old.transport.closed and len(proxy.state.tasks) == 0


async def test_a_fetch_in_flight_during_reload_does_not_refill_a_purged_route(
    start: Start, origin: Origin
) -> None:
    origin.always("/prices/A1", Reply(200, PRICE, {**JSON_TYPE, "Cache-Control": "max-age=60"}, delay=0.3))
    proxy, _, path = await start(routes(PRICES))
    pending = asyncio.ensure_future(proxy.get("/api/prices/A1"))
    async with asyncio.timeout(5):
        while origin.count("/prices/A1") == 0:
            await asyncio.sleep(0.005)
    path.write_text(config_text("http://127.0.0.1:9", routes(PRICES)))
    assert proxy.state.reloader.from_file(retire_after=1.0).purged == ("prices",)
    assert (await pending).status == 200
    assert len(proxy.state.store) == 0  # the old vendor's answer must not be served under the new URL


async def test_new_header_values_are_scrubbed_from_logs_at_once(start: Start, origin: Origin) -> None:
    proxy, _, path = await start(routes(PRICES))
    extra = "headers: {X-Api-Key: fresh-secret-4711}"
    path.write_text(config_text(origin.url, routes(PRICES), extra))
    assert proxy.state.reloader.from_file().errors == []
    assert "fresh-secret-4711" in proxy.state.telemetry.secret_values


async def test_reload_starts_health_checks_for_new_upstreams(start: Start, origin: Origin) -> None:
    proxy, admin, path = await start(routes(PRICES))
    server = proxy.client.server
    assert isinstance(server, TestServer)
    assert server.app[HEALTH].running == frozenset()
    text = config_text(origin.url, routes(PRICES, STOCK.replace("upstream: vendor", "upstream: stock")))
    text = text.replace(
        "upstreams:\n",
        f"upstreams:\n  stock:\n    url: {origin.url}\n    health_check: {{path: /health, interval: 1h}}\n",
    )
    path.write_text(text)
    assert (await admin.post("/reload")).status == 200
    assert server.app[HEALTH].running == frozenset({"stock"})


async def test_counters_survive_a_reload(start: Start, origin: Origin, clock: FakeClock) -> None:
    cached(origin, "/prices/A1")
    proxy, _, path = await start(routes(PRICES))
    await proxy.get("/api/prices/A1")
    await proxy.get("/api/prices/A1")
    path.write_text(config_text(origin.url, routes(PRICES, STOCK)))
    proxy.state.reloader.from_file()
    rs = proxy.state.runtime.by_name["prices"]
    assert (rs.requests, rs.hits, rs.last_good_at) == (2, 1, clock.now())


# -- SIGHUP on a real process --------------------------------------------------------------------


async def wait_for_line(stream: asyncio.StreamReader, needle: str, timeout: float = 20.0) -> str:
    async with asyncio.timeout(timeout):
        while True:
            line = (await stream.readline()).decode()
            if not line:
                raise AssertionError(f"stream ended before {needle!r}")
            if needle in line:
                return line


async def status_of(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(url) as resp:
        return resp.status


async def test_sighup_reloads_a_running_process(tmp_path: Path, origin: Origin) -> None:
    cached(origin, "/prices/A1")
    cached(origin, "/stock/A1", {"sku": "A1", "stock": 3})
    public, admin = free_port(), free_port()
    head = f"server: {{listen: 127.0.0.1:{public}}}\nadmin: {{listen: 127.0.0.1:{admin}}}\n"
    path = tmp_path / "proxy.yaml"
    text = config_text(origin.url, head + routes(PRICES))
    path.write_text(text.replace("server: {listen: 127.0.0.1:0}\n", ""))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "proxy",
        "run",
        "--config",
        str(path),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        await wait_for_line(proc.stdout, "listening on")
        base = f"http://127.0.0.1:{public}"
        async with aiohttp.ClientSession() as session:
            assert await status_of(session, f"{base}/api/prices/A1") == 200
            assert await status_of(session, f"{base}/api/stock/A1") == 404
            path.write_text(path.read_text().replace("routes:", "routes:" + STOCK, 1))
            proc.send_signal(signal.SIGHUP)
            await wait_for_line(proc.stderr, "reloaded")
            assert await status_of(session, f"{base}/api/stock/A1") == 200
            path.write_text("routes: [\n")
            proc.send_signal(signal.SIGHUP)
            await wait_for_line(proc.stderr, "reload refused")
            assert await status_of(session, f"{base}/api/stock/A1") == 200
            async with session.get(f"http://127.0.0.1:{admin}/status") as resp:
                assert [r["name"] for r in (await resp.json())["routes"]] == ["stock", "prices"]
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            code = await proc.wait()
    assert code == 0
