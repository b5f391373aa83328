"""Read the `routes` section into frozen settings.

Owns: per-route schema checks: unknown upstream names, duplicate routes, method lists,
caching a route that has no cacheable method, guards, fallbacks. Upstreams: `upstreams`.
Must not: know about other sections (that is `config`).
"""

from __future__ import annotations

import json
import re
from typing import Any, Final, TypeVar

from proxy.core.cachecontrol import DEFAULT_TARGETS
from proxy.core.config.keys import children
from proxy.core.config.model import (
    ALL_METHODS,
    CACHEABLE_METHODS,
    CacheKey,
    Fallback,
    RouteCache,
    RouteConfig,
    Timeouts,
)
from proxy.core.config.reader import Reader
from proxy.core.config.source import KeyPath
from proxy.core.config.upstreams import names as _names
from proxy.core.config.upstreams import timeouts as _timeouts
from proxy.core.guard_rules import GuardConfigError, parse_guards
from proxy.core.routing import check_rewrite, compile_match

T = TypeVar("T")
# Allowed keys come from the declaration table (proxy/core/config/keys.py), which also generates
# docs/configuration.md and docs/config.schema.json: declare a new key there.
_ROUTE_KEYS: Final = children("routes[]")
_CACHE_KEYS: Final = children("routes[].cache")


_FIELD_NAME: Final = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")  # RFC 9110 5.1 token, lower-cased


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
    methods, any_method = _methods(r, (*w, "methods"), m.get("methods"))
    cache = _route_cache(r, (*w, "cache"), m.get("cache"), methods, targeted)
    return RouteConfig(
        name=name,
        match=pattern,
        methods=methods,
        any_method=any_method,
        upstream=upstream,
        rewrite=rewrite,
        cache=cache,
        guards=_guards(r, (*w, "guards"), m.get("guards")),
        confirm_after=r.integer((*w, "confirm_after"), m.get("confirm_after"), 3, minimum=1),
        guards_trip_breaker=r.boolean((*w, "guards_trip_breaker"), m.get("guards_trip_breaker"), False),
        guards_oversize=_choice(r, (*w, "guards_oversize"), m.get("guards_oversize"), ("reject", "pass")),
        upstream_errors=_choice(r, (*w, "upstream_errors"), m.get("upstream_errors"), ("replace", "pass")),
        fallback=_fallback(r, (*w, "fallback"), m.get("fallback")),
        max_object_size=r.size((*w, "max_object_size"), m.get("max_object_size"), 8 * 1024 * 1024),
        max_body=None if m.get("max_body") is None else r.size((*w, "max_body"), m["max_body"], 0),
        timeout=_timeouts(r, (*w, "timeout"), m.get("timeout"), Timeouts()),
        sample=r.string((*w, "sample"), m.get("sample")) or None,
    )


def _choice(r: Reader, w: KeyPath, value: Any, choices: tuple[str, ...]) -> str:
    """One of `choices`, in words; the first is the default."""
    chosen = r.string(w, value, choices[0])
    if chosen not in choices:
        r.error(w, f"expected {' or '.join(choices)}, got {chosen!r}")
        return choices[0]
    return chosen


_TOKEN: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Z-]{1,32}")  # RFC 9110 5.6.2, upper-cased


def _methods(r: Reader, w: KeyPath, value: Any) -> tuple[frozenset[str], bool]:
    """The methods a route allows, and whether extension methods (`M-SEARCH`, `PROPFIND`) pass
    too: `*` or no `methods` at all (RFC 9110 9.1: the set of methods is open)."""
    if value is None:
        return ALL_METHODS, True
    methods: set[str] = set()
    any_method = False
    for i, raw in enumerate(r.sequence(w, value)):
        method = r.string((*w, i), raw).upper()
        if method == "*":
            any_method = True
            methods |= ALL_METHODS
        elif method in ("CONNECT", "TRACE"):
            r.error((*w, i), f"{method} is never proxied")
        elif not _TOKEN.fullmatch(method):
            r.error((*w, i), f"{method!r} is not a method name (RFC 9110 9.1: a token)")
        else:
            methods.add(method)
    if not methods:
        r.error(w, "a route needs at least one method")
    return (frozenset(methods) or ALL_METHODS), any_method


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
