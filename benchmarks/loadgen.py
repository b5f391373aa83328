"""The built-in load generator: several processes, each an aiohttp client keeping connections busy.

Used when wrk is not on PATH (and always for exact fills: "fetch these N paths once each").
It owns only client-side load; it reports the same figures as wrk (requests, errors, p50/p90/p99)
and, when run as a module, prints the same `BENCH_JSON` line the wrk Lua `done()` prints:
`python -m benchmarks.loadgen --url http://127.0.0.1:P/api/items/1 -c 50 -d 10`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import fields as fields_of
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from benchmarks.load import LoadResult, Target

ROOT = Path(__file__).resolve().parent.parent

# A worker's answer: requests, errors by kind, latencies in seconds, elapsed seconds.
WorkerOut = dict[str, Any]


def _path_for(target: Target, worker: int, workers: int, conn: int, n: int, rng: random.Random) -> str:
    if target.mode == "one":
        return target.path
    if target.mode == "unique":
        return f"{target.path}{target.salt}-b{worker}-{conn}-{n}"
    if target.mode == "seq":
        return f"{target.path}{(n * workers + worker) % max(1, target.keys)}"
    return f"{target.path}{rng.randrange(max(1, target.keys))}"


async def _timed_request(
    session: aiohttp.ClientSession, method: str, url: str, body: bytes, out: WorkerOut
) -> None:
    started = time.perf_counter()
    try:
        async with session.request(method, url, data=body or None) as resp:
            await resp.read()
            status = resp.status
    except TimeoutError:
        out["errors"]["timeout"] += 1
        return
    except aiohttp.ClientError:
        out["errors"]["read"] += 1
        return
    out["latencies"].append(time.perf_counter() - started)
    out["requests"] += 1
    if status >= 400:
        out["errors"]["status"] += 1


async def _duration_worker(target: Target, worker: int, workers: int, conns: int) -> WorkerOut:
    out: WorkerOut = {
        "requests": 0,
        "latencies": [],
        "elapsed": 0.0,
        "errors": {"read": 0, "status": 0, "timeout": 0},
    }
    base = f"http://127.0.0.1:{target.port}"
    timeout = aiohttp.ClientTimeout(total=5)
    connector = aiohttp.TCPConnector(limit=conns, force_close=False)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.perf_counter()
        deadline = started + target.duration

        async def loop(conn: int) -> None:
            rng = random.Random(worker * 100_003 + conn)
            n = 0
            while time.perf_counter() < deadline:
                path = _path_for(target, worker, workers * conns, conn, n, rng)
                await _timed_request(session, target.method, base + path, target.body, out)
                n += 1
                if target.pace_ms:
                    await asyncio.sleep(target.pace_ms / 1000)

        await asyncio.gather(*(loop(c) for c in range(conns)))
        out["elapsed"] = time.perf_counter() - started
    return out


async def _list_worker(port: int, paths: Sequence[str], conns: int) -> WorkerOut:
    out: WorkerOut = {
        "requests": 0,
        "latencies": [],
        "elapsed": 0.0,
        "errors": {"read": 0, "status": 0, "timeout": 0},
    }
    base = f"http://127.0.0.1:{port}"
    queue = list(reversed(paths))
    connector = aiohttp.TCPConnector(limit=conns)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10)) as session:
        started = time.perf_counter()

        async def loop() -> None:
            while queue:
                await _timed_request(session, "GET", base + queue.pop(), b"", out)

        await asyncio.gather(*(loop() for _ in range(conns)))
        out["elapsed"] = time.perf_counter() - started
    return out


def _merge(outs: Sequence[WorkerOut], elapsed: float | None = None) -> LoadResult:
    latencies = [x for out in outs for x in out["latencies"]]
    errors: dict[str, int] = {}
    for out in outs:
        for kind, n in out["errors"].items():
            errors[kind] = errors.get(kind, 0) + n
    requests = sum(int(out["requests"]) for out in outs)
    wall = elapsed if elapsed is not None else max((out["elapsed"] for out in outs), default=0.0)
    return LoadResult.of(
        latencies,
        requests=requests,
        duration_s=wall,
        errors=sum(errors.values()),
        generator="builtin",
        error_detail={k: v for k, v in errors.items() if v},
    )


def _spawn_workers(jobs: Sequence[dict[str, Any]], timeout: float) -> list[WorkerOut]:
    """Run each job in its own `python -m benchmarks.loadgen --worker` process, in parallel.

    Plain subprocesses rather than multiprocessing: they work whatever the caller's __main__ is.
    The job goes in on stdin (a 100,000-path fill is far past the argv size limit) and the
    answer comes back in a file: a pipe proved unreliable past 64 KB once the worker's event
    loop had run (its stdout ended up non-blocking and the tail of the JSON was lost).
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    outs: list[WorkerOut] = []
    with tempfile.TemporaryDirectory(prefix="rproxy-loadgen-") as tmp:
        files = [Path(tmp) / f"worker{i}.json" for i in range(len(jobs))]
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "benchmarks.loadgen", "--worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env=env,
                cwd=str(ROOT),
            )
            for _ in jobs
        ]
        try:
            # Each worker reads all of stdin before it starts, so these writes do not block.
            for proc, job, out_file in zip(procs, jobs, files, strict=True):
                assert proc.stdin is not None
                proc.stdin.write(json.dumps({**job, "out": str(out_file)}).encode())
                proc.stdin.close()
                proc.stdin = None  # communicate() must not flush the closed pipe
            for proc, out_file in zip(procs, files, strict=True):
                _, stderr = proc.communicate(timeout=timeout)
                if proc.returncode != 0:
                    raise RuntimeError(f"load worker failed: {stderr.decode()[-800:]}")
                out: WorkerOut = json.loads(out_file.read_text())
                out["latencies"] = [us / 1e6 for us in out["latencies"]]
                outs.append(out)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    return outs


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def run_builtin(target: Target, processes: int | None = None) -> LoadResult:
    """Run a duration-bound target over `processes` (default: target.threads, at least 1)."""
    procs = max(1, min(processes or target.threads, target.connections))
    shares = [c for c in _split(target.connections, procs) if c > 0]
    fields = {f.name: getattr(target, f.name) for f in fields_of(target)}
    fields["body"] = target.body.decode("latin-1")
    jobs = [
        {"kind": "duration", "target": fields, "worker": i, "workers": len(shares), "conns": c}
        for i, c in enumerate(shares)
    ]
    return _merge(_spawn_workers(jobs, timeout=target.duration + 60))


