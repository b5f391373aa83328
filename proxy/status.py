"""The JSON views the admin API shows: /status, /config and a quarantined item.

Owns: the shape of `GET /status` (read by proxy/static/status.html): per upstream its owner,
docs, breaker snapshot, health, last success / failure and error rates; per route its counters,
hit ratio and last-known-good age; the memory tier's size. Also the effective config as JSON
(GET /config is `core.config.view`) and a quarantined payload (`item_json`, headers redacted).
Must not: change anything it reads (beyond the breaker's lazy OPEN -> HALF_OPEN step, whose
transition is reported through the upstream as any other), do I/O, or show a secret: URLs lose
userinfo passwords and secret query parameters, free text is scrubbed of configured secrets.
"""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

from proxy.cache import Cache
from proxy.core.keys import request_of
from proxy.core.redact import redact_headers, redact_url, scrub
from proxy.logformat import readable
from proxy.parts import Lifecycle
from proxy.quarantine import Quarantine, QuarantineItem, QuarantineSummary
from proxy.runtime import RouteState, Runtime
from proxy.upstream import Upstream

SERVICE = "resilient-proxy"
VERSION = "0.1.0"


def health_label(healthy: bool | None) -> str:
    """Active health checks: None until the first one ran."""
    return "unknown" if healthy is None else "healthy" if healthy else "unhealthy"


def ratio(part: int, whole: int) -> float | None:
    """part/whole, or None (rendered as a dash) when nothing was counted yet."""
    return part / whole if whole else None


def upstream_status(up: Upstream, now: float, secrets: tuple[str, ...]) -> dict[str, Any]:
    up.state(now)  # reports a lazy OPEN -> HALF_OPEN transition before the snapshot
    snap = up.breaker.snapshot(now)
    track = up.track
    return {
        "name": up.name,
        "url": redact_url(up.config.url),
        "owner": up.config.owner or None,
        "docs": up.config.docs or None,
        "breaker": {
            "state": snap["state"],
            "retry_after": round(snap["retry_after"], 3),
            "calls": snap["calls"],
            "failures": snap["failures"],
            "failure_rate": snap["failure_rate"],
            "opened_at": snap["opened_at"],
            "forced": snap["forced"],
        },
        "health": health_label(track.healthy),
        "last_success": track.last_success,
        "last_failure": track.last_failure,
        "last_error": scrub(track.last_error, secrets) if track.last_error else None,
        "calls": track.calls,
        "failures": track.failures,
        "data_faults": track.data_faults,
        "error_rate": ratio(track.failures, track.calls),
        "data_fault_rate": ratio(track.data_faults, track.calls),
        "retry_budget": up.budget.available(now),
    }


def lkg_age(rs: RouteState, now: float) -> float | None:
    """Seconds since the route last stored or revalidated a good (2xx) answer."""
    return None if rs.last_good_at is None else max(0.0, now - rs.last_good_at)


def route_status(rs: RouteState, now: float) -> dict[str, Any]:
    config = rs.config
    age = lkg_age(rs, now)
    return {
        "name": config.name,
        "match": config.match.text,
        "methods": sorted(config.methods),
        "upstream": config.upstream,
        "cached": config.cache is not None,
        "requests": rs.requests,
        "hits": rs.hits,
        "stale": rs.stale,
        "fallbacks": rs.fallbacks,
        "hit_ratio": ratio(rs.hits, rs.requests),
        "lkg_age": None if age is None else round(age, 3),
        "guard_rejections": rs.guard_rejections,
    }


def build_status(
    runtime: Runtime,
    cache: Cache,
    quarantine: Quarantine,
    lifecycle: Lifecycle,
    secrets: tuple[str, ...],
    now: float,
) -> dict[str, Any]:
    """GET /status. `runtime` is read once by the caller: a reload mid-build cannot mix configs."""
    store = cache.memory
    return {
        "service": SERVICE,
        "version": VERSION,
        "now": now,
        "started_at": lifecycle.started_at,
        "ready": lifecycle.ready,
        "config": runtime.config.path,
        "upstreams": [upstream_status(up, now, secrets) for up in runtime.upstreams.values()],
        "routes": [route_status(rs, now) for rs in runtime.routes],
        "cache": {
            "entries": len(store),
            "bytes": store.bytes,
            "max_bytes": store.max_bytes,
            "evictions": store.evictions,
            "shared": cache.shared is not None,
        },
        "quarantine": len(quarantine),
    }


def fetched_for(cache_key: str, secrets: tuple[str, ...]) -> dict[str, Any]:
    """Where a quarantined payload came from: the request path, the cache key (readable), and
    the body of POST /quarantine/{id}/promote that stores it under that key. Secret query
    values are redacted here too: put the real value back before promoting such a path."""
    if not cache_key:
        return {"path": None, "cache_key": None, "promote": None}
    path, headers = request_of(cache_key)
    shown = readable(path, secrets)
    return {
        "path": shown,
        "cache_key": readable(cache_key, secrets),
        "promote": {"key": shown, **({"headers": headers} if headers else {})},
    }


def summary_json(summary: QuarantineSummary, secrets: tuple[str, ...]) -> dict[str, Any]:
    doc = dataclasses.asdict(summary)
    doc.update(fetched_for(summary.cache_key, secrets))
    return doc


def item_json(item: QuarantineItem, secrets: tuple[str, ...]) -> dict[str, Any]:
    try:
        body, encoding = item.body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        body, encoding = base64.b64encode(item.body).decode("ascii"), "base64"
    return {
        "id": item.id,
        "route": item.route,
        "at": item.at,
        "status": item.status,
        "headers": redact_headers(item.headers, secrets),
        "body": body,
        "body_encoding": encoding,
        "size": item.size,
        "truncated": item.truncated,
        **fetched_for(item.cache_key, secrets),
        "verdict": {
            "ok": item.verdict.ok,
            "relative_only": item.verdict.relative_only,
            "violations": [dataclasses.asdict(v) for v in item.verdict.violations],
        },
    }
