"""The bulkhead's admission toward one upstream: a slot, a place in the queue, or a 503.

Owns: `Gate`, the shell around the pure `ratelimit.Bulkhead` counts: the FIFO queue of calls
waiting for a slot, each within its own request's deadline on the injected clock, the recent
exchange time that refuses at once what cannot be served in time, and the signal a retiring
upstream waits for (no call in flight or queued).
Must not: send anything, retry, or read the breaker (that is `upstream`).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import deque
from typing import Final

from proxy.clock import Clock
from proxy.core.config.model import Timeouts
from proxy.core.errors import Overloaded
from proxy.core.ratelimit import Bulkhead
from proxy.transport import Outbound

_INF: Final = float("inf")


class Gate:
    """Bulkhead admission (the protocol in `ratelimit.Bulkhead`): a slot at once, else a place
    in a FIFO queue for as long as the request's own deadline allows, else a 503 at once.

    "Reject only what cannot meet its deadline": a queued call waits at most its upstream
    timeout (`total`), measured on the injected clock from when the attempt began, and the
    exchange then gets only what is left of it, so queueing never stretches a request past
    its deadline. A call whose expected wait (its place in the queue over the slots, times the
    recent exchange time, an EWMA) already exceeds that deadline is refused at once, with
    Retry-After, instead of holding a client until it times out. `max_queue` stays a hard cap.

    The healthy path (a free slot, nobody queued) is `enter`, `leave` and `served`: no event to
    clear and set per exchange; only a retiring upstream waits for `idle`, and only then is
    there a future to resolve. A queued call costs one future: the deadlines share one timer,
    armed for the earliest (a heap), not one timer per call (issue 11: a thousand connections
    over two hundred slots queue most calls).
    """

    EWMA = 0.1  # weight of the newest exchange time in `service`

    def __init__(self, bulkhead: Bulkhead, clock: Clock, name: str) -> None:
        self.bulkhead, self.clock, self.name = bulkhead, clock, name
        # Each place in line is a future: True when a slot is free for it, False at its deadline.
        self._waiting: deque[asyncio.Future[bool]] = deque()
        self._deadlines: list[tuple[float, int, asyncio.Future[bool]]] = []  # a heap by due time
        self._order = itertools.count()  # equal deadlines expire in the order they queued
        self._timer: asyncio.Future[None] | None = None  # fires at `_due`, the earliest deadline
        self._due = _INF
        self._idlers: list[asyncio.Future[None]] = []  # whoever awaits `idle()`, until it is
        self.service = 0.0  # seconds an exchange has been taking lately (0: no sample yet)

    def enter(self) -> bool:
        """A slot now (True); False: the caller holds a place in the queue and must `queue`,
        which also refuses what the queue cannot hold."""
        verdict = self.bulkhead.try_enter()
        if verdict == "run":
            return True
        if verdict == "reject":
            raise Overloaded(f"too many requests in flight toward {self.name}", retry_after=1.0)
        return False

    def waiting(self) -> int:
        """Calls waiting in the queue now (a place taken by `enter`, not yet given up)."""
        return sum(not turn.done() for turn in self._waiting)

    async def queue(self, out: Outbound, timeouts: Timeouts, started: float) -> Outbound:
        """Wait for a slot until `started + timeouts.total`; the request to send with the time
        left, or Overloaded. Cancelled while waiting: the place is given up, nothing leaks."""
        bulkhead = self.bulkhead
        deadline = started + timeouts.total
        budget = deadline - self.clock.now()
        expected = self.service * bulkhead.queued / bulkhead.max_active  # `queued` counts us
        if budget <= 0 or expected > budget:
            self._give_up()
            raise Overloaded(
                f"toward {self.name}: the queue is longer than the request's deadline", retry_after=1.0
            )
        loop = asyncio.get_running_loop()
        turn: asyncio.Future[bool] = loop.create_future()
        self._waiting.append(turn)
        self._expire_at(deadline, budget, turn)
        queued = True  # still counted in the bulkhead's queue
        try:
            while await turn:  # a slot is free (False: the deadline came first)
                if bulkhead.try_promote():
                    queued = False
                    break
                turn = loop.create_future()  # taken meanwhile: first in line again
                self._waiting.appendleft(turn)
                self._expire_at(deadline, deadline - self.clock.now(), turn)
        finally:
            if not turn.done():  # cancelled: a wake-up sent later goes on to the next in line
                turn.cancel()
            if queued:  # the deadline, or cancelled in the queue: the place is given back
                self._give_up()
            if not bulkhead.queued:  # nobody waits: no deadline to watch
                self._disarm()
        left = deadline - self.clock.now()
        if queued or left <= 0:
            if not queued:  # promoted just as its time ran out: the slot goes to the next
                self.leave()
            raise Overloaded(
                f"no free connection toward {self.name} within the request's deadline", retry_after=1.0
            )
        if left >= timeouts.total:
            return out
        return out.with_timeout(Timeouts(connect=min(timeouts.connect, left), total=left))

    def leave(self) -> None:
        if self.bulkhead.leave():
            self._wake_one()
        elif self._idlers:
            self._maybe_idle()

    def served(self, seconds: float) -> None:
        self.service += self.EWMA * (seconds - self.service) if self.service else seconds

    def is_idle(self) -> bool:
        """No call in flight and none queued."""
        return self.bulkhead.idle

    async def idle(self) -> None:
        """Returns once no call is in flight or queued (at once if none is)."""
        if self.bulkhead.idle:
            return
        idler: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._idlers.append(idler)
        try:
            await idler
        finally:
            if idler in self._idlers:  # cancelled (a retire's grace ran out): not kept
                self._idlers.remove(idler)

    def _give_up(self) -> None:
        if self.bulkhead.dequeue():
            self._wake_one()
        elif self._idlers:
            self._maybe_idle()

    def _wake_one(self) -> None:
        while self._waiting:
            turn = self._waiting.popleft()
            if not turn.done():
                turn.set_result(True)
                return

    def _maybe_idle(self) -> None:
        if self.bulkhead.idle:
            idlers, self._idlers = self._idlers, []
            for idler in idlers:
                if not idler.done():
                    idler.set_result(None)

    def _expire_at(self, deadline: float, delay: float, turn: asyncio.Future[bool]) -> None:
        """`turn` resolves False at `deadline` (`delay` from now) unless resolved before."""
        heap = self._deadlines
        if len(heap) > 2 * self.bulkhead.queued + 64:  # mostly places served long ago: drop them
            heap[:] = [entry for entry in heap if not entry[2].done()]
            heapq.heapify(heap)
        heapq.heappush(heap, (deadline, next(self._order), turn))
        if deadline < self._due:
            self._arm(deadline, delay)

    def _arm(self, due: float, delay: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        timer = self._timer = asyncio.ensure_future(self.clock.sleep(delay))
        self._due = due
        timer.add_done_callback(self._expire)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._due = _INF
        self._deadlines.clear()

    def _expire(self, timer: asyncio.Future[None]) -> None:
        """The timer for `_due` fired: every place due by then is refused (resolved False)."""
        if timer is not self._timer or timer.cancelled():
            return  # replaced by an earlier deadline, or nobody waits any more
        self._timer, due, self._due = None, self._due, _INF
        limit = max(due, self.clock.now())
        heap = self._deadlines
        while heap and (heap[0][0] <= limit or heap[0][2].done()):
            turn = heapq.heappop(heap)[2]
            if not turn.done():
                turn.set_result(False)
        if heap:
            self._arm(heap[0][0], heap[0][0] - self.clock.now())