def fetch_paths(port: int, paths: Sequence[str], *, connections: int = 64, processes: int = 2) -> LoadResult:
    """GET every path exactly once (warming a cache, filling it for the memory figure)."""
    procs = max(1, min(processes, len(paths) or 1))
    conns = max(1, connections // procs)
    jobs = [
        {"kind": "list", "port": port, "paths": list(paths[i::procs]), "conns": conns} for i in range(procs)
    ]
    started = time.perf_counter()
    outs = _spawn_workers(jobs, timeout=60 + len(paths) / 200)
    return _merge(outs, time.perf_counter() - started)


def _worker_main() -> None:
    from benchmarks.origin import install_uvloop

    install_uvloop()  # the client side deserves the same event loop as the servers
    job = json.loads(sys.stdin.read())
    if job["kind"] == "duration":
        raw = job["target"]
        raw["body"] = raw["body"].encode("latin-1")
        target = Target(**raw)
        out = asyncio.run(_duration_worker(target, job["worker"], job["workers"], job["conns"]))
    else:
        out = asyncio.run(_list_worker(job["port"], job["paths"], job["conns"]))
    out["latencies"] = [round(x * 1e6) for x in out["latencies"]]
    Path(job["out"]).write_text(json.dumps(out))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.loadgen",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help="http://127.0.0.1:PORT/path (loopback only)")
    parser.add_argument("-c", "--connections", type=int, default=50)
    parser.add_argument("-d", "--duration", type=float, default=10.0)
    parser.add_argument("-p", "--processes", type=int, default=2)
    parser.add_argument("--method", default="GET")
    args = parser.parse_args(argv)
    if args.worker:
        _worker_main()
        return
    if not args.url:
        parser.error("--url is required")
    parts = urlsplit(args.url)
    if parts.hostname != "127.0.0.1" or parts.port is None:
        parser.error("--url must be http://127.0.0.1:PORT/...")
    target = Target(
        port=parts.port,
        path=parts.path or "/",
        connections=args.connections,
        duration=args.duration,
        method=args.method.upper(),
    )
    result = run_builtin(replace(target, threads=args.processes))
    d = result.error_detail
    print(
        "BENCH_JSON "
        + json.dumps(
            {
                "requests": result.requests,
                "duration_us": int(result.duration_s * 1e6),
                "bytes": 0,
                "connect_errors": 0,
                "read_errors": d.get("read", 0),
                "write_errors": 0,
                "status_errors": d.get("status", 0),
                "timeouts": d.get("timeout", 0),
                "p50_us": int(result.p50_ms * 1000),
                "p90_us": int(result.p90_ms * 1000),
                "p99_us": int(result.p99_ms * 1000),
                "mean_us": result.mean_ms * 1000,
                "max_us": int(result.max_ms * 1000),
            }
        )
    )


if __name__ == "__main__":
    main()
