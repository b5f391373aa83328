"""What the proxy records: one access-log line and metrics per transaction, and events.

Owns: metric names and labels (Prometheus, `rproxy_` prefix), the access-log record's fields
and their redaction, and events (log line + alert webhook). Every degraded answer is counted
here, so "fails visibly" is one module's job.
Must not: decide anything on the request path; block on I/O (log and webhook are queued).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from proxy.accesslog import AccessLog
from proxy.alerts import Alerts
from proxy.core.redact import DEFAULT_SECRET_PARAMS, redact_path_and_query, scrub
from proxy.deliver import Txn
from proxy.metrics import Registry

events_log = logging.getLogger("proxy.events")
_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class Telemetry:
    def __init__(
        self,
        *,
        access: AccessLog,
        alerts: Alerts,
        secret_params: tuple[str, ...] = (),
        secret_values: tuple[str, ...] = (),
    ) -> None:
        self.registry = Registry()
        self.access = access
        self.alerts = alerts
        self.secret_params = tuple(DEFAULT_SECRET_PARAMS) + secret_params
        self.secret_values = secret_values
        self._second = -1
        self._second_text = ""
        r = self.registry
        self.requests = r.counter(
            "rproxy_requests_total",
            "Requests by route, method, status and X-Cache",
            ("route", "method", "status", "x_cache"),
        )
        self.duration = r.histogram("rproxy_request_duration_seconds", "Time to answer, by route", ("route",))
        self.upstream_latency = r.histogram(
            "rproxy_upstream_duration_seconds", "Upstream response time", ("upstream",)
        )
        self.stale = r.counter(
            "rproxy_stale_served_total", "Stale answers by route and reason", ("route", "reason")
        )
        self.fallbacks = r.counter(
            "rproxy_fallbacks_total",
            "Route fallbacks served (no usable copy), by route and reason",
            ("route", "reason"),
        )
        self.guard_rejections = r.counter(
            "rproxy_guard_rejections_total", "Responses refused by sanity guards", ("route", "rule")
        )
        self.guard_unchecked = r.counter(
            "rproxy_guard_unchecked_total",
            "Guarded answers too large to check, passed on unchecked (guards_oversize: pass)",
            ("route",),
        )
        self.data_faults = r.counter(
            "rproxy_data_faults_total", "Upstream up but sending bad data", ("upstream",)
        )
        self.transport_faults = r.counter(
            "rproxy_transport_faults_total", "Upstream unreachable, slow or failing", ("upstream", "error")
        )
        self.refreshes = r.counter(
            "rproxy_background_refreshes_total", "Background refreshes by outcome", ("route", "outcome")
        )
        self.transitions = r.counter(
            "rproxy_breaker_transitions_total", "Breaker transitions", ("upstream", "to")
        )
        self.drift = r.counter("rproxy_contract_drift_total", "Upstream response shape changes", ("route",))
        self.events = r.counter("rproxy_events_total", "Events raised", ("event",))

    # -- per transaction (hot path: keep it to dict updates) ---------------------------------

    def transaction(self, txn: Txn, now: float) -> None:
        route = txn.route or "-"
        elapsed = now - txn.start
        self.requests.inc((route, txn.method, str(txn.status), txn.x_cache))
        self.duration.observe((route,), elapsed)
        if txn.upstream_ms is not None and txn.upstream is not None:
            self.upstream_latency.observe((txn.upstream,), txn.upstream_ms / 1000.0)
        if self.access.enabled:
            self.access.write(self._record(txn, now, elapsed))

    def _record(self, txn: Txn, now: float, elapsed: float) -> dict[str, Any]:
        return {
            "time": self._timestamp(now),
            "request_id": txn.request_id,
            "client": txn.client,
            "method": txn.method,
            "path": scrub(redact_path_and_query(txn.path, self.secret_params), self.secret_values),
            "route": txn.route,
            "upstream": txn.upstream,
            "status": txn.status,
            "x_cache": txn.x_cache,
            "upstream_status": txn.upstream_status,
            "upstream_ms": None if txn.upstream_ms is None else round(txn.upstream_ms, 2),
            "total_ms": round(elapsed * 1000.0, 2),
            "bytes": txn.bytes,
            "retries": txn.retries,
            "breaker": txn.breaker,
            "guard": txn.guard,
            "stale_reason": txn.stale_reason,
        }

    def _timestamp(self, now: float) -> str:
        """RFC 3339 UTC with milliseconds; the seconds part is formatted once per second."""
        second = int(now)
        if second != self._second:
            self._second = second
            self._second_text = dt.datetime.fromtimestamp(second, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self._second_text}.{int((now - second) * 1000):03d}+00:00"

    # -- events --------------------------------------------------------------------------------

    def event(self, name: str, now: float, level: str = "warning", **fields: Any) -> None:
        """Log an event and send it to the alert webhook; fields are scrubbed of secrets."""
        record = {"event": name, "time": dt.datetime.fromtimestamp(now, dt.UTC).isoformat(), **fields}
        text = scrub(json.dumps(record, default=str), self.secret_values)
        events_log.log(_LEVELS.get(level, logging.WARNING), text)
        self.events.inc((name,))
        self.alerts.send(json.loads(text))
