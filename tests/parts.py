"""What tests read of a running proxy: its parts, by the keys `build_app` hangs them on.

A test-side view, not a container the proxy uses: every property reads the app's key when asked,
so `runtime` is the one in force after a reload. It keeps assertions short
(`proxy.state.store.get(...)`, `proxy.state.telemetry...`).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from aiohttp import web

from proxy.cache import Cache
from proxy.clock import Clock
from proxy.flight import Flights, Tasks
from proxy.parts import CACHE, CLOCK, FLIGHTS, LIFECYCLE, LIVE, QUARANTINE, RELOADER, TASKS, TELEMETRY
from proxy.quarantine import Quarantine
from proxy.reload import Reloader
from proxy.runtime import Runtime
from proxy.store.base import SharedTier
from proxy.store.memory import MemoryStore
from proxy.telemetry import Telemetry


class Parts:
    def __init__(self, app: web.Application) -> None:
        self.app = app

    @property
    def clock(self) -> Clock:
        return self.app[CLOCK]

    @property
    def runtime(self) -> Runtime:
        return self.app[LIVE].runtime

    @property
    def cache(self) -> Cache:
        return self.app[CACHE]

    @property
    def store(self) -> MemoryStore:
        return self.app[CACHE].memory

    @property
    def shared(self) -> SharedTier | None:
        return self.app[CACHE].shared

    @property
    def vary(self) -> OrderedDict[str, tuple[str, ...]]:
        return self.app[CACHE].vary

    @property
    def telemetry(self) -> Telemetry:
        return self.app[TELEMETRY]

    @property
    def tasks(self) -> Tasks:
        return self.app[TASKS]

    @property
    def flights(self) -> Flights[Any]:
        return self.app[FLIGHTS]

    @property
    def quarantine(self) -> Quarantine:
        return self.app[QUARANTINE]

    @property
    def reloader(self) -> Reloader:
        return self.app[RELOADER]

    @property
    def ready(self) -> bool:
        return self.app[LIFECYCLE].ready

    @ready.setter
    def ready(self, value: bool) -> None:
        self.app[LIFECYCLE].ready = value
