"""The effective configuration as the file spells it, secrets redacted: what GET /config shows.

Owns: mapping the frozen settings back to the YAML's own key names (`server.limits.per_client`,
`upstreams.X.tls.verify`, `routes[].cache.key.headers`), defaults filled in, and the redaction
rules for it: credentials in URLs (userinfo, secret query parameters; a webhook's path),
header values whose names mark credentials, query values named as secrets, keys named like
`client_secret`, and any configured secret value wherever it appears.
Must not: show internal field names, do I/O, or redact what is not a secret (a boolean such as
`store_set_cookie`, a header such as `X-API-Version`).
"""

from __future__ import annotations

import json
from typing import Any

from proxy.core.breaker import BreakerPolicy
from proxy.core.config.model import (
    CacheConfig,
    Config,
    Fallback,
    HealthCheck,
    RouteCache,
    RouteConfig,
    ServerConfig,
    Timeouts,
    UpstreamConfig,
)
from proxy.core.redact import REDACTED, is_secret_header, redact_config, redact_url, redact_webhook
from proxy.core.retry import RetryPolicy


def effective_config(config: Config) -> dict[str, Any]:
    """The whole config in the file's key names, with every default filled in, redacted."""
    doc = {
        "server": _server(config.server),
        "admin": {
            "listen": str(config.admin.listen),
            "token": REDACTED if config.admin.token else "",
        }
        if config.admin.enabled
        else "off",
        "cache": _cache(config.cache),
        "log": {
            "level": config.log.level,
            "access": config.log.access,
            "redact_params": list(config.log.redact_params),
        },
        "alerts": {"webhook": redact_webhook(config.alerts.webhook) if config.alerts.webhook else None},
        "upstreams": {up.name: _upstream(up) for up in config.upstreams},
        "routes": [_route(route) for route in config.routes],
    }
    # Last, by rule over the whole tree: keys named like secrets and known secret values.
    redacted: dict[str, Any] = redact_config(doc, config.secret_values())
    return redacted


def _server(s: ServerConfig) -> dict[str, Any]:
    return {
        "listen": str(s.listen),
        "workers": "auto" if s.workers == 0 else s.workers,
        "tls": None if s.tls is None else {"cert_file": s.tls.cert_file, "key_file": s.tls.key_file},
        "shutdown_grace": s.shutdown_grace,
        "max_body": s.max_body,
        "limits": {
            "per_client": s.limits.per_address,
            "total": s.limits.total,
            "header_timeout": s.limits.header_timeout,
            "body_timeout": s.limits.body_timeout,
            "send_timeout": s.limits.send_timeout,
        },
    }


def _cache(c: CacheConfig) -> dict[str, Any]:
    return {
        "backend": c.backend,
        "max_bytes": c.max_bytes,
        "snapshot": c.snapshot,
        "snapshot_interval": c.snapshot_interval,
        "redis": {"url": redact_url(c.redis.url), "namespace": c.redis.namespace, "timeout": c.redis.timeout},
        "targeted_fields": list(c.targeted_fields),
    }


def _timeouts(t: Timeouts | None) -> dict[str, float] | None:
    return None if t is None else {"connect": t.connect, "total": t.total}


def _retries(r: RetryPolicy) -> dict[str, Any]:
    return {"attempts": r.attempts, "backoff": r.backoff, "max_backoff": r.max_backoff}


def _breaker(b: BreakerPolicy) -> dict[str, Any]:
    return {
        "failure_rate": f"{b.failure_rate * 100:g}%",
        "minimum_calls": b.minimum_calls,
        "window": b.window,
        "slow_call": b.slow_call,
        "open_for": b.open_for,
        "half_open_probes": b.half_open_probes,
    }


def _health(h: HealthCheck | None) -> dict[str, Any] | None:
    if h is None:
        return None
    return {
        "path": h.path,
        "interval": h.interval,
        "timeout": h.timeout,
        "unhealthy_after": h.unhealthy_after,
        "healthy_after": h.healthy_after,
    }


def _upstream(up: UpstreamConfig) -> dict[str, Any]:
    return {
        "url": redact_url(up.url),
        "owner": up.owner,
        "docs": up.docs,
        "tls": {"verify": up.verify_tls, "ca_file": up.ca_file},
        "headers": {k: REDACTED if is_secret_header(k) and v.strip() else v for k, v in up.headers},
        "forward_headers": list(up.forward_headers),
        "timeout": _timeouts(up.timeout),
        "retries": _retries(up.retries),
        "max_connections": up.max_connections,
        "max_queue": up.max_queue,
        "rate_limit": None
        if up.rate_limit is None
        else {"per_second": up.rate_limit.per_second, "burst": up.rate_limit.burst},
        "circuit_breaker": _breaker(up.circuit_breaker),
        "health_check": _health(up.health_check),
        "version_header": up.version_header,
    }


def _route_cache(c: RouteCache | None) -> dict[str, Any] | str:
    if c is None:
        return "off"
    return {
        "ttl": c.ttl,
        "force_ttl": c.force_ttl,
        "stale_while_revalidate": c.stale_while_revalidate,
        "stale_if_error": c.stale_if_error,
        "stale_if_slow": c.stale_if_slow or "off",
        "key": {
            "query": c.key.query if isinstance(c.key.query, str) else list(c.key.query),
            "headers": list(c.key.headers),
        },
        "share_authorized": c.share_authorized,
        "store_set_cookie": c.store_set_cookie,
        "lkg_max_age": c.lkg_max_age,
        "lock_timeout": c.lock_timeout,
        "targeted_fields": list(c.targeted_fields),
        "heuristic": {"fraction": c.heuristic_fraction, "max": c.heuristic_max}
        if c.heuristic_fraction > 0
        else "off",
    }


def _fallback(f: Fallback | None) -> dict[str, Any] | None:
    if f is None:
        return None
    text = f.body.decode("utf-8", "replace")
    if f.content_type == "application/json":
        try:
            return {"status": f.status, "json": json.loads(text)}
        except ValueError:
            pass
    return {"status": f.status, "body": text, "content_type": f.content_type}


def _route(r: RouteConfig) -> dict[str, Any]:
    return {
        "name": r.name,
        "match": r.match.text,
        "methods": ["*"] if r.any_method else sorted(r.methods),
        "upstream": r.upstream,
        "rewrite": r.rewrite,
        "sample": r.sample,
        "cache": _route_cache(r.cache),
        "guards": [rule.describe() for rule in r.guards],
        "confirm_after": r.confirm_after,
        "guards_trip_breaker": r.guards_trip_breaker,
        "guards_oversize": r.guards_oversize,
        "upstream_errors": r.upstream_errors,
        "fallback": _fallback(r.fallback),
        "max_object_size": r.max_object_size,
        "max_body": r.max_body,
        "timeout": _timeouts(r.timeout),
    }
