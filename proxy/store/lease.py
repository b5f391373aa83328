"""Cross-instance coordination over Redis: lease values, key names, and the pub/sub listener.

Owns: how shared-tier keys and channels are named, the `Lease` value, the token-checked release
script, `Waiters` (one poller per awaited key per instance), and `Subscriber`, the one background
pub/sub connection per instance that wakes those waiters when a lease ends and hands purges from
other instances to a callback.
Must not: decide cache semantics, hold entries, or touch the memory tier itself (the callback
does). aiocache has no pub/sub, so this module talks to redis-py directly; the data path stays
in `shared.py` behind aiocache.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from proxy.core.model import Entry

log = logging.getLogger("proxy.store.shared")

PurgeCallback = Callable[[str, bool], None]
# One round trip answering "has the awaited entry landed, and is the lease still held?";
# None when Redis is down.
Probe = Callable[[], Awaitable[tuple[Entry | None, bool] | None]]

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
_READ_TICK = 0.5  # seconds; the listen loop looks at its stop flag at least this often
_SOCKET_TIMEOUT = 2.0
_HEALTH_CHECK = 5.0
_CLOSE_GRACE = 2.0
_MIN_BACKOFF = 0.05


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


class WaitEnd(enum.Enum):
    """How a wait ended without the value."""

    GONE = "gone"  # the lease ended (released or expired) with nothing stored: take over
    TIMEOUT = "timeout"
    DOWN = "down"  # Redis failed or its breaker is open


class Waiters:
    """Waits for an entry another instance is fetching: one poller per awaited key per instance,
    however many local callers wait, woken at once by a release message and polling every
    `poll_interval` to notice an expired lease (expiry publishes nothing) or a lost message."""

    def __init__(self, poll_interval: float) -> None:
        self._poll = poll_interval
        self._events: dict[str, set[asyncio.Event]] = {}
        self._tasks: dict[tuple[str, float | None], asyncio.Task[Entry | WaitEnd]] = {}

    def wake(self, key: str) -> None:
        for event in self._events.get(key, ()):
            event.set()

    async def wait(
        self, key: str, timeout: float, probe: Probe, newer_than: float | None = None
    ) -> Entry | WaitEnd:
        slot = (key, newer_than)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (remaining := deadline - loop.time()) > 0:
            task = self._tasks.get(slot)
            if task is None or task.done():
                task = loop.create_task(self._poll_until(key, remaining, probe))
                self._tasks[slot] = task
                task.add_done_callback(lambda done: self._forget(slot, done))
            try:
                # shield: one caller giving up must not cancel the poll the others share
                got = await asyncio.wait_for(asyncio.shield(task), remaining)
            except TimeoutError:
                break
            if got is not WaitEnd.TIMEOUT:
                return got
            # else the shared poll was started by a caller with a shorter budget than ours
        return WaitEnd.TIMEOUT

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _forget(self, slot: tuple[str, float | None], task: asyncio.Task[Entry | WaitEnd]) -> None:
        if self._tasks.get(slot) is task:
            del self._tasks[slot]

    async def _poll_until(self, key: str, timeout: float, probe: Probe) -> Entry | WaitEnd:
        event = asyncio.Event()
        self._events.setdefault(key, set()).add(event)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    event.clear()  # before probing, so a release during the probe still wakes us
                    got = await probe()
                    if got is None:
                        return WaitEnd.DOWN
                    entry, held = got
                    if entry is not None:
                        return entry
                    if not held:
                        return WaitEnd.GONE
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(event.wait(), self._poll)
        except TimeoutError:
            return WaitEnd.TIMEOUT
        finally:
            waiting = self._events.get(key)
            if waiting is not None:
                waiting.discard(event)
                if not waiting:
                    del self._events[key]


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
        # health_check_interval makes redis-py PING an idle subscription, so a frozen server is
        # noticed (the read times out) instead of leaving a silent, dead listener.
        self._client: aredis.Redis = aredis.Redis.from_url(
            url,
            socket_connect_timeout=connect_timeout,
            socket_timeout=_SOCKET_TIMEOUT,
            health_check_interval=_HEALTH_CHECK,
            retry=Retry(NoBackoff(), 0),
        )
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._backoff = _MIN_BACKOFF
        self._subscribed = asyncio.Event()
        self.reconnects = 0

    def set_purge_callback(self, callback: PurgeCallback) -> None:
        self._on_purge = callback

    def start(self) -> None:
        if self._task is None and not self._stopping:
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
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            # Python 3.11's asyncio.timeout can swallow a cancel that lands as its own deadline
            # fires (fixed in 3.12); the stop flag ends the loop even then, within one tick.
            done, _ = await asyncio.wait({task}, timeout=_CLOSE_GRACE)
            if not done:
                log.warning("shared tier: pub/sub listener did not stop within %.1fs", _CLOSE_GRACE)
        await self._client.aclose(close_connection_pool=True)

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self._listen_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: log it, then reconnect
                if self._stopping:
                    return
                self._subscribed.clear()
                self.reconnects += 1
                log.warning(
                    "shared tier: pub/sub listener lost (%r); reconnecting in %.2fs", exc, self._backoff
                )
            # The backoff is real waiting for Redis to come back, not a test sleep.
            await asyncio.sleep(self._backoff)
            self._backoff = min(self._backoff * 2, self._max_backoff)

    async def _listen_once(self) -> None:
        channels = (self._names.released_channel, self._names.purge_channel)
        pubsub = self._client.pubsub()
        try:
            await pubsub.subscribe(*channels)
            pending = set(channels)
            while not self._stopping:
                message = await pubsub.get_message(timeout=_READ_TICK)
                if message is None:
                    continue
                kind = message.get("type")
                if kind == "subscribe":
                    pending.discard(_text(message["channel"]))
                    if not pending:
                        # Only now can a PUBLISH from another instance reach us.
                        self._subscribed.set()
                        self._backoff = _MIN_BACKOFF
                        log.info("shared tier: pub/sub listening on %s", ", ".join(channels))
                elif kind == "message":
                    self._dispatch(_text(message["channel"]), message["data"])
        finally:
            self._subscribed.clear()
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]  # typed from redis 8.2

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
