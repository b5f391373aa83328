"""Resident memory of the proxy after caching N distinct entries, as a ratio of payload bytes.

Owns the memory figure: a fresh proxy process (workers included) with a memory tier big enough
to hold every entry, RSS read from /proc before and after fetching N distinct 1 KB keys once
each through it. Payload is N x body size. It must not reuse the main proxy (its cache already
holds other scenarios' entries).
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.loadgen import fetch_paths
from benchmarks.procs import tree_rss_bytes
from benchmarks.proxyrun import start_proxy
from benchmarks.services import request
from benchmarks.suite import Skip, Suite

MB = 1024 * 1024


def measure_memory(suite: Suite) -> dict[str, Any]:
    s = suite.settings
    n = s.memory_entries
    suite.proxy()  # Skip early, with the main proxy's reason, when there is no proxy
    config = suite.proxy_config(max_bytes=f"{max(64, (n * s.size * 4) // MB)}MB")
    proc = start_proxy(suite.group, config, name="proxy-memory")
    try:
        request(proc.port, "GET", "/api/items/warm")  # imports and pools settle first
        time.sleep(0.3)
        rss_before = tree_rss_bytes(proc.child.pid)
        origin_before = suite.origin().requests()
        filled = fetch_paths(proc.port, [f"/api/items/mem{i}" for i in range(n)], connections=s.connections)
        stored = suite.origin().requests() - origin_before
        time.sleep(0.5)
        rss_after = tree_rss_bytes(proc.child.pid)
        check = request(proc.port, "GET", "/api/items/mem0").headers.get("x-cache", "-")
    finally:
        suite.group.stop(proc.child)
    if rss_after == 0:
        raise Skip("could not read VmRSS from /proc")
    payload = n * s.size
    return {
        "entries": n,
        "entry_bytes": s.size,
        "payload_bytes": payload,
        "rss_before_bytes": rss_before,
        "rss_after_bytes": rss_after,
        "ratio": round(rss_after / payload, 3),
        "incremental_ratio": round((rss_after - rss_before) / payload, 3),
        "fill_seconds": round(filled.duration_s, 2),
        "fill_errors": filled.errors,
        "origin_requests": stored,
        "first_key_after_fill": check,
        "workers": s.workers,
    }
