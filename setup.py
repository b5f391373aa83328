"""Builds resilient-proxy; everything but the compiled extensions is declared in pyproject.toml.

With RPROXY_USE_MYPYC=1 the request path is compiled to C extensions by mypyc (as mypy and black
ship themselves): the same source, which `mypy --strict` already checks, in less than half the
instructions per miss (docs/benchmarks.md). It needs a C compiler and Python's headers. Without the
variable the package is pure Python and behaves the same; `.ci/run` and the Dockerfile compile.

Interpreted, on purpose: modules off the request path (admin, status page, doctor, demo, reload,
snapshots...; `admin*` could not be compiled anyway: aiohttp's `web.middleware` sets attributes on
the function it decorates), and the few that mypyc cannot compile as written (`CANNOT` below).

An in-place build (`pip install -e .`) records each compiled source's SHA-256 in
`proxy/compiled-sources.txt`; `proxy/__init__` refuses to import a compiled module whose source
has changed since, so an edit is never silently shadowed by its stale build.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).parent
MANIFEST = ROOT / "proxy" / "compiled-sources.txt"
# Interpreted on purpose. Off the request path:
OFF_PATH = """__init__ __main__ app serve admin admin_api admin_quarantine status doctor demo fleet
    collectors inventory alerts health reload yamlsrc procstats quarantine store/lease
    store/snapshot"""
# (`invalidate` is compiled: every successful write runs it; interpreted, it was ~5% of a write.)
# mypyc cannot compile them as written: aiohttp's `BaseSite` has `__slots__` (publicport), an
# async generator (relaybody), aiocache's untyped base class (store/shared: compiled, it crashed).
CANNOT = "publicport relaybody store/shared"
INTERPRETED = {f"proxy/{name}.py" for name in f"{OFF_PATH} {CANNOT}".split()}


def compiled_sources() -> list[str]:
    paths = (p.relative_to(ROOT).as_posix() for p in (ROOT / "proxy").rglob("*.py"))
    return sorted(p for p in paths if p not in INTERPRETED and not p.startswith("proxy/vendor/"))


def ext_modules() -> list[object]:
    if os.environ.get("RPROXY_USE_MYPYC", "0") != "1":
        # pure Python asked for: an earlier in-place build's extensions would shadow the source
        for stale in [*(ROOT / "proxy").rglob("*.so"), *ROOT.glob("proxy__mypyc*.so"), MANIFEST]:
            stale.unlink(missing_ok=True)
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        if "egg_info" in sys.argv:  # setuptools asking for the build requirements: mypy comes next
            return []
        raise SystemExit("RPROXY_USE_MYPYC=1 needs mypy (mypyc) installed: pip install mypy") from None

    sources = compiled_sources()
    lines = (f"{hashlib.sha256((ROOT / s).read_bytes()).hexdigest()} {s}\n" for s in sources)
    MANIFEST.write_text("".join(lines))
    return list(mypycify(["--strict", *sources], opt_level="3", multi_file=True, group_name="proxy"))


setup(ext_modules=ext_modules())
