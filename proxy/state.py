"""Everything one running proxy holds, hung off `build_app()` (no globals).

Owns: the container the request path, the admin API and the lifecycle share.
Must not: contain behaviour beyond small accessors.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from proxy.cache import Cache
from proxy.clock import Clock
from proxy.core.breaker import Transition
from proxy.flight import Flights, Tasks
from proxy.quarantine import Quarantine
from proxy.runtime import Runtime
from proxy.store.base import SharedTier
from proxy.store.memory import MemoryStore
from proxy.telemetry import Telemetry

if TYPE_CHECKING:
    from proxy.fetch import Outcome

MAX_BACKOFF_KEYS = 10_000


@dataclass(slots=True)
class ProxyState:
    clock: Clock
    runtime: Runtime
    cache: Cache
    telemetry: Telemetry
    tasks: Tasks
    flights: Flights[Outcome]
    quarantine: Quarantine = field(default_factory=Quarantine)
    refresh_backoff: OrderedDict[str, tuple[int, float]] = field(default_factory=OrderedDict)
    started_at: float = 0.0
    ready: bool = False
    on_transition: Callable[[Transition], None] | None = None  # for runtimes built on reload

    @property
    def store(self) -> MemoryStore:
        """This instance's memory tier (what tests and the snapshot read directly)."""
        return self.cache.memory

    @property
    def shared(self) -> SharedTier | None:
        return self.cache.shared

    @property
    def vary(self) -> OrderedDict[str, tuple[str, ...]]:
        return self.cache.vary

    def refresh_allowed(self, key: str, now: float) -> bool:
        found = self.refresh_backoff.get(key)
        return found is None or now >= found[1]

    def refresh_failed(self, key: str, now: float) -> float:
        """Exponential backoff for a key's background refresh: no refresh per request
        against a dead vendor. Returns the delay chosen."""
        failures = self.refresh_backoff.get(key, (0, 0.0))[0] + 1
        delay = min(60.0, 2.0 ** (failures - 1))
        self.refresh_backoff[key] = (failures, now + delay)
        self.refresh_backoff.move_to_end(key)
        if len(self.refresh_backoff) > MAX_BACKOFF_KEYS:
            self.refresh_backoff.popitem(last=False)
        return delay

    def refresh_succeeded(self, key: str) -> None:
        self.refresh_backoff.pop(key, None)
