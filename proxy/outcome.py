"""What one fetch came to: `Outcome`, shared by the request that fetched and its coalesced waiters.

Owns: the record, and whether a waiter may be served it (`shareable_for`). Must not: fetch,
store or decide anything (that is `fetch`).
"""

from __future__ import annotations

from proxy.core.errors import ProxyError
from proxy.core.headers import sent_value
from proxy.core.keys import normal_vary
from proxy.core.model import Entry, Headers
from proxy.core.record import Record
from proxy.exchange import Request
from proxy.fetched import Fetched


class Outcome(Record):
    """What one fetch came to, for the request that made it and any coalesced waiters."""

    __slots__ = (
        "detail",
        "entry",
        "error",
        "fetched",
        "interim",
        "key",
        "leader_headers",
        "retries",
        "revalidated",
        "stored",
        "upstream_ms",
        "upstream_status",
    )

    def __init__(
        self,
        entry: Entry | None = None,
        fetched: Fetched | None = None,
        error: ProxyError | None = None,
        stored: bool = False,
        revalidated: bool = False,
        detail: str | None = None,
        upstream_status: int | None = None,
        upstream_ms: float | None = None,
        retries: int = 0,
        key: str | None = None,
        leader_headers: Headers | None = None,
        interim: list[tuple[int, Headers]] | None = None,
    ) -> None:
        self.entry = entry  # stored or revalidated: shareable with coalesced waiters
        self.fetched = fetched  # not storable: for the request that fetched it only
        self.error = error
        self.stored = stored
        self.revalidated = revalidated
        self.detail = detail
        self.upstream_status = upstream_status
        self.upstream_ms = upstream_ms
        self.retries = retries
        self.key = key  # where `entry` was stored (the variant key, once Vary is known)
        # The fetcher's own copy of headers the stored entry withholds (qualified no-cache/private).
        self.leader_headers = leader_headers
        self.interim: list[tuple[int, Headers]] = [] if interim is None else interim  # the vendor's 1xx

    def shareable_for(self, request: Request, configured: Headers) -> bool:
        """Whether a coalesced waiter may be served this outcome: its Vary values, as the vendor
        would get them (`configured`: the upstream's own headers), match the stored variant's."""
        if self.error is not None:
            return True  # the waiter handles the failure with its own copy
        entry = self.entry
        if entry is None:
            return False
        return all(
            normal_vary(name, sent_value(request.headers, name, configured)) == value
            for name, value in zip(entry.vary, entry.vary_values, strict=True)
        )
