"""The field lines of one response that caching reads, read in one pass.

Owns: `Fields`, a response's header fields as the cache sees them: the lower-case name of every
line, and the lines of the names that freshness, storability, Vary and Cache-Control (with the
route's targeted fields, RFC 9213) read, by name. A miss reads the same few fields a dozen
times (Date, Age, Expires, ETag, Last-Modified, Vary, Set-Cookie, Cache-Control, Connection):
one pass over the lines, one `lower()` each, instead of a scan per question (issue 11). The
same pass keeps the lines the store keeps, so the stored headers cost no pass of their own.
Must not: interpret any value (that is `freshness`, `cachecontrol`), do I/O or read the clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from proxy.core.headers import HOP_BY_HOP, among, connection_tokens
from proxy.core.model import Headers

# The names whose lines are kept by name; any other is found by a scan when asked (`first`).
READ: Final = frozenset(
    {
        "age",
        "cache-control",
        "connection",
        "content-type",
        "date",
        "etag",
        "expires",
        "last-modified",
        "set-cookie",
        "vary",
    }
)
_NO_LINES: Final[list[str]] = []


class Fields:
    """`headers` read once: `lines` (the values of each name in `READ` or in `targets`, in
    order) and `lows` (each line's lower-case name). The same pass keeps the lines
    `without(drop)` gives for the `drop` passed here (the store's), so the stored headers cost
    no second pass; `without` with any other set filters afresh. `lows`, when the caller has
    them (the parser's, `Fetched.lows()`), are the lower-case names of `headers` in order: no
    name is lowered again. Treat as immutable."""

    __slots__ = ("_asked", "_dropped", "_kept", "_lows", "headers", "lines", "targets")

    def __init__(
        self,
        headers: Headers,
        targets: tuple[str, ...] = (),
        drop: frozenset[str] = HOP_BY_HOP,
        lows: Sequence[str] | None = None,
    ) -> None:
        self.headers = headers
        self.targets = targets
        self._asked = drop
        if drop is not HOP_BY_HOP and not drop >= HOP_BY_HOP:
            drop = drop | HOP_BY_HOP
        kept: list[tuple[str, str]] = []
        lines: dict[str, list[str]] = {}
        if lows is None:
            lows = [key.lower() for key, _ in headers]
        elif len(lows) != len(headers):
            raise ValueError("one lower-case name per field line")
        # By index, not zip(strict=True): its keyword parsing costs more than the pass (3.11).
        for i, low in enumerate(lows):
            pair = headers[i]
            if low not in drop:
                kept.append(pair)
            if low in READ or among(low, targets):
                found = lines.get(low)
                if found is None:
                    lines[low] = [pair[1]]
                else:
                    found.append(pair[1])
        self._lows = lows
        # Read-only by convention. A dict, not a Mapping: compiled, `.get` on a Mapping is a
        # method looked up by name (~230 instructions), on a dict a direct call.
        self.lines: dict[str, list[str]] = lines
        if "connection" in lines:  # names it lists are hop-by-hop as well (RFC 9110 7.6.1)
            drop = drop | connection_tokens(("connection", v) for v in lines["connection"])
            kept = [pair for pair, low in zip(headers, lows, strict=True) if low not in drop]
        self._dropped = drop
        self._kept = kept

    @property
    def lows(self) -> Sequence[str]:
        """Each line's lower-case name, in order (the caller's, or lowered in the pass)."""
        return self._lows

    def first(self, name: str) -> str | None:
        """The first value of `name` (lower-case), as `freshness.header` finds it."""
        found = self.lines.get(name)
        if found is not None:
            return found[0]
        if name in READ or among(name, self.targets):
            return None
        for low, (_, value) in zip(self.lows, self.headers, strict=True):
            if low == name:
                return value
        return None

    def all(self, name: str) -> list[str]:
        """Every value of `name` (one of `READ` or the targets), in order; do not mutate."""
        assert name in READ or among(name, self.targets), name
        return self.lines.get(name, _NO_LINES)

    def has(self, name: str) -> bool:
        return self.first(name) is not None

    def dropped(self, drop: frozenset[str]) -> frozenset[str]:
        """Every name `without(drop)` leaves out: `drop`, the hop-by-hop names (RFC 9110 7.6.1)
        and the names listed in Connection. `drop` may already hold `HOP_BY_HOP` (a
        precomputed union costs nothing per call)."""
        if drop is self._asked:
            return self._dropped  # what the pass worked out
        connection = self.lines.get("connection")
        if connection:
            drop = drop | connection_tokens(("connection", v) for v in connection)
        if not drop >= HOP_BY_HOP:
            drop = drop | HOP_BY_HOP
        return drop

    def without(self, drop: frozenset[str]) -> Headers:
        """The lines whose name is not hop-by-hop, not named in Connection and not in `drop`:
        `headers.end_to_end(headers, drop)` without lowering names again."""
        return self.kept(self.dropped(drop))

    def kept(self, dropped: frozenset[str]) -> Headers:
        """The lines whose name is not in `dropped` (what `dropped` gave: nothing added); for
        the very set the pass dropped, the lines it kept."""
        if dropped is self._dropped:
            return tuple(self._kept)
        return tuple([pair for pair, low in zip(self.headers, self.lows, strict=True) if low not in dropped])
