"""build_app(config, ...) -> web.Application, and the lifecycle around it.

Owns: wiring: every long-lived object is created here and hung off the app (`web.AppKey`), so
there are no globals and a test builds a whole proxy with a `FakeClock` in one call.
Must not: contain request logic (that is `handler`) or parse arguments (that is `__main__`).
"""

from __future__ import annotations

import logging
import random

from aiohttp import web

from proxy.accesslog import AccessLog
from proxy.alerts import Alerts
from proxy.breaker import Transition
from proxy.clock import Clock, SystemClock
from proxy.flight import Flights, Tasks
from proxy.handler import Handler
from proxy.runtime import Runtime
from proxy.settings import Config
from proxy.state import ProxyState
from proxy.store.base import SharedTier
from proxy.store.memory import MemoryStore
from proxy.telemetry import Telemetry

log = logging.getLogger("proxy.app")
PROXY_STATE = web.AppKey("proxy_state", ProxyState)
MAX_FIELD_SIZE = 8190  # request line and each header, as nginx's large_client_header_buffers


def build_state(config: Config, *, clock: Clock | None = None, shared: SharedTier | None = None,
                rng: random.Random | None = None, access: AccessLog | None = None) -> ProxyState:
    clock = clock or SystemClock()
    telemetry = Telemetry(access=access or AccessLog(), alerts=Alerts(config.alerts.webhook),
                          secret_params=config.log.redact_params,
                          secret_values=config.secret_values())
    tasks = Tasks()
    holder: list[ProxyState] = []

    def on_transition(t: Transition) -> None:
        if holder:
            _breaker_event(holder[0], t)

    state = ProxyState(clock=clock, runtime=Runtime(config, clock, on_transition=on_transition, rng=rng),
                       store=MemoryStore(config.cache.max_bytes), telemetry=telemetry, tasks=tasks,
                       flights=Flights(tasks), shared=shared, started_at=clock.now())
    state.on_transition = on_transition
    holder.append(state)
    return state


def _breaker_event(state: ProxyState, t: Transition) -> None:
    state.telemetry.transitions.inc((t.upstream, t.new.value))
    level = "error" if t.new.value == "open" else "warning" if t.new.value == "half_open" else "info"
    state.telemetry.event(f"breaker_{t.new.value}", t.at, level=level, upstream=t.upstream,
                          previous=t.old.value, reason=t.reason)


def build_app(config: Config, *, clock: Clock | None = None, shared: SharedTier | None = None,
              rng: random.Random | None = None, state: ProxyState | None = None) -> web.Application:
    """The public listener's application. Pass `state` to share one with an admin app."""
    state = state or build_state(config, clock=clock, shared=shared, rng=rng)
    app = web.Application(handler_args={"max_field_size": MAX_FIELD_SIZE, "max_line_size": MAX_FIELD_SIZE})
    app[PROXY_STATE] = state
    app.router.add_route("*", "/{tail:.*}", Handler(state).handle)
    app.on_startup.append(_startup)
    app.on_cleanup.append(_cleanup)
    return app


async def _startup(app: web.Application) -> None:
    state = app[PROXY_STATE]
    config = state.runtime.config
    if not state.telemetry.access.enabled and config.log.access != "off":
        state.telemetry.access.open(config.log.access)
    state.telemetry.alerts.start()
    state.ready = True


async def _cleanup(app: web.Application) -> None:
    state = app[PROXY_STATE]
    state.ready = False
    await state.tasks.drain(timeout=2.0)
    await state.tasks.cancel_all()
    for upstream in state.runtime.upstreams.values():
        await upstream.close()
    if state.shared is not None:
        await state.shared.close()
    await state.telemetry.alerts.close()
    await state.telemetry.access.close()
