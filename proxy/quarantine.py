"""Quarantine: keep the last few payloads the guards rejected, per route, for humans.

Owns: a bounded, per-route ring of rejected responses (body, status, headers, verdict,
when), with stable ids so the admin API can list, inspect and "promote" one (an operator
accepts a quarantined payload as good: ``take`` removes it and hands it to the shell, which
stores it as the last good copy).

Must not: do I/O, read the clock (``at`` is passed in), or decide anything about the
payload. Memory is bounded: ``maxlen`` items per route and ``max_body_bytes`` per body;
a longer body is kept truncated and flagged, and the shell must refuse to promote it.
"""

from __future__ import annotations

import builtins
from collections import deque
from dataclasses import dataclass

from proxy.core.guards import Verdict


@dataclass(frozen=True, slots=True)
class QuarantineSummary:
    """What a listing shows: no body."""

    id: str
    route: str
    at: float
    status: int
    size: int  # the original body length in bytes
    violations: tuple[str, ...]  # labels, e.g. "gt at $.price"
    relative_only: bool
    truncated: bool
    cache_key: str  # the internal key the payload was fetched for ("" if unknown)


@dataclass(frozen=True, slots=True)
class QuarantineItem:
    id: str
    route: str
    at: float
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    verdict: Verdict
    size: int  # the original body length; len(body) is smaller when truncated
    truncated: bool
    cache_key: str = ""  # the internal key it was fetched for: promote stores under it

    def summary(self) -> QuarantineSummary:
        labels = tuple(v.label() for v in self.verdict.violations)
        return QuarantineSummary(
            self.id, self.route, self.at, self.status, self.size, labels,
            self.verdict.relative_only, self.truncated, self.cache_key,
        )  # fmt: skip


class Quarantine:
    """Per-route rings of rejected payloads. Ids are ``f"{route}-{seq}"``, never reused."""

    def __init__(self, maxlen: int = 20, *, max_body_bytes: int = 1 << 20) -> None:
        if maxlen < 1:
            raise ValueError("maxlen must be at least 1")
        if max_body_bytes < 0:
            raise ValueError("max_body_bytes must be >= 0")
        self._maxlen = maxlen
        self._max_body = max_body_bytes
        self._rings: dict[str, deque[QuarantineItem]] = {}
        self._by_id: dict[str, QuarantineItem] = {}
        self._seq = 0  # one counter for the whole quarantine: ids stay unique after eviction

    def __len__(self) -> int:
        return len(self._by_id)

    def add(
        self,
        route: str,
        body: bytes,
        verdict: Verdict,
        at: float,
        status: int,
        headers: tuple[tuple[str, str], ...],
        cache_key: str = "",
    ) -> str:
        """Keep a rejected payload; the oldest of the route's ring is evicted when full."""
        self._seq += 1
        item_id = f"{route}-{self._seq}"
        truncated = len(body) > self._max_body
        item = QuarantineItem(
            item_id, route, at, status, tuple(headers),
            bytes(body[: self._max_body]) if truncated else bytes(body),
            verdict, len(body), truncated, cache_key,
        )  # fmt: skip
        ring = self._rings.setdefault(route, deque())
        if len(ring) >= self._maxlen:
            evicted = ring.popleft()
            del self._by_id[evicted.id]
        ring.append(item)
        self._by_id[item_id] = item
        return item_id

    def list(self, route: str | None = None) -> builtins.list[QuarantineSummary]:
        """Summaries, newest first; one route or all of them."""
        if route is not None:
            items: builtins.list[QuarantineItem] = builtins.list(self._rings.get(route, ()))
        else:
            items = builtins.list(self._by_id.values())
        items.sort(key=lambda i: _seq_of(i.id), reverse=True)
        return [i.summary() for i in items]

    def get(self, item_id: str) -> QuarantineItem | None:
        return self._by_id.get(item_id)

    def take(self, item_id: str) -> QuarantineItem | None:
        """Remove and return an item (promote); None when unknown or already evicted."""
        item = self._by_id.pop(item_id, None)
        if item is None:
            return None
        ring = self._rings[item.route]
        ring.remove(item)
        if not ring:
            del self._rings[item.route]
        return item

    def clear(self, route: str | None = None) -> int:
        """Drop one route's items, or all; returns how many were dropped."""
        routes = [route] if route is not None else builtins.list(self._rings)
        dropped = 0
        for name in routes:
            for item in self._rings.pop(name, ()):
                del self._by_id[item.id]
                dropped += 1
        return dropped


def _seq_of(item_id: str) -> int:
    """The sequence number at the end of an id (routes may contain '-')."""
    return int(item_id.rsplit("-", 1)[1])
