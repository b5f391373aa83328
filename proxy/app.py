"""build_app(config, ...) -> web.Application, and the lifecycle around it.

Owns: wiring: every long-lived object is created here and hung off the app (`web.AppKey`), so
there are no globals and a test builds a whole proxy with a `FakeClock` in one call.
Must not: contain request logic (that is `handler`) or parse arguments (that is `__main__`).
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
from proxy.flight import Flights, Tasks
from proxy.handler import Handler
from proxy.health import HEALTH, HealthChecks
from proxy.metrics import Family, Sample
from proxy.publicport import PUBLIC
from proxy.runtime import Runtime
from proxy.state import ProxyState
from proxy.store.base import SharedTier
from proxy.store.memory import MemoryStore
from proxy.store.snapshot import SNAPSHOT, Snapshotter
from proxy.telemetry import Telemetry
from proxy.transport import Transports

if TYPE_CHECKING:
    from proxy.store.shared import TierChange

log = logging.getLogger("proxy.app")
PROXY_STATE = web.AppKey("proxy_state", ProxyState)


def build_state(
    config: Config,
    *,
    clock: Clock | None = None,
    shared: SharedTier | None = None,
    rng: random.Random | None = None,
    access: AccessLog | None = None,
    transports: Transports | None = None,
) -> ProxyState:
    clock = clock or SystemClock()
    telemetry = Telemetry(
        access=access or AccessLog(),
        alerts=Alerts(config.alerts.webhook),
        secret_params=config.log.redact_params,
        secret_values=config.secret_values(),
    )
    tasks = Tasks()
    holder: list[ProxyState] = []

    def on_transition(t: Transition) -> None:
        if holder:
            _breaker_event(holder[0], t)

    state = ProxyState(
        clock=clock,
        runtime=Runtime(config, clock, on_transition=on_transition, rng=rng, transports=transports),
        cache=Cache(MemoryStore(config.cache.max_bytes, group_of=group_of), tasks, shared),
        telemetry=telemetry,
        tasks=tasks,
        flights=Flights(tasks),
        started_at=clock.now(),
        on_transition=on_transition,
    )
    holder.append(state)
    if shared is None and config.cache.backend == "redis":
        from proxy.store.shared import RedisTier

        state.cache.shared = RedisTier.from_config(
            config.cache.redis, clock=clock, on_change=lambda change: _tier_event(state, change)
        )
    return state


def _tier_event(state: ProxyState, change: TierChange) -> None:
    """Redis is an integration too: its outages are logged, counted and alerted."""
    name = "shared_tier_up" if change.up else "shared_tier_down"
    state.telemetry.event(name, change.at, level="info" if change.up else "error", reason=change.reason)


def _breaker_event(state: ProxyState, t: Transition) -> None:
    state.telemetry.transitions.inc((t.upstream, t.new.value))
    level = "error" if t.new.value == "open" else "warning" if t.new.value == "half_open" else "info"
    state.telemetry.event(
        f"breaker_{t.new.value}",
        t.at,
        level=level,
        upstream=t.upstream,
        previous=t.old.value,
        reason=t.reason,
    )


def build_app(
    config: Config,
    *,
    clock: Clock | None = None,
    shared: SharedTier | None = None,
    rng: random.Random | None = None,
    state: ProxyState | None = None,
    transports: Transports | None = None,
) -> web.Application:
    """The proxy's application: its lifecycle and state. The public port is not served by aiohttp:
    `publicport.PublicSite` serves `app[PUBLIC]` (see proxy/publicport.py for why it hangs here).
    Pass `state` to share one with an admin app; `transports` to reach vendors some other way
    than our HTTP/1.1 client (the seam)."""
    state = state or build_state(config, clock=clock, shared=shared, rng=rng, transports=transports)
    app = web.Application()
    app[PUBLIC] = Handler(state)
    app[PROXY_STATE] = state
    app.on_startup.append(_startup)
    app.on_cleanup.append(_cleanup)
    return app


async def _startup(app: web.Application) -> None:
    state = app[PROXY_STATE]
    config = state.runtime.config
    if not state.telemetry.access.enabled and config.log.access != "off":
        state.telemetry.access.open(config.log.access)
    state.telemetry.alerts.start()
    if state.shared is not None:
        shared = state.shared
        shared.start_invalidation_listener(state.cache.forget_here)
        state.telemetry.registry.collector(lambda: _shared_families(shared, state.clock.now()))
    app[HEALTH] = HealthChecks(state)
    app[HEALTH].start()
    if config.cache.snapshot:  # last-known-good from before the restart, before we say ready
        app[SNAPSHOT] = snapshot = Snapshotter(state)
        await snapshot.load()
        snapshot.start()
    state.ready = True


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
    state = app[PROXY_STATE]
    state.ready = False
    if HEALTH in app:
        await app[HEALTH].stop()
    await state.tasks.drain(timeout=2.0)
    await state.tasks.cancel_all()
    if SNAPSHOT in app:  # after the drain, so refreshes that just landed are kept
        await app[SNAPSHOT].close()
    for upstream in state.runtime.upstreams.values():
        await upstream.close()
    await state.cache.close()
    await state.telemetry.alerts.close()
    await state.telemetry.access.close()
