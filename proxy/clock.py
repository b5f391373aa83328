"""The only module that reads time.

Owns: the `Clock` seam (wall-clock seconds since the epoch) and `FakeClock` for tests.
Must not: be imported by the pure core; core functions take `now` as an argument instead.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch; HTTP dates (RFC 9110 section 5.6.7) are on this scale."""
        ...


class SystemClock:
    """Real time. `time.time()` because Date, Expires and Age are wall-clock quantities."""

    __slots__ = ()

    def now(self) -> float:
        return time.time()


class FakeClock:
    """A clock that moves only when told to, so tests never sleep to make time pass."""

    __slots__ = ("_now",)

    def __init__(self, start: float | None = None) -> None:
        # Starts at real wall time by default, so Date headers from real servers on loopback
        # give sensible ages; from then on it moves only when told to.
        self._now = float(int(time.time())) if start is None else start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time does not run backwards")
        self._now += seconds

    def set(self, when: float) -> None:
        self._now = when
