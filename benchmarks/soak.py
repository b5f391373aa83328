"""Soak for issue 8: saturation load over 100,000 distinct keys through a small memory tier.

Starts, as subprocesses on loopback, a vendor (this file's `vendor` mode: ~1 KB prices for any
SKU, and `/big/{bytes}` streamed) and the proxy as a user starts it (`python -m proxy run`), with
`cache.max_bytes` far below what 100,000 entries need, so the LRU evicts all the time. Drives
concurrent GETs over the keys (random order, with repeats, so there are hits too) for
`--duration` seconds, then prints, for the proxy process: resident memory (after warm-up and at
the end, with samples in between), open file descriptors (/proc/PID/fd) at the same points,
errors (goal 0), throughput and latency, and the cache's evictions from the admin /metrics.
`--gigabyte` then streams a 1 GB body through a route whose max_object_size is 1 MB and reports
the proxy's peak resident memory meanwhile (the 64 MB version of this runs in the test suite).

Part of the benchmark suite, run on its own: `python -m benchmarks.soak` (about 3 minutes with
the defaults; `--help` for knobs). Linux only (/proc). Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

from benchmarks.procs import HOST, free_port, wait_listening

ROOT = Path(__file__).resolve().parents[1]

PAD = "x" * 900  # makes each price ~1 KB, so 100,000 keys need ~100 MB against a 16 MB tier


# -- the vendor (its own process) ---------------------------------------------------------------


async def price(request: web.Request) -> web.Response:
    sku = request.match_info["sku"]
    return web.json_response(
        {"sku": sku, "price": 9.5, "currency": "GBP", "pad": PAD}, headers={"Cache-Control": "max-age=600"}
    )


async def big(request: web.Request) -> web.StreamResponse:
    size = int(request.match_info["size"])
    piece = bytes(range(256)) * 4096
    resp = web.StreamResponse(
        headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)}
    )
    await resp.prepare(request)
    sent = 0
    while sent < size:
        chunk = piece[: min(len(piece), size - sent)]
        await resp.write(chunk)
        sent += len(chunk)
    await resp.write_eof()
    return resp


def run_vendor(port: int) -> None:
    app = web.Application()
    app.router.add_get("/prices/{sku}", price)
    app.router.add_get("/big/{size}", big)
    web.run_app(app, host=HOST, port=port, access_log=None, print=None)


# -- the proxy ------------------------------------------------------------------------------------


def proxy_yaml(vendor: int, proxy: int, admin: int, max_bytes: str) -> str:
    return f"""\
server: {{listen: {HOST}:{proxy}, shutdown_grace: 5s}}
admin: {{listen: {HOST}:{admin}}}
cache: {{max_bytes: {max_bytes}}}
log: {{access: off, level: warning}}
upstreams:
  vendor:
    url: http://{HOST}:{vendor}
    retries: {{attempts: 0}}
    max_connections: 256
    max_queue: 4096
    timeout: {{connect: 2s, total: 120s}}
routes:
  - name: prices
    match: /api/prices/{{sku}}
    methods: [GET]
    upstream: vendor
    rewrite: /prices/{{sku}}
    cache: {{ttl: 600s}}
  - name: big
    match: /api/big/{{size}}
    methods: [GET]
    upstream: vendor
    rewrite: /big/{{size}}
    cache: {{ttl: 60s}}
    max_object_size: 1MB
