"""What a load run asks for and what it returns, independent of the generator that runs it.

Owns the `Target` and `LoadResult` values, percentile arithmetic and the median over repeats,
and the choice between wrk and the built-in generator. It starts no server and does no I/O
itself beyond delegating to `benchmarks.wrk` / `benchmarks.loadgen`.
"""

from __future__ import annotations

import math
import shutil
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

PathMode = Literal["one", "random", "unique", "seq"]


@dataclass(frozen=True, slots=True)
class Target:
    """One load run: where, what paths, how hard and for how long."""

    port: int
    path: str  # the path for mode "one", else the prefix a key is appended to
    mode: PathMode = "one"
    keys: int = 1  # key space for "random" / "seq"
    salt: str = "0"  # makes "unique" keys new on every run
    method: str = "GET"
    body: bytes = b""
    connections: int = 50
    threads: int = 1
    duration: float = 10.0
    # Each connection waits this long after an answer before its next request (0: at once).
    # Paced, a server gets a rate it can keep up with instead of all it can take.
    pace_ms: int = 0

    def url(self) -> str:
        first = self.path if self.mode == "one" else f"{self.path}0"
        return f"http://127.0.0.1:{self.port}{first}"


@dataclass(frozen=True, slots=True)
class LoadResult:
    """The outcome of one load run; latencies in milliseconds."""

    requests: int
    duration_s: float
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    generator: str
    error_detail: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        latencies: Sequence[float],
        *,
        duration_s: float,
        errors: int,
        generator: str,
        requests: int | None = None,
        error_detail: dict[str, int] | None = None,
    ) -> LoadResult:
        """A run from its latencies in seconds (any order): percentiles, mean and max in ms."""
        lat = sorted(latencies)
        return cls(
            requests=len(lat) if requests is None else requests,
            duration_s=duration_s,
            errors=errors,
            p50_ms=percentile(lat, 50) * 1000,
            p90_ms=percentile(lat, 90) * 1000,
            p99_ms=percentile(lat, 99) * 1000,
            mean_ms=(sum(lat) / len(lat) * 1000) if lat else 0.0,
            max_ms=(lat[-1] * 1000) if lat else 0.0,
            generator=generator,
            error_detail=error_detail or {},
        )

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "rps": round(self.rps, 1),
            "requests": self.requests,
            "duration_s": round(self.duration_s, 3),
            "p50_ms": round(self.p50_ms, 3),
            "p90_ms": round(self.p90_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
            "mean_ms": round(self.mean_ms, 3),
            "max_ms": round(self.max_ms, 3),
            "errors": self.errors,
            "error_detail": dict(self.error_detail),
        }


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of already sorted values (0.0 for none), as wrk reports it."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(pct / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def median_summary(runs: Sequence[LoadResult]) -> dict[str, float | int]:
    """Per-metric medians over repeats: what the table and JSON report for a scenario."""
    if not runs:
        return {"rps": 0.0, "p50_ms": 0.0, "p90_ms": 0.0, "p99_ms": 0.0, "errors": 0}
    return {
        "rps": round(statistics.median(r.rps for r in runs), 1),
        "p50_ms": round(statistics.median(r.p50_ms for r in runs), 3),
        "p90_ms": round(statistics.median(r.p90_ms for r in runs), 3),
        "p99_ms": round(statistics.median(r.p99_ms for r in runs), 3),
        "errors": int(statistics.median(r.errors for r in runs)),
    }


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


class Loader:
    """Runs targets with wrk when it is on PATH (unless told otherwise), else the built-in one."""

    def __init__(self, prefer: str = "auto") -> None:
        self.kind = "wrk" if prefer in ("auto", "wrk") and wrk_available() else "builtin"

    def run(self, target: Target) -> LoadResult:
        if self.kind == "wrk":
            from benchmarks.wrk import run_wrk

            return run_wrk(target)
        from benchmarks.loadgen import run_builtin

        return run_builtin(target)
