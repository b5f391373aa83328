"""Turning a finished run into what people read: the goals, the table, the JSON file, the plot.

Owns: the goals of issue 7 section 6 as ratios measured in the same run (held / missed /
not measured), the text table, the JSON document and the matplotlib figure. It reports; it
never fails the run on speed (a crashed scenario does fail it: see `failures`). No measuring
and no processes here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

Doc = dict[str, Any]


def _get(scenarios: Doc, name: str, key: str) -> float | None:
    row = scenarios.get(name)
    if not row or row.get("skipped") or row.get("failed"):
        return None
    value = row.get(key)
    return float(value) if isinstance(value, int | float) else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _goal(name: str, text: str, value: float | None, held: bool | None, shown: str, detail: str = "") -> Doc:
    return {
        "name": name,
        "goal": text,
        "value": None if value is None else round(value, 3),
        "measured": shown if value is not None else "not measured",
        "held": held,
        "detail": detail,
    }


def evaluate_goals(scenarios: Doc, memory: Doc | None) -> list[Doc]:
    """The five goals, each with its measured figure and whether it held (None: not measured)."""
    goals: list[Doc] = []
    rps = _ratio(_get(scenarios, "hit", "rps"), _get(scenarios, "ceiling", "rps"))
    goals.append(
        _goal(
            "hit-throughput",
            "fresh hits >= 0.9x ceiling rps (same process count)",
            rps,
            None if rps is None else rps >= 0.9,
            f"{rps:.2f}x" if rps is not None else "",
        )
    )
    p99 = _ratio(_get(scenarios, "hit", "p99_ms"), _get(scenarios, "ceiling", "p99_ms"))
    goals.append(
        _goal(
            "hit-p99",
            "hit p99 <= 2x ceiling p99",
            p99,
            None if p99 is None else p99 <= 2.0,
            f"{p99:.2f}x" if p99 is not None else "",
        )
    )
    stampede = scenarios.get("stampede") or {}
    per_run = [r.get("origin_requests") for r in stampede.get("repeats", [])]
    counts = [c for c in per_run if isinstance(c, int)]
    worst = float(max(counts)) if counts and not stampede.get("skipped") else None
    client_errors = [r.get("errors") for r in stampede.get("repeats", [])]
    goals.append(
        _goal(
            "stampede",
            "stampede of cold requests -> 1 origin request",
            worst,
            None if worst is None else worst == 1,
            f"{worst:.0f} origin request(s)" if worst is not None else "",
            f"per run: {counts}; client errors per run: {client_errors}" if counts else "",
        )
    )
    outage = scenarios.get("outage") or {}
    errs = [r.get("errors") for r in outage.get("repeats", [])]
    errors = [e for e in errs if isinstance(e, int)]
    worst_err = float(max(errors)) if errors and not outage.get("skipped") else None
    goals.append(
        _goal(
            "outage",
            "outage -> 0 client errors for keys with a copy",
            worst_err,
            None if worst_err is None else worst_err == 0,
            f"{worst_err:.0f} errors" if worst_err is not None else "",
            f"per run: {errors}" if errors else "",
        )
    )
    goals += cpu_goals(scenarios)
    goals += paired_goals(scenarios)
    ours, varnish = _get(scenarios, "hit", "p99_ms"), _get(scenarios, "varnish", "p99_ms")
    tail = _ratio(ours, varnish)
    goals.append(
        _goal(
            "hit-p99-varnish",
            "hit p99 <= Varnish's p99 (issue 12)",
            tail,
            None if tail is None else tail <= 1.0,
            f"{tail:.2f}x" if tail is not None else "",
            f"{ours:.2f} ms vs {varnish:.2f} ms" if ours is not None and varnish is not None else "",
        )
    )
    ratio = None if not memory or memory.get("skipped") else memory.get("ratio")
    goals.append(
        _goal(
            "memory",
            "memory <= 1.5x payload (RSS / entries x 1 KB)",
            ratio,
            None if ratio is None else ratio <= 1.5,
            f"{ratio:.2f}x" if ratio is not None else "",
            ""
            if ratio is None or memory is None
            else f"{memory['entries']} entries; incremental {memory['incremental_ratio']}x",
        )
    )
    return goals


CPU_GOALS = (
    # (goal name, our scenario, nginx's, the most ours may cost as a multiple of nginx's)
    ("hit-cpu", "hit", "nginx", 0.7),  # issue 12
    ("hit-logged-cpu", "hit-logged", "nginx-logged", 1.0),  # issue 12: both with a JSON access log
    ("miss-cpu", "miss", "nginx-miss", 1.0),  # issue 11
    ("writes-cpu", "writes", "nginx-writes", 1.0),  # issue 11
)


def cpu_goals(scenarios: Doc) -> list[Doc]:
    """Server CPU per request beside nginx's in the same run: the only speed figure that a
    shared, noisy machine does not distort (req/s depends on who else runs)."""
    goals = []
    for name, ours, theirs, most in CPU_GOALS:
        mine, nginx = _get(scenarios, ours, "cpu_us"), _get(scenarios, theirs, "cpu_us")
        ratio = _ratio(mine, nginx)
        text = f"{ours} CPU per request <= {most:g}x {theirs}'s"
        detail = f"{mine:.1f} us vs {nginx:.1f} us" if mine is not None and nginx is not None else ""
        goals.append(_cpu_goal(name, text, ratio, most, detail))
    return goals


PAIRED_GOALS = (
    # (goal name, the paired scenario, the most ours may cost as a multiple of the other side's)
    ("hit-cpu-paired", "hit-paired", 0.7),  # issue 12, both under load at the same time
    ("miss-cpu-paired", "miss-paired", 1.0),  # issue 11
    ("writes-cpu-paired", "writes-paired", 1.0),
)


def paired_goals(scenarios: Doc) -> list[Doc]:
    """The CPU goals again, read from the paired runs: ours and nginx's over the same seconds,
    so the machine's swings move both (`benchmarks.paired`)."""
    goals = []
    for name, scenario, most in PAIRED_GOALS:
        ratio = _get(scenarios, scenario, "ratio")
        row = scenarios.get(scenario) or {}
        text = f"{scenario.removesuffix('-paired')} CPU per request <= {most:g}x nginx's, at the same time"
        detail = (
            f"{row['cpu_us']:.1f} us vs {row['beside_cpu_us']:.1f} us; runs "
            f"{min(row['ratios']):.2f}-{max(row['ratios']):.2f}x"
            if ratio is not None
            else ""
        )
        goals.append(_cpu_goal(name, text, ratio, most, detail))
    return goals


