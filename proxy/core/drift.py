"""Contract drift: notice when the shape of a vendor's accepted responses changes.

Owns: ``shape_of`` (a document's shape as a set of (JSONPath, JSON type) pairs) and
``DriftTracker`` (the learned shape of one route, and the Drift reports it emits).

Must not: do I/O, read the clock, or reject anything: drift is information for logs, metrics
and alerts (the seed's "it works today" pattern: know when the vendor changed its API before
a customer does). Guards decide acceptance; only accepted documents should be observed.

Choices (not in the spec):
- Integers and floats are both ``number``: a price of 10 then 10.5 is not drift.
- ``null`` is not a type change: a field that is null now and a string before (or after) is
  treated as nullable, never reported as retyped.
- A field is reported removed only when its parent is still there as the same kind of
  container (so an empty list or a null object does not "remove" every field below it).
- A field reported removed that later comes back is optional: it is never reported again.
- Objects with more than ``max_keys`` members are maps keyed by data (e.g. by SKU): their
  members collapse to ``.*`` like array items collapse to ``[*]``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

Shape = frozenset[tuple[str, str]]

_IDENT: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_MAX_REMEMBERED: Final = 1024  # bound on remembered removed/optional paths per tracker


def type_name(value: Any) -> str:
    """The JSON type of a value: object, array, string, number, boolean or null."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    return "array" if isinstance(value, list) else type(value).__name__


def child_path(parent: str, key: object) -> str:
    """``$.a`` + ``b`` -> ``$.a.b``; keys that are not identifiers use ``['...']``."""
    text = str(key)
    if _IDENT.match(text):
        return f"{parent}.{text}"
    escaped = text.replace("\\", "\\\\").replace("'", "\\'")
    return f"{parent}['{escaped}']"


def shape_of(doc: Any, max_depth: int = 4, *, max_items: int = 20, max_keys: int = 64) -> Shape:
    """(path, type) pairs for ``doc``, down to ``max_depth`` steps below ``$``.

    Array items collapse to ``[*]``: the shape is the union over the first ``max_items``.
    A path has one pair per type seen there (e.g. a nullable field gives two).
    """
    out: set[tuple[str, str]] = set()
    _walk(doc, "$", max_depth, max_items, max_keys, out)
    return frozenset(out)


def _walk(node: Any, path: str, depth: int, max_items: int, max_keys: int, out: set[tuple[str, str]]) -> None:
    out.add((path, type_name(node)))
    if depth <= 0:
        return
    if isinstance(node, dict):
        if len(node) > max_keys:
            for value in list(node.values())[:max_items]:
                _walk(value, path + ".*", depth - 1, max_items, max_keys, out)
        else:
            for key, value in node.items():
                _walk(value, child_path(path, key), depth - 1, max_items, max_keys, out)
    elif isinstance(node, list):
        for value in node[:max_items]:
            _walk(value, path + "[*]", depth - 1, max_items, max_keys, out)


@dataclass(frozen=True, slots=True)
class Drift:
    """What changed. Types are joined with ``|`` (``number|string``); tuples sorted by path."""

    added: tuple[tuple[str, str], ...]  # (path, types)
    removed: tuple[tuple[str, str], ...]  # (path, types it had)
    retyped: tuple[tuple[str, str, str], ...]  # (path, old types, new types)

    def summary(self) -> str:
        """One line for logs and alerts."""
        parts = [f"added {p} ({t})" for p, t in self.added]
        parts += [f"removed {p}" for p, _ in self.removed]
        parts += [f"retyped {p} {old}->{new}" for p, old, new in self.retyped]
        return "; ".join(parts)


def _types(types: frozenset[str]) -> str:
    return "|".join(sorted(types))


def _parent(path: str) -> tuple[str, str] | None:
    """The parent path and the container type it must have, or None for ``$``."""
    if path.endswith("[*]"):
        return path[:-3], "array"
    # A quoted key escapes every quote, so "['" cannot occur inside it; names have no dots.
    cut = path.rfind("['") if path.endswith("']") else path.rfind(".")
    return (path[:cut], "object") if cut > 0 else None


class DriftTracker:
    """The learned shape of one route; ``observe`` each accepted document.

    The first observation only learns. Afterwards a change is reported once: the tracker
    adopts the new shape, so the same shape is not reported again on the next request.
    """

    def __init__(self, *, max_depth: int = 4, max_items: int = 20, learned: Shape | None = None) -> None:
        self._max_depth = max_depth
        self._max_items = max_items
        self._learned: dict[str, frozenset[str]] | None = None
        if learned is not None:
            self._learned = _by_path(learned)
        self._gone: dict[str, None] = {}  # reported removed; insertion-ordered for the bound
        self._optional: dict[str, None] = {}  # came back after removal: never reported

    @property
    def shape(self) -> Shape | None:
        """The learned shape (for a status page or a snapshot); None before the first doc."""
        if self._learned is None:
            return None
        return frozenset((p, t) for p, types in self._learned.items() for t in types)

    def observe(self, doc: Any) -> Drift | None:
        new = _by_path(shape_of(doc, self._max_depth, max_items=self._max_items))
        old = self._learned
        if old is None:
            self._learned = new
            return None
        added = [p for p in new if p not in old]
        unseen = [p for p in old if p not in new]
        removed = [p for p in unseen if _observable(p, new)]
        retyped = [p for p in new if p in old and _retyped(old[p], new[p])]
        merged = dict(new)
        for p in unseen:
            if p not in removed:
                merged[p] = old[p]  # could not be seen this time (empty list, null parent)
        for p in new:
            if p in old and not new[p] - {"null"}:
                merged[p] = old[p] | new[p]  # null now: keep what we knew about its type
        self._learned = merged
        reported_added = [p for p in added if self._report_added(p)]
        reported_removed = [p for p in removed if self._report_removed(p)]
        if not (reported_added or reported_removed or retyped):
            return None
        return Drift(
            added=tuple((p, _types(new[p])) for p in sorted(reported_added)),
            removed=tuple((p, _types(old[p])) for p in sorted(reported_removed)),
            retyped=tuple((p, _types(old[p]), _types(new[p])) for p in sorted(retyped)),
        )

    def _report_added(self, path: str) -> bool:
        if path in self._optional:
            return False
        if path in self._gone:
            del self._gone[path]
            _remember(self._optional, path)
            return False
        return True

    def _report_removed(self, path: str) -> bool:
        if path in self._optional:
            return False
        _remember(self._gone, path)
        return True


def _by_path(shape: Shape) -> dict[str, frozenset[str]]:
    grouped: dict[str, set[str]] = {}
    for path, kind in shape:
        grouped.setdefault(path, set()).add(kind)
    return {p: frozenset(kinds) for p, kinds in grouped.items()}


def _observable(path: str, new: dict[str, frozenset[str]]) -> bool:
    """A missing path counts as removed only if its parent is there as the same container."""
    parent = _parent(path)
    if parent is None:
        return False
    parent_path, container = parent
    if container == "array":
        return False  # `[*]` is absent only when every list there is empty: nothing removed
    return container in new.get(parent_path, frozenset())


def _retyped(old: frozenset[str], new: frozenset[str]) -> bool:
    a, b = old - {"null"}, new - {"null"}
    return bool(a) and bool(b) and a != b


def _remember(memory: dict[str, None], path: str) -> None:
    memory[path] = None
    while len(memory) > _MAX_REMEMBERED:
        del memory[next(iter(memory))]
