"""The live form of one loaded configuration: compiled routes, upstreams, per-route state.

Owns: what a reload swaps atomically: routes, upstream clients and their breakers, and the
state each route accumulates (guard hysteresis, learned contract shape, counters).
Must not: serve requests (that is `handler`) or read YAML (that is `config`).
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from proxy.clock import Clock
from proxy.core.breaker import Transition
from proxy.core.config.model import ALL_METHODS as KNOWN_METHODS
from proxy.core.config.model import Config, RouteConfig
from proxy.core.drift import DriftTracker
from proxy.core.guards import Hysteresis
from proxy.core.routing import Match, match_path
from proxy.transport import Transports
from proxy.upstream import Upstream

MAX_TRACKED_KEYS: Final = 10_000
MAX_MEMO: Final = 10_000


@dataclass(slots=True)
class RouteState:
    config: RouteConfig
    upstream: Upstream
    drift: DriftTracker = field(default_factory=DriftTracker)
    hysteresis: OrderedDict[str, Hysteresis] = field(default_factory=OrderedDict)
    requests: int = 0
    hits: int = 0
    stale: int = 0
    fallbacks: int = 0  # route fallbacks served: nothing usable was cached (not stale)
    guard_rejections: int = 0
    last_good_at: float | None = None

    def hysteresis_for(self, key: str) -> Hysteresis:
        """Per cache key: a catalogue's streak must not be confirmed by another key's."""
        found = self.hysteresis.get(key)
        if found is None:
            found = self.hysteresis[key] = Hysteresis(self.config.confirm_after)
            if len(self.hysteresis) > MAX_TRACKED_KEYS:
                self.hysteresis.popitem(last=False)
        return found


class Runtime:
    def __init__(
        self,
        config: Config,
        clock: Clock,
        *,
        on_transition: Callable[[Transition], None],
        reuse: Runtime | None = None,
        rng: random.Random | None = None,
        transports: Transports | None = None,
    ) -> None:
        self.config = config
        self.on_transition = on_transition  # a reload builds the next runtime with it
        self.transports: Transports | None = (
            transports if transports is not None or reuse is None else reuse.transports
        )
        self.upstreams: dict[str, Upstream] = {}
        for up in config.upstreams:
            kept = reuse.upstreams.get(up.name) if reuse else None
            if kept and kept.config == up:
                self.upstreams[up.name] = kept
                continue
            exchange = self.transports(up, clock) if self.transports is not None else None
            self.upstreams[up.name] = Upstream(
                up, clock, on_transition=on_transition, rng=rng, transport=exchange
            )
        self.routes = [RouteState(r, self.upstreams[r.upstream]) for r in config.routes]
        self.by_name = {state.config.name: state for state in self.routes}
        self._memo: dict[tuple[str, str], tuple[RouteState, Match] | frozenset[str]] = {}
        if reuse is not None:
            for state in self.routes:
                old = reuse.by_name.get(state.config.name)
                if old is not None and old.config.guards == state.config.guards:
                    state.drift, state.hysteresis = old.drift, old.hysteresis
                    state.last_good_at = old.last_good_at

    def match(self, path: str, method: str) -> tuple[RouteState, Match] | frozenset[str]:
        """The first route, in file order, whose pattern and methods match; else the methods
        the path allows (empty: no route at all), for 404 or 405 with `Allow`.

        Results are memoised per (path, method): hot keys skip the pattern scan. The memo is
        bounded and belongs to this runtime, so a reload starts a fresh one.
        """
        memo_key = (path, method)
        found = self._memo.get(memo_key)
        if found is None:
            found = self.scan(path, method)
            if len(self._memo) >= MAX_MEMO:
                self._memo.clear()
            self._memo[memo_key] = found
        return found

    def scan(self, path: str, method: str) -> tuple[RouteState, Match] | frozenset[str]:
        """`match` without its memo, for a caller that memoises what it makes of the answer
        (`fasthit`'s plans)."""
        segments = path.split("/")[1:]
        allowed: set[str] = set()
        for state in self.routes:
            found = match_path(state.config.match, segments)
            if found is None:
                continue
            methods = state.config.methods
            if method in methods or (method == "HEAD" and "GET" in methods):
                return state, found
            if state.config.any_method and method not in KNOWN_METHODS:
                return state, found  # an extension method: passed through, never cached
            allowed |= methods
        if "GET" in allowed:
            allowed.add("HEAD")
        return frozenset(allowed)

    def route_at(self, path: str) -> RouteState | None:
        """The first route whose pattern matches `path`, whatever the method (names a 405)."""
        segments = path.split("/")[1:]
        return next((s for s in self.routes if match_path(s.config.match, segments) is not None), None)

    def retired(self, newer: Runtime) -> list[Upstream]:
        """Upstreams of this runtime that `newer` no longer uses (to close after a reload)."""
        keep = {id(u) for u in newer.upstreams.values()}
        return [u for u in self.upstreams.values() if id(u) not in keep]


class Live:
    """The runtime in force. A reload replaces `runtime` with one assignment; a request reads it
    once and keeps that runtime to its end."""

    __slots__ = ("runtime",)

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
