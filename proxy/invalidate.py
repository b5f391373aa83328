"""Invalidation after writes (RFC 9111 section 4.4), in this instance and across the fleet.

Owns: which cached URLs a successful write invalidates, including a vendor-side `Location`
mapped back through route rewrites, and telling the shared tier and other instances.
Must not: decide whether a write succeeded (the handler does).
"""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit

from proxy.cache import Cache
from proxy.core import freshness
from proxy.core.keys import route_prefix
from proxy.core.model import Headers
from proxy.core.routing import match_path
from proxy.exchange import Request
from proxy.runtime import Live

_LOCATIONS: Final = ("location", "content-location")


class Invalidator:
    def __init__(self, live: Live, cache: Cache) -> None:
        self.live, self.cache = live, cache

    def invalidate(self, request: Request, path: str, headers: Headers) -> int:
        """RFC 9111 4.4: a successful write invalidates its URI and same-origin Location.

        `headers` are the ones the client gets: a vendor's own URL in Location has already been
        mapped back to the proxy path (`redirects`), which is what the cache is keyed on.
        """
        paths = [path]
        for name in _LOCATIONS:
            value = freshness.header(headers, name)
            if value:
                parts = urlsplit(value)
                same_origin = not parts.netloc or parts.netloc == request.host
                if parts.path.startswith("/") and same_origin and parts.path not in paths:
                    paths.append(parts.path)
        dropped = 0
        routes = self.live.runtime.routes
        for p in paths:
            segments = p.split("/")[1:]  # once per path, not once per route
            for rs in routes:
                if rs.config.cache is not None and match_path(rs.config.match, segments) is not None:
                    dropped += self.cache.invalidate(route_prefix(rs.config.name, p))
        return dropped
