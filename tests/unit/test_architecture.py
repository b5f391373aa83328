"""The house rules that keep the core pure, enforced with `ast`.

The pure core makes decisions from (data, now): it imports only the standard library and other
core modules (config parsing may import yaml), never the async shell, and never reads the clock.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "proxy"
CORE = {
    "cachecontrol",
    "structured",
    "httpdate",
    "encoding",
    "replacement",
    "freshness",
    "keys",
    "routing",
    "breaker",
    "retry",
    "ratelimit",
    "guards",
    "jsonpath",
    "drift",
    "quarantine",
    "model",
    "errors",
    "headers",
    "settings",
    "config",
    "redirects",
    "config_routes",
    "confread",
    "yamlsrc",
    "redact",
    "limits",
    "configkeys",
    "configref",
    "configview",
}
ALLOWED_THIRD_PARTY = {"config": {"yaml"}, "yamlsrc": {"yaml"}}
CLOCK_READS = {
    ("time", "time"),
    ("time", "monotonic"),
    ("time", "perf_counter"),
    ("datetime", "now"),
    ("datetime", "utcnow"),
    ("loop", "time"),
}


def _tree(name: str) -> ast.Module:
    return ast.parse((PACKAGE / f"{name}.py").read_text(), filename=f"{name}.py")


def _imports(tree: ast.Module) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _core_present() -> list[str]:
    return sorted(name for name in CORE if (PACKAGE / f"{name}.py").exists())


@pytest.mark.parametrize("name", _core_present())
def test_core_imports_only_stdlib_and_core(name: str) -> None:
    for module in _imports(_tree(name)):
        top = module.split(".")[0]
        if top == "proxy":
            inner = module.split(".")[1] if "." in module else ""
            assert inner in CORE, f"core module {name} imports shell module {module}"
        elif top not in sys.stdlib_module_names and top != "__future__":
            assert top in ALLOWED_THIRD_PARTY.get(name, set()), f"core module {name} imports {module}"


@pytest.mark.parametrize("name", _core_present())
def test_core_never_reads_the_clock(name: str) -> None:
    for node in ast.walk(_tree(name)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
        ):
            assert (node.func.value.id, node.func.attr) not in CLOCK_READS, (
                f"{name}.py:{node.lineno} reads the clock; take `now` as an argument"
            )


def test_only_clock_module_reads_time_in_the_shell() -> None:
    """The shell reads time through `Clock`; direct reads are allowed only where timing is
    the point (the clock itself, the CLI's serve loop and doctor's latency probe)."""
    allowed = {"clock.py", "doctor.py", "serve.py", "demo.py", "demo_vendor.py", "connguard.py", "health.py"}
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and (node.func.value.id, node.func.attr) in {("time", "time"), ("time", "monotonic")}
            ):
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert offenders == []


def test_nothing_imports_the_shell_from_the_core_by_accident() -> None:
    assert _core_present(), "the core modules moved; update CORE"
