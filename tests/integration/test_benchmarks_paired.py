"""The paired benchmark scenarios: two servers under load at the same time, each one's CPU per
request read over the same seconds (`benchmarks.paired`).

Nothing here is about speed: it checks that both sides were measured, that the ratio is the one
of the two figures shown, that the goal reads it, and that `--baseline` runs the other checkout's
own build rather than this one.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.paired import baseline_command
from benchmarks.procs import process_group
from benchmarks.report import evaluate_goals
from benchmarks.suite import Skip
from tests.integration.test_benchmarks_smoke import ROOT, run_suite

needs_wrk_and_nginx = pytest.mark.skipif(
    shutil.which("wrk") is None or not Path("/usr/sbin/nginx").exists(),
    reason="paired runs need wrk and nginx (apt install wrk nginx)",
)


def check_pair(row: dict[str, Any], beside: str) -> None:
    assert row["skipped"] is None and row["failed"] is None
    assert row["errors"] == 0 and row["rps"] > 0
    assert row["beside"] == beside
    assert row["cpu_us"] > 0 and row["beside_cpu_us"] > 0
    # one run: the ratio is exactly the two figures the row shows, not a separate estimate
    assert row["ratios"] == [row["ratio"]]
    assert row["ratio"] == pytest.approx(row["cpu_us"] / row["beside_cpu_us"], abs=0.002)
    assert "in the same seconds" in " ".join(row["notes"])


@needs_wrk_and_nginx
def test_the_proxy_and_nginx_are_measured_at_the_same_time(tmp_path: Path) -> None:
    doc = run_suite(tmp_path, "--only", "hit-paired,miss-paired,writes-paired")
    goals = {g["name"]: g for g in doc["goals"]}
    for kind, most in (("hit", 0.7), ("miss", 1.0), ("writes", 1.0)):
        row, goal = doc["scenarios"][f"{kind}-paired"], f"{kind}-cpu-paired"
        check_pair(row, "nginx")
        assert goals[goal]["value"] == row["ratio"]
        assert goals[goal]["held"] is (row["ratio"] <= most)
        assert f"{row['cpu_us']:.1f} us vs {row['beside_cpu_us']:.1f} us" in goals[goal]["detail"]
    # the sequential goals are not read from the paired runs
    assert goals["miss-cpu"]["held"] is None


@needs_wrk_and_nginx
def test_paced_pairs_run_at_the_rate_asked_for(tmp_path: Path) -> None:
    """`--pace MS`: each connection waits MS after an answer, so each side is offered a rate it
    keeps up with, the same for both, instead of all it can take."""
    doc = run_suite(tmp_path, "--only", "miss-paired", "--connections", "4", "--pace", "5", "--duration", "2")
    row = doc["scenarios"]["miss-paired"]
    check_pair(row, "nginx")
    assert row["pace_ms"] == 5
    assert "paced: 5 ms" in " ".join(row["notes"])
    # two connections a side, each at most one request per 5 ms: 400 a second; unpaced, thousands
    assert row["rps"] <= 440


@needs_wrk_and_nginx
def test_a_build_beside_itself_costs_about_the_same(tmp_path: Path) -> None:
    rows = run_suite(tmp_path, "--only", "hit-ab,miss-ab", "--baseline", str(ROOT))["scenarios"]
    for row in rows.values():
        check_pair(row, "baseline")
        assert 0.5 < row["ratio"] < 2.0  # the same code under the same load at the same time
    assert rows["hit-ab"]["origin_requests_both"] == [0]  # fresh hits, on both sides
    assert rows["miss-ab"]["origin_requests_both"][0] >= rows["miss-ab"]["repeats"][0]["requests"]


def test_ab_scenarios_skip_without_a_baseline(tmp_path: Path) -> None:
    rows = run_suite(tmp_path, "--only", "hit-ab,miss-ab,writes-ab")["scenarios"]
    for row in rows.values():
        assert row["failed"] is None and "--baseline" in row["skipped"]


def test_a_baseline_runs_its_own_checkouts_code(tmp_path: Path) -> None:
    """`python -m proxy` puts the working directory first on the import path: started from
    here (pytest runs in this checkout), a baseline would run this checkout's proxy."""
    with pytest.raises(Skip, match="not a checkout"):
        baseline_command(tmp_path)
    (tmp_path / "proxy").mkdir()
    (tmp_path / "proxy" / "__main__.py").write_text("import proxy\nprint(proxy.__file__)\n")
    (tmp_path / "proxy" / "__init__.py").write_text("")
    python, env, cwd = baseline_command(tmp_path)
    assert python == sys.executable and env == {"PYTHONPATH": str(tmp_path)}
    with process_group() as group:  # as `start_proxy` runs it, from this checkout's directory
        child = group.start("baseline", [python, "-m", "proxy"], env=env, cwd=cwd)
        assert child.proc.wait(timeout=30) == 0
        assert child.log_path.read_text().strip() == str(tmp_path / "proxy" / "__init__.py")
    venv = tmp_path / ".venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "python").write_text("")
    assert baseline_command(tmp_path)[0] == str(venv / "python")


def test_a_paired_goal_is_not_measured_without_its_run() -> None:
    paired = {"skipped": "nginx not installed (/usr/sbin/nginx)"}
    goals = {g["name"]: g for g in evaluate_goals({"miss-paired": paired}, None)}
    assert goals["miss-cpu-paired"]["held"] is None and goals["writes-cpu-paired"]["held"] is None
