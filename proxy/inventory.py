"""`resilient-proxy inventory`: what each integration depends on, generated from the config.

Owns: the seed's "document what each integration depends on" as Markdown or JSON: per upstream
its owner, docs, authentication method, API version, the endpoints routes use, the data fields
the guards depend on, and what happens when it breaks (stale windows, fallback, breaker, retries,
write policy). Generated, so it never goes stale.
Must not: show a credential. Authentication is described by header NAMES only; the one value
shown is the API version header's, and only when that header is not credential-like.
Pure: no I/O, no clock; standard library only (plus the project's own settings types).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from proxy.core.config.model import Config, RouteConfig, UpstreamConfig
from proxy.core.guards import guarded_paths
from proxy.core.redact import is_secret_header, redact_url, scrub
from proxy.core.retry import WRITE_METHODS

WRITE_POLICY = (
    "never cached, never served stale; sent once and failed fast when the upstream is "
    "down; retried only when the request carries an Idempotency-Key"
)


def duration(seconds: float) -> str:
    """30s, 5m, 24h, 7d, 250ms: the config's own spelling (days from 48h on)."""
    if seconds <= 0:
        return "0s"
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if seconds >= size and seconds % size == 0 and (unit != "d" or seconds >= 2 * size):
            return f"{int(seconds // size)}{unit}"
    return f"{seconds * 1000:g}ms" if seconds < 1 else f"{seconds:g}s"


def auth_method(up: UpstreamConfig) -> dict[str, Any]:
    names = [k for k, _ in up.headers if is_secret_header(k)]
    if not names:
        return {"method": "none configured", "headers": []}
    kind = "Authorization header" if any(n.lower() == "authorization" for n in names) else "API key header"
    return {"method": kind, "headers": names}


def version(up: UpstreamConfig) -> dict[str, Any] | None:
    if up.version_header is None:
        return None
    value = next((v for k, v in up.headers if k.lower() == up.version_header.lower()), None)
    shown = None if value is None or is_secret_header(up.version_header) else value
    return {"header": up.version_header, "value": shown}


def breaker_policy(up: UpstreamConfig) -> str:
    cb = up.circuit_breaker
    slow = f"; calls over {duration(cb.slow_call)} count as failures" if cb.slow_call else ""
    return (
        f"opens at {cb.failure_rate:.0%} failures over at least {cb.minimum_calls} calls in "
        f"{duration(cb.window)}{slow}; stays open {duration(cb.open_for)}, then "
        f"{cb.half_open_probes} probe(s) decide"
    )


def when_it_breaks(route: RouteConfig) -> str:
    if route.methods & WRITE_METHODS and route.cache is None:
        return WRITE_POLICY
    parts: list[str] = []
    c = route.cache
    if c is None:
        parts.append("not cached: errors reach the client as JSON")
    else:
        parts.append(
            f"fresh for {duration(c.ttl)} unless the upstream says otherwise"
            if not c.force_ttl
            else f"fresh for {duration(c.ttl)} (forced)"
        )
        if c.stale_while_revalidate:
            parts.append(f"served stale while refreshing for {duration(c.stale_while_revalidate)}")
        if c.stale_if_error:
            parts.append(f"served stale on upstream errors for {duration(c.stale_if_error)}")
        if c.stale_if_slow:
            parts.append(f"served stale when the upstream takes over {duration(c.stale_if_slow)}")
        if route.guards:
            parts.append(
                f"a response failing the guards is never stored: the last good copy "
                f"(up to {duration(c.lkg_max_age)} old) is served"
            )
    if route.fallback is not None:
        parts.append(
            f"with no usable copy: fallback {route.fallback.status} "
            f"{route.fallback.body.decode('utf-8', 'replace')}"
        )
    else:
        parts.append("with no usable copy: a JSON error (502/503/504)")
    return "; ".join(parts)


def _base(up: UpstreamConfig) -> str:
    return urlsplit(up.url).path.rstrip("/")


def endpoint(route: RouteConfig, base: str = "") -> dict[str, Any]:
    """One route as the upstream sees it: `base` is the upstream URL's path (`/v2`)."""
    return {
        "route": route.name,
        "methods": sorted(route.methods),
        "match": route.match.text,
        "upstream_path": base + (route.rewrite or route.match.text),
        "sample": route.sample,
        "cached": route.cache is not None,
        "guards": [rule.describe() for rule in route.guards],
        "guarded_fields": list(guarded_paths(route.guards)),
        "when_it_breaks": when_it_breaks(route),
    }


