"""The seam between the request path and a shared cache tier (L2).

Owns: the protocol a shared tier implements. Must not: import any client library.
The request path reads L1 synchronously; a shared tier is always awaited and may fail, and a
failing shared tier must never fail a request (it is an integration like any other).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from proxy.core.model import Entry

if TYPE_CHECKING:
    from proxy.store.lease import Lease


class SharedTier(Protocol):
    async def get(self, key: str) -> Entry | None:
        """The entry under `key`, or None when absent, undecodable or the tier is down."""
        ...

    async def set(self, key: str, entry: Entry, now: float) -> None:
        """Store with a physical TTL of `entry.keep_until - now`; errors are absorbed."""
        ...

    async def delete(self, key: str) -> None: ...

    async def delete_prefix(self, prefix: str) -> int: ...

    async def close(self) -> None: ...

    def up(self, now: float) -> bool:
        """False while the tier is failing: skipped, and said so in Cache-Status."""
        ...

    async def lease_or_wait(
        self, key: str, ttl_ms: int, timeout: float, *, newer_than: float | None = None
    ) -> Lease | Entry | None:
        """Fleet-wide single flight: a Lease (fetch, set, release), the Entry another instance
        stored, or None (tier down or timeout: fetch without coordination)."""
        ...

    async def release(self, lease: Lease) -> bool: ...

    async def publish_purge(self, key_or_prefix: str, prefix: bool) -> int: ...

    def start_invalidation_listener(self, callback: Callable[[str, bool], None]) -> None: ...
