"""The house rules (tests/architecture.py) hold on this repository, and each can fail.

The pure core (`proxy/core/`) decides from (data, now): it imports only an explicit standard-
library allowlist and `proxy.core`, and never reads the clock. No import cycles anywhere; no
module over 400 lines. Only the demo imports the fake vendor. The planted tests copy the
package, break one rule, and see it reported.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

from tests.architecture import MAX_LINES, violations

ROOT = Path(__file__).resolve().parents[2]


def test_the_house_rules_hold() -> None:
    """Every rule, on this tree, with no recorded exception (the size debts are paid)."""
    assert violations(ROOT) == []


@pytest.fixture
def planted(tmp_path: Path) -> Path:
    """A copy of the package to break."""
    shutil.copytree(
        ROOT / "proxy", tmp_path / "proxy", ignore=shutil.ignore_patterns("__pycache__", "static")
    )
    return tmp_path


def append(root: Path, module: str, text: str) -> None:
    path = root / module
    path.write_text(path.read_text() + "\n" + text + "\n")


PLANTS = [
    ("import asyncio, socket", "the core imports asyncio"),
    ("import asyncio, socket", "the core imports socket"),
    ("from .. import driver", "the core imports the shell (proxy.driver)"),
    ("from ..driver import Driver", "the core imports the shell (proxy.driver)"),
    ("from proxy import parts", "the core imports the shell (proxy.parts)"),
    ("import yaml", "the core imports yaml"),
    ("def f():\n    import time\n    return time.time()", "the core imports time"),
    ("def f():\n    import time\n    return time.time()", "the core reads the clock (time.time)"),
    ("from datetime import datetime as moment\nWHEN = moment.now()", "the core reads the clock (moment.now)"),
    ("import datetime\nWHEN = datetime.datetime.utcnow()", "reads the clock (datetime.datetime.utcnow)"),
    ("def f(loop):\n    return loop.time()", "the core reads the clock (loop.time)"),
    ("def f(self):\n    return self._loop.time()", "the core reads the clock (self._loop.time)"),
]


@pytest.mark.parametrize(("code", "reported"), PLANTS)
def test_a_planted_core_violation_is_reported(planted: Path, code: str, reported: str) -> None:
    append(planted, "proxy/core/freshness.py", code)
    found = violations(planted)
    assert any(reported in v and "proxy/core/freshness.py" in v for v in found), found


def test_an_unbroken_copy_is_as_clean_as_the_original(planted: Path) -> None:
    assert violations(planted) == violations(ROOT)


def test_a_planted_import_cycle_is_reported(planted: Path) -> None:
    driver = ast.parse((planted / "proxy/driver.py").read_text())
    assert any(isinstance(n, ast.ImportFrom) and n.module == "proxy.fetch" for n in ast.walk(driver))
    append(planted, "proxy/fetch.py", "from proxy import driver")  # fetch -> driver -> fetch
    assert any(v.startswith("import cycle:") and "proxy.driver" in v for v in violations(planted))


def test_a_type_only_import_is_no_cycle(planted: Path) -> None:
    append(
        planted,
        "proxy/fetch.py",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from proxy import driver",
    )
    assert not any(v.startswith("import cycle:") for v in violations(planted))


@pytest.mark.parametrize(
    "code", ["from proxy.vendor import Vendor", "from .vendor import state", "import proxy.vendor.items"]
)
def test_a_planted_import_of_the_fake_vendor_is_reported(planted: Path, code: str) -> None:
    append(planted, "proxy/fetch.py", code)
    lines = (planted / "proxy/fetch.py").read_text().count("\n")
    found = [v for v in violations(planted) if "fake vendor" in v]
    assert found == [f"proxy/fetch.py:{lines}: proxy.fetch imports the fake vendor (proxy.vendor)"]


def test_a_planted_long_module_is_reported(planted: Path) -> None:
    (planted / "proxy/core/long.py").write_text("X = 1\n" * (MAX_LINES + 1))
    assert f"proxy/core/long.py: {MAX_LINES + 1} lines (at most {MAX_LINES})" in violations(planted)


def test_only_the_clock_module_reads_time_in_the_shell() -> None:
    """The shell reads time through `Clock`; direct reads are allowed only where timing is the
    point (the clock itself, the CLI's serve loop, doctor's latency probe)."""
    allowed = {"clock.py", "doctor.py", "serve.py", "demo.py", "connguard.py", "health.py"}
    offenders = []
    for path in (ROOT / "proxy").rglob("*.py"):
        if path.name in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and (node.func.value.id, node.func.attr) in {("time", "time"), ("time", "monotonic")}
            ):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


def test_only_the_cache_front_knows_whether_a_shared_tier_exists() -> None:
    """The request path, the admin API and reloads go through `proxy.cache.Cache`; only the
    wiring (app) and the status report may look at the shared tier."""
    allowed = {"proxy/cache.py", "proxy/app.py", "proxy/status.py"}
    readers = []
    for path in sorted((ROOT / "proxy").rglob("*.py")):
        where = str(path.relative_to(ROOT))
        if where in allowed or where.startswith("proxy/store/"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "shared":
                readers.append(f"{where}:{node.lineno}")
    assert readers == []
