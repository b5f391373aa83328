"""Connection admission for the public listener, and the limits its deadlines use: pure decisions.

Owns: how many connections one client address and the whole listener may hold (excess load is
shed with a fast answer, never queued), the limits of a request head and body and the deadlines
that cut slow clients (a head must arrive within `header_timeout` of its first byte, as nginx's
client_header_timeout and Node's headersTimeout; a body within `body_timeout` of its head; a
client whose answers wait must take some of their bytes within `send_timeout`, as nginx's
send_timeout), and how often shed load is reported. Framing is llhttp's, with our refusals on
top, in `listener`.
Must not: do I/O, read the clock (every method that needs time takes `now`), or know routes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True, slots=True)
class ConnLimits:
    per_address: int = 1024  # server.limits.per_client
    total: int = 10_000
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    send_timeout: float = 60.0  # nginx's send_timeout: a client that takes no byte of its answers
    max_head: int = 65_536  # well above what the handler accepts (4 KB target + 16 KB of headers)
    max_lingering: int = 1024  # shed connections being answered at once; beyond that, reset
    linger: float = 1.0  # how long a shed connection may take to read its 503

    def __post_init__(self) -> None:
        for name in ("per_address", "total", "max_head"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in ("header_timeout", "body_timeout", "send_timeout", "linger"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")


class Admission(Enum):
    OK = "ok"
    PER_ADDRESS = "per_address"
    TOTAL = "total"


class ConnTable:
    """Open connections per client address and in total; an address with none is forgotten,
    so the table's size is bounded by the open connections, whatever the traffic."""

    __slots__ = ("_by_address", "limits", "open", "peak")

    def __init__(self, limits: ConnLimits) -> None:
        self.limits = limits
        self._by_address: dict[str, int] = {}
        self.open = 0
        self.peak = 0

    def admit(self, address: str) -> Admission:
        if self.open >= self.limits.total:
            return Admission.TOTAL
        held = self._by_address.get(address, 0)
        if held >= self.limits.per_address:
            return Admission.PER_ADDRESS
        self._by_address[address] = held + 1
        self.open += 1
        self.peak = max(self.peak, self.open)
        return Admission.OK

    def release(self, address: str) -> None:
        held = self._by_address.get(address, 0)
        if held <= 0:
            return
        if held == 1:
            del self._by_address[address]
        else:
            self._by_address[address] = held - 1
        self.open -= 1

    def count(self, address: str) -> int:
        return self._by_address.get(address, 0)

    @property
    def addresses(self) -> int:
        return len(self._by_address)


class Throttle:
    """At most one report per `interval` seconds; counts the ones it held back."""

    __slots__ = ("held", "interval", "next_at")

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.next_at = -math.inf
        self.held = 0

    def allow(self, now: float) -> int | None:
        """None: stay quiet. Else: report now, mentioning this many held back."""
        if now < self.next_at:
            self.held += 1
            return None
        held, self.held, self.next_at = self.held, 0, now + self.interval
        return held
