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

_SANE: Final = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestIds:
    def __init__(self) -> None:
        self.prefix = uuid.uuid4().hex[:12]
        self._prefix = self.prefix.encode("ascii")
        self._last = 0  # a native int when compiled, where `itertools.count` is a call per id

    def of(self, request: Request) -> str:
        """The client's X-Request-Id when it is sane, else ours."""
        known, incoming = request.hint("x-request-id")
        if incoming is None and known:  # none sent (the usual case): ours
            return self.new()
        if not known:  # sent more than once: the first, as before
            incoming = request.headers.get("X-Request-Id")
        if incoming and _SANE.match(incoming):
            return incoming
        return self.new()

    def new(self) -> str:
        return self.new_bytes().decode("ascii")

    def new_bytes(self) -> bytes:
        """The next id, as the fast hit writes it, straight to bytes (`new` decodes these)."""
        self._last += 1
        return b"%b%08x" % (self._prefix, self._last)
