"""Single-flight per key, and the owned, bounded set of background tasks.

Owns: at most one upstream fetch per cache key in this process (request coalescing, as nginx's
`proxy_cache_lock` and Varnish's waiting list), when each flight started (so every waiter of a
key measures `stale_if_slow` from the same moment and is answered at the same moment), marks on a
flight (so a callback or a log line is attached once however many waiters), and every task
the proxy starts in the background: each is tracked, bounded, and its exception logged, never lost.
Must not: decide what a result means (the handler does), or read the clock (callers pass `now`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Final, Generic, Protocol, TypeVar

T = TypeVar("T")
log = logging.getLogger("proxy.flight")


class _KeepsLoop(Protocol):
    _loop: asyncio.AbstractEventLoop | None


def running(holder: _KeepsLoop) -> asyncio.AbstractEventLoop:
    """The running loop, kept by `holder` rather than asked for per task or flight:
    `asyncio.get_running_loop` is a getpid system call on CPython 3.11. Asked again when the
    kept loop stopped (a test's next loop)."""
    loop = holder._loop
    if loop is None or not loop.is_running():
        loop = holder._loop = asyncio.get_running_loop()
    return loop


class Tasks:
    """Background tasks owned by the app: bounded, logged, cancelled at shutdown."""

    def __init__(self, limit: int = 1000) -> None:
        self.limit = limit
        self._tasks: set[asyncio.Task[object]] = set()
        self.failures = 0
        self.dropped = 0
        self._loop: asyncio.AbstractEventLoop | None = None  # kept, as `Flights` keeps it

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Awaitable[T], name: str, *, bounded: bool = True) -> asyncio.Task[T] | None:
        """Run `coro` as an owned task; None (and the coroutine closed) when it is `bounded` and
        `limit` tasks already run (a caller that bounds its own tasks passes False)."""
        if bounded and len(self._tasks) >= self.limit:
            self.dropped += 1
            log.warning("background task %s dropped: %d already running", name, len(self._tasks))
            if asyncio.iscoroutine(coro):
                coro.close()
            return None
        if asyncio.iscoroutine(coro):  # the usual case, without ensure_future's detour
            task: asyncio.Task[T] = running(self).create_task(coro, name=name)
        else:
            task = asyncio.ensure_future(coro)
            task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[object]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self.failures += 1
            log.error("background task %s failed", task.get_name(), exc_info=exc)

    async def drain(self, timeout: float) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)

    async def cancel_all(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


# Flights are tasks somebody waits for (at least the request that started one, until its
# client goes): bounded by the connections in flight, not by the background budget, which at
# 1,000 concurrent misses turned every further miss into an inline fetch and a warning line.
MAX_FLIGHTS: Final = 10_000  # as many as `server.limits.total` connections by default


class Flights(Generic[T]):
    """One in-flight fetch per key; others wait for its result (bounded by the caller)."""

    def __init__(self, tasks: Tasks, max_flights: int = MAX_FLIGHTS) -> None:
        self._tasks = tasks
        self.max_flights = max_flights
        # None: a flight led inline (`lead`) that nobody has joined yet
        self._inflight: dict[str, asyncio.Future[T] | None] = {}
        self._started: dict[str, float] = {}  # when each flight began, on the caller's clock
        self._marks: dict[str, set[str]] = {}  # per flight: what has been attached to it
        self.coalesced = 0
        self._loop: asyncio.AbstractEventLoop | None = None  # see `running`

    def __contains__(self, key: str) -> bool:
        return key in self._inflight

    def __len__(self) -> int:
        return len(self._inflight)

    def started_at(self, key: str) -> float | None:
        """When the flight for `key` began (the `now` given to `start`), or None."""
        return self._started.get(key)

    def mark(self, key: str, future: asyncio.Future[T], label: str) -> bool:
        """Put `label` on `future`, the flight for `key`: True only the first time, so whoever
        gets True attaches that callback (or writes that log line) exactly once per flight."""
        if self._inflight.get(key) is not future:
            return False
        marks = self._marks.setdefault(key, set())
        if label in marks:
            return False
        marks.add(label)
        return True

    def join(self, key: str) -> asyncio.Future[T] | None:
        """The flight for `key` already under way, or None; a flight led inline gets its
        future here, from its first waiter."""
        inflight = self._inflight
        if key not in inflight:
            return None
        existing = inflight[key]
        if existing is None:
            existing = inflight[key] = running(self).create_future()
        self.coalesced += 1
        return existing

    def lead(self, key: str, now: float = 0.0) -> bool:
        """Open a flight for `key` (none may be under way) that the caller runs itself and ends
        with `end`; False when `max_flights` are in flight: fetch uncoalesced, end nothing.
        No future exists until a request joins: most misses have no waiter, and a future
        made, resolved and freed cost ~2,000 instructions a miss (issue 11)."""
        if self._full(key):
            return False
        self._inflight[key] = None
        self._started[key] = now
        return True

    def end(self, key: str, result: T | None, exc: BaseException | None) -> None:
        """End the flight `lead` opened: whoever joined gets `result`, or `exc`. Between `lead`
        and `end` the key's flight is the leader's (only an end forgets one): a second `end`
        finds none and changes nothing."""
        inflight = self._inflight
        if key not in inflight:
            return
        future = inflight[key]
        self._forget(key)
        if future is not None:
            _resolve(future, result, exc)

    def open(self, key: str, now: float = 0.0) -> asyncio.Future[T]:
        """A new flight for `key` (none may be under way) with its future, for a fetch run as
        a task (`start`), ended with `land`; a cancelled future when `max_flights` are in
        flight: fetch uncoalesced."""
        future: asyncio.Future[T] = running(self).create_future()
        if self._full(key):
            future.cancel()
            return future
        self._inflight[key] = future
        self._started[key] = now
        return future

    def land(self, key: str, future: asyncio.Future[T], result: T | None, exc: BaseException | None) -> None:
        """End the flight `open` gave: its waiters get `result`, or `exc`."""
        _resolve(future, result, exc)
        if self._inflight.get(key) is future:
            self._forget(key)

    def _full(self, key: str) -> bool:
        if len(self._inflight) < self.max_flights:
            return False
        self._tasks.dropped += 1
        log.warning("flight for %s not started: %d already in flight", key[:80], len(self._inflight))
        return True

    def start(
        self, key: str, fetch: Callable[[], Awaitable[T]], now: float = 0.0
    ) -> tuple[asyncio.Future[T], bool]:
        """The future for `key` and whether this call started it (True) or joined it (False).

        The fetch runs as its own task, for callers that may stop waiting before it ends (a
        `stale_if_slow` budget, a background refresh): the fetch goes on for the store and the
        other waiters. A caller that waits to the end leads inline instead (`open`, `land`).
        """
        existing = self.join(key)
        if existing is not None:
            return existing, False
        future = self.open(key, now)
        if future.cancelled():
            return future, True

        async def run() -> None:
            try:
                result = await fetch()
            except BaseException as exc:
                self.land(key, future, None, exc)
                if not isinstance(exc, Exception):
                    raise
            else:
                self.land(key, future, result, None)

        self._tasks.spawn(run(), f"fetch:{key[:80]}", bounded=False)
        return future, True

    def _forget(self, key: str) -> None:
        # `del` after `in`, not `.pop(key, None)`: compiled, that is a method called by name.
        del self._inflight[key]
        if key in self._started:
            del self._started[key]
        if key in self._marks:
            del self._marks[key]


def _resolve(future: asyncio.Future[T], result: T | None, exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
        future.exception()  # mark retrieved: waiters may all have gone
    else:
        future.set_result(result)  # type: ignore[arg-type]
