"""The stored response and its deadlines.

Owns: `Entry`, the one value every cache tier stores, and the small helpers that read it.
Must not: decide anything (that is `freshness`), do I/O, or read the clock.

Deadlines are computed once, when an entry is stored; afterwards every decision is a comparison
with `now`. The store keeps an entry until `keep_until`, so the proxy, not the store, decides what
an entry may be used for.
"""

from __future__ import annotations

from typing import Final

from proxy.core.record import Frozen

Headers = tuple[tuple[str, str], ...]


class Entry(Frozen):
    """A stored response; immutable (`Final` fields, see `record`)."""

    __slots__ = (
        "body",
        "error_until",
        "etag",
        "fresh_until",
        "headers",
        "heuristic",
        "initial_age",
        "keep_until",
        "last_modified",
        "lkg_until",
        "stale_until",
        "status",
        "stored_at",
        "url",
        "vary",
        "vary_values",
    )

    def __init__(
        self,
        status: int,
        headers: Headers,
        body: bytes,
        stored_at: float,
        initial_age: float,
        fresh_until: float,
        stale_until: float,
        error_until: float,
        keep_until: float,
        lkg_until: float = 0.0,
        etag: str | None = None,
        last_modified: str | None = None,
        vary: tuple[str, ...] = (),
        vary_values: tuple[str, ...] = (),
        url: str = "",
        heuristic: bool = False,
    ) -> None:
        self.status: Final = status
        self.headers: Final = headers  # end-to-end headers as received, hop-by-hop and Age removed
        self.body: Final = body
        self.stored_at: Final = stored_at  # response_time in RFC 9111 section 4.2.3
        self.initial_age: Final = initial_age  # corrected_initial_age, RFC 9111 section 4.2.3
        self.fresh_until: Final = fresh_until
        self.stale_until: Final = stale_until  # stale-while-revalidate deadline, RFC 5861 section 3
        self.error_until: Final = error_until  # stale-if-error deadline, RFC 5861 section 4
        self.keep_until: Final = keep_until  # how long the store keeps it: the latest deadline here
        self.lkg_until: Final = lkg_until  # last-known-good: may stand in for rejected or failed fetches
        self.etag: Final = etag
        self.last_modified: Final = last_modified
        self.vary: Final = vary  # lower-case header names the response varies on
        self.vary_values: Final = vary_values  # the request's values for `vary`, when stored
        self.url: Final = url  # upstream URL it came from (for logs and invalidation)
        self.heuristic: Final = heuristic  # fresh by a guess from Last-Modified (RFC 9111 4.2.2)

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
        size = len(low)
        for key, value in self.headers:
            if len(key) == size and key.lower() == low:  # lower-cased only when it may match
                return value
        return None

    def with_headers(self, headers: Headers) -> Entry:
        return self.replaced(headers=headers)
