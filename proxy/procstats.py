"""Process metrics from /proc, under the names every Prometheus client library uses.

Owns: `process_cpu_seconds_total`, `process_resident_memory_bytes`,
`process_virtual_memory_bytes`, `process_open_fds`, `process_max_fds` and
`process_start_time_seconds` of this process, read at scrape time (Linux only: elsewhere there
is no /proc and nothing is reported). In the multi-worker admin view each worker's carry its
`worker` label, as every other family does, and the supervisor's own carry `worker="supervisor"`.
Must not: run on the request path, or fail a scrape (an unreadable file drops that family).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from proxy.metrics import Family, MetricType, Sample

PROC = Path("/proc")


def _stat_fields(proc: Path) -> list[str]:
    text = (proc / "self" / "stat").read_text()
    return text[text.rindex(")") + 2 :].split()  # after "pid (comm) ": the comm may hold spaces


def _boot_time(proc: Path) -> float:
    for line in (proc / "stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise ValueError("no btime in /proc/stat")


def _max_fds(proc: Path) -> float | None:
    for line in (proc / "self" / "limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft = line.split()[3]
            return None if soft == "unlimited" else float(soft)
    return None


def process_families(proc: Path = PROC) -> Iterable[Family]:
    """The process_* families, each read on its own so one unreadable file drops only it."""
    ticks = float(os.sysconf("SC_CLK_TCK"))
    page = float(os.sysconf("SC_PAGE_SIZE"))
    try:
        fields = _stat_fields(proc)
        # fields[11], [12]: utime, stime (clock ticks); [19]: starttime; [20], [21]: vsize, rss
        cpu = (float(fields[11]) + float(fields[12])) / ticks
        yield _one("process_cpu_seconds_total", "counter", "Total user and system CPU time in seconds", cpu)
        yield _one("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes", float(fields[20]))
        rss = float(fields[21]) * page
        yield _one("process_resident_memory_bytes", "gauge", "Resident memory size in bytes", rss)
        start = _boot_time(proc) + float(fields[19]) / ticks
        yield _one("process_start_time_seconds", "gauge", "Start time since the epoch in seconds", start)
    except (OSError, ValueError, IndexError):
        pass
    try:
        fds = float(len(os.listdir(proc / "self" / "fd")))
        yield _one("process_open_fds", "gauge", "Number of open file descriptors", fds)
        limit = _max_fds(proc)
        if limit is not None:
            yield _one("process_max_fds", "gauge", "Maximum number of open file descriptors", limit)
    except (OSError, ValueError, IndexError):
        pass


def _one(name: str, kind: MetricType, help: str, value: float) -> Family:
    return Family(name, kind, help, (Sample(value),))
