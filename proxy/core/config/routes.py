"""Read the `upstreams` and `routes` sections into frozen settings.

Owns: per-upstream and per-route schema checks: URLs, unknown upstream names, duplicate routes,
method lists, caching a route that has no cacheable method, guards, fallbacks.
Must not: know about other sections (that is `config`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from proxy.core.breaker import BreakerPolicy
from proxy.core.cachecontrol import DEFAULT_TARGETS
from proxy.core.config.keys import children
from proxy.core.config.model import (
    ALL_METHODS,
    CACHEABLE_METHODS,
    CacheKey,
    Fallback,
    HealthCheck,
    RateLimit,
    RouteCache,
    RouteConfig,
    Timeouts,
    UpstreamConfig,
)
from proxy.core.config.reader import Reader
from proxy.core.config.source import KeyPath, format_path
from proxy.core.guard_rules import GuardConfigError, parse_guards
from proxy.core.redact import is_secret_header
from proxy.core.retry import RetryPolicy
from proxy.core.routing import check_rewrite, compile_match

T = TypeVar("T")
# Allowed keys come from the declaration table (proxy/core/config/keys.py), which also generates
# docs/configuration.md and docs/config.schema.json: declare a new key there.
_UPSTREAM_KEYS = children("upstreams.*")
_ROUTE_KEYS = children("routes[]")
_CACHE_KEYS = children("routes[].cache")


def read_upstreams(r: Reader, value: Any) -> tuple[UpstreamConfig, ...]:
    if value is None:
        r.error(("upstreams",), "at least one upstream is required")
        return ()
    m = r.mapping(("upstreams",), value, value.keys() if isinstance(value, dict) else ())
    return tuple(_upstream(r, ("upstreams", name), name, raw) for name, raw in m.items())


def _upstream(r: Reader, w: KeyPath, name: str, value: Any) -> UpstreamConfig:
    m = r.mapping(w, value, _UPSTREAM_KEYS)
    url = r.string((*w, "url"), m.get("url")).rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        r.error((*w, "url"), f"expected an http:// or https:// URL, got {url!r}")
    if parts.query or parts.fragment:
        r.error((*w, "url"), "must not carry a query or fragment")
    tls = r.mapping((*w, "tls"), m.get("tls"), children("upstreams.*.tls"))
    headers_raw = r.mapping(
        (*w, "headers"), m.get("headers"), m["headers"].keys() if isinstance(m.get("headers"), dict) else ()
    )
    headers = tuple((str(k), r.string((*w, "headers", k), v)) for k, v in headers_raw.items())
    for k, v in headers:
        _check_credential(r, (*w, "headers", k), k, v)
    to = _timeouts(r, (*w, "timeout"), m.get("timeout"), Timeouts())
    return UpstreamConfig(
        name=name,
        url=url,
        owner=r.string((*w, "owner"), m.get("owner")),
        docs=r.string((*w, "docs"), m.get("docs")),
        verify_tls=r.boolean((*w, "tls", "verify"), tls.get("verify"), True),
        ca_file=r.string((*w, "tls", "ca_file"), tls.get("ca_file")) or None,
        headers=headers,
        forward_headers=_names(r, (*w, "forward_headers"), m.get("forward_headers")),
        timeout=to or Timeouts(),
        retries=_retries(r, (*w, "retries"), m.get("retries")),
        max_connections=r.integer((*w, "max_connections"), m.get("max_connections"), 100, minimum=1),
        max_queue=r.integer((*w, "max_queue"), m.get("max_queue"), 10_000),
        rate_limit=_rate_limit(r, (*w, "rate_limit"), m.get("rate_limit")),
        circuit_breaker=_breaker(r, (*w, "circuit_breaker"), m.get("circuit_breaker")),
        health_check=_health(r, (*w, "health_check"), m.get("health_check")),
        version_header=r.string((*w, "version_header"), m.get("version_header")) or None,
    )


_AUTH_HEADERS = frozenset({"authorization", "proxy-authorization"})


def _check_credential(r: Reader, w: KeyPath, name: str, value: str) -> None:
    """A credential header that expands to nothing (`Bearer ${TOKEN:-}` with TOKEN unset) would
    be sent as is: every call fails 401, or worse, reaches a vendor that allows anonymous use."""
    if not is_secret_header(name) or any(i.key == format_path(w) for i in r.issues):
        return  # an unset variable there is already reported
    parts = value.split()
    if not parts:
        r.error(w, "credential header is empty (is its environment variable set?)")
    elif name.lower() in _AUTH_HEADERS and len(parts) < 2:
        r.error(w, f"credential header has a scheme and an empty token ({parts[0]!r} and nothing after it)")


def _timeouts(r: Reader, w: KeyPath, value: Any, base: Timeouts) -> Timeouts | None:
    if value is None:
        return None
    m = r.mapping(w, value, children("upstreams.*.timeout"))
    return Timeouts(
        connect=r.duration((*w, "connect"), m.get("connect"), base.connect),
        total=r.duration((*w, "total"), m.get("total"), base.total),
    )


def _retries(r: Reader, w: KeyPath, value: Any) -> RetryPolicy:
    if value is False or value == "off":
        return RetryPolicy(attempts=0)
    m = r.mapping(w, value, children("upstreams.*.retries"))
    base = RetryPolicy()
    return _build(
        r,
        w,
        base,
        lambda: RetryPolicy(
            attempts=r.integer((*w, "attempts"), m.get("attempts"), base.attempts),
            backoff=r.duration((*w, "backoff"), m.get("backoff"), base.backoff),
            max_backoff=r.duration((*w, "max_backoff"), m.get("max_backoff"), base.max_backoff),
        ),
    )


def _rate_limit(r: Reader, w: KeyPath, value: Any) -> RateLimit | None:
    if value is None:
        return None
    m = r.mapping(w, value, children("upstreams.*.rate_limit"))
    per_second = m.get("per_second")
    if isinstance(per_second, bool) or not isinstance(per_second, int | float) or per_second <= 0:
        r.error((*w, "per_second"), "expected a positive number")
        per_second = 1
    burst = r.integer((*w, "burst"), m.get("burst"), max(1, int(per_second)), minimum=1)
    return RateLimit(per_second=float(per_second), burst=burst)


def _breaker(r: Reader, w: KeyPath, value: Any) -> BreakerPolicy:
    base = BreakerPolicy()
    if value is None:
        return base
    m = r.mapping(w, value, children("upstreams.*.circuit_breaker"))
    slow = m.get("slow_call")
    return _build(
        r,
        w,
        base,
        lambda: BreakerPolicy(
            failure_rate=r.percent((*w, "failure_rate"), m.get("failure_rate"), base.failure_rate),
            minimum_calls=r.integer((*w, "minimum_calls"), m.get("minimum_calls"), base.minimum_calls, 1),
            window=r.duration((*w, "window"), m.get("window"), base.window),
            slow_call=None if slow is None else r.duration((*w, "slow_call"), slow, 0.0),
            open_for=r.duration((*w, "open_for"), m.get("open_for"), base.open_for),
            half_open_probes=r.integer(
                (*w, "half_open_probes"), m.get("half_open_probes"), base.half_open_probes, 1
            ),
        ),
    )


def _build(r: Reader, w: KeyPath, default: T, make: Callable[[], T]) -> T:
    """Build a core policy; its own range checks become config errors at this key."""
    try:
        return make()
    except ValueError as exc:
        r.error(w, str(exc))
        return default


def _health(r: Reader, w: KeyPath, value: Any) -> HealthCheck | None:
    if value is None:
        return None
    m = r.mapping(w, value, children("upstreams.*.health_check"))
    path = r.string((*w, "path"), m.get("path"), "/")
    if not path.startswith("/"):
        r.error((*w, "path"), "must start with /")
    return HealthCheck(
        path=path,
        interval=r.duration((*w, "interval"), m.get("interval"), 10.0),
        timeout=r.duration((*w, "timeout"), m.get("timeout"), 2.0),
        unhealthy_after=r.integer((*w, "unhealthy_after"), m.get("unhealthy_after"), 3, 1),
        healthy_after=r.integer((*w, "healthy_after"), m.get("healthy_after"), 2, 1),
    )


_FIELD_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")  # RFC 9110 5.1 token, lower-cased


def read_targeted(r: Reader, w: KeyPath, value: Any, default: tuple[str, ...]) -> tuple[str, ...]:
    """A target list (RFC 9213 2.2): field names, lower-cased, in priority order."""
    if value is None:
        return default
    names: list[str] = []
    for i, raw in enumerate(r.sequence(w, value)):
        name = r.string((*w, i), raw).strip().lower()
        if not _FIELD_NAME.fullmatch(name):
            r.error((*w, i), f"expected a header field name, got {raw!r}")
        elif name == "cache-control":
            r.error((*w, i), "Cache-Control is what targeted fields override; it always applies without one")
        elif name in names:
            r.error((*w, i), f"{raw!r} is listed twice")
        else:
            names.append(name)
    return tuple(names)


def read_routes(
    r: Reader, value: Any, upstreams: set[str], targeted: tuple[str, ...] = DEFAULT_TARGETS
) -> tuple[RouteConfig, ...]:
    routes: list[RouteConfig] = []
    seen: set[str] = set()
    for index, raw in enumerate(r.sequence(("routes",), value)):
        route = _route(r, ("routes", index), raw, upstreams, targeted)
        if route is None:
            continue
        if route.name in seen:
            r.error(("routes", index, "name"), f"duplicate route name {route.name!r}")
        seen.add(route.name)
        routes.append(route)
    return tuple(routes)


def _route(
    r: Reader, w: KeyPath, value: Any, upstreams: set[str], targeted: tuple[str, ...]
) -> RouteConfig | None:
    m = r.mapping(w, value, _ROUTE_KEYS)
    if not m:
        return None
    name = r.string((*w, "name"), m.get("name"))
    if not name:
        r.error((*w, "name"), "every route needs a name")
    upstream = r.string((*w, "upstream"), m.get("upstream"))
    if upstream not in upstreams:
        r.error((*w, "upstream"), f"unknown upstream {upstream!r} (known: {', '.join(sorted(upstreams))})")
    try:
        pattern = compile_match(r.string((*w, "match"), m.get("match")))
    except ValueError as exc:
        r.error((*w, "match"), str(exc))
        return None
    rewrite = r.string((*w, "rewrite"), m.get("rewrite")) or None
    if rewrite is not None:
        try:
            check_rewrite(rewrite, pattern)
        except ValueError as exc:
            r.error((*w, "rewrite"), str(exc))
    methods = _methods(r, (*w, "methods"), m.get("methods"))
    cache = _route_cache(r, (*w, "cache"), m.get("cache"), methods, targeted)
    return RouteConfig(
        name=name,
        match=pattern,
        methods=methods,
        upstream=upstream,
        rewrite=rewrite,
        cache=cache,
        guards=_guards(r, (*w, "guards"), m.get("guards")),
        confirm_after=r.integer((*w, "confirm_after"), m.get("confirm_after"), 3, minimum=1),
        guards_trip_breaker=r.boolean((*w, "guards_trip_breaker"), m.get("guards_trip_breaker"), False),
        guards_oversize=_oversize(r, (*w, "guards_oversize"), m.get("guards_oversize")),
        fallback=_fallback(r, (*w, "fallback"), m.get("fallback")),
        max_object_size=r.size((*w, "max_object_size"), m.get("max_object_size"), 8 * 1024 * 1024),
        max_body=None if m.get("max_body") is None else r.size((*w, "max_body"), m["max_body"], 0),
        timeout=_timeouts(r, (*w, "timeout"), m.get("timeout"), Timeouts()),
        sample=r.string((*w, "sample"), m.get("sample")) or None,
    )


def _names(r: Reader, w: KeyPath, value: Any) -> tuple[str, ...]:
    """A list of header names, lower-case."""
    return tuple(r.string((*w, i), h).lower() for i, h in enumerate(r.sequence(w, value)))


def _oversize(r: Reader, w: KeyPath, value: Any) -> str:
    """Too large to check is refused unless the route says so, in words (issue 11)."""
    chosen = r.string(w, value, "reject")
    if chosen not in ("reject", "pass"):
        r.error(w, f"expected reject or pass, got {chosen!r}")
        return "reject"
    return chosen


def _methods(r: Reader, w: KeyPath, value: Any) -> frozenset[str]:
    if value is None:
        return ALL_METHODS
    methods = set()
    for i, raw in enumerate(r.sequence(w, value)):
        method = r.string((*w, i), raw).upper()
        if method not in ALL_METHODS:
            r.error((*w, i), f"unsupported method {method!r} (allowed: {', '.join(sorted(ALL_METHODS))})")
        methods.add(method)
    if not methods:
        r.error(w, "a route needs at least one method")
    return frozenset(methods) or ALL_METHODS


def _route_cache(
    r: Reader, w: KeyPath, value: Any, methods: frozenset[str], targeted: tuple[str, ...]
) -> RouteCache | None:
    if value is None or value is False or value == "off":
        return None
    if not methods & CACHEABLE_METHODS:
        r.error(w, "caching needs GET or HEAD in methods; writes are never cached (use cache: off)")
        return None
    m = r.mapping(w, value, _CACHE_KEYS)
    base = RouteCache()
    key = r.mapping((*w, "key"), m.get("key"), children("routes[].cache.key"))
    headers_at: KeyPath = (*w, "key", "headers")
    keyed = _names(r, headers_at, key.get("headers"))
    swr_at: KeyPath = (*w, "stale_while_revalidate")
    return RouteCache(
        ttl=r.duration((*w, "ttl"), m.get("ttl"), 0.0),
        force_ttl=r.boolean((*w, "force_ttl"), m.get("force_ttl"), False),
        stale_while_revalidate=r.duration(swr_at, m.get("stale_while_revalidate"), 0.0),
        stale_if_error=r.duration((*w, "stale_if_error"), m.get("stale_if_error"), 0.0),
        stale_if_slow=_stale_if_slow(r, (*w, "stale_if_slow"), m.get("stale_if_slow")),
        key=CacheKey(query=_key_query(r, (*w, "key", "query"), key.get("query")), headers=keyed),
        share_authorized=r.boolean((*w, "share_authorized"), m.get("share_authorized"), False),
        store_set_cookie=r.boolean((*w, "store_set_cookie"), m.get("store_set_cookie"), False),
        lkg_max_age=r.duration((*w, "lkg_max_age"), m.get("lkg_max_age"), base.lkg_max_age),
        lock_timeout=r.duration((*w, "lock_timeout"), m.get("lock_timeout"), base.lock_timeout),
        targeted_fields=read_targeted(r, (*w, "targeted_fields"), m.get("targeted_fields"), targeted),
        **_heuristic(r, (*w, "heuristic"), m.get("heuristic"), base),
    )


def _stale_if_slow(r: Reader, w: KeyPath, value: Any) -> float:
    """The latency budget before a usable copy answers for a slow vendor; `off` (or 0s) is 0."""
    if value is False or value == "off":
        return 0.0
    return r.duration(w, value, 0.0)


def _heuristic(r: Reader, w: KeyPath, value: Any, base: RouteCache) -> dict[str, float]:
    """RFC 9111 4.2.2 heuristic freshness: `on` (the default), `off`, or a fraction and a cap."""
    if value is False or value == "off":
        return {"heuristic_fraction": 0.0, "heuristic_max": base.heuristic_max}
    if value is True or value == "on":
        value = None  # the defaults
    m = r.mapping(w, value, children("routes[].cache.heuristic"))
    return {
        "heuristic_fraction": r.percent((*w, "fraction"), m.get("fraction"), base.heuristic_fraction),
        "heuristic_max": r.duration((*w, "max"), m.get("max"), base.heuristic_max),
    }


def _key_query(r: Reader, w: KeyPath, value: Any) -> str | tuple[str, ...]:
    if value is None or value == "all":
        return "all"
    if value == "none":
        return "none"
    if isinstance(value, list):
        return tuple(sorted(r.string((*w, i), v) for i, v in enumerate(value)))
    r.error(w, "expected all, none, or a list of parameter names")
    return "all"


def _guards(r: Reader, w: KeyPath, value: Any) -> tuple[Any, ...]:
    if value is None:
        return ()
    try:
        return parse_guards(value)
    except GuardConfigError as exc:
        r.error((*w, *_where_parts(exc.where)), exc.message)
        return ()


def _where_parts(where: str) -> tuple[str | int, ...]:
    parts: list[str | int] = []
    for token in where.replace("]", "").replace("[", ".").split("."):
        if token:
            parts.append(int(token) if token.isdigit() else token)
    return tuple(parts)


def _fallback(r: Reader, w: KeyPath, value: Any) -> Fallback | None:
    if value is None:
        return None
    m = r.mapping(w, value, children("routes[].fallback"))
    status = r.integer((*w, "status"), m.get("status"), 503, minimum=200)
    if status > 599:
        r.error((*w, "status"), "must be an HTTP status from 200 to 599")
    if "json" in m:
        return Fallback(status=status, body=json.dumps(m["json"]).encode())
    body = r.string((*w, "body"), m.get("body"))
    return Fallback(
        status=status,
        body=body.encode(),
        content_type=r.string((*w, "content_type"), m.get("content_type"), "text/plain"),
    )
