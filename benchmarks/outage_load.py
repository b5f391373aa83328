"""Load run for issue 3's closing note: a 30-second vendor outage under concurrent load.

Starts, as subprocesses on loopback, a vendor (this file's `origin` mode) and the proxy as a user
starts it (`python -m proxy run --config <temp yaml>`); warms N keys; drives concurrent GETs for
30 s and switches the vendor to failing halfway. Then prints:
  - the client error rate for keys with a copy (goal 0), and
  - how many requests reached the vendor while the breaker was open (goal: probes only),
with breaker transitions taken from the proxy's own alert webhook (received here).

Run: `python -m benchmarks.outage_load`
(`--help` for knobs; about 40 s with the defaults). Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from benchmarks.procs import HOST, free_port, wait_listening

ROOT = Path(__file__).resolve().parents[1]

# -- the vendor (runs in its own process) ------------------------------------------------------


class Vendor:
    """Prices for any SKU; `POST /_control/{ok|fail|hang}` switches mode; every hit is logged
    with its wall-clock time so the driver can line hits up with breaker transitions."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.hits: list[tuple[float, str, int]] = []

    async def price(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(
            request,
            {"sku": request.match_info["sku"], "price": 9.5, "currency": "GBP"},
            {"Cache-Control": "max-age=2"},
        )

    async def health(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, {"ok": True}, {})

    async def _answer(
        self, request: web.Request, doc: dict[str, Any], headers: dict[str, str]
    ) -> web.StreamResponse:
        status = 200 if self.mode == "ok" else 503
        self.hits.append((time.time(), request.path, status))
        if self.mode == "hang":
            await asyncio.sleep(30)
        if status != 200:
            return web.json_response({"error": "vendor down"}, status=status)
        return web.json_response(doc, headers=headers)

    async def control(self, request: web.Request) -> web.Response:
        self.mode = request.match_info["mode"]
        return web.json_response({"mode": self.mode, "at": time.time()})

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response({"hits": self.hits})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/prices/{sku}", self.price)
        app.router.add_get("/health", self.health)
        app.router.add_post("/_control/{mode:ok|fail|hang}", self.control)
        app.router.add_get("/_control/stats", self.stats)
        return app


def run_origin(port: int) -> None:
    web.run_app(Vendor().app(), host=HOST, port=port, access_log=None, print=None)


# -- the driver --------------------------------------------------------------------------------


@dataclass
class Sample:
    at: float  # seconds since the drive started
    status: int
    x_cache: str
    latency: float


@dataclass
class Run:
    samples: list[Sample] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    fail_at: float = 0.0  # wall clock when the vendor started failing
    start: float = 0.0  # wall clock when the drive started


def proxy_yaml(origin: int, proxy: int, admin: int, hook: int, open_for: float) -> str:
    return f"""
server: {{listen: {HOST}:{proxy}}}
admin: {{listen: {HOST}:{admin}}}
log: {{level: warning, access: off}}
alerts: {{webhook: http://{HOST}:{hook}/hook}}
upstreams:
  vendor:
    url: http://{HOST}:{origin}
    timeout: {{connect: 500ms, total: 1s}}
    retries: {{attempts: 1, backoff: 50ms, max_backoff: 200ms}}
    circuit_breaker: {{failure_rate: 50%, minimum_calls: 10, window: 10s, open_for: {open_for}s,
                      half_open_probes: 1}}
    health_check: {{path: /health, interval: 1s, timeout: 500ms, unhealthy_after: 2, healthy_after: 2}}
routes:
  - name: prices
    match: /api/prices/{{sku}}
    methods: [GET, HEAD]
    upstream: vendor
    rewrite: /prices/{{sku}}
    cache: {{ttl: 2s, stale_while_revalidate: 5s, stale_if_error: 1h}}
"""


async def hook_server(run: Run, port: int) -> web.AppRunner:
    async def receive(request: web.Request) -> web.Response:
        event = await request.json()
        event["received"] = time.time()
        run.events.append(event)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, HOST, port).start()
    return runner


