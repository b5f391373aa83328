"""Two servers under the same load at the same time: the CPU per request of each, and the ratio.

Owns the paired scenarios: `hit-paired`, `miss-paired` and `writes-paired` (the proxy beside
nginx), and with `--baseline DIR`, `hit-ab`, `miss-ab` and `writes-ab` (this checkout's proxy
beside the one in DIR). Every run starts two new processes; each side gets its own load
generator with half the connections, both start together, and each server's CPU is read over
the same seconds. Must not: decide a goal (`report` does that), or read anything of the proxy
but what its CLI and its ports show.

Why pairs, measured (stop 25): one server measured after the other, as `miss` and `nginx-miss`
are, swings by up to 20% between runs a minute apart on this shared two-core machine. That is
more than the 5% a change usually moves. Two builds measured at the same time differed by
0.94-1.00x across sixteen runs. Both sides share the cores, the origin and the caches, so what
moves one moves the other. Each side is closed-loop with the same connection count, so each
keeps as many requests in flight whatever its speed. The ratio is the figure to read. The
absolute CPU per request is higher than in a run alone: the cores are shared by five busy
processes.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from benchmarks.load import LoadResult, Target
from benchmarks.procs import Child, tree_cpu_seconds
from benchmarks.proxyrun import ProxyProcess, start_proxy
from benchmarks.scenarios import ORDER_BODY
from benchmarks.suite import ScenarioResult, Skip, Suite, salt, settle


@dataclass(frozen=True, slots=True)
class Side:
    """One server of a pair: what it is called in the notes, its process, and its load."""

    name: str
    server: Child
    make: Callable[[int], Target]


def measure_pairs(suite: Suite, res: ScenarioResult, start: Callable[[int], tuple[Side, Side]]) -> None:
    """Per repeat: two new processes (`start(i)`), both warmed, both loads run at once, both
    stopped; `res` gets our runs and CPU, and in `extra` the other side's CPU per request and
    each run's ratio (ours / theirs). New processes every run: the ratio of the same two builds
    moved by up to 4% from one pair of processes to the next while the runs of one pair agreed
    within a few percent (stop 26), so each run draws afresh and the median is over the draws."""
    pairing = Pairing(suite)
    with ThreadPoolExecutor(max_workers=2) as pool:
        for i in range(suite.settings.repeats):
            ours, theirs = start(i)
            try:
                pairing.warm(ours, theirs)
                pairing.run(pool, ours, theirs, i, res)
            finally:
                suite.group.stop(ours.server)
                suite.group.stop(theirs.server)
    pairing.report(res, theirs.name)


class Pairing:
    """The figures of one paired scenario, run by run."""

    def __init__(self, suite: Suite) -> None:
        if suite.loader.kind != "wrk":
            raise Skip("paired runs need wrk: the built-in generator would take the cores both servers share")
        self.suite = suite
        self.half = max(1, suite.settings.connections // 2)
        self.their_cpu: list[float] = []
        self.ratios: list[float] = []
        self.both: list[int] = []  # origin requests in each run, from the two sides together

    def warm(self, ours: Side, theirs: Side) -> None:
        for side in (ours, theirs):
            self.suite.warm(replace(side.make(99), connections=self.half))

    def run(self, pool: ThreadPoolExecutor, ours: Side, theirs: Side, i: int, res: ScenarioResult) -> None:
        suite = self.suite
        settle(ours.server.pid)
        settle(theirs.server.pid)
        asked = suite.origin().requests()
        before = [tree_cpu_seconds(s.server.pid) for s in (ours, theirs)]
        pace = suite.settings.pace_ms
        loads = [
            pool.submit(suite.loader.run, replace(s.make(i), connections=self.half, pace_ms=pace))
            for s in (ours, theirs)
        ]
        mine, other = loads[0].result(), loads[1].result()
        spent = [tree_cpu_seconds(s.server.pid) - b for s, b in zip((ours, theirs), before, strict=True)]
        if not (mine.requests and other.requests):
            raise RuntimeError(
                f"a side answered nothing: {ours.name} {mine.requests}, {theirs.name} {other.requests}"
            )
        if not (spent[0] > 0 and spent[1] > 0):  # /proc counts CPU in clock ticks (10 ms)
            raise RuntimeError(
                f"too little CPU to measure ({ours.name} {spent[0]:.2f} s, {theirs.name} {spent[1]:.2f} s): "
                "run longer (--duration) or pace less (--pace)"
            )
        self.both.append(suite.origin().requests() - asked)
        res.runs.append(mine)
        res.cpu_us.append(per_request(spent[0], mine))
        self.their_cpu.append(per_request(spent[1], other))
        self.ratios.append(round(res.cpu_us[-1] / self.their_cpu[-1], 3))
        if other.errors:
            res.notes.append(f"{theirs.name}: {other.errors} errors in run {i + 1}")

    def report(self, res: ScenarioResult, beside: str) -> None:
        ratios, pace = self.ratios, self.suite.settings.pace_ms
        res.extra.update(
            beside=beside,
            beside_cpu_us=round(statistics.median(self.their_cpu), 1),
            beside_runs=self.their_cpu,
            ratio=round(statistics.median(ratios), 3),
            ratios=ratios,
            origin_requests_both=self.both,
            pace_ms=pace,
        )
        paced = f", paced: {pace} ms between a connection's requests" if pace else ""
        res.notes.append(
            f"{beside} {res.extra['beside_cpu_us']} us/req in the same seconds; "
            f"ratio {res.extra['ratio']:.3f}x (runs {min(ratios):.3f}-{max(ratios):.3f}), "
            f"{self.half} connections each{paced}"
        )


def per_request(cpu_seconds: float, run: LoadResult) -> float:
    return round(cpu_seconds / run.requests * 1e6, 1)


Load = Callable[[Suite, int, str], Callable[[int], Target]]  # (suite, port, side's tag) -> runs


def misses(suite: Suite, port: int, tag: str) -> Callable[[int], Target]:
    """A new key on every request, new on every run and different on each side."""

    def make(i: int) -> Target:
        return suite.target(port, "/api/items/", mode="unique", salt=f"{tag}{i}{salt()}")

    return make


def posts(suite: Suite, port: int, tag: str) -> Callable[[int], Target]:
    target = suite.target(port, "/api/orders", method="POST", body=ORDER_BODY)
    return lambda i: target


def hits(suite: Suite, port: int, tag: str) -> Callable[[int], Target]:
    target = suite.target(port, "/api/items/1")
    suite.x_cache(port, target.path)  # stored before the first run
    return lambda i: target


LOADS: dict[str, tuple[str, Load]] = {
    "hit": ("fresh hits on one key", hits),
    "miss": ("a new key on every request", misses),
    "writes": ("POST pass-through", posts),
}


def beside_nginx(kind: str) -> Callable[[Suite, ScenarioResult], None]:
    """The scenario `<kind>-paired`: our proxy and nginx under `kind`'s load at once, two new
    processes for every run (`measure_pairs`): one pair of processes once gave 0.91-0.96x
    on misses, run after run, where every other pair that day gave 1.21-1.24x (stop 27)."""
    what, load = LOADS[kind]

    def run(suite: Suite, res: ScenarioResult) -> None:
        def start(i: int) -> tuple[Side, Side]:
            port, nginx = suite.new_nginx(f"nginx-pair-{i}")  # first: skipped before anything starts
            proxy = start_proxy(suite.group, suite.proxy_config(), name=f"proxy-pair-{i}")
            ours = Side("proxy", proxy.child, load(suite, proxy.port, "p"))
            return ours, Side("nginx", nginx, load(suite, port, "n"))

        measure_pairs(suite, res, start)
        res.notes.insert(0, f"{what}, beside nginx proxy_cache at the same time, new processes each run")

    return run


def beside_baseline(kind: str) -> Callable[[Suite, ScenarioResult], None]:
    """The scenario `<kind>-ab`: this checkout's proxy and the `--baseline` one's at once, two
    new processes for every run (`measure_pairs`)."""
    what, load = LOADS[kind]

    def run(suite: Suite, res: ScenarioResult) -> None:
        def start(i: int) -> tuple[Side, Side]:
            proxy = start_proxy(suite.group, suite.proxy_config(), name=f"proxy-ab-{i}")
            base = baseline(suite, f"proxy-baseline-{i}")
            ours = Side("proxy", proxy.child, load(suite, proxy.port, "p"))
            return ours, Side("baseline", base.child, load(suite, base.port, "b"))

        baseline_command(baseline_root(suite))  # skipped before anything starts
        measure_pairs(suite, res, start)
        res.notes.insert(
            0, f"{what}, beside {suite.settings.baseline} at the same time, new processes each run"
        )

    return run


def baseline(suite: Suite, name: str) -> ProxyProcess:
    """The proxy of the `--baseline` checkout, on the same config as ours."""
    python, env, cwd = baseline_command(baseline_root(suite))
    config = suite.proxy_config()
    return start_proxy(suite.group, config, name=name, python=python, env=env, cwd=cwd)


def baseline_root(suite: Suite) -> Path:
    if suite.settings.baseline is None:
        raise Skip("no --baseline DIR (a checkout of the build to compare against)")
    return suite.settings.baseline


def baseline_command(root: Path) -> tuple[str, dict[str, str], Path]:
    """The interpreter, environment and directory that run the proxy of checkout `root`: its
    own `.venv` when it has one (as `.ci/run` makes it; a compiled build lives there), else
    this interpreter. In `root` itself: `python -m` puts the working directory first on the
    import path, so started from here it would run this checkout's proxy."""
    if not (root / "proxy" / "__main__.py").is_file():
        raise Skip(f"--baseline {root}: not a checkout of the proxy (no proxy/__main__.py)")
    venv = root / ".venv" / "bin" / "python"
    return (str(venv) if venv.is_file() else sys.executable), {"PYTHONPATH": str(root)}, root
