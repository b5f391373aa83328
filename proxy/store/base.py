"""The seam between the request path and a shared cache tier (L2).

Owns: the protocol a shared tier implements. Must not: import any client library.
The request path reads L1 synchronously; a shared tier is always awaited and may fail, and a
failing shared tier must never fail a request (it is an integration like any other).
"""

from __future__ import annotations

from typing import Protocol

from proxy.model import Entry


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
