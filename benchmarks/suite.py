"""The measuring harness every scenario shares: settings, results, lazily started services.

Owns: `Settings` (durations, repeats, connections...), `ScenarioResult` (runs, origin requests,
notes, skip reason), and `Suite`, which starts each service the first time a scenario needs it
(origin, ceiling, proxy, nginx, redis) inside one `ProcessGroup` and runs warm-up + repeats.
It must not decide what a scenario measures (that is `scenarios`, `failure`, `memory`).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.load import Loader, LoadResult, Target, median_summary
from benchmarks.procs import Child, ProcessGroup, tree_cpu_seconds
from benchmarks.proxyrun import ProxyProcess, bench_config, cli_available, start_proxy
from benchmarks.services import Origin, nginx_version, request, start_ceiling, start_nginx, start_origin


class Skip(Exception):
    """A scenario cannot run here; the message is the reason the report shows."""


@dataclass(frozen=True, slots=True)
class Settings:
    duration: float = 10.0
    warmup: float = 2.0
    repeats: int = 3
    connections: int = 50
    threads: int = 1
    workers: int = 1
    quick: bool = False
    size: int = 1024
    spread_keys: int = 10_000
    outage_keys: int = 1_000
    stampede: int = 1_000
    memory_entries: int = 100_000
    baseline: Path | None = None  # --baseline: a checkout whose proxy the -ab scenarios run beside ours
    pace_ms: int = 0  # --pace: the paired runs' connections wait this long between requests


@dataclass
class ScenarioResult:
    name: str
    description: str
    runs: list[LoadResult] = field(default_factory=list)
    origin_requests: list[int] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)  # server CPU per request, per run
    skipped: str | None = None
    failed: str | None = None  # a scenario that crashed: the run exits non-zero
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(median_summary(self.runs))
        out["origin_requests"] = (
            int(statistics.median(self.origin_requests)) if self.origin_requests else None
        )
        out["cpu_us"] = round(statistics.median(self.cpu_us), 1) if self.cpu_us else None
        return out

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"description": self.description}
        if self.skipped is None and self.failed is None:
            data.update(self.summary())
        else:
            data.update(dict.fromkeys(("rps", "p50_ms", "p90_ms", "p99_ms", "errors", "origin_requests")))
            data["cpu_us"] = None
        data["repeats"] = [
            {
                **run.as_dict(),
                "origin_requests": _nth(self.origin_requests, i),
                "cpu_us": _nth(self.cpu_us, i),
            }
            for i, run in enumerate(self.runs)
        ]
        data["generator"] = self.runs[0].generator if self.runs else None
        data["skipped"] = self.skipped
        data["failed"] = self.failed
        data["notes"] = list(self.notes)
        data.update(self.extra)
        return data


def settle(pid: int, quiet: float = 0.02, step: float = 0.1, limit: float = 15.0) -> None:
    """Until the server (with its workers) has been idle for a `step` (under `quiet` CPU
    seconds per second), at most `limit` seconds. A load run ends with its connections cut
    while their requests are still in flight; the server finishes them (and keeps counting
    those connections, per client address, until it has) after the generator has gone. Without
    this the next run would pay for and be shed by the previous one's leftovers: at 1,024
    connections from one address, the proxy's per-client limit refused the new ones."""
    deadline = time.monotonic() + limit
    last = tree_cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(step)
        now = tree_cpu_seconds(pid)
        if now - last < quiet * step:
            return
        last = now


def _nth(values: Sequence[int] | Sequence[float], i: int) -> int | float | None:
    return values[i] if i < len(values) else None


def salt() -> str:
    """A fresh token, so "new" keys are new on every run (not a pure module: urandom is fine)."""
    return os.urandom(4).hex()


