"""Invalidation after writes (RFC 9111 section 4.4), in this instance and across the fleet.

Owns: which cached URLs a successful write invalidates, including a vendor-side `Location`
mapped back through route rewrites, and telling the shared tier and other instances.
Must not: decide whether a write succeeded (the handler does).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from proxy import freshness
from proxy.exchange import Request
from proxy.keys import group_boundaries, route_prefix
from proxy.model import Headers
from proxy.routing import match_path
from proxy.state import ProxyState


class Invalidator:
    def __init__(self, state: ProxyState) -> None:
        self.state = state

    def invalidate(self, request: Request, path: str, headers: Headers) -> int:
        """RFC 9111 4.4: a successful write invalidates its URI and same-origin Location.

        `headers` are the ones the client gets: a vendor's own URL in Location has already been
        mapped back to the proxy path (`redirects`), which is what the cache is keyed on.
        """
        paths = {path}
        for name in ("location", "content-location"):
            value = freshness.header(headers, name)
            if not value:
                continue
            parts = urlsplit(value)
            if parts.path.startswith("/") and (not parts.netloc or parts.netloc == request.host):
                paths.add(parts.path)
        dropped = 0
        for rs in self.state.runtime.routes:
            if rs.config.cache is None:
                continue
            for p in paths:
                if match_path(rs.config.match, p.split("/")[1:]) is not None:
                    group = route_prefix(rs.config.name, p)
                    dropped += self.state.store.delete_group(group)
                    if self.state.shared is not None:
                        self.state.tasks.spawn(self._forget_shared(group), name="l2-invalidate")
        return dropped

    async def _forget_shared(self, group: str) -> None:
        """Drop a URL's entries from the shared tier and every instance's memory tier."""
        shared = self.state.shared
        assert shared is not None
        await shared.delete(group)
        await shared.publish_purge(group, False)
        for boundary in group_boundaries(group):
            await shared.delete_prefix(boundary)
            await shared.publish_purge(boundary, True)
