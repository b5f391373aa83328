"""Waiting for an event in tests: bounded, so a broken proxy fails instead of hanging.

Owns: `until` (async) and `until_sync` (threads and subprocesses), the one way a test polls for
a condition it cannot await directly. The bound is a safety net, never the thing under test:
it raises `TimeoutError` and is never an `assert` on elapsed time (tests/unit/test_test_hygiene.py
forbids those). Prefer awaiting an event (`Origin.reached`, `asyncio.Event`) where one exists.
Must not: make time pass for the proxy; the proxy's time is the FakeClock's (`clock.advance`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

SAFETY = 5.0  # seconds: generous, only there so a broken proxy fails instead of hanging


Why = str | Callable[[], str]  # what was awaited, or a function giving it (e.g. a process's output)


def _say(what: Why, condition: object) -> str:
    return (what() if callable(what) else what) or repr(condition)


async def until(condition: Callable[[], bool], timeout: float = SAFETY, what: Why = "") -> None:
    """Yield to the loop until `condition()` holds; TimeoutError after `timeout` real seconds."""
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.001)
    except TimeoutError:
        raise TimeoutError(f"not reached within {timeout}s: {_say(what, condition)}") from None


def until_sync(
    condition: Callable[[], bool], timeout: float = SAFETY, what: Why = "", step: float = 0.05
) -> None:
    """`until` for code outside an event loop (a subprocess, a thread)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not reached within {timeout}s: {_say(what, condition)}")
        time.sleep(step)
