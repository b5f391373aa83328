"""What the suite ran on: machine facts and versions, for the JSON report and the README table.

Owns reading /proc/cpuinfo, /proc/meminfo and package / tool versions. Read-only; never fails:
an unknown value is reported as None.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks.procs import REPO_ROOT
from benchmarks.services import nginx_version, redis_server_path, varnish_version
from benchmarks.wrk import wrk_version


def _cpu_model() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or None


def _memory_bytes() -> int | None:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return None


def proxy_build() -> str:
    """`mypyc` when the request path is compiled (its modules are extensions), else `pure`."""
    import proxy.driver

    return "pure" if proxy.driver.__file__.endswith(".py") else "mypyc"


def machine_info() -> dict[str, Any]:
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_bytes": _memory_bytes(),
        "python": platform.python_version(),
        # Which build: a distro's or Docker's CPython (PGO + LTO) runs the same code ~10-25%
        # faster than a plain `./configure` one (pyenv's default), so the figures say which.
        "executable": os.path.realpath(sys.executable),
        "implementation": platform.python_implementation(),
        # The proxy's request path compiled by mypyc (setup.py, RPROXY_USE_MYPYC=1) or pure Python.
        "proxy_build": proxy_build(),
        "platform": platform.platform(),
        # Other work on the machine skews every figure; this says how busy it was.
        "loadavg": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }


def _dist_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _project_version() -> str | None:
    installed = _dist_version("resilient-proxy")
    if installed:
        return installed
    with contextlib.suppress(OSError):
        found = re.search(
            r'^version\s*=\s*"([^"]+)"', (REPO_ROOT / "pyproject.toml").read_text(), re.MULTILINE
        )
        if found:
            return found.group(1)
    return None


def _redis_version() -> str | None:
    exe = redis_server_path()
    if exe is None:
        return None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            [exe, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
        found = re.search(r"v=(\S+)", out)
        return found.group(1) if found else out.strip() or None
    return None


def versions() -> dict[str, str | None]:
    return {
        "resilient-proxy": _project_version(),
        "aiohttp": _dist_version("aiohttp"),
        "uvloop": _dist_version("uvloop"),
        "msgpack": _dist_version("msgpack"),
        "wrk": wrk_version(),
        "nginx": nginx_version(),
        "varnish": varnish_version(),
        "redis": _redis_version(),
    }
