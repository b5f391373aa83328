"""What the proxy records: one access-log line and metrics per transaction, and events.

Owns: metric names and labels (Prometheus, `rproxy_` prefix), the access-log record's fields
and their redaction, and events (log line + alert webhook). Every degraded answer is counted
here, so "fails visibly" is one module's job. The access line is written from a template
(`_line`), byte for byte what `AccessLog`'s JSON encoder makes of `_record`, at a fraction of
the cost (issue 12): repeated strings are quoted once, a path is redacted once.
Must not: decide anything on the request path; block on I/O (log and webhook are queued).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any, Final

from proxy.accesslog import AccessLog
from proxy.alerts import Alerts
from proxy.core.redact import DEFAULT_SECRET_PARAMS, redact_path_and_query, scrub
from proxy.deliver import Txn
from proxy.metrics import Registry, Series, Tally

events_log = logging.getLogger("proxy.events")
# An access line's head and tail as JSON text: see Telemetry._parts_of.
_Parts = tuple[str, str]
_MEMO: Final = 4096  # strings remembered as JSON text (paths, names, labels); forgotten all at once
# JSON text as the access log's encoder writes it: compact, ASCII only, no NaN.
# The end of a timestamp, by millisecond (1000: what `_timestamp`'s format makes of a rounding up).
_MILLIS: Final = tuple(f".{ms:03d}+00:00" for ms in range(1001))
_json = json.JSONEncoder(separators=(",", ":"), default=str, allow_nan=False).encode

_LEVELS: Final = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


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
        self._paths: dict[str, str] = {}  # raw path -> redacted, as JSON text
        self._parts: dict[tuple[object, ...], _Parts] = {}  # see _parts_of
        # (route, method, status, x_cache) -> what it counts into (`_series_of`); no metric
        # series is ever removed, so what they hold stays the registry's
        self._series: dict[tuple[str | None, str, int, str], tuple[Tally, Series]] = {}
        self._latency: dict[str, Series] = {}  # by upstream
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
        elapsed = now - txn.start
        if self.access.enabled:
            self._log(txn, now, elapsed)
        series = self._series.get((txn.route, txn.method, txn.status, txn.x_cache))
        if series is None:
            series = self._series_of(txn)
        series[0].n += 1
        series[1].observe(elapsed)
        if txn.upstream_ms is not None and txn.upstream is not None:
            latency = self._latency.get(txn.upstream)
            if latency is None:
                latency = self._latency[txn.upstream] = self.upstream_latency.series((txn.upstream,))
            latency.observe(txn.upstream_ms / 1000.0)

    def _series_of(self, txn: Txn) -> tuple[Tally, Series]:
        """What a transaction's (route, method, status, X-Cache) counts into, resolved once:
        a `Tally` folded into rproxy_requests_total and the route's duration series. Past
        `_MEMO` such keys (clients choose methods) the rest are counted each on its own."""
        route = txn.route or "-"
        labels = (route, txn.method, str(txn.status), txn.x_cache)
        series = (Tally(), self.duration.series((route,)))
        if len(self._series) < _MEMO:
            self._series[(txn.route, txn.method, txn.status, txn.x_cache)] = series
            self.requests.attach(labels, series[0])
        else:  # counted here; the caller bumps a tally nobody reads
            self.requests.inc(labels)
        return series

    def log_only(self, txn: Txn, now: float) -> None:
        """The access line of a transaction counted elsewhere (a fast hit's `Tally`), when the
        log is on: `transaction` but for the metrics."""
        if self.access.enabled:
            self._log(txn, now, now - txn.start)

    def _log(self, txn: Txn, now: float, elapsed: float) -> None:
        """Write the access line (from remembered parts; the encoder for an odd value)."""
        try:
            line = self._line(self._parts_of(txn), txn, now, elapsed)
        except (TypeError, ValueError):  # a value the template does not know: the encoder
            self.access.write(self._record(txn, now, elapsed))
            return
        self.access.write_line(line)

    @property
    def secret_params(self) -> tuple[str, ...]:
        return self._secret_params

    @secret_params.setter
    def secret_params(self, params: tuple[str, ...]) -> None:  # a reload: paths redact anew
        self._secret_params = params
        self._paths.clear()
        self._parts.clear()

    @property
    def secret_values(self) -> tuple[str, ...]:
        return self._secret_values

    @secret_values.setter
    def secret_values(self, values: tuple[str, ...]) -> None:
        self._secret_values = values
        self._paths.clear()
        self._parts.clear()

    def _parts_of(self, txn: Txn) -> _Parts:
        """The JSON text of the fields that repeat from one request to the next (client to
        upstream_status, bytes to stale_reason), remembered by their values (typed by Txn:
        str, int or None)."""
        key = (
            txn.client,
            txn.method,
            txn.path,
            txn.route,
            txn.upstream,
            txn.status,
            txn.x_cache,
            txn.upstream_status,
            txn.bytes,
            txn.retries,
            txn.breaker,
            txn.guard,
            txn.stale_reason,
        )
        parts = self._parts.get(key)
        if parts is None:
            if len(self._parts) >= _MEMO:
                self._parts.clear()
            parts = self._parts[key] = (self._head(txn), self._tail(txn))
        return parts

    def _line(self, parts: _Parts, txn: Txn, now: float, elapsed: float) -> str:
        """`_record` as one JSON line, without building or walking a dict."""
        second = int(now)
        if second != self._second:
            self._timestamp(now)
        up = txn.upstream_ms
        rid = txn.request_id
        # An id is ours (hex) or a client's that passed `requestid._SANE`: alphanumerics need
        # no escaping; anything else goes through `_quote`.
        rid = f'"{rid}"' if rid.isascii() and rid.isalnum() else _quote(rid)
        return (
            f'{{"time":"{self._second_text}{_MILLIS[int((now - second) * 1000)]}",'
            f'"request_id":{rid},{parts[0]}'
            f'"upstream_ms":{"null" if up is None else _number(round(up, 2))},'
            f'"total_ms":{"0.0" if elapsed == 0.0 else _number(round(elapsed * 1000.0, 2))},{parts[1]}'
        )

    def _head(self, txn: Txn) -> str:
        return (
            f'"client":{_quote(txn.client)},"method":{_quote(txn.method)},"path":{self._path(txn.path)},'
            f'"route":{_quote(txn.route)},"upstream":{_quote(txn.upstream)},'
            f'"status":{_integer(txn.status)},"x_cache":{_quote(txn.x_cache)},'
            f'"upstream_status":{_integer(txn.upstream_status)},'
        )

    def _tail(self, txn: Txn) -> str:
        return (
            f'"bytes":{_integer(txn.bytes)},"retries":{_integer(txn.retries)},'
            f'"breaker":{_quote(txn.breaker)},"guard":{_quote(txn.guard)},'
            f'"stale_reason":{_quote(txn.stale_reason)}}}'
        )

    def _path(self, path: str) -> str:
        text = self._paths.get(path)
        if text is None:
            text = _json(scrub(redact_path_and_query(path, self._secret_params), self._secret_values))
            if len(self._paths) >= _MEMO:
                self._paths.clear()
            self._paths[path] = text
        return text

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


# -- the access line's values as JSON text (what `_json` makes of them, faster) -----------------


def _quote(value: str | None) -> str:
    # Printable ASCII needs escaping only for " and \ (RFC 8259 7).
    if (
        isinstance(value, str)
        and value.isascii()
        and value.isprintable()
        and '"' not in value
        and "\\" not in value
    ):
        return f'"{value}"'
    return _json(value)  # escapes, None, or not a string at all: the encoder says what it is


def _integer(value: int | None) -> str:
    if type(value) is int:
        return str(value)
    return _json(value)


def _number(value: float | None) -> str:
    if type(value) is float and value - value == 0.0:  # finite: JSON writes float's repr
        return repr(value)
    return _json(value)  # None, an int; NaN or infinity raise ValueError (allow_nan=False)
