"""The test-hygiene rules: no test asserts on elapsed wall time; one helper for one job.

Owns: `helpers_redefined(paths, root)`, which finds a second definition of a shared helper
(`free_port` lives in benchmarks/procs.py only), and `durations_asserted(paths)`, which reads
test modules with `ast` and returns every `assert` whose test involves a duration measured on a
real clock: the difference of two clock reads (`took = time.monotonic() - start`,
`deadline - perf_counter()`), or a comparison between two of them (`time.monotonic() < deadline`
where `deadline = time.monotonic() + 5`). Values are followed through assignments, tuple
unpacking, loops, comprehensions, walrus, `list.append` and helper functions that return them
(`answer, took = await timed(...)`), across all scanned modules; the analysis over-approximates
(a tuple passed through an unknown call taints all of it), which only ever errs towards failing.
Comparing one instant with a clock (`start_time <= time.time()`) is not a duration and passes.

A test waits for an event instead (`Origin.reached`, an `asyncio.Event`, `tests.waiting.until`,
whose bound raises `TimeoutError` as a safety net), or drives the proxy's FakeClock.
Must not: import the modules it reads (it only parses them).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

CLOCK_FUNCTIONS = frozenset(
    {"monotonic", "perf_counter", "time", "monotonic_ns", "perf_counter_ns", "time_ns", "process_time"}
)
MUTATORS = frozenset({"append", "appendleft", "extend", "add", "insert", "update", "put", "put_nowait"})
NONE, INSTANT, DURATION = 0, 1, 2
Levels = int | tuple[int, ...]  # one level, or one per element of a returned tuple


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    source: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: asserts on elapsed wall time: {self.source}"


def _flat(levels: Levels) -> int:
    return max(levels, default=NONE) if isinstance(levels, tuple) else levels


def _is_clock_read(call: ast.Call) -> bool:
    func = call.func
    if isinstance(func, ast.Name):  # from time import monotonic
        return func.id in CLOCK_FUNCTIONS
    if isinstance(func, ast.Attribute) and func.attr in CLOCK_FUNCTIONS:
        owner = ast.unparse(func.value)
        return owner == "time" or (func.attr == "time" and "loop" in owner.lower())  # loop.time()
    return False


class _Scope(ast.NodeVisitor):
    """One function (or module) body: which names hold clock values, which asserts test them."""

    def __init__(self, path: str, returns: dict[str, Levels], env: dict[str, int] | None = None) -> None:
        self.path = path
        self.returns = returns  # helper name -> what it returns, shared by every module scanned
        self.env: dict[str, int] = dict(env or {})
        self.returned: list[Levels] = []
        self.found: dict[int, Violation] = {}

    # -- values ----------------------------------------------------------------------------

    def levels(self, node: ast.expr) -> Levels:
        if isinstance(node, ast.Await):
            return self.levels(node.value)
        if isinstance(node, ast.Tuple):
            return tuple(self.level(e) for e in node.elts)
        if isinstance(node, ast.Call) and (name := self._helper(node)):
            returned = self.returns[name]
            return returned if isinstance(returned, tuple) else max(returned, self._children(node))
        return self.level(node)

    def level(self, node: ast.expr) -> int:
        if isinstance(node, ast.Call) and _is_clock_read(node):
            return INSTANT
        if isinstance(node, ast.Call) and self._helper(node):
            return _flat(self.levels(node))
        if isinstance(node, ast.Name):
            return self.env.get(node.id, NONE)
        if isinstance(node, ast.NamedExpr):
            value = self.level(node.value)
            self.env[node.target.id] = value
            return value
        if isinstance(node, ast.BinOp):
            left, right = self.level(node.left), self.level(node.right)
            if isinstance(node.op, ast.Sub) and left >= INSTANT and right >= INSTANT:
                return DURATION  # one clock read minus another: time elapsed
            return max(left, right)
        if isinstance(node, ast.Compare):
            sides = [self.level(e) for e in (node.left, *node.comparators)]
            if max(sides) >= DURATION or sum(s >= INSTANT for s in sides) >= 2:
                return DURATION  # `now < deadline`: a duration compared, whatever the spelling
            return max(sides)
        if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
            for gen in node.generators:
                self.bind(gen.target, self.level(gen.iter))
        return self._children(node)

    def _helper(self, call: ast.Call) -> str:
        """The name of a scanned helper this call runs (its return value is known), or ""."""
        return call.func.id if isinstance(call.func, ast.Name) and call.func.id in self.returns else ""

    def _children(self, node: ast.AST) -> int:
        values = [c.value if isinstance(c, ast.keyword) else c for c in ast.iter_child_nodes(node)]
        return max((self.level(v) for v in values if isinstance(v, ast.expr)), default=NONE)

    def bind(self, target: ast.expr, levels: Levels) -> None:
        if isinstance(target, ast.Name):
            self.env[target.id] = _flat(levels)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for i, element in enumerate(target.elts):
                one = levels[i] if isinstance(levels, tuple) and i < len(levels) else _flat(levels)
                self.bind(element, one)
        elif isinstance(target, ast.Starred):
            self.bind(target.value, _flat(levels))

    # -- statements, in source order ---------------------------------------------------------

    def visit_Assign(self, node: ast.Assign) -> None:
        levels = self.levels(node.value)
        for target in node.targets:
            self.bind(target, levels)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.bind(node.target, self.levels(node.value))

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        if isinstance(node.target, ast.Name):
            before = self.env.get(node.target.id, NONE)
            self.env[node.target.id] = max(before, self.level(node.value))

    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:
        self.bind(node.target, self.level(node.iter))
        for _ in range(2):  # twice: a value set late in the body reaches its top
            for stmt in node.body:
                self.visit(stmt)
        for stmt in node.orelse:
            self.visit(stmt)

    visit_AsyncFor = visit_For

    def visit_While(self, node: ast.While) -> None:
        for _ in range(2):
            self.level(node.test)
            for stmt in node.body:
                self.visit(stmt)
        for stmt in node.orelse:
            self.visit(stmt)

    def visit_withitem(self, node: ast.withitem) -> None:
        if node.optional_vars is not None:
            self.bind(node.optional_vars, self.levels(node.context_expr))

    def visit_Return(self, node: ast.Return) -> None:
        if node.value is not None:
            self.returned.append(self.levels(node.value))

    def visit_Assert(self, node: ast.Assert) -> None:
        if self.level(node.test) >= DURATION:
            self.found[node.lineno] = Violation(self.path, node.lineno, ast.unparse(node.test))

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        inner = _Scope(self.path, self.returns, self.env)
        for _ in range(2):
            for stmt in node.body:
                inner.visit(stmt)
        self.found.update(inner.found)
        if inner.returned:
            self.returns[node.name] = _join(inner.returned)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Expr(self, node: ast.Expr) -> None:
        call = node.value
        if (
            isinstance(call, ast.Call)
            and isinstance(call.func, ast.Attribute)
            and isinstance(call.func.value, ast.Name)
            and call.func.attr in MUTATORS
        ):  # `times.append(took)`: the list now holds durations
            name = call.func.value.id
            self.env[name] = max(self.env.get(name, NONE), self._children(call))
        else:
            self.generic_visit(node)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.level(node)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        return None  # its body runs elsewhere (a condition polled by `until`)


def _join(returned: list[Levels]) -> Levels:
    tuples = [r for r in returned if isinstance(r, tuple)]
    if tuples and len({len(t) for t in tuples}) == 1 and len(tuples) == len(returned):
        return tuple(max(column) for column in zip(*tuples, strict=True))
    return max(_flat(r) for r in returned)


def durations_asserted(paths: Iterable[Path], root: Path | None = None) -> list[Violation]:
    """Every assert on elapsed wall time in these files (helpers are followed across them)."""
    trees = [(str(p.relative_to(root)) if root else str(p), ast.parse(p.read_text(), str(p))) for p in paths]
    returns: dict[str, Levels] = {}
    found: dict[tuple[str, int], Violation] = {}
    for _ in range(3):  # helpers defined in one module and used in another settle in a few rounds
        found.clear()
        for name, tree in trees:
            scope = _Scope(name, returns)
            scope.visit(tree)
            found.update({(name, line): v for line, v in scope.found.items()})
    return sorted(found.values(), key=lambda v: (v.path, v.line))


def modules_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


ONE_HOME = {"free_port": "benchmarks/procs.py"}  # helper -> the one module that may define it


def helpers_redefined(paths: Iterable[Path], root: Path) -> list[str]:
    """`path:line: name` for every definition of a shared helper outside its one home."""
    found = []
    for path in paths:
        where = str(path.relative_to(root))
        for node in ast.walk(ast.parse(path.read_text(), where)):
            if (
                isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                and ONE_HOME.get(node.name, where) != where
            ):
                found.append(f"{where}:{node.lineno}: {node.name} (import it from {ONE_HOME[node.name]})")
    return found