class Suite:
    """Services started on first use and stopped with the group; warm-up and repeats."""

    def __init__(
        self, settings: Settings, group: ProcessGroup, loader: Loader, log: Callable[[str], None] = print
    ) -> None:
        self.settings = settings
        self.group = group
        self.loader = loader
        self.log = log
        self._origin: Origin | None = None
        self._ceiling: tuple[int, Child] | None = None
        self._nginx: tuple[int, Child] | None = None
        self._proxy: ProxyProcess | None = None
        self._proxy_error: str | None = None

    # ------------------------------------------------------------------ services

    def origin(self) -> Origin:
        if self._origin is None:
            self._origin = start_origin(self.group, size=self.settings.size)
        return self._origin

    def ceiling(self) -> tuple[int, Child]:
        if self._ceiling is None:
            self._ceiling = start_ceiling(self.group, size=self.settings.size, workers=self.settings.workers)
        return self._ceiling

    def nginx(self) -> tuple[int, Child]:
        """nginx in front of the same origin, started once (Skip when it is not installed)."""
        if self._nginx is None:
            self._nginx = self.new_nginx("nginx")
        return self._nginx

    def new_nginx(self, name: str) -> tuple[int, Child]:
        """Another nginx in front of the same origin, in a directory of its own (`name`)."""
        if nginx_version() is None:
            raise Skip("nginx not installed (/usr/sbin/nginx)")
        origin, workers = self.origin().port, self.settings.workers
        return start_nginx(self.group, origin_port=origin, workers=workers, name=name)

    def proxy_config(self, **overrides: Any) -> dict[str, Any]:
        return bench_config(origin_port=self.origin().port, workers=self.settings.workers, **overrides)

    def proxy(self) -> ProxyProcess:
        """The main proxy (memory backend), started once; Skip when it cannot start."""
        if self._proxy is None:
            if self._proxy_error is None:
                self._proxy_error = cli_available()
            if self._proxy_error is None:
                try:
                    self._proxy = start_proxy(self.group, self.proxy_config())
                except Exception as exc:  # report why, never crash the suite
                    self._proxy_error = f"proxy did not start: {exc}"
            if self._proxy is None:
                raise Skip(self._proxy_error or "proxy did not start")
        return self._proxy

    # ------------------------------------------------------------------ load

    def target(self, port: int, path: str, **kw: Any) -> Target:
        s = self.settings
        kw.setdefault("duration", s.duration)
        return Target(port=port, path=path, connections=s.connections, threads=s.threads, **kw)

    def warm(self, target: Target) -> None:
        """Warm-up before measuring: a short load run, or a small burst in --quick."""
        if self.settings.warmup >= 1:
            self.loader.run(replace(target, duration=self.settings.warmup))
            return
        paths = [
            target.path if target.mode == "one" else f"{target.path}w{salt()}{i}"
            for i in range(target.connections * 2)
        ]
        if target.mode in ("random", "seq"):
            paths = [f"{target.path}{i % max(1, target.keys)}" for i in range(len(paths))]
        burst(target.port, target.method, paths, target.body, target.connections)

    def measure(
        self,
        res: ScenarioResult,
        make: Callable[[int], Target],
        *,
        server: Child | None,
        warm: Target | None = None,
        count_origin: bool = True,
    ) -> None:
        """Warm up once, then run `repeats` times into `res`: per run the load result, the
        origin requests, and the CPU `server` (with its workers) spent per request."""
        if warm is not None:
            self.warm(warm)
        for i in range(self.settings.repeats):
            if server is not None:
                settle(server.pid)
            before = self.origin().requests() if count_origin else 0
            cpu_before = tree_cpu_seconds(server.pid) if server else 0.0
            run = self.loader.run(make(i))
            cpu = tree_cpu_seconds(server.pid) - cpu_before if server else 0.0
            res.runs.append(run)
            if server is not None and run.requests:
                res.cpu_us.append(round(cpu / run.requests * 1e6, 1))
            if count_origin:
                res.origin_requests.append(self.origin().requests() - before)

    def x_cache(self, port: int, path: str) -> str:
        """X-Cache (or nginx's upstream_cache_status) of one request, for the notes."""
        probe = request(port, "GET", path)
        return f"{probe.status} X-Cache={probe.header('x-cache') or '-'}"


def run_scenario(
    suite: Suite, name: str, description: str, runner: Callable[[Suite, ScenarioResult], None]
) -> ScenarioResult:
    """Run one scenario; a Skip becomes its `skipped` reason, any other error its `failed` one
    (reported, the other scenarios still run, and the suite exits non-zero)."""
    res = ScenarioResult(name=name, description=description)
    started = time.monotonic()
    suite.log(f"== {name}: {description}")
    try:
        runner(suite, res)
    except Skip as skip:
        res.skipped = str(skip)
    except Exception as exc:  # one broken scenario must not take the others down
        res.failed = f"{type(exc).__name__}: {str(exc)[:300]}"
    outcome = f"FAILED: {res.failed}" if res.failed else f"skipped: {res.skipped}" if res.skipped else "done"
    suite.log(f"   {outcome} ({time.monotonic() - started:.1f}s)")
    return res


async def _burst(port: int, method: str, paths: Sequence[str], body: bytes, concurrency: int) -> list[int]:
    sem = asyncio.Semaphore(concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(path: str) -> int:
            async with sem:
                try:
                    async with session.request(
                        method, f"http://127.0.0.1:{port}{path}", data=body or None
                    ) as resp:
                        await resp.read()
                        return resp.status
                except (aiohttp.ClientError, TimeoutError):
                    return 0

        return list(await asyncio.gather(*(one(p) for p in paths)))


def burst(
    port: int, method: str, paths: Sequence[str], body: bytes = b"", concurrency: int = 50
) -> list[int]:
    """Send each request once from this process; returns the statuses (0 for a failure)."""
    return asyncio.run(_burst(port, method, paths, body, concurrency))
