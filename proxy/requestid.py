"""Request ids (`X-Request-Id`): the client's when it is sane, else ours.

Owns: the id format and the per-process sequence the full path and the fast hits share, so
every answer of one process has a unique id. Ours: a random per-process prefix and a counter;
unique, and cheaper than uuid4 on the hot path.
Must not: log or answer anything.
"""

from __future__ import annotations

import re
import uuid
from typing import Final

from proxy.exchange import Request

_SANE: Final = re.compile(r"[A-Za-z0-9._:-]{1,128}").fullmatch  # not `$`: it lets a final LF by
_HEX: Final = tuple(b"%02x" % byte for byte in range(256))  # each byte's two hex digits


class RequestIds:
    def __init__(self, last: int = 0) -> None:
        """`last`: the counter's start (the first id is `last + 1`)."""
        self.prefix = uuid.uuid4().hex[:12]
        self._prefix = self.prefix.encode("ascii")
        self._last = last  # a native int when compiled, where `itertools.count` is a call per id

    def of(self, request: Request) -> str:
        """The client's X-Request-Id when it is sane, else ours."""
        known, incoming = request.hint("x-request-id")
        if incoming is None and known:  # none sent (the usual case): ours
            return self.new()
        if not known:  # sent more than once: the first, as before
            incoming = request.headers.get("X-Request-Id")
        if incoming and _SANE(incoming):
            return incoming
        return self.new()

    def new(self) -> str:
        return self.new_bytes().decode("ascii")

    def new_bytes(self) -> bytes:
        """The next id, as the fast hit writes it, straight to bytes (`new` decodes these): the
        prefix, then the counter in at least eight hex digits. Its four bytes are looked up and
        joined: compiled, that costs a third of `%08x` formatting, once per request, hits too."""
        self._last = n = self._last + 1
        if n > 0xFFFFFFFF:
            return b"%b%08x" % (self._prefix, n)
        high, mid, low, last = _HEX[n >> 24], _HEX[(n >> 16) & 255], _HEX[(n >> 8) & 255], _HEX[n & 255]
        return b"".join((self._prefix, high, mid, low, last))
