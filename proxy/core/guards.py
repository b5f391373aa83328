"""Sanity guards: decide whether a vendor's JSON body is obviously wrong.

Owns: the compiled rule (`Rule`), evaluating rules against a body or a parsed document
(``check_body``, ``check_doc``), and the hysteresis that lets a drastic but consistent change
through (``Hysteresis``). Parsing the `guards:` list is `guard_rules`'s.

Must not: do I/O, read the clock, store or serve anything, or raise while evaluating: any
JSON value (and any last-good copy) yields a Verdict. The shell decides what to do with it.

Semantics (documented for the config reference):
- A rule holds ``path`` plus exactly one check; ``required: [paths]`` stands alone.
- Every value a wildcard path matches must pass. A wildcard over an empty array is vacuous.
- A path that resolves to nothing is a violation ``missing`` (also for ``type: null``: a
  missing field is not a null one). ``required`` reports its own paths as ``required``.
- Booleans are not numbers: ``true`` fails ``gt: 0`` and ``type: number``.
- ``type: integer`` accepts 3 and 3.0 (JSON Schema: integers are numbers with zero fraction).
- Percentages are ``"50%"`` or a bare number 0..100 (a bare 0.5 means 0.5 %, not 50 %).
- Relative rules (``max_shrink``, ``max_change``) compare a singular path with the last good
  copy; they pass when there is no last good copy or its value there is not comparable
  (absent, not a number/list, zero, non-finite, or beyond 2**53).
"""

from __future__ import annotations

import json
import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from proxy.core.jsonpath import Path, compile_path

RELATIVE_CHECKS: Final = frozenset({"max_shrink", "max_change"})
CHECKS: Final = (
    "gt", "ge", "lt", "le", "eq", "one_of", "type", "not_empty",
    "min_items", "max_items", "matches", "max_shrink", "max_change",
)  # fmt: skip
ORDER: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "gt": operator.gt, "ge": operator.ge, "lt": operator.lt, "le": operator.le,
}  # fmt: skip
_MAX_EXACT: Final = 2**53  # beyond this a number is not compared by percentage
_SHORT: Final = 80
_MAX_DIGITS: Final = 308  # an integer of at most this many characters is below 1e308


def is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def is_int(v: Any) -> bool:
    if isinstance(v, float):
        return v.is_integer()
    return isinstance(v, int) and not isinstance(v, bool)


TYPES: Final[dict[str, Callable[[Any], bool]]] = {
    "string": lambda v: isinstance(v, str),
    "number": is_num,
    "integer": is_int,
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "null": lambda v: v is None,
}


def never(_: Any) -> bool:
    return False


@dataclass(frozen=True, slots=True)
class Rule:
    """One compiled rule. ``test`` is the precompiled per-value predicate (absolute rules)."""

    check: str
    path: Path | None  # None only for `required`
    arg: Any  # normalised: a number, a tuple of scalars, a type name, a pattern, a percent
    paths: tuple[Path, ...] = ()  # `required` only
    test: Callable[[Any], bool] = field(default=never, compare=False, repr=False)
    # Optional C-speed "all of these pass" shortcut for wildcard matches; False means "look
    # value by value" (it may be a false negative, never a false positive).
    batch: Callable[[list[Any]], bool] | None = field(default=None, compare=False, repr=False)

    @property
    def relative(self) -> bool:
        return self.check in RELATIVE_CHECKS

    def describe(self) -> str:
        """Human form for inventories and logs, e.g. ``$.price gt 0``."""
        if self.check == "required":
            return "required " + ", ".join(p.text for p in self.paths)
        arg = self.arg.pattern if isinstance(self.arg, re.Pattern) else self.arg
        shown = f"{arg:g}%" if self.relative else json.dumps(arg, default=str)
        return f"{self.path} {self.check} {shown}"


@dataclass(frozen=True, slots=True)
class Violation:
    rule: str  # a check name, or "missing", "json", "max_object_size"
    path: str
    value: str  # a short rendering of the offending value (at most ~80 characters)

    @property
    def relative(self) -> bool:
        return self.rule in RELATIVE_CHECKS

    def label(self) -> str:
        return f"{self.rule} at {self.path}"


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    violations: tuple[Violation, ...]
    relative_only: bool  # failed, and only on max_shrink / max_change

    def detail(self) -> str:
        """Cache-Status detail for a rejection, e.g. ``guard: gt at $.price``; "" when ok."""
        return f"guard: {self.violations[0].label()}" if self.violations else ""


