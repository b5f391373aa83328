"""The `slow` scenario: a vendor slower than the route's `stale_if_slow`, with and without it.

Owns: two origins that answer every request after VENDOR_DELAY seconds, one proxy per origin
(the same route, with `stale_if_slow` and without), and what is measured on each: a burst of
concurrent clients on keys whose stored copy is past freshness but inside stale_if_error, their
latencies, the X-Cache they got, and the vendor requests the burst caused (counted once the
fetches left running in the background have finished). The run with the budget goes first; the
run without it (VENDOR_DELAY long) gives those background fetches time to finish, so a repeat
takes about VENDOR_DELAY seconds. Must not touch the suite's shared origin or proxy.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import aiohttp

from benchmarks.load import LoadResult, median_summary
from benchmarks.procs import free_port
from benchmarks.proxyrun import ProxyProcess, bench_config, start_proxy
from benchmarks.services import Origin
from benchmarks.suite import ScenarioResult, Suite

VENDOR_DELAY = 2.0  # seconds before the origin answers anything
BUDGET = "200ms"  # the route's stale_if_slow
KEYS = 20
CLIENTS = 200  # concurrent requests per burst, spread over KEYS keys


def _origin(suite: Suite, name: str) -> Origin:
    """An origin whose every answer takes VENDOR_DELAY; `/stale/{id}` says max-age=0."""
    port = free_port()
    args = ["--port", str(port), "--size", str(suite.settings.size), "--delay", str(VENDOR_DELAY)]
    child = suite.group.start_python(name, "benchmarks.origin", args)
    child.wait_port(port)
    return Origin(port=port, child=child, size=suite.settings.size)


def _proxy(suite: Suite, origin: Origin, budget: str | None, name: str) -> ProxyProcess:
    config = bench_config(origin_port=origin.port, workers=suite.settings.workers)
    cache: dict[str, str] = {"ttl": "0s", "stale_if_error": "1h"}
    if budget is not None:
        cache["stale_if_slow"] = budget
    config["upstreams"] = {"origin": config["upstreams"]["origin"]}
    config["routes"] = [
        {
            "name": "quotes",
            "match": "/api/quotes/{id}",
            "methods": ["GET", "HEAD"],
            "upstream": "origin",
            "rewrite": "/stale/{id}",  # max-age=0: stale as soon as stored, usable on error for 1h
            "cache": cache,
        }
    ]
    return start_proxy(suite.group, config, name=name)


async def _burst(port: int, n: int) -> tuple[list[float], Counter[str], float]:
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=n, limit_per_host=n)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:

        async def get(i: int) -> tuple[float, str]:
            started = time.perf_counter()
            try:
                async with session.get(f"http://127.0.0.1:{port}/api/quotes/{i % KEYS}") as resp:
                    await resp.read()
                    outcome = f"{resp.status} {resp.headers.get('X-Cache', '-')}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                outcome = type(exc).__name__
            return time.perf_counter() - started, outcome

        # Open the n connections first (404s, no vendor involved), as the stampede does, so the
        # figures are the proxy's wait and not n TCP handshakes at once.
        await asyncio.gather(*(_open(session, port) for _ in range(n)))
        started = time.perf_counter()
        results = await asyncio.gather(*(get(i) for i in range(n)))
        return [r[0] for r in results], Counter(r[1] for r in results), time.perf_counter() - started


async def _open(session: aiohttp.ClientSession, port: int) -> None:
    try:
        async with session.get(f"http://127.0.0.1:{port}/not-a-route") as resp:
            await resp.read()
    except (aiohttp.ClientError, TimeoutError):
        pass  # the measured request opens its own connection then


def _result(latencies: list[float], seen: Counter[str], elapsed: float) -> LoadResult:
    errors = sum(c for k, c in seen.items() if not k.startswith("200"))
    return LoadResult.of(latencies, duration_s=elapsed, errors=errors, generator="aiohttp-inprocess")


def _settled(origin: Origin, before: int, want: int, limit: float) -> int:
    """Vendor requests since `before`, once `want` arrived and answered (bounded by `limit` s)."""
    deadline = time.monotonic() + limit
    while origin.requests() - before < want and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.05)
    return origin.requests() - before


def slow(suite: Suite, res: ScenarioResult) -> None:
    fast_origin, plain_origin = _origin(suite, "origin-slow-a"), _origin(suite, "origin-slow-b")
    budgeted = _proxy(suite, fast_origin, BUDGET, "proxy-slow-budget")
    plain = _proxy(suite, plain_origin, None, "proxy-slow-plain")

    async def fill() -> None:  # one stored copy per key on both proxies (one VENDOR_DELAY)
        await asyncio.gather(_burst(budgeted.port, KEYS), _burst(plain.port, KEYS))

    asyncio.run(fill())
    plain_runs: list[LoadResult] = []
    plain_vendor: list[int] = []
    seen_budget: Counter[str] = Counter()
    seen_plain: Counter[str] = Counter()
    for _ in range(suite.settings.repeats):
        before = fast_origin.requests()
        latencies, seen, elapsed = asyncio.run(_burst(budgeted.port, CLIENTS))
        res.runs.append(_result(latencies, seen, elapsed))
        seen_budget.update(seen)
        before_plain = plain_origin.requests()
        latencies, seen, elapsed = asyncio.run(_burst(plain.port, CLIENTS))  # ~VENDOR_DELAY
        plain_runs.append(_result(latencies, seen, elapsed))
        seen_plain.update(seen)
        plain_vendor.append(plain_origin.requests() - before_plain)
        # The budgeted proxy's fetches went on in the background: count them once they are done.
        res.origin_requests.append(_settled(fast_origin, before, KEYS, VENDOR_DELAY + 1.0))
    without = median_summary(plain_runs)
    without["origin_requests"] = sorted(plain_vendor)[len(plain_vendor) // 2]
    res.extra["without_budget"] = without
    res.extra["responses"] = dict(seen_budget)
    res.extra["responses_without_budget"] = dict(seen_plain)
    mine = res.summary()
    res.notes.append(
        f"vendor {VENDOR_DELAY:g}s; {CLIENTS} concurrent clients (connections already open) on "
        f"{KEYS} keys with a stale copy (max-age 0, stale_if_error 1h)"
    )
    res.notes.append(
        f"stale_if_slow {BUDGET}: p50 {mine['p50_ms']} ms, p99 {mine['p99_ms']} ms, "
        f"vendor requests {mine['origin_requests']} ({_counts(seen_budget)})"
    )
    res.notes.append(
        f"without it: p50 {without['p50_ms']} ms, p99 {without['p99_ms']} ms, "
        f"vendor requests {without['origin_requests']} "
        f"({_counts(seen_plain)})"
    )


def _counts(seen: Counter[str]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in seen.most_common())
