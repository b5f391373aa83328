"""setuptools' build backend, with mypy (whose mypyc compiles the request path) added to the
build requirements when RPROXY_USE_MYPYC=1 asks for a compiled build (see setup.py)."""

from __future__ import annotations

import os

from setuptools import build_meta as _meta
from setuptools.build_meta import *  # noqa: F403

# The mypy that `mypy --strict` runs in CI: what is compiled is what was checked.
MYPYC = ["mypy==2.4.1"]


def _mypyc() -> list[str]:
    return MYPYC if os.environ.get("RPROXY_USE_MYPYC", "0") == "1" else []


def get_requires_for_build_wheel(config_settings: dict[str, object] | None = None) -> list[str]:
    return [*_meta.get_requires_for_build_wheel(config_settings), *_mypyc()]


def get_requires_for_build_editable(config_settings: dict[str, object] | None = None) -> list[str]:
    return [*_meta.get_requires_for_build_editable(config_settings), *_mypyc()]
