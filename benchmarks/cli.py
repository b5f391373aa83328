"""`python -m benchmarks`: parse the options, run the selected scenarios, print and write results.

Owns the command line and the order of a run; everything it starts lives in one ProcessGroup
that is closed on every exit path (normal end, error, Ctrl-C, SIGTERM). A scenario that cannot
run is reported as skipped with its reason; the suite exits 0 whatever the speed, and 1 when a
scenario crashed (a broken benchmark must not pass as "skipped").
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from benchmarks.failure import outage, stampede
from benchmarks.load import Loader
from benchmarks.machine import machine_info, versions
from benchmarks.memory import measure_memory
from benchmarks.micro import run_micro
from benchmarks.paired import LOADS, beside_baseline, beside_nginx
from benchmarks.procs import process_group
from benchmarks.report import evaluate_goals, failures, render, render_markdown, write_json, write_plot
from benchmarks.scenarios import STEADY, Runner
from benchmarks.slow import slow
from benchmarks.suite import Settings, Skip, Suite, run_scenario
from benchmarks.userconf import run_user_config

SCENARIOS: dict[str, tuple[str, Runner]] = {
    **{
        k: STEADY[k]
        for k in (
            "ceiling",
            "floor",
            "direct",
            "hit",
            "hit-logged",
            "hit-spread",
            "miss",
            "floor-miss",
            "stale",
        )
    },
    "outage": ("origin fails halfway: errors, latency, origin requests while open", outage),
    "stampede": ("1,000 concurrent cold requests for one key", stampede),
    "slow": ("vendor 2 s, stale copies: stale_if_slow 200ms against no budget", slow),
    **{
        k: STEADY[k]
        for k in ("writes", "shared", "nginx", "nginx-logged", "nginx-miss", "nginx-writes", "varnish")
    },
    **{
        f"{kind}-paired": (f"{LOADS[kind][0]}, beside nginx at the same time", beside_nginx(kind))
        for kind in LOADS
    },
    **{
        f"{kind}-ab": (
            f"{LOADS[kind][0]}, beside the --baseline build at the same time",
            beside_baseline(kind),
        )
        for kind in LOADS
    },
}
EXTRAS = ("memory", "micro")

EPILOG = """scenarios: {names}; extras: memory, micro.
examples:
  python -m benchmarks                      full suite (several minutes)
  python -m benchmarks --quick              every scenario, short (< 1 minute; CI smoke run)
  python -m benchmarks --only hit,ceiling --json out.json --plot out.png
  python -m benchmarks --config my.yaml     hit/miss on your own routes and upstreams
  python -m benchmarks --only hit-ab,miss-ab,writes-ab --baseline ../main
                                            this build's CPU per request against another
                                            checkout's, both under load at the same time
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Load tests of resilient-proxy's hot path and of failure, side by side.",
        epilog=EPILOG.format(names=", ".join(SCENARIOS)),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="short version of everything (1 s runs, 1 repeat, 10,000-entry memory)",
    )
    p.add_argument("--only", metavar="NAME,...", help="comma-separated scenarios (and extras)")
    p.add_argument("--json", metavar="FILE", type=Path, help="write the results as JSON")
    p.add_argument("--plot", metavar="FILE.png", type=Path, help="draw throughput and latency")
    p.add_argument(
        "--markdown", metavar="FILE", type=Path, help="write the table, memory, micro and goals as Markdown"
    )
    p.add_argument("--repeat", type=int, metavar="N", help="runs per scenario (default 3)")
    p.add_argument("--duration", type=float, metavar="S", help="seconds per run (default 10)")
    p.add_argument("--warmup", type=float, metavar="S", help="warm-up seconds (default 2)")
    p.add_argument("--connections", type=int, metavar="C", help="concurrent connections (50)")
    p.add_argument("--threads", type=int, metavar="T", help="load generator threads (1)")
    p.add_argument(
        "--workers", type=int, metavar="W", help="proxy server.workers, and ceiling/nginx processes (1)"
    )
    p.add_argument(
        "--memory-entries",
        type=int,
        metavar="N",
        help="entries cached for the memory figure (100,000; 10,000 with --quick)",
    )
    p.add_argument(
        "--loadgen",
        choices=("auto", "wrk", "builtin"),
        default="auto",
        help="load generator: wrk when on PATH (auto), or the built-in one",
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        type=Path,
        help="benchmark your own proxy config (hit/miss-like scenarios only)",
    )
    p.add_argument(
        "--baseline",
        metavar="DIR",
        type=Path,
        help="a checkout of another build (run by DIR/.venv/bin/python when it exists) for the -ab scenarios",
    )
    p.add_argument(
        "--pace",
        type=int,
        metavar="MS",
        help="paired runs only: each connection waits MS ms after an answer (the same rate offered to both)",
    )
    p.add_argument(
        "--allow-upstream-load",
        action="store_true",
        help="with --config: also run miss scenarios against non-loopback upstreams",
    )
    return p


