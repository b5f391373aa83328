"""The proxy under test: its benchmark config, and starting it through its real CLI.

Owns the YAML the suite writes for the proxy (DESIGN.md section 3 contract), checking that the
proxy's own loader accepts it, starting `python -m proxy run --config FILE` as a subprocess on
free loopback ports, and reading breaker state from the admin listener. It must not import the
proxy's request path: the proxy is measured from outside, as users run it.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import importlib.util
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from benchmarks.procs import REPO_ROOT, Child, ProcessGroup, StartError, free_port
from benchmarks.services import get_json, request

OUTAGE_UPSTREAM = "origin_outage"


def cli_available() -> str | None:
    """None when `python -m proxy run` exists, else why the proxy scenarios must skip."""
    if not (REPO_ROOT / "proxy" / "__main__.py").exists():
        return "proxy CLI not available yet (proxy/__main__.py missing)"
    return None


def bench_config(
    *,
    origin_port: int,
    workers: int = 1,
    max_bytes: str = "512MB",
    backend: str = "memory",
    redis_url: str | None = None,
    namespace: str = "bench",
) -> dict[str, Any]:
    """The proxy config every proxy scenario runs against (ports are filled in by start)."""
    origin = f"http://127.0.0.1:{origin_port}"
    upstream: dict[str, Any] = {
        "url": origin,
        "timeout": {"connect": "1s", "total": "5s"},
        "retries": {"attempts": 0},
        "max_connections": 200,
    }
    outage = copy.deepcopy(upstream)
    # Opens after 10 failed calls; stays open longer than any run so "requests that reached
    # the origin while open" are only half-open probes (none, with open_for > the run).
    outage["circuit_breaker"] = {
        "failure_rate": "50%",
        "minimum_calls": 10,
        "window": "30s",
        "open_for": "60s",
        "half_open_probes": 1,
    }
    cached = {"ttl": "300s", "stale_while_revalidate": "60s", "stale_if_error": "1h"}
    cache: dict[str, Any] = {"backend": backend, "max_bytes": max_bytes}
    if backend == "redis":
        cache["redis"] = {"url": redis_url or "redis://127.0.0.1:6379/0", "namespace": namespace}
    return {
        "server": {"listen": "127.0.0.1:0", "workers": workers},
        "admin": {"listen": "127.0.0.1:0"},
        "cache": cache,
        "log": {"level": "warning", "access": "off"},
        "upstreams": {"origin": upstream, OUTAGE_UPSTREAM: outage},
        "routes": [
            {
                "name": "items",
                "match": "/api/items/{id}",
                "methods": ["GET", "HEAD"],
                "upstream": "origin",
                "rewrite": "/items/{id}",
                "cache": cached,
            },
            {
                "name": "stale",
                "match": "/api/stale/{id}",
                "methods": ["GET", "HEAD"],
                "upstream": "origin",
                "rewrite": "/stale/{id}",
                "cache": {"ttl": "0s", "stale_while_revalidate": "10m", "stale_if_error": "1h"},
            },
            {
                "name": "slow",
                "match": "/api/slow/{id}",
                "methods": ["GET", "HEAD"],
                "upstream": "origin",
                "rewrite": "/slow/{id}",
                "cache": cached,
            },
            {
                "name": "short",
                "match": "/api/short/{id}",
                "methods": ["GET", "HEAD"],
                "upstream": OUTAGE_UPSTREAM,
                "rewrite": "/short/{id}",
                "cache": {"ttl": "1s", "stale_if_error": "24h"},
            },
            {
                "name": "orders",
                "match": "/api/orders",
                "methods": ["POST"],
                "upstream": "origin",
                "rewrite": "/orders",
                "cache": "off",
            },
        ],
    }


def validate(config: dict[str, Any], path: Path) -> str | None:
    """The proxy loader's complaint about `config`, or None; None too if no loader exists."""
    text = yaml.safe_dump(config, sort_keys=False)
    path.write_text(text)
    if importlib.util.find_spec("proxy.config") is None:
        return None
    module = importlib.import_module("proxy.config")
    parse = getattr(module, "load_config", None)
    if parse is None:
        return None
    try:
        parse(str(path), env=dict(os.environ))
    except Exception as exc:  # the loader's ConfigError, or anything a half-built one raises
        return f"{type(exc).__name__}: {exc}"
    return None


@dataclass
class ProxyProcess:
    port: int
    admin_port: int
    child: Child
    config_path: Path

    def admin_json(self, path: str) -> Any:
        return get_json(self.admin_port, path, headers={"Accept": "application/json"})

    def breaker_state(self, upstream: str) -> str | None:
        """The upstream's breaker state from GET /status (lower-case), None when unreadable."""
        try:
            status = self.admin_json("/status")
        except (OSError, ValueError):
            return None
        return find_breaker_state(status, upstream)

    def reset_breaker(self, upstream: str) -> bool:
        try:
            probe = request(self.admin_port, "POST", f"/breakers/{upstream}/reset", b"")
        except OSError:
            return False
        return probe.status < 300


