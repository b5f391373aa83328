"""Single-flight per key, and the owned, bounded set of background tasks.

Owns: at most one upstream fetch per cache key in this process (request coalescing, as nginx's
`proxy_cache_lock` and Varnish's waiting list), and every task the proxy starts in the
background: each is tracked, bounded, and its exception logged, never lost.
Must not: decide what a result means (the handler does).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger("proxy.flight")


class Tasks:
    """Background tasks owned by the app: bounded, logged, cancelled at shutdown."""

    def __init__(self, limit: int = 1000) -> None:
        self.limit = limit
        self._tasks: set[asyncio.Task[object]] = set()
        self.failures = 0
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Awaitable[T], name: str) -> asyncio.Task[T] | None:
        if len(self._tasks) >= self.limit:
            self.dropped += 1
            log.warning("background task %s dropped: %d already running", name, len(self._tasks))
            if asyncio.iscoroutine(coro):
                coro.close()
            return None
        task: asyncio.Task[T] = asyncio.ensure_future(coro)
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


class Flights(Generic[T]):
    """One in-flight fetch per key; others wait for its result (bounded by the caller)."""

    def __init__(self, tasks: Tasks) -> None:
        self._tasks = tasks
        self._inflight: dict[str, asyncio.Future[T]] = {}
        self.coalesced = 0

    def __contains__(self, key: str) -> bool:
        return key in self._inflight

    def __len__(self) -> int:
        return len(self._inflight)

    def start(self, key: str, fetch: Callable[[], Awaitable[T]]) -> tuple[asyncio.Future[T], bool]:
        """The future for `key` and whether this call started it (True) or joined it (False).

        The fetch runs as its own task so a client that disconnects does not cancel the
        fetch other waiters depend on.
        """
        existing = self._inflight.get(key)
        if existing is not None:
            self.coalesced += 1
            return existing, False
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future

        async def run() -> None:
            try:
                result = await fetch()
            except BaseException as exc:
                if not future.done():
                    future.set_exception(exc)
                    future.exception()  # mark retrieved: waiters may all have gone
                if not isinstance(exc, Exception):
                    raise
            else:
                if not future.done():
                    future.set_result(result)
            finally:
                if self._inflight.get(key) is future:
                    del self._inflight[key]

        task = self._tasks.spawn(run(), name=f"fetch:{key[:80]}")
        if task is None:
            del self._inflight[key]
            future.cancel()
        return future, True
