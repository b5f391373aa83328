"""setuptools' build backend, with what a compiled build needs (RPROXY_USE_MYPYC=1, setup.py)
added to the build requirements: mypy, whose mypyc compiles the request path, and, since mypyc
type-checks the sources as `mypy --strict` does, the runtime dependencies and their type stubs."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from setuptools import build_meta as _meta
from setuptools.build_meta import *  # noqa: F403

# The mypy that `mypy --strict` runs in CI: what is compiled is what was checked.
MYPYC = ["mypy==2.4.1", "types-PyYAML"]


def _mypyc() -> list[str]:
    if os.environ.get("RPROXY_USE_MYPYC", "0") != "1":
        return []
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    return [*MYPYC, *project["dependencies"]]


def get_requires_for_build_wheel(config_settings: dict[str, object] | None = None) -> list[str]:
    return [*_meta.get_requires_for_build_wheel(config_settings), *_mypyc()]


def get_requires_for_build_editable(config_settings: dict[str, object] | None = None) -> list[str]:
    return [*_meta.get_requires_for_build_editable(config_settings), *_mypyc()]
