"""resilient-proxy: a caching reverse proxy that keeps websites working when their APIs fail.

When the request path was compiled in place (`RPROXY_USE_MYPYC=1 pip install -e .`, setup.py),
importing the package checks that no compiled module's source changed since: Python prefers a
module's extension to its `.py`, so an edit would otherwise run the stale build without a word.
"""

from __future__ import annotations

import hashlib
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path


def stale_builds(manifest: Path) -> list[str]:
    """The sources listed in `manifest` ("sha256 path" lines, paths relative to its package's
    parent) that changed since they were compiled and still have their compiled module."""
    root = manifest.parent.parent
    stale = []
    for line in manifest.read_text().splitlines():
        digest, _, name = line.partition(" ")
        source = root / name
        built = any(source.with_name(source.stem + suffix).exists() for suffix in EXTENSION_SUFFIXES)
        if built and (not source.exists() or hashlib.sha256(source.read_bytes()).hexdigest() != digest):
            stale.append(name)
    return stale


def _check_compiled() -> None:
    manifest = Path(__file__).with_name("compiled-sources.txt")
    if manifest.exists() and (stale := stale_builds(manifest)):
        raise ImportError(
            f"{', '.join(stale[:3])}{' and more' if len(stale) > 3 else ''} changed since the "
            "request path was compiled: rebuild with `RPROXY_USE_MYPYC=1 pip install -e .`, or "
            "`pip install -e .` for pure Python"
        )


_check_compiled()
