"""build_app(config, ...) -> web.Application, and the lifecycle around it.

Owns: wiring: every long-lived part is created here, given the parts it needs, and hung off the
app under its own key (`proxy.parts`), so there are no globals, no container of parts, and a
test builds a whole proxy with a `FakeClock` in one call.
Must not: contain request logic (that is `driver`) or parse arguments (that is `__main__`).
"""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING

from aiohttp import web

from proxy.accesslog import AccessLog
from proxy.alerts import Alerts
from proxy.cache import Cache
from proxy.clock import Clock, SystemClock
from proxy.core.breaker import Transition
from proxy.core.config.model import Config
from proxy.core.keys import group_of
from proxy.datacheck import DataCheck
from proxy.driver import MAX_HEADER_BYTES, MAX_HEADERS, MAX_URL, Driver
from proxy.fasthit import FastHits, Limits
from proxy.fetch import Fetcher
from proxy.flight import Flights, Tasks
from proxy.health import HEALTH, HealthChecks
from proxy.invalidate import Invalidator
from proxy.metrics import Family, Sample
from proxy.outcome import Outcome
from proxy.parts import (
    CACHE,
    CLOCK,
    FLIGHTS,
    LIFECYCLE,
    LIVE,
    QUARANTINE,
    RELOADER,
    TASKS,
    TELEMETRY,
    Lifecycle,
)
from proxy.publicport import PUBLIC
from proxy.quarantine import Quarantine
from proxy.refresh import Refresher
from proxy.reload import Reloader
from proxy.requestid import RequestIds
from proxy.runtime import Live, Runtime
from proxy.store.base import SharedTier
from proxy.store.memory import MemoryStore
from proxy.store.snapshot import SNAPSHOT, Snapshotter
from proxy.telemetry import Telemetry
from proxy.transport import Transports

if TYPE_CHECKING:
    from proxy.store.shared import TierChange

log = logging.getLogger("proxy.app")


def build_app(
    config: Config,
    *,
    clock: Clock | None = None,
    shared: SharedTier | None = None,
    rng: random.Random | None = None,
    transports: Transports | None = None,
    quarantine: Quarantine | None = None,
) -> web.Application:
    """The proxy's application: its parts and lifecycle. The public port is not served by
    aiohttp: `publicport.PublicSite` serves `app[PUBLIC]` (see proxy/publicport.py for why it
    hangs here). `transports` reaches vendors some other way than our HTTP/1.1 client (the seam);
    `quarantine` keeps rejected payloads with other bounds than the default."""
    clock = clock or SystemClock()
    telemetry = Telemetry(
        access=AccessLog(),
        alerts=Alerts(config.alerts.webhook),
        secret_params=config.log.redact_params,
        secret_values=config.secret_values(),
    )

    def on_transition(t: Transition) -> None:
        _breaker_event(telemetry, t)

    live = Live(Runtime(config, clock, on_transition=on_transition, rng=rng, transports=transports))
    tasks = Tasks()
    cache = Cache(MemoryStore(config.cache.max_bytes, group_of=group_of), tasks, shared)
    if shared is None and config.cache.backend == "redis":
        from proxy.store.shared import RedisTier

        cache.shared = RedisTier.from_config(
            config.cache.redis, clock=clock, on_change=lambda change: _tier_event(telemetry, change)
        )
    quarantine = Quarantine() if quarantine is None else quarantine  # empty is falsy: not `or`
    flights = Flights[Outcome](tasks)
    fetcher = Fetcher(clock, live, cache, telemetry, DataCheck(clock, telemetry, quarantine))
    ids = RequestIds()
    app = web.Application()
    app[PUBLIC] = Driver(
        clock,
        live,
        cache,
        telemetry,
        flights,
        tasks,
        fetcher,
        Refresher(clock, telemetry, flights, fetcher),
        Invalidator(live, cache),
        ids,
        FastHits(clock, live, cache, telemetry, ids, Limits(MAX_URL, MAX_HEADERS, MAX_HEADER_BYTES)),
    )
    app[CLOCK], app[LIVE], app[CACHE], app[TELEMETRY] = clock, live, cache, telemetry
    app[TASKS], app[FLIGHTS], app[QUARANTINE] = tasks, flights, quarantine
    app[LIFECYCLE] = Lifecycle(started_at=clock.now())
    app[RELOADER] = Reloader(live, clock, cache, telemetry, tasks)
    app.on_startup.append(_startup)
    app.on_cleanup.append(_cleanup)
    return app


def _tier_event(telemetry: Telemetry, change: TierChange) -> None:
    """Redis is an integration too: its outages are logged, counted and alerted."""
    name = "shared_tier_up" if change.up else "shared_tier_down"
    telemetry.event(name, change.at, level="info" if change.up else "error", reason=change.reason)


def _breaker_event(telemetry: Telemetry, t: Transition) -> None:
    telemetry.transitions.inc((t.upstream, t.new.value))
    level = "error" if t.new.value == "open" else "warning" if t.new.value == "half_open" else "info"
    telemetry.event(
        f"breaker_{t.new.value}",
        t.at,
        level=level,
        upstream=t.upstream,
        previous=t.old.value,
        reason=t.reason,
    )


async def _startup(app: web.Application) -> None:
    clock, live, cache, telemetry = app[CLOCK], app[LIVE], app[CACHE], app[TELEMETRY]
    config = live.runtime.config
    if not telemetry.access.enabled and config.log.access != "off":
        telemetry.access.open(config.log.access)
    telemetry.alerts.start()
    shared = cache.shared
    if shared is not None:
        shared.start_invalidation_listener(cache.forget_here)
        telemetry.registry.collector(lambda: _shared_families(shared, clock.now()))
    app[HEALTH] = HealthChecks(clock, live, telemetry)
    app[HEALTH].start()
    if config.cache.snapshot:  # last-known-good from before the restart, before we say ready
        app[SNAPSHOT] = snapshot = Snapshotter(clock, live, cache, telemetry)
        await snapshot.load()
        snapshot.start()
    app[LIFECYCLE].ready = True


def _shared_families(shared: SharedTier, now: float) -> list[Family]:
    return [
        Family(
            "rproxy_shared_tier_up",
            "gauge",
            "1 while the shared tier answers, 0 while skipped",
            (Sample(1.0 if shared.up(now) else 0.0),),
        )
    ]


async def _cleanup(app: web.Application) -> None:
    app[LIFECYCLE].ready = False
    if HEALTH in app:
        await app[HEALTH].stop()
    tasks = app[TASKS]
    await tasks.drain(timeout=2.0)
    await tasks.cancel_all()
    if SNAPSHOT in app:  # after the drain, so refreshes that just landed are kept
        await app[SNAPSHOT].close()
    for upstream in app[LIVE].runtime.upstreams.values():
        await upstream.close()
    await app[CACHE].close()
    telemetry = app[TELEMETRY]
    await telemetry.alerts.close()
    await telemetry.access.close()
