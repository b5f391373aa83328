"""Cross-instance coordination over Redis: lease values, key names, and the pub/sub listener.

Owns: how shared-tier keys and channels are named, the `Lease` value, the token-checked release
script, and `Subscriber`, the one background pub/sub connection per instance that wakes local
waiters when a lease ends and hands purges from other instances to a callback.
Must not: decide cache semantics, hold entries, or touch the memory tier itself (the callback
does). aiocache has no pub/sub, so this module talks to redis-py directly; the data path stays
in `shared.py` behind aiocache.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

log = logging.getLogger("proxy.store.shared")

PurgeCallback = Callable[[str, bool], None]

# Compare-and-delete, then announce the end of the lease in the same atomic step so a waiter
# never sees "lease gone" before the announcement can reach it. The pattern is Redis's own
# single-instance lock release: https://redis.io/docs/latest/develop/use/patterns/distributed-locks/
RELEASE_LUA = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  redis.call('del', KEYS[1])
  redis.call('publish', ARGV[2], ARGV[3])
  return 1
end
return 0
"""

_GLOB_SPECIALS = frozenset("*?[]\\")


@dataclass(frozen=True, slots=True)
class Lease:
    """The right to fetch `key` for the whole fleet until released or `ttl_ms` runs out."""

    key: str
    token: str
    ttl_ms: int


@dataclass(frozen=True, slots=True)
class Names:
    """Every Redis name one namespace uses. Entries and leases live in separate sub-spaces so no
    cache key can ever collide with a lease key."""

    namespace: str

    def entry(self, key: str) -> str:
        return f"{self.namespace}:e:{key}"

    def lease(self, key: str) -> str:
        return f"{self.namespace}:l:{key}"

    def entry_pattern(self, prefix: str) -> str:
        """A SCAN MATCH pattern for every entry whose cache key starts with `prefix`."""
        escaped = "".join("\\" + ch if ch in _GLOB_SPECIALS else ch for ch in prefix)
        return f"{self.entry('')}{escaped}*"

    @property
    def released_channel(self) -> str:
        return f"{self.namespace}:filled"

    @property
    def purge_channel(self) -> str:
        return f"{self.namespace}:purge"


def purge_message(instance_id: str, key: str, prefix: bool) -> str:
    return json.dumps({"from": instance_id, "key": key, "prefix": prefix})


def parse_purge(data: bytes | str) -> tuple[str, str, bool] | None:
    """(sender, key, prefix) or None for a message this version cannot read."""
    try:
        raw: Any = json.loads(data)
    except ValueError:
        return None
    if not isinstance(raw, dict):
        return None
    sender, key, prefix = raw.get("from"), raw.get("key"), raw.get("prefix")
    if not isinstance(sender, str) or not isinstance(key, str) or not isinstance(prefix, bool):
        return None
    return sender, key, prefix


class Subscriber:
    """One pub/sub connection per instance, reconnecting after Redis comes back.

    Wakes `wake(key)` when any instance releases a lease on `key`; calls `on_purge(key, prefix)`
    for purges published by other instances. Errors are logged with their cause and retried with
    a capped backoff; callback exceptions are logged and do not stop the loop.
    """

    def __init__(
        self,
        url: str,
        names: Names,
        instance_id: str,
        wake: Callable[[str], None],
        *,
        connect_timeout: float,
        max_backoff: float = 2.0,
    ) -> None:
        self._names = names
        self._instance_id = instance_id
        self._wake = wake
        self._on_purge: PurgeCallback | None = None
        self._max_backoff = max_backoff
        # No client-side retry: this loop owns reconnection and wants the error, not a stall.
        self._client: aredis.Redis = aredis.Redis.from_url(
            url, socket_connect_timeout=connect_timeout, retry=Retry(NoBackoff(), 0)
        )
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self.reconnects = 0

    def set_purge_callback(self, callback: PurgeCallback) -> None:
        self._on_purge = callback

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"rproxy-subscriber-{self._names.namespace}"
            )

    @property
    def started(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def subscribed(self) -> bool:
        return self._subscribed.is_set()

    async def wait_subscribed(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._subscribed.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._client.aclose(close_connection_pool=True)

    async def _run(self) -> None:
        backoff = 0.05
        while True:
            try:
                await self._listen_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: log it, then reconnect
                self._subscribed.clear()
                self.reconnects += 1
                log.warning("shared tier: pub/sub listener lost (%r); reconnecting in %.2fs",
                            exc, backoff)
            # The backoff is real waiting for Redis to come back, not a test sleep.
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._max_backoff)

    async def _listen_once(self) -> None:
        channels = (self._names.released_channel, self._names.purge_channel)
        pubsub = self._client.pubsub()
        try:
            await pubsub.subscribe(*channels)
            pending = set(channels)
            while True:
                message = await pubsub.get_message(timeout=1.0)
                if message is None:
                    continue
                kind = message.get("type")
                if kind == "subscribe":
                    pending.discard(_text(message["channel"]))
                    if not pending:
                        # Only now can a PUBLISH from another instance reach us.
                        self._subscribed.set()
                        log.info("shared tier: pub/sub listening on %s", ", ".join(channels))
                elif kind == "message":
                    self._dispatch(_text(message["channel"]), message["data"])
        finally:
            self._subscribed.clear()
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _dispatch(self, channel: str, data: bytes | str) -> None:
        if channel == self._names.released_channel:
            self._wake(_text(data))
            return
        parsed = parse_purge(data)
        if parsed is None:
            log.warning("shared tier: unreadable purge message %r", data)
            return
        sender, key, prefix = parsed
        if sender == self._instance_id or self._on_purge is None:
            return
        try:
            self._on_purge(key, prefix)
        except Exception:
            log.exception("shared tier: purge callback failed for %r (prefix=%s)", key, prefix)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
