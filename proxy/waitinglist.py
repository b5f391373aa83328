"""Waiting for a key's fetch (Varnish's waiting list, nginx's `proxy_cache_lock`).

Owns: how long one request waits for the flight of its key: until the outcome, until the
route's `lock_timeout` (then it fetches alone), or until its `stale_if_slow` budget runs out
(then its copy answers). A wait never cancels the flight: other waiters and the store need it.
Must not: decide the budget (that is `core.decide.slow_budget`) or build answers.
"""

from __future__ import annotations

import asyncio
from typing import Final, TypeVar

from proxy.clock import Clock

T = TypeVar("T")


class Slow:
    """The flight outlived the route's `stale_if_slow`: a sentinel, never an outcome."""


SLOW: Final = Slow()


async def wait(
    future: asyncio.Future[T], clock: Clock, lock_timeout: float | None, budget: float | None
) -> T | Slow:
    """The flight's outcome, or `SLOW` once `budget` seconds pass without it; TimeoutError after
    `lock_timeout`. The budget sleeps on the injected clock, so tests advance it by hand."""
    if budget is None and lock_timeout is None:
        return await _outcome_of(future)
    if budget is None:
        shielded = asyncio.shield(future)
        return await (shielded if lock_timeout is None else asyncio.wait_for(shielded, lock_timeout))
    timer = asyncio.ensure_future(clock.sleep(budget))
    try:
        done, _ = await asyncio.wait(
            (future, timer), timeout=lock_timeout, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        timer.cancel()
    if future in done:  # an answer that arrives with the deadline still wins
        return future.result()
    if timer in done:
        return SLOW
    raise TimeoutError


async def _outcome_of(future: asyncio.Future[T]) -> T:
    """The flight's result, as `shield` would give it, without shield's extra future and task
    machinery: waiting here never cancels the flight (only our own waiter is cancelled)."""
    if not future.done():
        waiter = future.get_loop().create_future()  # the flight's loop, without a getpid

        def wake(_: asyncio.Future[T]) -> None:
            if not waiter.done():
                waiter.set_result(None)

        future.add_done_callback(wake)
        try:
            await waiter
        finally:
            future.remove_done_callback(wake)
    return future.result()
