"""The long-lived parts of one running proxy, one `web.AppKey` each.

Owns: the keys `build_app()` hangs each part on (so the admin app, the CLI and tests find the
part they need by name), and `Lifecycle`, the one fact no other part owns: since when the proxy
runs and whether it is ready. There is no container of parts: a part that needs another is
given it when built (`app.build_app`).
Must not: build parts (that is `app`) or hold behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web

from proxy.cache import Cache
from proxy.clock import Clock
from proxy.flight import Flights, Tasks
from proxy.quarantine import Quarantine
from proxy.reload import Reloader
from proxy.runtime import Live
from proxy.telemetry import Telemetry


@dataclass(slots=True)
class Lifecycle:
    started_at: float
    ready: bool = False


CLOCK: Final = web.AppKey("clock", Clock)
LIVE: Final = web.AppKey("live", Live)  # the runtime in force; a reload swaps what it holds
CACHE: Final = web.AppKey("cache", Cache)
TELEMETRY: Final = web.AppKey("telemetry", Telemetry)
TASKS: Final = web.AppKey("tasks", Tasks)
FLIGHTS: web.AppKey[Flights[Any]] = web.AppKey("flights")
QUARANTINE: Final = web.AppKey("quarantine", Quarantine)
LIFECYCLE: Final = web.AppKey("lifecycle", Lifecycle)
RELOADER: Final = web.AppKey("reloader", Reloader)

SHARED_WITH_ADMIN: Final = (CLOCK, LIVE, CACHE, TELEMETRY, TASKS, FLIGHTS, QUARANTINE, LIFECYCLE, RELOADER)