"""


# -- measurements -----------------------------------------------------------------------------------


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass
class Point:
    at: float
    rss: float
    fds: int
    requests: int


@dataclass
class Run:
    requests: int = 0
    errors: int = 0
    hits: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    points: list[Point] = field(default_factory=list)

    def error(self, kind: str) -> None:
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1


async def drive(
    session: aiohttp.ClientSession,
    base: str,
    keys: int,
    workers: int,
    seconds: float,
    run: Run,
    pid: int,
    every: float,
) -> None:
    stop = time.monotonic() + seconds
    order = list(range(keys))
    random.shuffle(order)
    cursor = 0

    def next_key() -> int:
        nonlocal cursor
        if random.random() < 0.2 and cursor:  # a recent key again: some requests are hits
            return order[random.randrange(max(0, cursor - 2000), cursor) % keys]
        key = order[cursor % keys]
        cursor += 1
        return key

    async def worker() -> None:
        while time.monotonic() < stop:
            key = next_key()
            start = time.monotonic()
            try:
                async with session.get(f"{base}/api/prices/K{key}") as resp:
                    body = await resp.read()
                    if resp.status != 200 or json.loads(body)["sku"] != f"K{key}":
                        run.error(f"status {resp.status}")
                    elif resp.headers.get("X-Cache") == "HIT":
                        run.hits += 1
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                run.error(type(exc).__name__)
            run.requests += 1
            if len(run.latencies) < 2_000_000:
                run.latencies.append(time.monotonic() - start)

    async def sampler() -> None:
        t0 = time.monotonic()
        while time.monotonic() < stop:
            await asyncio.sleep(every)
            run.points.append(Point(time.monotonic() - t0, rss_mb(pid), open_fds(pid), run.requests))

    await asyncio.gather(sampler(), *(worker() for _ in range(workers)))


async def metric(session: aiohttp.ClientSession, admin: int, name: str) -> float | None:
    async with session.get(f"http://{HOST}:{admin}/metrics") as resp:
        text = await resp.text()
    found = re.search(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? ([0-9.e+]+)$", text, re.M)
    return float(found.group(1)) if found else None


async def gigabyte(session: aiohttp.ClientSession, base: str, pid: int) -> tuple[float, float, int, float]:
    """Stream 1 GB through the proxy; (rss before, peak rss during, bytes, seconds)."""
    before, peak, received = rss_mb(pid), 0.0, 0
    start = time.monotonic()
    done = asyncio.Event()

    async def watch() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_mb(pid))
            await asyncio.sleep(0.2)

    watcher = asyncio.create_task(watch())
    async with session.get(f"{base}/api/big/{1 << 30}") as resp:
        async for chunk in resp.content.iter_chunked(1 << 16):
            received += len(chunk)
    done.set()
    await watcher
    return before, peak, received, time.monotonic() - start


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))] if ordered else 0.0


async def main(args: argparse.Namespace) -> int:
    vendor_port, proxy_port, admin_port = free_port(), free_port(), free_port()
    vendor = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.soak", "vendor", "--port", str(vendor_port)], cwd=ROOT
    )
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "soak.yaml"
        config.write_text(proxy_yaml(vendor_port, proxy_port, admin_port, args.max_bytes))
        proxy = subprocess.Popen(
            [sys.executable, "-m", "proxy", "run", "--config", str(config)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )
        try:
            await wait_listening(vendor_port, vendor, timeout=30.0)
            await wait_listening(proxy_port, proxy, timeout=30.0)
            idle_rss, idle_fds = rss_mb(proxy.pid), open_fds(proxy.pid)
            base = f"http://{HOST}:{proxy_port}"
            run = Run()
            connector = aiohttp.TCPConnector(limit=args.concurrency)
            timeout = aiohttp.ClientTimeout(total=30)
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
                started = time.monotonic()
                await drive(
                    session,
                    base,
                    args.keys,
                    args.concurrency,
                    args.duration,
                    run,
                    proxy.pid,
                    args.sample_every,
                )
                elapsed = time.monotonic() - started
                evictions = await metric(session, admin_port, "rproxy_cache_evictions_total")
                cache_bytes = await metric(session, admin_port, "rproxy_cache_bytes")
                big_result = await gigabyte(session, base, proxy.pid) if args.gigabyte else None
            await asyncio.sleep(1.0)  # let the proxy close the client's connections
            end_rss, end_fds = rss_mb(proxy.pid), open_fds(proxy.pid)
        finally:
            proxy.terminate()
            vendor.terminate()
            code = proxy.wait(timeout=30)
            vendor.wait(timeout=30)
    warm = next((p for p in run.points if p.at >= args.warmup), run.points[0] if run.points else None)
    last = run.points[-1] if run.points else None
    print(
        f"soak: {args.duration:.0f}s, {args.keys} distinct keys, {args.concurrency} concurrent, "
        f"cache.max_bytes {args.max_bytes}"
    )
    print(
        f"  requests {run.requests}  ({run.requests / elapsed:.0f}/s)  hits {run.hits}  errors {run.errors}"
        + (f" {run.error_kinds}" if run.errors else "")
    )
    print(
        f"  latency p50 {percentile(run.latencies, 0.5) * 1000:.1f} ms  "
        f"p99 {percentile(run.latencies, 0.99) * 1000:.1f} ms"
    )
    print(f"  cache: {cache_bytes or 0:.0f} bytes held, {evictions or 0:.0f} evictions")
    print(
        f"  proxy RSS MB: idle {idle_rss:.1f}; after warm-up ({warm.at if warm else 0:.0f}s) "
        f"{warm.rss if warm else 0:.1f}; at end of load {last.rss if last else 0:.1f}; "
        f"after the load {end_rss:.1f}"
    )
    print(
        f"  proxy open fds: idle {idle_fds}; after warm-up {warm.fds if warm else 0}; "
        f"at end of load {last.fds if last else 0}; after the load {end_fds}"
    )
    print(
        "  samples (s, RSS MB, fds, requests): "
        + ", ".join(f"({p.at:.0f}, {p.rss:.1f}, {p.fds}, {p.requests})" for p in run.points)
    )
    if big_result is not None:
        before, peak, received, seconds = big_result
        print(
            f"  1 GB body: {received} bytes in {seconds:.1f}s; proxy RSS {before:.1f} MB before, "
            f"peak {peak:.1f} MB while streaming"
        )
    print(f"  proxy exit code after SIGTERM: {code}")
    return 0 if run.errors == 0 and code == 0 else 1


def cli() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="mode")
    v = sub.add_parser("vendor")
    v.add_argument("--port", type=int, required=True)
    parser.add_argument("--duration", type=float, default=150.0, help="seconds of load (default 150)")
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--max-bytes", default="16MB", help="cache.max_bytes (default 16MB)")
    parser.add_argument("--warmup", type=float, default=15.0, help="seconds before the 'start' sample")
    parser.add_argument("--sample-every", type=float, default=10.0)
    parser.add_argument("--gigabyte", action="store_true", help="then stream a 1 GB body through")
    args = parser.parse_args()
    if args.mode == "vendor":
        run_vendor(args.port)
        return 0
    return asyncio.run(main(args))


if __name__ == "__main__":
    raise SystemExit(cli())