def upstream_entry(config: Config, up: UpstreamConfig) -> dict[str, Any]:
    routes = [r for r in config.routes if r.upstream == up.name]
    fields = sorted({f for r in routes for f in guarded_paths(r.guards)})
    retries = up.retries
    return {
        "name": up.name,
        "url": redact_url(up.url),
        "owner": up.owner or None,
        "docs": up.docs or None,
        "auth": auth_method(up),
        "version": version(up),
        "headers_sent": [k for k, _ in up.headers],
        "endpoints": [endpoint(r, _base(up)) for r in routes],
        "guarded_fields": fields,
        "failure": {
            "timeouts": f"connect {duration(up.timeout.connect)}, total {duration(up.timeout.total)}",
            "retries": f"up to {retries.attempts} retries of safe methods (GET, HEAD), backoff "
            f"{duration(retries.backoff)}..{duration(retries.max_backoff)} with jitter",
            "breaker": breaker_policy(up),
            "health_check": None
            if up.health_check is None
            else f"GET {_base(up)}{up.health_check.path} every {duration(up.health_check.interval)}; "
            "unhealthy after "
            f"{up.health_check.unhealthy_after} failures, healthy after {up.health_check.healthy_after}",
            "rate_limit": None
            if up.rate_limit is None
            else f"{up.rate_limit.per_second:g}/s, burst {up.rate_limit.burst}",
            "writes": WRITE_POLICY,
        },
    }


def inventory(config: Config) -> dict[str, Any]:
    return {"config": config.path, "upstreams": [upstream_entry(config, up) for up in config.upstreams]}


_FAILURE_LABELS = (
    ("Timeouts", "timeouts"),
    ("Retries", "retries"),
    ("Circuit breaker", "breaker"),
    ("Health check", "health_check"),
    ("Rate limit", "rate_limit"),
    ("Writes", "writes"),
)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(doc: dict[str, Any]) -> str:
    out = [f"# Integration inventory\n\nGenerated from `{doc['config']}` by `resilient-proxy inventory`."]
    for up in doc["upstreams"]:
        auth, ver, fail = up["auth"], up["version"], up["failure"]
        headers = ", ".join(f"`{h}`" for h in auth["headers"])
        out.append(f"\n## {up['name']}\n")
        out.append(f"- **URL:** {up['url']}")
        out.append(f"- **Owner:** {up['owner'] or '(none: who do we call?)'}")
        out.append(f"- **Docs:** {up['docs'] or '(none)'}")
        out.append(f"- **Authentication:** {auth['method']}" + (f" ({headers})" if headers else ""))
        if ver is not None:
            value = f" = `{ver['value']}`" if ver["value"] else ""
            out.append(f"- **API version:** `{ver['header']}`{value}")
        out.append(
            f"- **Data fields the guards depend on:** "
            f"{', '.join(f'`{f}`' for f in up['guarded_fields']) or '(none guarded)'}"
        )
        out.append("\n### Endpoints\n")
        out.append("| route | methods | proxy path | upstream path | guards | when it breaks |")
        out.append("|---|---|---|---|---|---|")
        for ep in up["endpoints"]:
            out.append(
                "| "
                + " | ".join(
                    _cell(c)
                    for c in (
                        ep["route"],
                        ", ".join(ep["methods"]),
                        f"`{ep['match']}`",
                        f"`{ep['upstream_path']}`",
                        "; ".join(ep["guards"]) or "-",
                        ep["when_it_breaks"],
                    )
                )
                + " |"
            )
        out.append("\n### When it breaks\n")
        for label, key in _FAILURE_LABELS:
            out.append(f"- **{label}:** {fail[key] or 'none'}")
    return "\n".join(out) + "\n"


def credentials(config: Config) -> tuple[str, ...]:
    """Values never to print: credential headers and the admin token (not the version value)."""
    values = [v for up in config.upstreams for k, v in up.headers if is_secret_header(k)]
    return (*values, config.admin.token)


def render_inventory(config: Config, fmt: str = "md") -> str:
    doc = inventory(config)
    if fmt == "json":
        text = json.dumps(doc, indent=2)
    elif fmt == "md":
        text = to_markdown(doc)
    else:
        raise ValueError(f"unknown format {fmt!r}: expected md or json")
    return scrub(text, credentials(config))  # belt and braces: e.g. a token pasted into `owner`