def _cpu_goal(name: str, text: str, ratio: float | None, most: float, detail: str) -> Doc:
    """A CPU goal: held when `ratio` is at most `most`, not measured without one."""
    if ratio is None:
        return _goal(name, text, None, None, "")
    return _goal(name, text, ratio, ratio <= most, f"{ratio:.2f}x", detail)


def failures(doc: Doc) -> list[str]:
    """Scenarios that crashed (not skipped): any one makes the run exit non-zero."""
    return [f"{name}: {row['failed']}" for name, row in doc["scenarios"].items() if row.get("failed")]


# ----------------------------------------------------------------------------------- text


def _fmt(value: Any, spec: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, int | float):
        return format(value, spec)
    return str(value)


def render_table(doc: Doc) -> str:
    head = ("scenario", "rps", "p50 ms", "p90 ms", "p99 ms", "errors", "origin", "CPU us/req", "notes")
    rows: list[tuple[str, ...]] = []
    for name, row in doc["scenarios"].items():
        if row.get("skipped") or row.get("failed"):
            rows.append((name, *"-------", _why_not(row)))
            continue
        rows.append(
            (
                name,
                _fmt(row["rps"], ",.0f"),
                _fmt(row["p50_ms"], ".2f"),
                _fmt(row["p90_ms"], ".2f"),
                _fmt(row["p99_ms"], ".2f"),
                _fmt(row["errors"], "d"),
                _fmt(row["origin_requests"], "d"),
                _fmt(row.get("cpu_us"), ".1f"),
                "; ".join(row.get("notes", [])),
            )
        )
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head) - 1)]
    lines = []
    for r in [head, *rows]:
        cells = [r[0].ljust(widths[0])] + [r[i].rjust(widths[i]) for i in range(1, len(widths))]
        lines.append("  ".join(cells) + "  " + r[-1])
    lines.insert(1, "-" * min(120, sum(widths) + 2 * len(widths) + 5))
    return "\n".join(lines)


def _why_not(row: Doc) -> str:
    return f"FAILED: {row['failed']}" if row.get("failed") else f"skipped: {row['skipped']}"


def render_goals(goals: list[Doc]) -> str:
    mark = {True: "held", False: "MISSED", None: "n/a"}
    width = max(len(g["goal"]) for g in goals)
    return "\n".join(
        f"  [{mark[g['held']]:>6}] {g['goal'].ljust(width)}  {g['measured']}"
        + (f"  ({g['detail']})" if g["detail"] else "")
        for g in goals
    )


def render_micro(micro: Doc) -> str:
    lines = []
    for name, row in micro.items():
        value = f"{row['us']:>10.3f} us" if row.get("us") is not None else f"   skipped: {row.get('skipped')}"
        lines.append(f"  {name:<20} {value}   {row.get('what', '')}")
    return "\n".join(lines)


def render_memory(memory: Doc | None) -> str:
    if not memory:
        return "  not measured"
    if memory.get("skipped"):
        return f"  skipped: {memory['skipped']}"
    mb = 1024 * 1024
    return (
        f"  {memory['entries']:,} entries x {memory['entry_bytes']} B = "
        f"{memory['payload_bytes'] / mb:.1f} MB payload; proxy RSS "
        f"{memory['rss_before_bytes'] / mb:.1f} MB -> {memory['rss_after_bytes'] / mb:.1f} MB"
        f" = {memory['ratio']}x payload (incremental {memory['incremental_ratio']}x)"
    )


