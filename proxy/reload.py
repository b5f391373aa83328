"""Hot reload: parse and validate a new config, then swap it in with one assignment.

Owns: what a reload keeps and what it drops. The new file is validated first; a broken one is
refused and the old config keeps serving. A good one becomes a new `Runtime` built with
`reuse=` the old one (upstreams whose config did not change keep their pools and breakers, routes
whose guards did not change keep their learned state), assigned to `Live.runtime` at once;
requests already in flight keep the runtime they started with. Cached entries survive unless the
route's cache-key inputs changed (name, match, rewrite, upstream URL, cache key policy, caching
on/off) or the route is gone. Retired upstream clients are closed after a grace period.
Must not: resize or rebuild anything else. Settings read once at start (listeners, workers,
cache size and backend, access-log destination, alert webhook, admin token) are reported as
needing a restart rather than half-applied.

Like nginx's `-s reload`: validate first, swap atomically, let old work finish.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from proxy.cache import Cache
from proxy.clock import Clock
from proxy.config import ConfigError, load_config
from proxy.core.config.model import Config, RouteConfig
from proxy.core.keys import route_prefix
from proxy.core.redact import DEFAULT_SECRET_PARAMS
from proxy.flight import Tasks
from proxy.runtime import Live, Runtime
from proxy.telemetry import Telemetry
from proxy.upstream import Upstream

log = logging.getLogger("proxy.reload")


@dataclass(frozen=True, slots=True)
class ReloadResult:
    errors: list[str]  # empty on success; `file:line: key: message` each
    path: str = ""
    added: tuple[str, ...] = ()  # route names
    removed: tuple[str, ...] = ()
    purged: tuple[str, ...] = ()  # routes whose cached entries were dropped
    purged_entries: int = 0
    kept_upstreams: tuple[str, ...] = ()  # same client, pool and breaker as before
    new_upstreams: tuple[str, ...] = ()
    retired_upstreams: tuple[str, ...] = ()
    restart_needed: tuple[str, ...] = field(default=())  # changed settings that apply at restart

    @property
    def ok(self) -> bool:
        return not self.errors

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "errors": self.errors,
            "path": self.path,
            "added": list(self.added),
            "removed": list(self.removed),
            "purged": list(self.purged),
            "purged_entries": self.purged_entries,
            "kept_upstreams": list(self.kept_upstreams),
            "new_upstreams": list(self.new_upstreams),
            "retired_upstreams": list(self.retired_upstreams),
            "restart_needed": list(self.restart_needed),
        }


def key_inputs(route: RouteConfig, config: Config) -> tuple[object, ...]:
    """Everything that decides which stored entry answers which request for this route."""
    cache_key = route.cache.key if route.cache is not None else None
    return (
        route.name,
        route.match,
        route.rewrite,
        config.upstream(route.upstream).url,
        cache_key,
        route.cache is not None,
    )


def routes_to_purge(old: Config, new: Config) -> tuple[str, ...]:
    """Route names (of `old`) whose stored entries must not be served under `new`."""
    kept = {r.name: key_inputs(r, new) for r in new.routes}
    return tuple(r.name for r in old.routes if kept.get(r.name) != key_inputs(r, old))


def restart_needed(old: Config, new: Config) -> tuple[str, ...]:
    """Settings a running process cannot change in place."""
    checks = {
        "server": old.server != new.server,
        "admin": old.admin != new.admin,
        "cache": old.cache != new.cache,
        "log.access": old.log.access != new.log.access,
        "alerts": old.alerts != new.alerts,
    }
    return tuple(name for name, changed in checks.items() if changed)


class Reloader:
    """Reloads of one running proxy: what a reload touches, given when built (`app.build_app`)."""

    def __init__(self, live: Live, clock: Clock, cache: Cache, telemetry: Telemetry, tasks: Tasks) -> None:
        self.live, self.clock, self.cache, self.telemetry, self.tasks = live, clock, cache, telemetry, tasks

    def from_file(self, path: str | None = None, *, retire_after: float | None = None) -> ReloadResult:
        """Reload from `path` (default: the file the running config came from).

        Synchronous (SIGHUP handler and POST /reload call it on the loop): reading one small
        YAML file is the only blocking work, and a reload is rare.
        """
        source = path or self.live.runtime.config.path
        try:
            config = load_config(source)
        except ConfigError as exc:
            errors = [str(issue) for issue in exc.issues]
            log.error("reload of %s refused (%d errors); the old config keeps serving", source, len(errors))
            return ReloadResult(errors=errors, path=source)
        return self.apply(config, retire_after=retire_after)

    def apply(self, config: Config, *, retire_after: float | None = None) -> ReloadResult:
        """Swap `config` in. `retire_after`: seconds before retired upstream clients are closed
        (default: long enough for a request on them to finish, retries included)."""
        old = self.live.runtime
        runtime = Runtime(config, self.clock, on_transition=old.on_transition, reuse=old)
        _carry_counters(old, runtime)
        purge = routes_to_purge(old.config, config)
        self.live.runtime = runtime  # the swap: one assignment, nothing awaited around it
        dropped = sum(self.cache.drop_prefix(route_prefix(name), name) for name in purge)
        _update_redaction(self.telemetry, config)
        _set_level(old.config, config)
        retired = old.retired(runtime)
        for upstream in retired:
            self.tasks.spawn(upstream.retire(_grace(upstream, retire_after)), name=f"retire:{upstream.name}")
        old_names = {r.name for r in old.config.routes}
        new_names = {r.name for r in config.routes}
        result = ReloadResult(
            errors=[],
            path=config.path,
            added=tuple(sorted(new_names - old_names)),
            removed=tuple(sorted(old_names - new_names)),
            purged=purge,
            purged_entries=dropped,
            kept_upstreams=tuple(n for n, u in runtime.upstreams.items() if old.upstreams.get(n) is u),
            new_upstreams=tuple(n for n, u in runtime.upstreams.items() if old.upstreams.get(n) is not u),
            retired_upstreams=tuple(u.name for u in retired),
            restart_needed=restart_needed(old.config, config),
        )
        log.info(
            "reloaded %s: +%d -%d routes, %d entries purged (%s)%s",
            config.path,
            len(result.added),
            len(result.removed),
            dropped,
            ", ".join(purge) or "none",
            f"; restart needed for {', '.join(result.restart_needed)}" if result.restart_needed else "",
        )
        return result


def _carry_counters(old: Runtime, new: Runtime) -> None:
    """Keep a route's request counters across a reload so the status page does not reset.
    (Requests still in flight on the old runtime may add to the old object: a few are lost.)"""
    for rs in new.routes:
        before = old.by_name.get(rs.config.name)
        if before is not None:
            rs.requests, rs.hits = before.requests, before.hits
            rs.stale, rs.guard_rejections = before.stale, before.guard_rejections


def _update_redaction(telemetry: Telemetry, config: Config) -> None:
    # New upstream headers are new secrets: the log must scrub them from the first request on.
    # Old ones stay listed, since requests in flight may still carry them.
    telemetry.secret_values = tuple(dict.fromkeys((*telemetry.secret_values, *config.secret_values())))
    telemetry.secret_params = tuple(DEFAULT_SECRET_PARAMS) + config.log.redact_params


def _set_level(old: Config, new: Config) -> None:
    if old.log.level != new.log.level:
        logging.getLogger().setLevel(new.log.level.upper())


def _grace(upstream: Upstream, retire_after: float | None) -> float:
    cfg = upstream.config
    if retire_after is not None:
        return retire_after
    return (
        cfg.timeout.total * (cfg.retries.attempts + 1) + cfg.retries.max_backoff * cfg.retries.attempts + 1.0
    )
