"""Process metrics beside ours (issue 15): read from this process's /proc, Prometheus names."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from proxy.fleet import merge_metrics, supervisor_metrics
from proxy.procstats import process_families

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")


def values() -> dict[str, float]:
    return {f.name: f.samples[0].value for f in process_families()}


def test_process_families_read_this_process() -> None:
    got = values()
    assert set(got) >= {
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    }
    assert got["process_resident_memory_bytes"] > 1024 * 1024  # a Python process holds megabytes
    assert got["process_open_fds"] == len(os.listdir("/proc/self/fd"))  # both count listdir's fd
    assert got["process_start_time_seconds"] <= time.time()
    assert got["process_start_time_seconds"] > time.time() - 7 * 86400


def test_open_fds_follow_what_the_process_opens(tmp_path: Path) -> None:
    before = values()["process_open_fds"]
    handles = [(tmp_path / f"f{i}").open("w") for i in range(5)]
    try:
        assert values()["process_open_fds"] == before + 5
    finally:
        for h in handles:
            h.close()


def test_unreadable_proc_drops_the_families_not_the_scrape(tmp_path: Path) -> None:
    assert list(process_families(tmp_path)) == []


def test_fleet_view_labels_each_process() -> None:
    worker = (
        "# HELP process_open_fds Number of open file descriptors\n"
        "# TYPE process_open_fds gauge\nprocess_open_fds 12\n"
    )
    text = merge_metrics([(0, worker), (1, worker), ("supervisor", supervisor_metrics())])
    lines = [line for line in text.splitlines() if line.startswith("process_open_fds")]
    assert lines[:2] == ['process_open_fds{worker="0"} 12', 'process_open_fds{worker="1"} 12']
    assert lines[2].startswith('process_open_fds{worker="supervisor"} ')
    assert text.count("# TYPE process_open_fds gauge") == 1
