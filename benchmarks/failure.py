"""The failure scenarios: an origin outage under load, and a stampede on one cold key.

Owns how failure is staged and what is counted: for `outage`, two back-to-back load runs with
the origin switched to failing between them, client errors and latency on each side, and the
origin requests that arrived while the breaker was open (polled from the admin listener); for
`stampede`, N concurrent cold requests on already-open connections and the origin requests
they caused (goal: 1). It must not leave the origin failing or the breaker open behind it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass

import aiohttp

from benchmarks.load import LoadResult, median_summary
from benchmarks.proxyrun import OUTAGE_UPSTREAM, ProxyProcess
from benchmarks.scenarios import prewarm
from benchmarks.services import Origin
from benchmarks.suite import ScenarioResult, Suite, salt

# ------------------------------------------------------------------------------------ outage


@dataclass(frozen=True, slots=True)
class Sample:
    at: float
    origin_requests: int
    breaker: str | None


class BreakerPoller:
    """Samples origin request count and breaker state every `interval` s in a thread."""

    def __init__(self, proxy: ProxyProcess, origin: Origin, interval: float = 0.05) -> None:
        self.proxy, self.origin, self.interval = proxy, origin, interval
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> BreakerPoller:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def _sample(self) -> None:
        # State first, count second: a sample that says "open" then only counts requests
        # that arrived after the breaker opened (the other order over-counts at the edge).
        state = self.proxy.breaker_state(OUTAGE_UPSTREAM)
        try:
            count = self.origin.requests()
        except OSError:
            return
        self.samples.append(Sample(time.monotonic(), count, state))

    def stop(self) -> list[Sample]:
        self._stop.set()
        self._thread.join(5)
        self._sample()
        return self.samples


@dataclass(frozen=True, slots=True)
class OpenStats:
    while_open: int  # origin requests between two samples that both saw the breaker open
    opened_after_s: float | None  # from the failure switch to the first "open" sample
    until_open: int | None  # origin requests from the switch to that sample


def while_open(samples: list[Sample]) -> OpenStats | None:
    """What the breaker did during the failing half; None when its state was never readable.

    Sampling is every 50 ms while the proxy is under load, so the times are approximate."""
    if not any(s.breaker for s in samples):
        return None
    count = sum(
        b.origin_requests - a.origin_requests
        for a, b in itertools.pairwise(samples)
        if a.breaker == "open" and b.breaker == "open"
    )
    first = next((s for s in samples if s.breaker == "open"), None)
    if first is None:
        return OpenStats(count, None, None)
    return OpenStats(count, first.at - samples[0].at, first.origin_requests - samples[0].origin_requests)


def outage(suite: Suite, res: ScenarioResult) -> None:
    proxy, origin, s = suite.proxy(), suite.origin(), suite.settings
    keys = s.outage_keys
    res.notes.append(prewarm(suite, proxy.port, "/api/short/", keys))
    half = max(1.0, s.duration / 2)
    target = suite.target(proxy.port, "/api/short/", mode="random", keys=keys, duration=half)
    suite.warm(target)
    befores: list[LoadResult] = []
    stats: list[OpenStats] = []
    for i in range(s.repeats):
        if not proxy.reset_breaker(OUTAGE_UPSTREAM) and i > 0:
            res.notes.append(f"run {i + 1}: could not reset the breaker (admin API)")
        befores.append(suite.loader.run(target))
        origin.fail("down")
        poller = BreakerPoller(proxy, origin).start()
        start = origin.requests()
        try:
            res.runs.append(suite.loader.run(target))
        finally:
            samples = poller.stop()
            res.origin_requests.append(origin.requests() - start)
            origin.fail("ok")
        found = while_open(samples)
        if found is not None:
            stats.append(found)
    res.extra["before"] = median_summary(befores)
    res.extra["after"] = median_summary(res.runs)
    res.extra["origin_requests_while_open"] = [x.while_open for x in stats] or None
    res.extra["breaker_opened_after_s"] = [
        None if x.opened_after_s is None else round(x.opened_after_s, 3) for x in stats
    ] or None
    res.extra["origin_requests_until_open"] = [x.until_open for x in stats] or None
    b, a = res.extra["before"], res.extra["after"]
    res.notes.append(f"{keys} keys, max-age 1s, stale_if_error 24h; origin 503 from halfway")
    res.notes.append(
        f"before: {b['errors']} err, p99 {b['p99_ms']} ms; after: {a['errors']} err, p99 {a['p99_ms']} ms"
    )
    if not stats:
        res.notes.append("breaker state not readable from admin /status")
    elif all(x.opened_after_s is None for x in stats):
        res.notes.append("breaker never opened")
    else:
        res.notes.append(
            "breaker opened after "
            + ", ".join(
                f"{x.opened_after_s:.2f}s/{x.until_open} origin reqs"
                for x in stats
                if x.opened_after_s is not None
            )
            + f"; origin reqs while open: {max(x.while_open for x in stats)}"
        )
    proxy.reset_breaker(OUTAGE_UPSTREAM)


# ---------------------------------------------------------------------------------- stampede


def _error_code(body: bytes) -> str:
    try:
        doc = json.loads(body)
    except ValueError:
        return "(not JSON)"
    return str(doc.get("error", "?")) if isinstance(doc, dict) else "?"


# The proxy admits at most 256 connections per client address (proxy/core/limits.py ConnLimits);
# a stampede is many visitors, so the connections come from several loopback source addresses.
PER_SOURCE = 250


def source_addresses(n: int) -> list[str]:
    """127.0.0.1, 127.0.0.2, ...: enough loopback sources for n connections (all of 127/8 is
    loopback on Linux, so every packet still stays on this machine)."""
    return [f"127.0.0.{i + 1}" for i in range(max(1, -(-n // PER_SOURCE)))]


async def _stampede(port: int, path: str, n: int) -> tuple[list[float], Counter[str], float]:
    timeout = aiohttp.ClientTimeout(total=60)
    sessions = [
        aiohttp.ClientSession(
            timeout=timeout,
            connector=aiohttp.TCPConnector(
                limit=PER_SOURCE + 16, limit_per_host=PER_SOURCE + 16, local_addr=(addr, 0)
            ),
        )
        for addr in source_addresses(n)
    ]
    url = f"http://127.0.0.1:{port}"

    async def get(i: int, target: str) -> tuple[float, str]:
        session = sessions[i % len(sessions)]
        started = time.perf_counter()
        try:
            async with session.get(url + target) as resp:
                body = await resp.read()
                outcome = f"{resp.status} {resp.headers.get('X-Cache', '-')}"
                if resp.status >= 400:  # the proxy's JSON error names the cause
                    outcome += " " + _error_code(body)
        except (aiohttp.ClientError, TimeoutError) as exc:
            outcome = type(exc).__name__
        return time.perf_counter() - started, outcome

    try:
        # Open the n connections first (hits on a warm key), so the cold requests below
        # arrive together on established keep-alive connections, not through the accept queue.
        await asyncio.gather(*(get(i, "/api/items/1") for i in range(n)))
        started = time.perf_counter()
        results = await asyncio.gather(*(get(i, path) for i in range(n)))
        elapsed = time.perf_counter() - started
    finally:
        for session in sessions:
            await session.close()
    return [r[0] for r in results], Counter(r[1] for r in results), elapsed


def stampede(suite: Suite, res: ScenarioResult) -> None:
    proxy, origin, n = suite.proxy(), suite.origin(), suite.settings.stampede
    outcomes: Counter[str] = Counter()
    suite.x_cache(proxy.port, "/api/items/1")  # the connection-opening key: cached beforehand
    for _ in range(suite.settings.repeats):
        path = f"/api/slow/stampede-{salt()}"
        before = origin.requests()
        latencies, seen, elapsed = asyncio.run(_stampede(proxy.port, path, n))
        res.origin_requests.append(origin.requests() - before)
        outcomes.update(seen)
        errors = sum(c for k, c in seen.items() if not k.startswith(("2", "3")))
        run = LoadResult.of(
            latencies, requests=n, duration_s=elapsed, errors=errors, generator="aiohttp-inprocess"
        )
        res.runs.append(run)
    res.extra["responses"] = dict(outcomes)
    res.notes.append(
        f"{n} concurrent cold requests from {len(source_addresses(n))} loopback "
        "addresses, origin delay 0.2s; " + ", ".join(f"{k}: {v}" for k, v in outcomes.most_common(4))
    )