async def drive(
    session: aiohttp.ClientSession, base: str, keys: int, workers: int, seconds: float, switch: Any, run: Run
) -> None:
    rng = random.Random(7)
    start = time.monotonic()
    run.start = time.time()
    stop = start + seconds

    async def worker() -> None:
        while (now := time.monotonic()) < stop:
            sku = f"SKU-{rng.randrange(keys)}"
            try:
                async with session.get(f"{base}/api/prices/{sku}") as resp:
                    await resp.read()
                    status, x_cache = resp.status, resp.headers.get("X-Cache", "-")
            except aiohttp.ClientError:
                status, x_cache = 0, "-"
            run.samples.append(Sample(now - start, status, x_cache, time.monotonic() - now))

    async def switcher() -> None:
        await asyncio.sleep(seconds / 2)
        run.fail_at = await switch()

    await asyncio.gather(switcher(), *(worker() for _ in range(workers)))


def parse_time(value: str) -> float:
    return dt.datetime.fromisoformat(value).timestamp()


def breaker_intervals(events: list[dict[str, Any]], end: float) -> list[tuple[str, float, float]]:
    """(state, from, to) for every breaker state after the first transition, by event time."""
    moves = sorted(
        (parse_time(e["time"]), e["event"].removeprefix("breaker_"))
        for e in events
        if e["event"].startswith("breaker_")
    )
    ends = [at for at, _ in moves[1:]] + ([end] if moves else [])
    return [(state, at, until) for (at, state), until in zip(moves, ends, strict=True)]


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(run: Run, hits: list[tuple[float, str, int]], args: argparse.Namespace) -> dict[str, Any]:
    fail_rel = run.fail_at - run.start
    before = [s for s in run.samples if s.at < fail_rel]
    during = [s for s in run.samples if s.at >= fail_rel]
    errors = [s for s in during if s.status != 200]
    req_hits = [h for h in hits if h[1].startswith("/prices/")]
    health_hits = [h for h in hits if h[1] == "/health"]
    end = time.time()
    intervals = breaker_intervals(run.events, end)
    unhealthy = [
        (parse_time(e["time"]), e["event"] == "upstream_unhealthy")
        for e in run.events
        if e["event"] in ("upstream_unhealthy", "upstream_healthy")
    ]
    by_state: dict[str, int] = {"open": 0, "half_open": 0, "closed": 0, "closed_but_unhealthy": 0}
    for at, _, _ in (h for h in req_hits if h[0] >= run.fail_at):
        state = next((s for s, a, b in intervals if a <= at < b), "closed")
        down = [flag for t, flag in unhealthy if t <= at]
        if state == "closed" and down and down[-1]:
            state = "closed_but_unhealthy"  # background refreshes while health checks say down
        by_state[state] += 1
    out = {
        "keys": args.keys,
        "workers": args.workers,
        "seconds": args.seconds,
        "failure": args.failure,
        "requests": len(run.samples),
        "rps": round(len(run.samples) / args.seconds, 1),
        "p50_ms": round(pct([s.latency for s in run.samples], 0.5) * 1000, 2),
        "p99_ms": round(pct([s.latency for s in run.samples], 0.99) * 1000, 2),
        "before_outage": {"requests": len(before), "errors": sum(s.status != 200 for s in before)},
        "during_outage": {
            "requests": len(during),
            "errors": len(errors),
            "error_rate": round(len(errors) / len(during), 6) if during else None,
            "x_cache": dict(sorted(_count(s.x_cache for s in during).items())),
            "p99_ms": round(pct([s.latency for s in during], 0.99) * 1000, 2),
        },
        "vendor_hits": {
            "requests_before_outage": sum(h[0] < run.fail_at for h in req_hits),
            "requests_during_outage": sum(h[0] >= run.fail_at for h in req_hits),
            "during_outage_by_breaker_state": by_state,
            "health_checks": len(health_hits),
        },
        "breaker": [
            {
                "to": e["event"].removeprefix("breaker_"),
                "t": round(parse_time(e["time"]) - run.start, 3),
                "reason": e.get("reason"),
            }
            for e in run.events
            if e["event"].startswith("breaker_")
        ],
        "health": [
            {"event": e["event"], "t": round(parse_time(e["time"]) - run.start, 3)}
            for e in run.events
            if e["event"].startswith("upstream_")
        ],
        "outage_started_at_t": round(fail_rel, 3),
    }
    return out