PASSED: Final = Verdict(True, (), False)


def _verdict(violations: Sequence[Violation]) -> Verdict:
    if not violations:
        return PASSED
    return Verdict(False, tuple(violations), all(v.relative for v in violations))


def guarded_paths(rules: Sequence[Rule]) -> tuple[str, ...]:
    """The fields a route depends on, for the inventory: sorted path texts."""
    texts = {p.text for r in rules for p in (r.paths if r.path is None else (r.path,))}
    return tuple(sorted(texts))


# ---------------------------------------------------------------- evaluation


def check_body(
    rules: Sequence[Rule], body: bytes, *, last_good: Any | None, max_bytes: int | None = None
) -> tuple[Verdict, Any | None]:
    """Check a raw body; returns the verdict and the parsed document (None if not parsed).

    The size limit applies even without rules. Without rules the body is not parsed at all
    (it may not be JSON); with rules it must be JSON, so an HTML error page served with 200
    fails as ``json at $``.
    """
    if max_bytes is not None and len(body) > max_bytes:
        over = Violation("max_object_size", "$", f"{len(body)} bytes > {max_bytes}")
        return _verdict([over]), None
    if not rules:
        return PASSED, None
    try:
        # UTF-8 (RFC 8259 8.1; a BOM it lets a parser ignore): `json.loads` would read UTF-16 too.
        text = bytes(body).decode("utf-8-sig")
        doc = json.loads(text, parse_constant=_no_constant, parse_float=_finite, parse_int=_finite_int)
    except (ValueError, RecursionError):  # JSONDecodeError, not UTF-8, absurd nesting
        return _verdict([Violation("json", "$", _short(bytes(body[:_SHORT])))]), None
    return check_doc(rules, doc, last_good=last_good), doc


def _no_constant(name: str) -> Any:
    """NaN and Infinity are not JSON (RFC 8259 section 6); a body carrying them is refused."""
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} overflows a double")
    return value


def _finite_int(text: str) -> int:
    """An integer a double holds: beyond 1.8e308 every JavaScript client reads Infinity."""
    if len(text) > _MAX_DIGITS and not math.isfinite(float(text)):
        raise ValueError(f"an integer of {len(text)} digits overflows a double")
    return int(text)


def check_doc(rules: Sequence[Rule], doc: Any, *, last_good: Any | None) -> Verdict:
    """Evaluate every rule; one violation per failing rule (the first offending value)."""
    out: list[Violation] = []
    missing: set[str] = set()
    for rule in rules:
        if rule.path is None:
            out.extend(_check_required(rule.paths, doc))
            continue
        values, absent = rule.path.resolve(doc)
        if absent and rule.path.text not in missing:
            missing.add(rule.path.text)
            out.append(Violation("missing", rule.path.text, "<missing>"))
        if rule.relative:
            if values and last_good is not None:
                bad = _check_relative(rule, rule.path, values[0], last_good)
                if bad is not None:
                    out.append(bad)
            continue
        if rule.batch is not None and len(values) > 1 and rule.batch(values):
            continue
        test = rule.test
        for value in values:
            if not test(value):
                out.append(Violation(rule.check, rule.path.text, _short(value)))
                break
    return _verdict(out)


def _check_required(paths: tuple[Path, ...], doc: Any) -> list[Violation]:
    out = []
    for path in paths:
        values, absent = path.resolve(doc)
        if absent or None in values:
            out.append(Violation("required", path.text, "<missing>" if absent else "null"))
    return out


def measure(value: Any) -> float | None:
    """The comparable size of a value: a list's length or a finite number; else None."""
    if isinstance(value, list):
        return float(len(value))
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value) if -_MAX_EXACT <= value <= _MAX_EXACT else None
    if isinstance(value, float) and math.isfinite(value):
        return value
    return None


def _measure_for(check: str, value: Any) -> float | None:
    if check == "max_change" and isinstance(value, list):
        return None  # max_change is about numbers; use max_shrink for list lengths
    return measure(value)