def find_breaker_state(doc: Any, upstream: str) -> str | None:
    """Search a /status document for `upstream`'s breaker state, whatever its exact layout."""
    if isinstance(doc, dict):
        named = doc.get(upstream)
        if named is None and doc.get("name") == upstream:
            named = doc
        if isinstance(named, dict):
            for key in ("breaker", "circuit_breaker", "state", "breaker_state"):
                value = named.get(key)
                if isinstance(value, str):
                    return value.lower()
                if isinstance(value, dict) and isinstance(value.get("state"), str):
                    return str(value["state"]).lower()
        for value in doc.values():
            found = find_breaker_state(value, upstream)
            if found is not None:
                return found
    elif isinstance(doc, list):
        for item in doc:
            found = find_breaker_state(item, upstream)
            if found is not None:
                return found
    return None


def start_proxy(
    group: ProcessGroup,
    config: dict[str, Any],
    name: str = "proxy",
    *,
    python: str = sys.executable,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> ProxyProcess:
    """Write `config` with free ports, check it with the proxy's loader, run the CLI, wait.
    `python`, `env` and `cwd`: another checkout's interpreter, import path and directory
    (`paired.baseline`)."""
    reason = cli_available()
    if reason:
        raise RuntimeError(reason)
    config = copy.deepcopy(config)
    port, admin_port = free_port(), free_port()
    config["server"]["listen"] = f"127.0.0.1:{port}"
    if isinstance(config.get("admin"), dict):
        config["admin"]["listen"] = f"127.0.0.1:{admin_port}"
    path = group.workdir / f"{name}.yaml"
    problem = validate(config, path)
    if problem:
        raise RuntimeError(f"proxy config rejected: {problem}")
    child = group.start(name, [python, "-m", "proxy", "run", "--config", str(path)], env=env, cwd=cwd)
    child.wait_port(port, timeout=30)
    if isinstance(config.get("admin"), dict):  # `admin: off` has no /ready to ask
        wait_ready(child, admin_port, timeout=30)
    return ProxyProcess(port=port, admin_port=admin_port, child=child, config_path=path)


def wait_ready(child: Child, admin_port: int, timeout: float) -> None:
    """Until GET /ready is 200: with `server.workers` > 1 the port opens when the first worker
    listens, and a warm-up before the others would reach that one only (issue 12)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            raise StartError(f"{child.name} exited: {child.output_tail()}")
        with contextlib.suppress(OSError):
            if request(admin_port, "GET", "/ready", timeout=2).status == 200:
                return
        time.sleep(0.05)
    raise StartError(f"{child.name} not ready in {timeout}s: {child.output_tail()}")


def user_config(path: Path, workdir: Path) -> tuple[dict[str, Any], list[str]]:
    """A user's YAML with its listeners moved to free loopback ports (their file is untouched)."""
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a YAML mapping")
    notes = []
    data.setdefault("server", {})
    data.setdefault("admin", {})
    if isinstance(data["server"], dict) and data["server"].get("listen"):
        notes.append(f"server.listen {data['server']['listen']} moved to a free loopback port")
    if not isinstance(data["admin"], dict):
        data["admin"] = {}
    log = data.setdefault("log", {})
    if isinstance(log, dict):
        log["access"] = "off"  # an access log line per request would measure the disk
    for key in ("snapshot",):
        cache = data.get("cache")
        if isinstance(cache, dict) and cache.get(key):
            cache[key] = str(workdir / "user-snapshot.msgpack")
            notes.append("cache.snapshot redirected to a temp file")
    return data, notes


def sample_paths(data: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(route name, concrete path, cacheable) for every route with a GET: `sample` if given,
    else the match template with each {name} filled with "1" (and a trailing /* with "1")."""
    out = []
    for route in data.get("routes") or []:
        if not isinstance(route, dict):
            continue
        methods = [str(m).upper() for m in route.get("methods") or ["GET"]]
        if "GET" not in methods:
            continue
        sample = route.get("sample")
        if not sample:
            match = str(route.get("match", ""))
            sample = re.sub(r"\{[^}]+\}", "1", match)
            if sample.endswith("/*"):
                sample = sample[:-1] + "1"
        cache = route.get("cache")
        cacheable = cache not in (None, False, "off")
        out.append((str(route.get("name", sample)), str(sample), cacheable))
    return out


def dumps(config: dict[str, Any]) -> str:
    return json.dumps(config, indent=2)
