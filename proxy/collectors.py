"""Scrape-time metrics: values the proxy already holds, read when /metrics is fetched.

Owns: the `rproxy_*` families computed from state at scrape time (cache size, breaker state and
health per upstream, last-known-good age per route, coalesced waiters, background tasks,
access-log and alert losses, retry budget). Nothing here runs on the request path.
Must not: keep counts of its own (it reads the objects that count), or capture the runtime:
`Live.runtime` is read at every scrape because a reload swaps it. Parts are read from the public
app by their keys (`proxy.parts`), as the admin endpoints read them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from aiohttp import web

from proxy.core.breaker import State
from proxy.metrics import Family, MetricType, Sample
from proxy.parts import CACHE, CLOCK, FLIGHTS, LIFECYCLE, LIVE, QUARANTINE, TASKS, TELEMETRY
from proxy.procstats import process_families
from proxy.status import VERSION, lkg_age

# Registered once per registry; its presence marks a registry whose collectors are installed.
INFO_METRIC = "rproxy_build_info"
BREAKER_VALUE = {State.CLOSED: 0.0, State.HALF_OPEN: 1.0, State.OPEN: 2.0}


def register_collectors(app: web.Application) -> bool:
    """Install the collectors on the app's telemetry registry; False if already installed."""
    registry = app[TELEMETRY].registry
    if registry.get(INFO_METRIC) is not None:
        return False
    registry.gauge(INFO_METRIC, "Always 1; the version as a label", ("version",)).set((VERSION,), 1.0)
    for collect in (_cache, _upstreams, _routes, _internals):
        registry.collector(_bind(collect, app))
    registry.collector(lambda: list(process_families()))  # process_*: CPU, memory, fds, start
    return True


def _bind(
    fn: Callable[[web.Application], Iterable[Family]], app: web.Application
) -> Callable[[], list[Family]]:
    return lambda: list(fn(app))


def _one(name: str, kind: MetricType, help: str, value: float) -> Family:
    return Family(name, kind, help, (Sample(float(value)),))


def _per(name: str, kind: MetricType, help: str, label: str, values: Iterable[tuple[str, float]]) -> Family:
    return Family(name, kind, help, tuple(Sample(float(v), ((label, k),)) for k, v in values))


def _cache(app: web.Application) -> Iterable[Family]:
    store = app[CACHE].memory
    yield _one("rproxy_cache_entries", "gauge", "Entries in the memory tier", len(store))
    yield _one("rproxy_cache_bytes", "gauge", "Bytes held by the memory tier", store.bytes)
    yield _one("rproxy_cache_max_bytes", "gauge", "Bound of the memory tier in bytes", store.max_bytes)
    yield _one("rproxy_cache_evictions_total", "counter", "Entries evicted by the LRU bound", store.evictions)
    yield _one(
        "rproxy_quarantine_items", "gauge", "Rejected payloads kept for inspection", len(app[QUARANTINE])
    )


def _upstreams(app: web.Application) -> Iterable[Family]:
    now = app[CLOCK].now()
    ups = list(app[LIVE].runtime.upstreams.values())
    yield _per(
        "rproxy_breaker_state",
        "gauge",
        "Circuit breaker: 0 closed, 1 half_open, 2 open",
        "upstream",
        ((u.name, BREAKER_VALUE[u.state(now)]) for u in ups),
    )
    yield _per(
        "rproxy_upstream_healthy",
        "gauge",
        "Active health check: 1 healthy, 0 unhealthy, -1 unknown",
        "upstream",
        ((u.name, -1.0 if u.track.healthy is None else float(u.track.healthy)) for u in ups),
    )
    yield _per(
        "rproxy_retry_budget_available",
        "gauge",
        "Retries the budget still allows now",
        "upstream",
        ((u.name, float(u.budget.available(now))) for u in ups),
    )
    yield _per(
        "rproxy_upstream_calls_total",
        "counter",
        "Calls made to the upstream since (re)load",
        "upstream",
        ((u.name, float(u.track.calls)) for u in ups),
    )
    yield _per(
        "rproxy_upstream_failures_total",
        "counter",
        "Failed calls since (re)load",
        "upstream",
        ((u.name, float(u.track.failures)) for u in ups),
    )
    yield Family(
        "rproxy_upstream_protocol_errors",
        "counter",
        "Connections discarded for a protocol fault (stray bytes, bad framing), by reason",
        tuple(
            Sample(float(n), (("upstream", u.name), ("reason", reason)))
            for u in ups
            for reason, n in sorted(u.transport.protocol_errors.items())
        ),
    )


def _routes(app: web.Application) -> Iterable[Family]:
    now = app[CLOCK].now()
    ages = [(rs.config.name, age) for rs in app[LIVE].runtime.routes if (age := lkg_age(rs, now)) is not None]
    yield _per(
        "rproxy_lkg_age_seconds",
        "gauge",
        "Seconds since the route last got a good answer (absent before the first)",
        "route",
        ages,
    )


def _internals(app: web.Application) -> Iterable[Family]:
    tasks, flights, telemetry = app[TASKS], app[FLIGHTS], app[TELEMETRY]
    access, alerts = telemetry.access, telemetry.alerts
    yield _one(
        "rproxy_coalesced_waiters_total",
        "counter",
        "Requests that waited for another request's fetch instead of calling upstream",
        flights.coalesced,
    )
    yield _one("rproxy_inflight_fetches", "gauge", "Upstream fetches in flight (one per key)", len(flights))
    yield _one("rproxy_background_tasks", "gauge", "Background tasks running", len(tasks))
    yield _one(
        "rproxy_background_task_failures_total", "counter", "Background tasks that raised", tasks.failures
    )
    yield _one(
        "rproxy_background_tasks_dropped_total",
        "counter",
        "Background tasks refused because the task set was full",
        tasks.dropped,
    )
    yield _per(
        "rproxy_access_log_lost_total",
        "counter",
        "Access-log lines lost, by reason",
        "reason",
        (
            ("queue_full", access.dropped),
            ("unserialisable", access.rejected),
            ("write_error", access.write_errors),
        ),
    )
    yield _per(
        "rproxy_alerts_total",
        "counter",
        "Alert webhook deliveries by outcome",
        "outcome",
        (("sent", alerts.sent), ("failed", alerts.failed), ("dropped", alerts.dropped)),
    )
    yield _one("rproxy_ready", "gauge", "1 when the proxy is ready to serve", float(app[LIFECYCLE].ready))
    yield _one(
        "rproxy_metrics_collector_errors_total",
        "counter",
        "Scrapes where a collector raised",
        telemetry.registry.collector_errors,
    )