def _check_relative(rule: Rule, path: Path, value: Any, last_good: Any) -> Violation | None:
    before, absent = path.resolve(last_good)
    prev = _measure_for(rule.check, before[0]) if before and not absent else None
    if prev is None or prev == 0.0:
        return None  # nothing trustworthy to compare with (a % of zero is undefined): pass
    cur = _measure_for(rule.check, value)
    if cur is None:
        return Violation(rule.check, path.text, f"{_short(value)} (last good {prev:g})")
    drop = prev - cur if rule.check == "max_shrink" else abs(prev - cur)
    if drop * 100.0 > rule.arg * abs(prev):
        return Violation(rule.check, path.text, f"{cur:g} (last good {prev:g})")
    return None


def _short(value: Any) -> str:
    """A short, JSON-flavoured rendering of an offending value; never raises."""
    if value is None or isinstance(value, bool):
        text = json.dumps(value)
    elif isinstance(value, list):
        text = f"array of {len(value)}"
    elif isinstance(value, dict):
        text = f"object with {len(value)} keys"
    elif isinstance(value, (str, bytes)):
        text = repr(value[: _SHORT + 1])
    else:
        try:
            text = repr(value)
        except ValueError:  # an int too long to print (sys.int_info.str_digits_check_threshold)
            text = f"<{type(value).__name__} too large to show>"
    return text if len(text) <= _SHORT else text[: _SHORT - 3] + "..."


# ---------------------------------------------------------------- hysteresis

_Signature = tuple[tuple[str, str, float | str], ...]


class Hysteresis:
    """Accept a drastic change once ``confirm_after`` consecutive responses agree on it.

    Feed it every verdict for one cache key (or route). A verdict that failed only on
    relative rules extends the streak when it *agrees* with the previous one: the same
    (rule, path) pairs failed and each measured value (list length or number) is within
    ``tolerance`` (relative, default 5 %) of the previous rejected response's. A pass, an
    absolute failure, or a disagreeing response restarts the count. ``observe`` returns
    True on the confirming response; the caller then stores it as the new last good copy.
    """

    def __init__(self, confirm_after: int = 3, tolerance: float = 0.05) -> None:
        if confirm_after < 1:
            raise ValueError("confirm_after must be at least 1")
        if not 0.0 <= tolerance < 1.0:
            raise ValueError("tolerance must be in [0, 1)")
        self._confirm_after = confirm_after
        self._tolerance = tolerance
        self._streak = 0
        self._last: _Signature | None = None
        self._paths: dict[str, Path] = {}  # compiled violation paths; bounded by the rules

    @property
    def streak(self) -> int:
        return self._streak

    def reset(self) -> None:
        self._streak = 0
        self._last = None

    def observe(self, verdict: Verdict, doc: Any) -> bool:
        if verdict.ok or not verdict.relative_only:
            self.reset()
            return False
        signature = self._signature(verdict, doc)
        agrees = self._last is not None and self._agrees(self._last, signature)
        self._streak = self._streak + 1 if agrees else 1
        self._last = signature
        if self._streak >= self._confirm_after:
            self.reset()
            return True
        return False

    def _signature(self, verdict: Verdict, doc: Any) -> _Signature:
        parts: list[tuple[str, str, float | str]] = []
        for v in verdict.violations:
            path = self._paths.get(v.path)
            if path is None:
                try:
                    path = self._paths[v.path] = compile_path(v.path)
                except ValueError:  # not a rule's path (hand-made verdict): compare the root
                    path = self._paths[v.path] = compile_path("$")
            found = path.find(doc)
            size = measure(found[0]) if found else None
            what = type(found[0]).__name__ if found else "<missing>"
            parts.append((v.rule, v.path, what if size is None else size))
        return tuple(sorted(parts, key=lambda p: (p[0], p[1])))

    def _agrees(self, old: _Signature, new: _Signature) -> bool:
        if [p[:2] for p in old] != [p[:2] for p in new]:
            return False
        for (_, _, a), (_, _, b) in zip(old, new, strict=True):
            if isinstance(a, float) and isinstance(b, float):
                if abs(a - b) > self._tolerance * max(abs(a), abs(b)):
                    return False
            elif a != b:
                return False
        return True