def render(doc: Doc) -> str:
    m = doc["machine"]
    parts = [
        f"machine: {m['cpu']}, {m['cores']} cores, Python {m['python']} ({m.get('executable')}), "
        f"load average {m.get('loadavg_at_start')} -> {m.get('loadavg')}; "
        f"load generator: {doc['load_generator']}",
        f"settings: {doc['settings']}",
        "",
        render_table(doc),
        "",
        "memory:",
        render_memory(doc.get("memory")),
        "",
        "micro-benchmarks (pure core, per call):",
        render_micro(doc.get("micro") or {}),
        "",
        "goals (measured in this run; the suite reports, it does not fail on speed):",
        render_goals(doc["goals"]),
    ]
    if failures(doc):
        parts += ["", "FAILED scenarios (the run exits 1):", *(f"  {f}" for f in failures(doc))]
    return "\n".join(parts)


def render_markdown(doc: Doc) -> str:
    """The table, memory, micro-benchmarks and goals as Markdown (for a README or an issue)."""
    m, st = doc["machine"], doc["settings"]
    out = [
        f"{m['cpu']}, {m['cores']} cores, Python {m['python']} (`{m.get('executable')}`), "
        f"{doc['versions'].get('aiohttp') and 'aiohttp ' + doc['versions']['aiohttp']}; "
        f"load generator {doc['load_generator']}; {st['connections']} connections, "
        f"{st['duration_s']:g} s x {st['repeats']} runs (medians), {st['workers']} worker(s); "
        f"load average {m.get('loadavg_at_start')} -> {m.get('loadavg')}.",
        "",
        "| scenario | rps | p50 ms | p90 ms | p99 ms | errors | origin requests | CPU us/req | notes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, row in doc["scenarios"].items():
        if row.get("skipped") or row.get("failed"):
            out.append(f"| {name} | - | - | - | - | - | - | - | {_why_not(row)} |")
            continue
        out.append(
            f"| {name} | {_fmt(row['rps'], ',.0f')} | {_fmt(row['p50_ms'], '.2f')} | "
            f"{_fmt(row['p90_ms'], '.2f')} | {_fmt(row['p99_ms'], '.2f')} | "
            f"{_fmt(row['errors'], 'd')} | {_fmt(row['origin_requests'], 'd')} | "
            f"{_fmt(row.get('cpu_us'), '.1f')} | {'; '.join(row.get('notes', []))} |"
        )
    out += [
        "",
        f"Memory: {render_memory(doc.get('memory')).strip()}",
        "",
        "| micro-benchmark | us per call | what |",
        "|---|---:|---|",
    ]
    for name, row in (doc.get("micro") or {}).items():
        out.append(f"| {name} | {_fmt(row.get('us'), '.3f')} | {row.get('what', '')} |")
    out += ["", "| goal | measured | |", "|---|---|---|"]
    mark = {True: "held", False: "missed", None: "not measured"}
    for g in doc["goals"]:
        detail = f" ({g['detail']})" if g["detail"] else ""
        out.append(f"| {g['goal']} | {g['measured']}{detail} | {mark[g['held']]} |")
    return "\n".join(out) + "\n"


def write_json(doc: Doc, path: Path) -> None:
    path.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")


# ----------------------------------------------------------------------------------- plot


def write_plot(doc: Doc, path: Path, say: Callable[[str], None] = print) -> bool:
    """Throughput bars and p50/p90/p99 per scenario; False (and a message) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        say("matplotlib is not installed (pip install 'resilient-proxy[bench]'): no plot")
        return False
    rows = [(n, r) for n, r in doc["scenarios"].items() if not r.get("skipped") and r.get("rps")]
    if not rows:
        say("no scenario produced figures: no plot")
        return False
    names = [n for n, _ in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    left.barh(names, [r["rps"] for _, r in rows], color="#4472c4")
    left.invert_yaxis()
    left.set_xlabel("requests / second (median)")
    left.set_title("throughput")
    width = 0.27
    for i, (key, color) in enumerate((("p50_ms", "#70ad47"), ("p90_ms", "#ffc000"), ("p99_ms", "#c00000"))):
        right.bar(
            [x + (i - 1) * width for x in range(len(rows))],
            [r[key] for _, r in rows],
            width,
            label=key.replace("_ms", ""),
            color=color,
        )
    right.set_xticks(range(len(rows)), names, rotation=35, ha="right")
    right.set_yscale("log")
    right.set_ylabel("latency, ms (log)")
    right.set_title("latency percentiles")
    right.legend()
    m = doc["machine"]
    fig.suptitle(f"resilient-proxy benchmarks: {m['cpu']}, {m['cores']} cores, {doc['load_generator']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