def settings_from(args: argparse.Namespace) -> Settings:
    quick = bool(args.quick)
    base = Settings(
        quick=quick,
        duration=1.0 if quick else 10.0,
        warmup=0.0 if quick else 2.0,
        repeats=1 if quick else 3,
        memory_entries=10_000 if quick else 100_000,
    )
    return Settings(
        quick=quick,
        duration=args.duration if args.duration is not None else base.duration,
        warmup=args.warmup if args.warmup is not None else base.warmup,
        repeats=max(1, args.repeat if args.repeat is not None else base.repeats),
        connections=max(1, args.connections or base.connections),
        threads=max(1, args.threads or base.threads),
        workers=max(1, args.workers or base.workers),
        memory_entries=args.memory_entries or base.memory_entries,
        baseline=args.baseline.resolve() if args.baseline else None,
        pace_ms=max(0, args.pace or 0),
    )


def selection(only: str | None) -> list[str]:
    if not only:
        return [*SCENARIOS, *EXTRAS]
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS and n not in EXTRAS]
    if unknown:
        raise SystemExit(
            f"unknown scenario(s): {', '.join(unknown)} (known: {', '.join([*SCENARIOS, *EXTRAS])})"
        )
    return names


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_suite(settings: Settings, names: list[str], loader: Loader) -> dict[str, Any]:
    scenarios: dict[str, Any] = {}
    memory: dict[str, Any] | None = None
    micro: dict[str, Any] = {}
    with process_group() as group:
        suite = Suite(settings, group, loader, log=say)
        for name in names:
            if name in SCENARIOS:
                description, runner = SCENARIOS[name]
                scenarios[name] = run_scenario(suite, name, description, runner).as_dict()
        if "memory" in names:
            say(f"== memory: RSS after caching {settings.memory_entries:,} entries")
            try:
                memory = measure_memory(suite)
            except Skip as skip:
                memory = {"skipped": str(skip)}
            except Exception as exc:
                memory = {"skipped": f"failed: {type(exc).__name__}: {str(exc)[:300]}"}
    if "micro" in names:
        say("== micro: pure-core micro-benchmarks")
        micro = run_micro(quick=settings.quick)
    return {"scenarios": scenarios, "memory": memory, "micro": micro}


def document(settings: Settings, loader: Loader, results: dict[str, Any], started: float) -> dict[str, Any]:
    machine = machine_info()
    machine["loadavg_at_start"] = results.get("loadavg_at_start")
    return {
        "machine": machine,
        "versions": versions(),
        "load_generator": loader.kind,
        "settings": {
            "duration_s": settings.duration,
            "warmup_s": settings.warmup,
            "repeats": settings.repeats,
            "connections": settings.connections,
            "threads": settings.threads,
            "workers": settings.workers,
            "quick": settings.quick,
        },
        "scenarios": results["scenarios"],
        "micro": results["micro"],
        "memory": results["memory"],
        "goals": evaluate_goals(results["scenarios"], results["memory"]),
        "elapsed_s": round(time.monotonic() - started, 1),
    }


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the ProcessGroup's finally


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    settings = settings_from(args)
    loader = Loader(args.loadgen)
    started = time.monotonic()
    say(f"load generator: {loader.kind}")
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    if args.config is not None:
        results = run_user_config(
            args.config, settings, loader, say, allow_upstream_load=args.allow_upstream_load
        )
    else:
        results = run_suite(settings, selection(args.only), loader)
    results["loadavg_at_start"] = load_at_start
    doc = document(settings, loader, results, started)
    print(render(doc))
    if args.json:
        write_json(doc, args.json)
        say(f"wrote {args.json}")
    if args.markdown:
        args.markdown.write_text(render_markdown(doc))
        say(f"wrote {args.markdown}")
    if args.plot and write_plot(doc, args.plot, say):
        say(f"wrote {args.plot}")
    return 1 if failures(doc) else 0
