"""The house rules as a checker over a source tree: what `tests/unit/test_architecture.py` runs
on this repository, and on a planted copy to prove each rule can fail.

Rules:
- the pure core (`proxy/core/`) imports only `STDLIB` and `proxy.core` (relative imports are
  resolved; imports inside functions count) and never reads the clock;
- no import cycles among `proxy` modules (run-time imports; `if TYPE_CHECKING:` ones are types);
- no module of `proxy` over `MAX_LINES` lines;
- the fake vendor (`proxy.vendor`, somebody else's server for the demo, tests and benchmarks) is
  imported only by `VENDOR_USERS` (the demo), never by the request path or anything it serves.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

STDLIB = frozenset(
    {
        "__future__",
        "base64",
        "binascii",
        "bisect",
        "calendar",
        "collections",
        "dataclasses",
        "datetime",
        "email",
        "enum",
        "functools",
        "hashlib",
        "hmac",
        "ipaddress",
        "itertools",
        "json",
        "math",
        "operator",
        "re",
        "string",
        "typing",
        "unicodedata",
        "urllib",
        "zlib",
    }
)
CLOCK_CALLS = frozenset({"now", "utcnow", "today", "time", "monotonic", "perf_counter", "time_ns"})
CLOCK_HOLDERS = frozenset({"datetime", "date", "time", "loop"})
MAX_LINES = 400
VENDOR = "proxy.vendor"
VENDOR_USERS = frozenset({"proxy.demo"})


def modules(root: Path) -> dict[str, Path]:
    """Dotted name -> file, for every module of the `proxy` package under `root`."""
    out = {}
    for path in sorted((root / "proxy").rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, tree: ast.Module) -> Iterator[tuple[str, int, bool]]:
    """(imported module, line, at run time) for every import, relative ones resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    typing_only = {id(n) for block in _type_checking_blocks(tree) for n in ast.walk(block)}
    for node in ast.walk(tree):
        runtime = id(node) not in typing_only
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno, runtime
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            yield base, node.lineno, runtime
            for alias in node.names:  # `from proxy import handler` imports proxy.handler
                yield f"{base}.{alias.name}", node.lineno, runtime


def _type_checking_blocks(tree: ast.Module) -> Iterator[ast.If]:
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield node


def _clock_reads(tree: ast.Module) -> Iterator[tuple[str, int]]:
    """`X.now()`, `loop.time()`... where X names a clock-holding module, class or object,
    whatever alias it was imported under."""
    holders = set(CLOCK_HOLDERS)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom | ast.Import):
            for alias in node.names:
                if alias.name.split(".")[-1] in CLOCK_HOLDERS and alias.asname:
                    holders.add(alias.asname)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            owner_name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
            if node.func.attr in CLOCK_CALLS and (owner_name in holders or owner_name.endswith("loop")):
                yield ast.unparse(node.func), node.lineno


def violations(root: Path) -> list[str]:
    found: list[str] = []
    mods = modules(root)
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        text = path.read_text()
        where = path.relative_to(root)
        if text.count("\n") > MAX_LINES:
            found.append(f"{where}: {text.count(chr(10))} lines (at most {MAX_LINES})")
        tree = ast.parse(text, filename=str(where))
        core = name == "proxy.core" or name.startswith("proxy.core.")
        found += _vendor_imports(name, where, tree, path)
        for imported, line, runtime in _imports(name, path, tree):
            top = imported.split(".")[0]
            if imported in mods and runtime and imported != name:
                graph[name].add(imported)
            if core and not (imported.startswith("proxy.core") or top in STDLIB or imported in mods):
                found.append(f"{where}:{line}: the core imports {imported}")
            elif core and imported in mods and not imported.startswith("proxy.core"):
                found.append(f"{where}:{line}: the core imports the shell ({imported})")
        if core:
            found += [
                f"{where}:{line}: the core reads the clock ({call})" for call, line in _clock_reads(tree)
            ]
    found += [f"import cycle: {' -> '.join(cycle)}" for cycle in _cycles(graph)]
    return found


def _vendor_imports(name: str, where: Path, tree: ast.Module, path: Path) -> list[str]:
    """One line per import of the fake vendor from outside it and its users (types too)."""
    if _within(name, VENDOR) or name in VENDOR_USERS:
        return []
    lines = sorted({line for imported, line, _ in _imports(name, path, tree) if _within(imported, VENDOR)})
    return [f"{where}:{line}: {name} imports the fake vendor ({VENDOR})" for line in lines]


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append([*sorted(component), sorted(component)[0]])

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out