def _count(values: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return counts


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    origin_port, proxy_port, admin_port, hook_port = (free_port() for _ in range(4))
    run = Run()
    hook = await hook_server(run, hook_port)
    tmp = Path(tempfile.mkdtemp(prefix="outage-load-"))
    cfg = tmp / "proxy.yaml"
    cfg.write_text(proxy_yaml(origin_port, proxy_port, admin_port, hook_port, args.open_for))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    origin = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.outage_load", "origin", "--port", str(origin_port)],
        cwd=ROOT,
        env=env,
        stderr=(tmp / "origin.log").open("wb"),
    )
    proxy = subprocess.Popen(
        [sys.executable, "-m", "proxy", "run", "--config", str(cfg)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp / "proxy.log").open("wb"),
    )
    try:
        await wait_listening(origin_port, origin)
        await wait_listening(proxy_port, proxy)
        base = f"http://{HOST}:{proxy_port}"
        vendor = f"http://{HOST}:{origin_port}"
        connector = aiohttp.TCPConnector(limit=args.workers + 4)
        async with aiohttp.ClientSession(connector=connector) as session:
            warm = await asyncio.gather(
                *(session.get(f"{base}/api/prices/SKU-{n}") for n in range(args.keys))
            )
            assert all(r.status == 200 for r in warm), "warm-up failed"
            for r in warm:
                r.release()

            async def switch() -> float:
                async with session.post(f"{vendor}/_control/{args.failure}") as resp:
                    return float((await resp.json())["at"])

            await drive(session, base, args.keys, args.workers, args.seconds, switch, run)
            await asyncio.sleep(0.5)  # let the last webhook deliveries land
            async with session.get(f"{vendor}/_control/stats") as resp:
                hits = [tuple(h) for h in (await resp.json())["hits"]]
        return report(run, hits, args)
    finally:
        for proc in (proxy, origin):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in (proxy, origin):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        await hook.cleanup()
        print(f"logs in {tmp}", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="mode")
    origin = sub.add_parser("origin")
    origin.add_argument("--port", type=int, required=True)
    parser.add_argument("--keys", type=int, default=200)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--open-for", type=float, default=5.0)
    parser.add_argument(
        "--failure",
        choices=("fail", "hang"),
        default="fail",
        help="fail: 503 at once; hang: no answer for 30 s",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.mode == "origin":
        run_origin(args.port)
        return 0
    result = asyncio.run(main_async(args))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    d, v = result["during_outage"], result["vendor_hits"]
    print(
        f"{result['requests']} requests in {result['seconds']:.0f}s ({result['rps']}/s), "
        f"{result['keys']} keys, {result['workers']} workers; p50 {result['p50_ms']} ms, "
        f"p99 {result['p99_ms']} ms"
    )
    print(f"vendor failing ({args.failure}) from t={result['outage_started_at_t']}s")
    print(
        f"before outage: {result['before_outage']['requests']} requests, "
        f"{result['before_outage']['errors']} errors"
    )
    print(
        f"during outage: {d['requests']} requests, {d['errors']} errors (rate {d['error_rate']}), "
        f"X-Cache {d['x_cache']}, p99 {d['p99_ms']} ms"
    )
    print(
        f"vendor hits: {v['requests_before_outage']} before outage, {v['requests_during_outage']} "
        f"during; during outage by breaker state {v['during_outage_by_breaker_state']}; "
        f"{v['health_checks']} health checks"
    )
    for move in result["breaker"]:
        print(f"  breaker -> {move['to']:<9} at t={move['t']:>7}s  {move['reason']}")
    for move in result["health"]:
        print(f"  {move['event']:<19} at t={move['t']:>7}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
