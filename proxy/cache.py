"""The cache front: the memory tier, the optional shared tier (Redis) and the Vary index behind
one interface; no caller knows whether a shared tier is configured.

Owns: lookup (memory, then the shared tier, filling memory), storing, the Vary index, purge and
invalidation fan-out (this instance's memory here; the shared tier and every other instance
through it), and the fleet-wide lease around one fetch (`one_fetch`).
Must not: decide freshness or storability (that is `core`), or talk to vendors (`fetch`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from proxy.clock import Clock
from proxy.core.keys import SEP, VARY_SEP, group_boundaries
from proxy.core.model import Entry
from proxy.flight import Tasks
from proxy.store.base import SharedTier
from proxy.store.memory import MemoryStore

if TYPE_CHECKING:
    from proxy.store.lease import Lease as SharedLease

MAX_VARY_INDEX: Final = 100_000


@dataclass(slots=True)
class Lease:
    """One fetch's place in the fleet: `filled` when another instance stored the entry while
    we waited; `degraded` when the shared tier is down (fetched without coordination)."""

    cache: Cache
    filled: Entry | None = None
    degraded: bool = False

    async def publish(self, key: str, entry: Entry, now: float) -> None:
        """Share what this fetch stored, before the lease is released: a waiter woken by the
        release must find it. Nothing to do without a shared tier."""
        if self.cache.shared is not None and not self.degraded:
            await self.cache.shared.set(key, entry, now)


class FleetFetch:
    """`one_fetch` with a shared tier: the lease taken (or the entry another instance stored
    while we waited) on entry, the lease released on exit. A class, not an async generator:
    mypyc compiles it (setup.py), and `async with` calls both methods directly."""

    __slots__ = ("_cache", "_clock", "_held", "_key", "_lease_ms", "_newer_than", "_shared", "_wait")

    def __init__(
        self,
        cache: Cache,
        shared: SharedTier,
        key: str,
        lease_ms: int,
        wait: float,
        newer_than: float | None,
        clock: Clock,
    ) -> None:
        self._cache, self._shared, self._key, self._lease_ms = cache, shared, key, lease_ms
        self._wait, self._newer_than, self._clock = wait, newer_than, clock
        self._held: SharedLease | None = None

    async def __aenter__(self) -> Lease:
        cache, shared = self._cache, self._shared
        if not shared.up(self._clock.now()):
            return Lease(cache, degraded=True)
        got = await shared.lease_or_wait(self._key, self._lease_ms, self._wait, newer_than=self._newer_than)
        if isinstance(got, Entry):  # another instance fetched it
            cache.memory.put(self._key, got, self._clock.now())
            return Lease(cache, filled=got)
        self._held = got
        return Lease(cache)

    async def __aexit__(self, kind: object, exc: object, trace: object) -> None:
        held, self._held = self._held, None
        if held is not None:
            await self._shared.release(held)


class Cache:
    def __init__(self, memory: MemoryStore, tasks: Tasks, shared: SharedTier | None = None) -> None:
        self.memory = memory
        self.shared = shared
        self.tasks = tasks
        self.vary: OrderedDict[str, tuple[str, ...]] = OrderedDict()

    # -- Vary (RFC 9111 4.1): which request headers select a variant of a primary key ----------

    def vary_of(self, primary: str) -> tuple[str, ...] | None:
        return self.vary.get(primary)

    def remember_vary(self, primary: str, names: tuple[str, ...]) -> None:
        if names:
            self.vary[primary] = names
            self.vary.move_to_end(primary)
            if len(self.vary) > MAX_VARY_INDEX:
                self.vary.popitem(last=False)
        elif primary in self.vary:  # not `.pop(primary, None)`: compiled, a method called by name
            del self.vary[primary]

    # -- read and write ---------------------------------------------------------------------------

    async def lookup(self, key: str, now: float) -> Entry | None:
        """This instance's copy, else the fleet's (kept here for the next request)."""
        entry = self.memory.get(key, now)
        if entry is None and self.shared is not None:
            entry = await self.shared.get(key)
            if entry is not None:
                self.memory.put(key, entry, now)
        return entry

    def put(self, key: str, entry: Entry, now: float) -> None:
        """Store here; a fetch shares it through its `Lease`."""
        self.memory.put(key, entry, now)

    def put_everywhere(self, key: str, entry: Entry, now: float) -> None:
        """Store here and, in the background, for the fleet (an operator's promote)."""
        self.memory.put(key, entry, now)
        if self.shared is not None:
            self.tasks.spawn(self.shared.set(key, entry, now), name="l2-set")

    def one_fetch(
        self, key: str, lease_ms: int, wait: float, *, newer_than: float | None, clock: Clock
    ) -> FleetFetch | None:
        """One upstream request per key for the whole fleet while the shared tier is up: take
        the lease, or wait for the instance that holds it. None alone: there is nothing to take,
        and a miss pays no scope, no coroutines and no clock reads for a fleet it does not have."""
        shared = self.shared
        if shared is None:
            return None
        return FleetFetch(self, shared, key, lease_ms, wait, newer_than, clock)

    # -- purge and invalidation ---------------------------------------------------------------

    def purge(self, base: str, *, exact: bool, soften: Callable[[Entry], Entry] | None, now: float) -> int:
        """Drop (or, with `soften`, mark stale) every entry of one URL (`exact`: the key and its
        keyed-header and Vary variants) or under a key prefix, here and in the fleet."""
        selected = [k for k in self.memory.key_list() if _in_scope(k, base, exact)]
        for key in selected:
            entry = self.memory.get(key, now)
            if soften is not None and entry is not None:
                softened = soften(entry)
                self.memory.put(key, softened, now)
                if self.shared is not None:
                    self.tasks.spawn(self._soften_shared(key, softened, now), name="l2-purge")
            else:
                self.memory.delete(key)
        if self.shared is not None and soften is None:  # also what only other instances stored
            self.tasks.spawn(self._forget_shared(base, exact), name="l2-purge")
        return len(selected)

    def invalidate(self, group: str) -> int:
        """A write to a URL: drop its entries everywhere (RFC 9111 4.4)."""
        dropped = self.memory.delete_group(group)
        if self.shared is not None:
            self.tasks.spawn(self._forget_group(group), name="l2-invalidate")
        return dropped

    def drop_prefix(self, prefix: str, label: str) -> int:
        """Every key under `prefix` (a route a reload changed), here and in the shared tier."""
        dropped = self.memory.delete_prefix(prefix)
        if self.shared is not None:
            self.tasks.spawn(self.shared.delete_prefix(prefix), name=f"l2-purge:{label}")
        return dropped

    def forget_here(self, key_or_prefix: str, prefix: bool) -> None:
        """Another instance purged: drop this instance's memory copy only."""
        if prefix:
            self.memory.delete_prefix(key_or_prefix)
        else:
            self.memory.delete(key_or_prefix)

    async def _forget_shared(self, base: str, exact: bool) -> None:
        """Drop from the shared tier, then tell every instance to drop its memory copy."""
        shared = self.shared
        assert shared is not None
        if exact:
            await shared.delete(base)
            await shared.publish_purge(base, False)
        for prefix in (base + SEP, base + VARY_SEP) if exact else (base,):
            await shared.delete_prefix(prefix)
            await shared.publish_purge(prefix, True)

    async def _forget_group(self, group: str) -> None:
        shared = self.shared
        assert shared is not None
        await shared.delete(group)
        await shared.publish_purge(group, False)
        for boundary in group_boundaries(group):
            await shared.delete_prefix(boundary)
            await shared.publish_purge(boundary, True)

    async def _soften_shared(self, key: str, entry: Entry, now: float) -> None:
        shared = self.shared
        assert shared is not None
        await shared.set(key, entry, now)
        await shared.publish_purge(key, False)  # other instances re-read the softened copy

    async def close(self) -> None:
        if self.shared is not None:
            await self.shared.close()


def _in_scope(stored: str, base: str, exact: bool) -> bool:
    if not exact:
        return stored.startswith(base)
    return stored == base or stored.startswith((base + SEP, base + VARY_SEP))
