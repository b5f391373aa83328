"""The shared cache tier (L2): Redis through aiocache's `RedisCache`, treated as an integration.

Owns: the `SharedTier` implementation (`RedisTier`), its breaker, up/down events, fleet-wide
leases (single-flight across instances) and purge fan-out to the other instances.
Must not: decide whether an entry is usable (the core does, from the entry's deadlines), fail
a request because Redis failed (every Redis error or timeout is absorbed and counted), or read
wall time itself (it asks the injected `Clock`).

aiocache 0.12.3 sharp edges handled here: its MsgPackSerializer and default NullSerializer
decode Redis replies as UTF-8, so `_BytesSerializer` sets encoding=None and passes the codec's
bytes through; its `RedLock` only locks inside one process, so leases are `add()` (SET NX PX)
plus a token-checked Lua release (see `lease.py`).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import redis.asyncio as aredis
from aiocache import RedisCache
from aiocache.serializers import BaseSerializer

from proxy.clock import Clock
from proxy.core.breaker import BreakerPolicy, CircuitBreaker, State
from proxy.core.config.model import RedisConfig
from proxy.core.model import Entry
from proxy.store.codec import CodecError, decode, encode
from proxy.store.lease import (
    RELEASE_LUA,
    Lease,
    Names,
    PurgeCallback,
    Subscriber,
    WaitEnd,
    Waiters,
    purge_message,
)

__all__ = ["DEFAULT_POLICY", "Lease", "RedisTier", "TierChange"]

log = logging.getLogger("proxy.store.shared")

T = TypeVar("T")

# Opens fast when Redis is gone (3 calls, half failing) and probes once every 5 s; a short
# window so a long healthy history cannot hide an outage for long.
DEFAULT_POLICY = BreakerPolicy(
    failure_rate=0.5, minimum_calls=3, window=5.0, open_for=5.0, half_open_probes=1
)


class _Skip(enum.Enum):
    """Why a guarded Redis call produced no result."""

    DOWN = "down"  # error, timeout, or the breaker is open


class _Held(enum.Enum):
    HELD = "held"  # another request in the fleet holds the lease


@dataclass(frozen=True, slots=True)
class TierChange:
    """The shared tier went down (breaker opened) or came back (breaker closed)."""

    up: bool
    at: float
    reason: str


class _BytesSerializer(BaseSerializer):  # type: ignore[misc]
    """Bytes in, bytes out. encoding=None makes aiocache skip its UTF-8 decode on reads."""

    DEFAULT_ENCODING = None

    def dumps(self, value: bytes) -> bytes:
        return value

    def loads(self, value: bytes | None) -> bytes | None:
        return value


def _aiocache_kwargs(
    url: str, timeout: float, connect_timeout: float, max_connections: int
) -> dict[str, Any]:
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"cache.redis.url: expected redis:// or rediss://, got {url!r}")
    db = (parts.path or "/0").lstrip("/") or "0"
    # A bounded pool that queues (up to `timeout`) instead of opening a connection per
    # concurrent call: a cold burst of requests must not become a burst of slow handshakes
    # that time out and trip the breaker, and a frozen Redis must not eat file descriptors.
    # RESP2 skips the HELLO and maintenance-notification round trips redis-py 8 adds to RESP3.
    pool_kwargs: dict[str, Any] = {"socket_timeout": timeout, "timeout": timeout, "protocol": 2}
    if parts.username:
        pool_kwargs["username"] = unquote(parts.username)
    return {
        "endpoint": parts.hostname or "127.0.0.1",
        "port": parts.port or 6379,
        "db": int(db),
        "password": unquote(parts.password) if parts.password else None,
        "ssl": parts.scheme == "rediss",
        # Not aiocache's timeout: on 3.11 its asyncio.wait_for runs the call in a sub-task whose
        # late exception is then logged as "never retrieved"; `_guarded` bounds each call instead.
        "timeout": 0,
        "create_connection_timeout": connect_timeout,
        "pool_max_size": max_connections,
        "connection_pool_class": aredis.BlockingConnectionPool,
        "connection_pool_kwargs": pool_kwargs,
    }


class RedisTier:
    """L2 over Redis. Safe to call when Redis is down: reads miss, writes are dropped."""

    def __init__(
        self,
        url: str,
        *,
        clock: Clock,
        namespace: str = "rproxy",
        timeout: float = 0.1,
        connect_timeout: float | None = None,
        policy: BreakerPolicy = DEFAULT_POLICY,
        poll_interval: float = 0.05,
        max_connections: int = 32,
        instance_id: str | None = None,
        on_change: Callable[[TierChange], None] | None = None,
    ) -> None:
        self._clock = clock
        self._timeout = timeout
        self.names = Names(namespace)
        self.instance_id = instance_id or secrets.token_hex(8)
        self._on_change = on_change
        self._breaker = CircuitBreaker("redis", policy)
        self._reported_up = True
        kwargs = _aiocache_kwargs(url, timeout, connect_timeout or timeout, max_connections)
        self._cache: Any = RedisCache(serializer=_BytesSerializer(), namespace=None, **kwargs)
        self._waiters = Waiters(poll_interval)
        self._subscriber = Subscriber(
            url,
            self.names,
            self.instance_id,
            self._waiters.wake,
            connect_timeout=connect_timeout or 1.0,
        )
        self.hits = self.misses = self.errors = self.skipped = 0

    @classmethod
    def from_config(
        cls,
        config: RedisConfig,
        *,
        clock: Clock,
        on_change: Callable[[TierChange], None] | None = None,
    ) -> RedisTier:
        return cls(
            config.url, clock=clock, namespace=config.namespace, timeout=config.timeout, on_change=on_change
        )

    # -- health --------------------------------------------------------------------------------

    def up(self, now: float) -> bool:
        """False while the breaker is open or probing: say "shared-tier-down"."""
        return self._breaker.state(now) is State.CLOSED

    def stats(self) -> dict[str, int]:
        return {
            "hits": self.hits,
            "misses": self.misses,
            "errors": self.errors,
            "skipped": self.skipped,
            "listener_reconnects": self._subscriber.reconnects,
        }

    # -- SharedTier ----------------------------------------------------------------------------

    async def get(self, key: str) -> Entry | None:
        data = await self._guarded("get", lambda: self._cache.get(self.names.entry(key)))
        if data is None:
            self.misses += 1
        if data is _Skip.DOWN or data is None:
            return None
        return self._decode(key, data)

    async def set(self, key: str, entry: Entry, now: float) -> None:
        ttl_ms = int((entry.keep_until - now) * 1000)
        if ttl_ms <= 0:
            return  # already past any use: storing it would only waste memory
        payload = encode(entry)
        # aiocache turns a float ttl into PSETEX int(ttl * 1000); the half-millisecond keeps
        # float error from rounding the deadline down by one.
        ttl = (ttl_ms + 0.5) / 1000
        await self._guarded("set", lambda: self._cache.set(self.names.entry(key), payload, ttl=ttl))

    async def delete(self, key: str) -> None:
        await self._guarded("delete", lambda: self._cache.delete(self.names.entry(key)))

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every entry whose key starts with `prefix` (SCAN + UNLINK, page by page)."""
        pattern, cursor, removed = self.names.entry_pattern(prefix), 0, 0
        while True:
            page = await self._guarded("scan", self._scan_call(cursor, pattern))
            if page is _Skip.DOWN:
                return removed
            cursor, keys = int(page[0]), list(page[1])
            if keys:
                done = await self._guarded("unlink", self._unlink_call(keys))
                removed += 0 if done is _Skip.DOWN else int(done)
            if cursor == 0:
                return removed

    async def close(self) -> None:
        await self._waiters.close()
        await self._subscriber.close()
        await self._cache.client.aclose(close_connection_pool=True)

    # -- fleet-wide single-flight --------------------------------------------------------------

    async def lease(self, key: str, ttl_ms: int) -> Lease | None:
        """Take the fleet-wide right to fetch `key`; None when someone holds it or Redis is down.
        SET NX guarantees one winner, including among waiters taking over an expired lease."""
        got = await self._try_lease(key, ttl_ms)
        return got if isinstance(got, Lease) else None

    async def release(self, lease: Lease) -> bool:
        """End our lease (never someone else's) and wake every instance waiting on its key.
        Store the entry BEFORE releasing, so a woken waiter finds it."""
        done = await self._guarded(
            "release",
            lambda: self._cache.raw(
                "eval",
                RELEASE_LUA,
                1,
                self.names.lease(lease.key),
                lease.token,
                self.names.released_channel,
                lease.key,
            ),
        )
        return done is not _Skip.DOWN and int(done) == 1

    async def wait_for(self, key: str, timeout: float, *, newer_than: float | None = None) -> Entry | None:
        """The entry another instance is fetching, once it lands; None on timeout, when Redis
        is down, or when the lease ended without a value (the caller may then `lease()`).
        When refreshing a copy that is still stored, pass its `stored_at` as `newer_than` so
        the old copy is not mistaken for the result."""
        got = await self._await_fill(key, timeout, newer_than)
        return got if isinstance(got, Entry) else None

    async def lease_or_wait(
        self, key: str, ttl_ms: int, timeout: float, *, newer_than: float | None = None
    ) -> Lease | Entry | None:
        """The whole protocol: a Lease (you fetch, `set`, then `release`), the Entry another
        instance stored (newer than `newer_than`), or None (Redis down or `timeout` spent:
        fetch without coordination)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            got = await self._try_lease(key, ttl_ms)
            if isinstance(got, Lease):
                return got
            if got is _Skip.DOWN:
                return None
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            waited = await self._await_fill(key, remaining, newer_than)
            if isinstance(waited, Entry):
                return waited
            if waited is not WaitEnd.GONE:
                return None  # timed out or Redis down

    # -- invalidation fan-out ------------------------------------------------------------------

    async def publish_purge(self, key_or_prefix: str, prefix: bool) -> int:
        """Tell the other instances to drop their L1 copies; returns how many listeners got it
        (this instance's own listener ignores it). 0 when Redis is down."""
        message = purge_message(self.instance_id, key_or_prefix, prefix)
        got = await self._guarded(
            "publish", lambda: self._cache.raw("publish", self.names.purge_channel, message)
        )
        return 0 if got is _Skip.DOWN else int(got)

    def start_invalidation_listener(self, callback: PurgeCallback) -> None:
        """Call `callback(key, prefix)` for purges from other instances, from now until close();
        the listener reconnects by itself after Redis comes back. Needs a running loop."""
        self._subscriber.set_purge_callback(callback)
        self._subscriber.start()

    @property
    def listener_running(self) -> bool:
        return self._subscriber.started

    async def wait_listening(self, timeout: float) -> bool:
        """True once the listener is subscribed (a purge published now will reach it)."""
        self._subscriber.start()
        return await self._subscriber.wait_subscribed(timeout)

    # -- internals -----------------------------------------------------------------------------

    def _scan_call(self, cursor: int, pattern: str) -> Callable[[], Awaitable[Any]]:
        return lambda: self._cache.raw("scan", cursor, match=pattern, count=500)

    def _unlink_call(self, keys: list[bytes]) -> Callable[[], Awaitable[Any]]:
        return lambda: self._cache.raw("unlink", *keys)

    async def _try_lease(self, key: str, ttl_ms: int) -> Lease | _Held | _Skip:
        token = secrets.token_hex(16)

        async def attempt() -> bool:
            try:
                await self._cache.add(self.names.lease(key), token, ttl=(ttl_ms + 0.5) / 1000)
            except ValueError:  # aiocache's "key already exists": SET NX lost
                return False
            return True

        won = await self._guarded("lease", attempt)
        if won is _Skip.DOWN:
            return _Skip.DOWN
        return Lease(key, token, ttl_ms) if won else _Held.HELD

    async def _await_fill(self, key: str, timeout: float, newer_than: float | None) -> Entry | WaitEnd:
        self._subscriber.start()  # wake-ups on release; polling covers expiry and lost messages
        return await self._waiters.wait(key, timeout, lambda: self._probe(key, newer_than), newer_than)

    async def _probe(self, key: str, newer_than: float | None) -> tuple[Entry | None, bool] | None:
        """(the awaited entry or None, lease still held) in one round trip; None: Redis down.
        An entry stored at or before `newer_than` is the stale copy being replaced: keep waiting."""
        got = await self._guarded(
            "wait", lambda: self._cache.raw("mget", self.names.entry(key), self.names.lease(key))
        )
        if got is _Skip.DOWN:
            return None
        data, holder = got
        entry = None if data is None else self._decode(key, data)
        if entry is not None and newer_than is not None and entry.stored_at <= newer_than:
            entry = None
        return entry, holder is not None

    def _decode(self, key: str, data: bytes) -> Entry | None:
        try:
            entry = decode(data)
        except CodecError as exc:
            log.warning("shared tier: undecodable entry under %r: %s", key, exc)
            self.misses += 1
            return None
        self.hits += 1
        return entry

    async def _guarded(self, op: str, call: Callable[[], Awaitable[T]]) -> T | _Skip:
        """Run one Redis call under the breaker; every error or timeout becomes `_Skip.DOWN`."""
        start = self._clock.now()
        permit = self._breaker.acquire(start)
        if permit is None:
            self.skipped += 1
            self._report(start)
            return _Skip.DOWN
        try:
            async with asyncio.timeout(self._timeout):
                result = await call()
        except asyncio.CancelledError:
            self._breaker.release(permit)
            raise
        except Exception as exc:  # Redis is an integration: nothing it does may fail a request
            self.errors += 1
            now = self._clock.now()
            self._breaker.record(permit, now, ok=False, duration=now - start)
            log.debug("shared tier: %s failed: %r", op, exc)
            self._report(now, f"{op}: {exc!r}")
            return _Skip.DOWN
        now = self._clock.now()
        self._breaker.record(permit, now, ok=True, duration=now - start)
        self._report(now)
        return result

    def _report(self, now: float, error: str = "") -> None:
        for transition in self._breaker.drain_transitions():
            if transition.new is State.HALF_OPEN:
                continue  # still down until a probe succeeds
            is_up = transition.new is State.CLOSED
            if is_up == self._reported_up:
                continue
            self._reported_up = is_up
            reason = transition.reason + (f" (last error {error})" if error and not is_up else "")
            change = TierChange(up=is_up, at=transition.at, reason=reason)
            (log.info if is_up else log.warning)("shared tier %s: %s", "up" if is_up else "down", reason)
            if self._on_change is not None:
                try:
                    self._on_change(change)
                except Exception:
                    log.exception("shared tier: on_change callback failed")
