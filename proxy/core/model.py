"""The stored response and its deadlines.

Owns: `Entry`, the one value every cache tier stores, and the small helpers that read it.
Must not: decide anything (that is `freshness`), do I/O, or read the clock.

Deadlines are computed once, when an entry is stored; afterwards every decision is a comparison
with `now`. The store keeps an entry until `keep_until`, so the proxy, not the store, decides what
an entry may be used for.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

Headers = tuple[tuple[str, str], ...]


# Compiled (setup.py), a native class: fields are set directly, and `frozen` costs nothing. In
# pure Python, `frozen` sets each field through `object.__setattr__` (~20k instructions an entry).
@dataclass(frozen=True, slots=True)
class Entry:
    status: int
    headers: Headers  # end-to-end headers as received, hop-by-hop and Age removed
    body: bytes
    stored_at: float  # response_time in RFC 9111 section 4.2.3
    initial_age: float  # corrected_initial_age, RFC 9111 section 4.2.3
    fresh_until: float
    stale_until: float  # stale-while-revalidate deadline, RFC 5861 section 3
    error_until: float  # stale-if-error deadline, RFC 5861 section 4
    keep_until: float  # how long the store keeps it: the latest of every deadline here
    lkg_until: float = 0.0  # last-known-good: may stand in for rejected or failed fetches
    etag: str | None = None
    last_modified: str | None = None
    vary: tuple[str, ...] = ()  # lower-case header names the response varies on
    vary_values: tuple[str, ...] = ()  # the request's values for `vary`, when stored
    url: str = ""  # upstream URL it came from (for logs and invalidation)
    heuristic: bool = False  # fresh by a guess from Last-Modified (RFC 9111 4.2.2), not by the vendor

    def age(self, now: float) -> float:
        """Current age, RFC 9111 section 4.2.3: corrected initial age plus resident time."""
        return self.initial_age + max(0.0, now - self.stored_at)

    def size(self) -> int:
        """Approximate bytes held, for the memory tier's bound."""
        size = len(self.body) + 160
        for key, value in self.headers:  # a plain loop: no generator per stored entry
            size += len(key) + len(value)
        return size

    def header(self, name: str) -> str | None:
        low = name.lower()
        for key, value in self.headers:
            if key.lower() == low:
                return value
        return None

    def with_headers(self, headers: Headers) -> Entry:
        return replace(self, headers=headers)
