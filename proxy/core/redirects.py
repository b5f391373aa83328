"""Vendor URLs in `Location` and `Content-Location`, mapped back to the proxy's own paths.

Owns: turning a vendor-side URL (absolute, or a path under the upstream's base path) into the
path a client of the proxy would use, through the route rewrites run backwards, as nginx's
`proxy_redirect default` does. A client that follows a redirect, or the `Location` of a created
booking, stays behind the proxy, and the vendor's address is not handed out.
Must not: touch URLs of other origins or relative references (they pass unchanged); do I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final
from urllib.parse import urlsplit

from proxy.core.config.model import RouteConfig, UpstreamConfig
from proxy.core.routing import compile_match, match_path, rewrite_path

HEADERS: Final = frozenset({"location", "content-location"})


def proxy_path(vendor_path: str, upstream: UpstreamConfig, routes: Iterable[RouteConfig]) -> str | None:
    """The proxy path for a vendor path (as the vendor writes it, base path included), trying
    `routes` in order; None when no route of this upstream reaches it."""
    base = urlsplit(upstream.url).path.rstrip("/")
    if base and vendor_path != base and not vendor_path.startswith(base + "/"):
        return None
    rel = vendor_path[len(base) :] or "/"
    for route in routes:
        if route.upstream != upstream.name:
            continue
        try:
            found = match_path(compile_match(route.rewrite or route.match.text), rel.split("/")[1:])
        except ValueError:  # a rewrite that is not a pattern (e.g. a fixed path): not reversible
            continue
        if found is not None:
            return rewrite_path(route.match.text, rel, found)
    return None


def rewrite_location(value: str, upstream: UpstreamConfig, routes: Iterable[RouteConfig]) -> str:
    """`value` with a vendor URL replaced by the proxy path; anything else unchanged."""
    parts = urlsplit(value)
    vendor = urlsplit(upstream.url)
    if parts.netloc:
        if (parts.scheme, parts.netloc) != (vendor.scheme, vendor.netloc):
            return value
    elif not parts.path.startswith("/"):
        return value  # a relative reference resolves against the proxy's URL already
    mapped = proxy_path(parts.path, upstream, routes)
    if mapped is None:
        return value
    query = f"?{parts.query}" if parts.query else ""
    return mapped + query + (f"#{parts.fragment}" if parts.fragment else "")


def rewrite_headers(
    headers: tuple[tuple[str, str], ...], upstream: UpstreamConfig, routes: Iterable[RouteConfig]
) -> tuple[tuple[str, str], ...]:
    if not any(k.lower() in HEADERS for k, _ in headers):
        return headers
    ordered = list(routes)
    return tuple(
        (k, rewrite_location(v, upstream, ordered) if k.lower() in HEADERS else v) for k, v in headers
    )
