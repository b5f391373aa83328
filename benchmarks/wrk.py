"""Runs one `Target` with wrk and parses the JSON line our Lua `done()` prints.

Owns the wrk command line and its parsing only. Durations are whole seconds (wrk accepts no
fractions), so a target's duration is rounded up to at least one second.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from pathlib import Path

from benchmarks.load import LoadResult, Target

LUA_DIR = Path(__file__).resolve().parent / "lua"
MARKER = "BENCH_JSON "


def wrk_version() -> str | None:
    exe = shutil.which("wrk")
    if exe is None:
        return None
    proc = subprocess.run([exe, "-v"], capture_output=True, text=True, timeout=10, check=False)
    first = (proc.stdout or proc.stderr).splitlines()
    return first[0].split(" [")[0].strip() if first else "wrk"


def wrk_argv(target: Target) -> list[str]:
    seconds = max(1, math.ceil(target.duration))
    threads = max(1, min(target.threads, target.connections))
    argv = [
        "wrk",
        "--latency",
        "--timeout",
        "5s",
        "-t",
        str(threads),
        "-c",
        str(max(target.connections, threads)),
        "-d",
        f"{seconds}s",
    ]
    if target.method == "POST":
        argv += ["-s", str(LUA_DIR / "post.lua"), target.url()]
    elif target.mode == "one":
        argv += ["-s", str(LUA_DIR / "report.lua"), target.url()]
    else:
        argv += [
            "-s",
            str(LUA_DIR / "keys.lua"),
            target.url(),
            "--",
            target.path,
            str(target.keys),
            target.mode,
            target.salt,
            str(threads),
        ]
    return argv


def parse_wrk_output(text: str, generator: str = "wrk") -> LoadResult:
    """Read the BENCH_JSON line; raise ValueError (with wrk's output) when it is missing."""
    for line in text.splitlines():
        if line.startswith(MARKER):
            data = json.loads(line[len(MARKER) :])
            break
    else:
        raise ValueError(f"wrk printed no {MARKER.strip()} line:\n{text[-1500:]}")
    detail = {
        "connect": int(data["connect_errors"]),
        "read": int(data["read_errors"]),
        "write": int(data["write_errors"]),
        "status": int(data["status_errors"]),
        "timeout": int(data["timeouts"]),
    }
    return LoadResult(
        requests=int(data["requests"]),
        duration_s=int(data["duration_us"]) / 1e6,
        errors=sum(detail.values()),
        p50_ms=int(data["p50_us"]) / 1000.0,
        p90_ms=int(data["p90_us"]) / 1000.0,
        p99_ms=int(data["p99_us"]) / 1000.0,
        mean_ms=float(data["mean_us"]) / 1000.0,
        max_ms=int(data["max_us"]) / 1000.0,
        generator=generator,
        error_detail={k: v for k, v in detail.items() if v},
    )


def run_wrk(target: Target) -> LoadResult:
    env = dict(os.environ, BENCH_LUA_DIR=str(LUA_DIR), BENCH_PACE_MS=str(target.pace_ms))
    argv = wrk_argv(target)
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        env=env,
        timeout=max(1, math.ceil(target.duration)) + 30,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"wrk exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return parse_wrk_output(proc.stdout)
