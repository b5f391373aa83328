"""The resilient-proxy benchmark suite: load tests of the hot path and of failure, side by side.

Run it with `python -m benchmarks` (see benchmarks/README.md). The package owns every process it
starts (origin, ceiling, proxy, nginx, redis, load generators) and stops them all on exit; it only
ever binds and loads 127.0.0.1. It reports speed; it never fails on speed.
"""

from __future__ import annotations
