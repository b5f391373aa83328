"""The deadlines of one public-port connection, on ONE timer, and the time source they read.

Owns: the phase a connection waits in (`header`: a request head is part-way in; `body`: a
request body is arriving; `idle`: kept alive between requests; `none`: we are answering), the
instant that phase expires, and the one timer handle that watches it. Moving a deadline later
never re-arms: the armed timer fires early and re-arms itself (cheaper than cancel-and-schedule
on every request). A body whose reading we paused (backpressure) waits on us, not on the client:
its deadline moves on by the body timeout. The linger timer of a closing connection takes the
same slot, so one `stop` cancels whatever is armed. Beside that slot, the `send` deadline: armed
only while the client's answers wait on it (writing paused), it fires when the client took no
byte of them in `send_timeout` and moves on whenever it took some (nginx's send_timeout: between
two writes that made progress, not for a whole answer). Also `Timer`, the injected time source
(`LoopTimer` in production, a hand-turned one in tests).
Must not: read the wall clock (only the injected `Timer`), or write, close or count anything:
what an expired phase means is the connection's (`expired(phase)`, `listener.Connection`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class Timer(Protocol):
    """The deadlines' time source: the loop in production, a fake one in tests."""

    def now(self) -> float: ...

    def call_at(self, when: float, callback: Callable[[], None]) -> Cancellable: ...


class LoopTimer:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.now = loop.time  # bound once: read on every request

    def call_at(self, when: float, callback: Callable[[], None]) -> Cancellable:
        return self.loop.call_at(when, callback)


class Deadlines:
    """One connection's deadline. `expired(phase)` runs when the phase's time is up; `held()`
    says a body's reading is paused by us (its deadline then moves on by `body_timeout`)."""

    __slots__ = (
        "_armed_at",
        "_body_timeout",
        "_expired",
        "_handle",
        "_held",
        "_now",
        "_send",
        "_timer",
        "deadline",
        "phase",
    )

    def __init__(
        self,
        timer: Timer,
        expired: Callable[[str], None],
        held: Callable[[], bool],
        body_timeout: float,
    ) -> None:
        self._timer = timer
        # Bound once: compiled, `timer.now()` on the `Timer` protocol is a method looked up by
        # name, and `set` runs on every request.
        self._now: Callable[[], float] = timer.now
        self._expired = expired
        self._held = held
        self._body_timeout = body_timeout
        self.phase = "header"
        self.deadline: float | None = None
        self._handle: Cancellable | None = None
        self._armed_at: float | None = None
        self._send: Cancellable | None = None  # armed only while the client's answers wait on it

    def set(self, phase: str, seconds: float) -> None:
        self.phase = phase
        self.deadline = deadline = self._now() + seconds
        armed = self._armed_at
        if armed is None or deadline < armed:
            self._stop_phase()  # not the send deadline: the client's answers may still wait on it
            self._armed_at = deadline
            self._handle = self._timer.call_at(deadline, self._fire)
        # a later deadline: the armed timer fires early and re-arms (cheaper than re-arming)

    def clear(self) -> None:
        """We are answering: no deadline applies (the armed timer, if any, finds none)."""
        self.phase = "none"
        self.deadline = None

    def linger(self, handle: Cancellable) -> None:
        """`handle` (a closing connection's linger) replaces whatever phase is armed."""
        self._stop_phase()
        self._handle = handle

    def stop_timer(self) -> None:
        """Every timer: the connection is gone."""
        self._stop_phase()
        self.flowing()

    def _stop_phase(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = None
        self._armed_at = None

    def stalled(self, seconds: float, backlog: Callable[[], int]) -> None:
        """Writing paused: the client must take some of the `backlog()` bytes within `seconds`,
        every time, or `expired("send")` runs."""
        if self._send is None:
            self._send_after(seconds, backlog, backlog())

    def flowing(self) -> None:
        """Writing resumed (or the connection is gone): no send deadline."""
        if self._send is not None:
            self._send.cancel()
            self._send = None

    def _send_after(self, seconds: float, backlog: Callable[[], int], left: int) -> None:
        def due() -> None:
            now_left = backlog()
            if now_left < left:  # the client took some bytes: another `seconds` from now
                self._send_after(seconds, backlog, now_left)
                return
            self._send = None
            self._expired("send")

        self._send = self._timer.call_at(self._now() + seconds, due)

    def _fire(self) -> None:
        self._handle, self._armed_at = None, None
        deadline = self.deadline
        if deadline is None:
            return
        timer = self._timer
        now = self._now()
        if now < deadline or (self.phase == "body" and self._held()):
            # early, or the body waits on us (reading paused for backpressure), not on the client
            at = deadline if now < deadline else now + self._body_timeout
            self.deadline = self._armed_at = at
            self._handle = timer.call_at(at, self._fire)
            return
        self.deadline = None
        self._expired(self.phase)
