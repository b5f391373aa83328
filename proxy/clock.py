"""The only module that reads time.

Owns: the `Clock` seam (wall-clock seconds since the epoch, and a timer on the same clock) and
`FakeClock` for tests, whose timers fire only when the test advances it.
Must not: be imported by the pure core; core functions take `now` as an argument instead.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Awaitable
from typing import Final


class Clock:
    """The seam every caller reads time through. A base class, not a `Protocol`: compiled,
    `clock.now()` on a `Protocol` is a method looked up by name on each call (~440 instructions,
    read 13 times a miss); on a native base class it is a direct call."""

    __slots__ = ()

    def now(self) -> float:
        """Seconds since the epoch; HTTP dates (RFC 9110 section 5.6.7) are on this scale."""
        raise NotImplementedError

    def sleep(self, seconds: float) -> Awaitable[None]:
        """Resolves once `seconds` have passed on this clock (at once when <= 0).

        The timer starts when this is called, not when it is first awaited, so a deadline set
        now is measured from now whoever awaits it later.
        """
        raise NotImplementedError


_WALL: Final = time.time  # bound once: compiled, a call to it is one C call, no attribute lookup


class SystemClock(Clock):
    """Real time. `time.time()` because Date, Expires and Age are wall-clock quantities."""

    __slots__ = ()

    def now(self) -> float:
        return _WALL()

    def sleep(self, seconds: float) -> Awaitable[None]:
        # A loop timer (monotonic), so a wall-clock step does not stretch or cut the wait.
        loop = asyncio.get_running_loop()  # once: a getpid system call on CPython 3.11
        future: asyncio.Future[None] = loop.create_future()
        handle = loop.call_later(max(0.0, seconds), _wake, future)
        future.add_done_callback(lambda _: handle.cancel())
        return future


class FakeClock(Clock):
    """A clock that moves only when told to, so tests never sleep to make time pass."""

    __slots__ = ("_now", "_order", "_timers")

    def __init__(self, start: float | None = None) -> None:
        # Starts at real wall time by default, so Date headers from real servers on loopback
        # give sensible ages; from then on it moves only when told to.
        self._now = float(int(time.time())) if start is None else start
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []  # a heap by due time
        self._order = itertools.count()  # equal due times fire in the order they were set

    def now(self) -> float:
        return self._now

    def sleep(self, seconds: float) -> Awaitable[None]:
        """A timer that fires when `advance()` or `set()` reaches it, never on wall time."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if seconds <= 0:
            future.set_result(None)
        else:
            heapq.heappush(self._timers, (self._now + seconds, next(self._order), future))
        return future

    def timers(self) -> int:
        """Timers set and not yet fired or cancelled: a test's proof that something waits."""
        return sum(not f.done() for _, _, f in self._timers)

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time does not run backwards")
        self._now += seconds
        self._fire()

    def set(self, when: float) -> None:
        self._now = when
        self._fire()

    def _fire(self) -> None:
        while self._timers and self._timers[0][0] <= self._now:
            _wake(heapq.heappop(self._timers)[2])


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():  # a cancelled sleeper is skipped
        future.set_result(None)
