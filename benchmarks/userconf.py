"""`python -m benchmarks --config FILE`: the user's own config, routes and upstreams.

Owns the scenarios that fit someone else's setup: for every route with GET, `hit-<route>` (its
sample path, again and again: fresh hits when the route caches) and, for cacheable routes,
`miss-<route>` (a new `_bench` query value per request, so every request is a miss). The miss
scenario sends full load to the upstream, so it only runs against loopback upstreams unless
the user passes --allow-upstream-load. The user's file is never modified; their listeners are
moved to free loopback ports in a temp copy.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from benchmarks.load import Loader
from benchmarks.procs import process_group
from benchmarks.proxyrun import ProxyProcess, sample_paths, start_proxy, user_config
from benchmarks.suite import ScenarioResult, Settings, Skip, Suite, run_scenario, salt

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand(text: str, env: Mapping[str, str]) -> str:
    """`${VAR}` and `${VAR:-default}` as the proxy's config loader reads them."""
    return _VAR.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), text)


def _loopback_upstream(data: dict[str, Any], route: str) -> bool:
    routes = {str(r.get("name")): r for r in data.get("routes") or [] if isinstance(r, dict)}
    upstreams = data.get("upstreams") or {}
    up = upstreams.get(routes.get(route, {}).get("upstream"), {})
    url = expand(str(up.get("url", "")), os.environ) if isinstance(up, dict) else ""
    return (urlsplit(url).hostname or "") in ("127.0.0.1", "localhost", "::1")


def _hit(proxy: ProxyProcess, sample: str) -> Callable[[Suite, ScenarioResult], None]:
    def run(suite: Suite, res: ScenarioResult) -> None:
        first = suite.x_cache(proxy.port, sample)
        target = suite.target(proxy.port, sample)
        suite.measure(res, lambda i: target, server=proxy.child, warm=target, count_origin=False)
        res.notes.append(f"first {first}; then {suite.x_cache(proxy.port, sample)}")

    return run


def _miss(proxy: ProxyProcess, sample: str, allowed: str | None) -> Callable[[Suite, ScenarioResult], None]:
    def run(suite: Suite, res: ScenarioResult) -> None:
        if allowed is not None:
            raise Skip(allowed)
        prefix = sample + ("&" if "?" in sample else "?") + "_bench="

        def make(i: int) -> Any:
            return suite.target(proxy.port, prefix, mode="unique", salt=f"u{i}{salt()}")

        suite.measure(res, make, server=proxy.child, warm=make(99), count_origin=False)
        res.notes.append("new _bench query value per request (a miss if the route keys on the query)")

    return run


def run_user_config(
    path: Path,
    settings: Settings,
    loader: Loader,
    say: Callable[[str], None],
    *,
    allow_upstream_load: bool = False,
) -> dict[str, Any]:
    scenarios: dict[str, Any] = {}
    with process_group() as group:
        suite = Suite(settings, group, loader, log=say)
        try:
            data, notes = user_config(path, group.workdir)
            proxy = start_proxy(group, data, name="proxy-user")
        except Exception as exc:
            reason = f"{type(exc).__name__}: {str(exc)[:400]}"
            say(f"cannot start the proxy with {path}: {reason}")
            return {
                "scenarios": {"config": _skipped(str(path), reason)},
                "memory": {"skipped": "not run with --config"},
                "micro": {},
            }
        for note in notes:
            say(f"note: {note}")
        for route, sample, cacheable in sample_paths(data):
            res = run_scenario(suite, f"hit-{route}", f"GET {sample} repeated", _hit(proxy, sample))
            scenarios[res.name] = res.as_dict()
            if not cacheable:
                continue
            allowed = None
            if not allow_upstream_load and not _loopback_upstream(data, route):
                allowed = "upstream is not on loopback (pass --allow-upstream-load)"
            res = run_scenario(
                suite, f"miss-{route}", f"GET {sample} with new keys", _miss(proxy, sample, allowed)
            )
            scenarios[res.name] = res.as_dict()
    return {"scenarios": scenarios, "memory": {"skipped": "not run with --config"}, "micro": {}}


def _skipped(description: str, reason: str) -> dict[str, Any]:
    return ScenarioResult(name="config", description=description, skipped=reason).as_dict()
