"""Smoke test of the benchmark suite: it runs, stops what it starts, and writes valid JSON.

Nothing here is about speed (machines differ); it checks the shape of `--json` output, the
built-in load generator fallback, and the small parsers the report depends on.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.load import Loader, LoadResult, Target, percentile
from benchmarks.loadgen import run_builtin
from benchmarks.procs import process_group
from benchmarks.proxyrun import find_breaker_state, sample_paths
from benchmarks.report import evaluate_goals, failures, render
from benchmarks.services import start_origin
from benchmarks.suite import ScenarioResult, Settings, Suite, run_scenario
from benchmarks.wrk import parse_wrk_output, run_wrk
from proxy import driver

ROOT = Path(__file__).resolve().parents[2]
FIGURES = ("rps", "p50_ms", "p90_ms", "p99_ms", "errors", "origin_requests", "cpu_us")
GOALS = ("hit-throughput", "hit-p99", "stampede", "outage", "memory")


def run_suite(tmp_path: Path, *extra: str) -> dict[str, Any]:
    out = tmp_path / "bench.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--repeat",
            "1",
            "--duration",
            "1",
            "--json",
            str(out),
            *extra,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "scenario" in proc.stdout and "goals" in proc.stdout
    doc: dict[str, Any] = json.loads(out.read_text())
    return doc


def check_measured(row: dict[str, Any]) -> None:
    assert row["skipped"] is None and row["failed"] is None
    assert row["rps"] > 0
    assert row["cpu_us"] > 0  # the server's own CPU, charged per request
    assert 0 < row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"]
    assert row["errors"] == 0
    assert len(row["repeats"]) == 1


def test_quick_run_writes_valid_json(tmp_path: Path) -> None:
    doc = run_suite(tmp_path, "--only", "ceiling,direct,hit,nginx")
    assert {"cpu", "cores", "memory_bytes", "python", "platform"} <= doc["machine"].keys()
    # the build the suite measured is the one this checkout imports (compiled or not)
    assert doc["machine"]["proxy_build"] == ("pure" if driver.__file__.endswith(".py") else "mypyc")
    assert {"resilient-proxy", "aiohttp", "uvloop", "wrk", "nginx"} <= doc["versions"].keys()
    assert doc["load_generator"] in ("wrk", "builtin")
    assert list(doc["scenarios"]) == ["ceiling", "direct", "hit", "nginx"]
    for row in doc["scenarios"].values():
        assert set(FIGURES) <= row.keys() and "repeats" in row and "skipped" in row
    check_measured(doc["scenarios"]["ceiling"])
    check_measured(doc["scenarios"]["direct"])
    # The origin saw the direct run's requests, and no more than the load generator sent.
    direct = doc["scenarios"]["direct"]
    assert 0 < direct["origin_requests"] <= direct["repeats"][0]["requests"] + 100
    hit = doc["scenarios"]["hit"]
    if (ROOT / "proxy" / "__main__.py").exists() and hit["skipped"] is None:
        check_measured(hit)
        assert hit["origin_requests"] == 0  # fresh hits never reach the origin
    else:
        assert isinstance(hit["skipped"], str) and hit["skipped"]
        assert hit["rps"] is None
    names = [g["name"] for g in doc["goals"]]
    assert names == [
        *GOALS[:4],
        "hit-cpu",
        "hit-logged-cpu",
        "miss-cpu",
        "writes-cpu",
        "hit-cpu-paired",
        "miss-cpu-paired",
        "writes-cpu-paired",
        "hit-p99-varnish",
        "memory",
    ]
    assert all(g["held"] in (True, False, None) for g in doc["goals"])
    cpu = {g["name"]: g for g in doc["goals"]}["hit-cpu"]
    if doc["scenarios"]["nginx"]["skipped"] is None and hit["skipped"] is None:
        check_measured(doc["scenarios"]["nginx"])
        assert cpu["held"] in (True, False) and " us vs " in cpu["detail"]


def test_the_miss_floor_forwards_every_request_and_answers(tmp_path: Path) -> None:
    """The bare miss the proxy's misses are read against really is one: every request a new
    key, each one reaching the origin, none failing."""
    row = run_suite(tmp_path, "--only", "floor-miss")["scenarios"]["floor-miss"]
    check_measured(row)
    assert row["repeats"][0]["requests"] <= row["origin_requests"] <= row["repeats"][0]["requests"] + 200


def test_builtin_load_generator_fallback(tmp_path: Path) -> None:
    doc = run_suite(tmp_path, "--only", "ceiling", "--loadgen", "builtin", "--connections", "8")
    assert doc["load_generator"] == "builtin"
    check_measured(doc["scenarios"]["ceiling"])
    assert doc["scenarios"]["ceiling"]["generator"] == "builtin"


def test_both_load_generators_pace_when_asked() -> None:
    """`Target.pace_ms`: each connection waits that long after an answer (two connections at
    50 ms: at most 40 requests a second, where an unpaced second on loopback makes thousands)."""
    with process_group() as group:
        origin = start_origin(group)
        target = Target(origin.port, "/items/1", connections=2, duration=1.0, pace_ms=50)
        runs = [run_builtin(target)]
        if shutil.which("wrk") is not None:
            runs.append(run_wrk(target))
    for run in runs:
        assert 0 < run.requests <= 44 and run.errors == 0


WRK_LINE = (
    'BENCH_JSON {"requests":1000,"duration_us":2000000,"bytes":1,"connect_errors":0,'
    '"read_errors":2,"write_errors":0,"status_errors":3,"timeouts":0,"p50_us":1500,'
    '"p90_us":2500,"p99_us":9000,"mean_us":1700.5,"max_us":12000}'
)


def test_wrk_output_is_parsed_exactly() -> None:
    result = parse_wrk_output("Running 2s test\n" + WRK_LINE + "\n")
    assert (result.rps, result.p50_ms, result.p99_ms, result.errors) == (500.0, 1.5, 9.0, 5)
    assert result.error_detail == {"read": 2, "status": 3}
    with pytest.raises(ValueError, match="BENCH_JSON"):
        parse_wrk_output("wrk: connection refused")


@pytest.mark.parametrize(
    ("values", "pct", "expected"),
    [
        ([], 50, 0.0),
        ([5.0], 99, 5.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.0),
        ([float(i) for i in range(1, 101)], 99, 99.0),
        ([float(i) for i in range(1, 101)], 90, 90.0),
    ],
)
def test_percentile_nearest_rank(values: list[float], pct: float, expected: float) -> None:
    assert percentile(values, pct) == expected


def _row(rps: float, p99: float, **kw: Any) -> dict[str, Any]:
    return {
        "rps": rps,
        "p50_ms": 1.0,
        "p90_ms": 2.0,
        "p99_ms": p99,
        "errors": 0,
        "origin_requests": 0,
        "skipped": None,
        "repeats": [],
        "notes": [],
        **kw,
    }


@pytest.mark.parametrize(
    ("hit_rps", "hit_p99", "stampede", "outage_errors", "ratio", "held"),
    [
        (950.0, 3.0, [1], [0], 1.2, [True, True, True, True, True]),
        (800.0, 5.0, [1, 3], [0, 2], 2.0, [False, False, False, False, False]),
    ],
)
def test_goals_are_ratios_of_the_same_run(
    hit_rps: float,
    hit_p99: float,
    stampede: list[int],
    outage_errors: list[int],
    ratio: float,
    held: list[bool],
) -> None:
    scenarios = {
        "ceiling": _row(1000.0, 2.0),
        "hit": _row(hit_rps, hit_p99),
        "stampede": _row(1.0, 1.0, repeats=[{"origin_requests": c} for c in stampede]),
        "outage": _row(1.0, 1.0, repeats=[{"errors": e} for e in outage_errors]),
    }
    memory = {"ratio": ratio, "entries": 10, "incremental_ratio": 1.0}
    goals = evaluate_goals(scenarios, memory)
    assert [g["held"] for g in goals if g["name"] in GOALS] == held


@pytest.mark.parametrize(
    ("ours", "nginx", "held"),
    [
        (
            {"hit": 10.0, "miss": 80.0, "writes": 30.0},
            {"nginx": 15.0, "nginx-miss": 80.0},
            [True, True, None],
        ),
        (
            {"hit": 11.0, "miss": 81.0, "writes": 30.0},
            {"nginx": 15.0, "nginx-miss": 80.0},
            [False, False, None],
        ),
    ],
)
def test_cpu_goals_compare_with_nginx_in_the_same_run(
    ours: dict[str, float], nginx: dict[str, float], held: list[bool | None]
) -> None:
    scenarios = {name: _row(1.0, 1.0, cpu_us=cpu) for name, cpu in (ours | nginx).items()}
    goals = {g["name"]: g for g in evaluate_goals(scenarios, None)}
    assert [goals[n]["held"] for n in ("hit-cpu", "miss-cpu", "writes-cpu")] == held
    assert goals["hit-cpu"]["detail"] == f"{ours['hit']:.1f} us vs 15.0 us"


def test_a_crashing_scenario_fails_the_run() -> None:
    def broken(suite: Suite, res: ScenarioResult) -> None:
        raise KeyError("no such figure")

    with process_group() as group:
        suite = Suite(Settings(), group, Loader("builtin"), log=lambda _: None)
        row = run_scenario(suite, "broken", "raises", broken).as_dict()
    assert row["failed"] == "KeyError: 'no such figure'" and row["skipped"] is None and row["rps"] is None
    doc = {
        "machine": {"cpu": "x", "cores": 2, "python": "3.11"},
        "load_generator": "builtin",
        "settings": {},
        "scenarios": {"broken": row},
        "goals": evaluate_goals({"broken": row}, None),
        "micro": {},
        "memory": None,
    }
    assert failures(doc) == ["broken: KeyError: 'no such figure'"]
    assert "FAILED: KeyError" in render(doc) and "the run exits 1" in render(doc)


def test_goals_not_measured_when_skipped() -> None:
    scenarios = {"ceiling": _row(1000.0, 2.0), "hit": {"skipped": "no proxy"}}
    goals = evaluate_goals(scenarios, None)
    assert [g["held"] for g in goals] == [None] * 13
    doc = {
        "machine": {"cpu": "x", "cores": 2, "python": "3.11"},
        "load_generator": "wrk",
        "settings": {},
        "scenarios": scenarios | {"hit": _row(0, 0, skipped="no proxy")},
        "goals": goals,
        "micro": {},
        "memory": None,
    }
    assert "skipped: no proxy" in render(doc)


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({"upstreams": {"origin_outage": {"breaker": {"state": "OPEN"}}}}, "open"),
        ({"upstreams": [{"name": "origin_outage", "breaker": "half_open"}]}, "half_open"),
        ({"upstreams": [{"name": "other", "breaker": "open"}]}, None),
        ([], None),
    ],
)
def test_breaker_state_found_in_status(doc: Any, expected: str | None) -> None:
    assert find_breaker_state(doc, "origin_outage") == expected


def test_sample_paths_fill_templates() -> None:
    data = {
        "routes": [
            {"name": "prices", "match": "/api/prices/{sku}", "methods": ["GET"], "cache": {}},
            {"name": "docs", "match": "/api/docs/*", "sample": "/api/docs/a/b"},
            {"name": "all", "match": "/api/all/*", "cache": "off"},
            {"name": "orders", "match": "/api/orders", "methods": ["POST"], "cache": "off"},
        ]
    }
    assert sample_paths(data) == [
        ("prices", "/api/prices/1", True),
        ("docs", "/api/docs/a/b", False),
        ("all", "/api/all/1", False),
    ]


def test_load_result_rps() -> None:
    result = LoadResult(
        requests=300,
        duration_s=1.5,
        errors=0,
        p50_ms=1,
        p90_ms=1,
        p99_ms=1,
        mean_ms=1,
        max_ms=1,
        generator="wrk",
    )
    assert result.rps == 200.0
