"""Invalidation after writes (RFC 9111 section 4.4), in this instance and across the fleet.

Owns: which cached URLs a successful write invalidates, including a vendor-side `Location`
mapped back through route rewrites, and telling the shared tier and other instances.
Must not: decide whether a write succeeded (the handler does).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web

from proxy import freshness
from proxy.keys import group_boundaries, route_prefix
from proxy.model import Headers
from proxy.routing import compile_match, match_path, rewrite_path
from proxy.settings import UpstreamConfig
from proxy.state import ProxyState


class Invalidator:
    def __init__(self, state: ProxyState) -> None:
        self.state = state

    def invalidate(self, request: web.Request, path: str, headers: Headers, upstream: UpstreamConfig) -> int:
        """RFC 9111 4.4: a successful write invalidates its URI and same-origin Location.

        A Location may name a proxy path or, as vendors write it, the vendor's own path: the
        latter is mapped back through each route's rewrite to the proxy path it is cached under.
        """
        paths = {path}
        vendor = urlsplit(upstream.url)
        for name in ("location", "content-location"):
            value = freshness.header(headers, name)
            if not value:
                continue
            parts = urlsplit(value)
            if parts.path and (not parts.netloc or parts.netloc == request.host):
                paths.add(parts.path)
            if parts.path and (not parts.netloc or parts.netloc == vendor.netloc):
                paths.update(self._proxy_paths(parts.path, upstream, vendor.path.rstrip("/")))
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

    def _proxy_paths(self, vendor_path: str, upstream: UpstreamConfig, base: str) -> set[str]:
        if base and not vendor_path.startswith(base + "/"):
            return set()
        rel = vendor_path[len(base):]
        found = set()
        for rs in self.state.runtime.routes:
            if rs.config.cache is None or rs.config.upstream != upstream.name:
                continue
            template = rs.config.rewrite or rs.config.match.text
            try:
                m = match_path(compile_match(template), rel.split("/")[1:])
            except ValueError:
                continue
            if m is not None:
                found.add(rewrite_path(rs.config.match.text, rel, m))
        return found
