"""The clock seam's timers: FakeClock's fire only when a test moves it; SystemClock's on real time."""

from __future__ import annotations

import asyncio

import pytest

from proxy.clock import FakeClock, SystemClock


async def test_fake_timer_fires_only_when_advanced_past_it() -> None:
    clock = FakeClock(start=1000.0)
    timer = asyncio.ensure_future(clock.sleep(2.0))
    clock.advance(1.5)
    await asyncio.sleep(0)
    assert not timer.done() and clock.timers() == 1
    clock.advance(0.5)  # exactly at the deadline
    await asyncio.wait_for(timer, 1.0)
    assert clock.timers() == 0


async def test_fake_timers_fire_in_deadline_order_and_set_moves_them() -> None:
    clock = FakeClock(start=0.0)
    fired: list[str] = []
    for name, seconds in (("late", 3.0), ("early", 1.0), ("never", 10.0)):
        clock.sleep(seconds).add_done_callback(lambda _, n=name: fired.append(n))  # type: ignore[attr-defined]
    clock.set(5.0)
    await asyncio.sleep(0)
    assert fired == ["early", "late"] and clock.timers() == 1


async def test_fake_timer_starts_when_set_not_when_awaited() -> None:
    clock = FakeClock(start=0.0)
    pending = clock.sleep(1.0)
    clock.advance(1.0)
    await asyncio.wait_for(pending, 1.0)  # awaited after the fact: already done


async def test_cancelled_fake_timer_is_skipped_and_zero_is_immediate() -> None:
    clock = FakeClock(start=0.0)
    timer = asyncio.ensure_future(clock.sleep(1.0))
    timer.cancel()
    assert clock.timers() == 0
    clock.advance(2.0)  # firing a cancelled timer must not raise InvalidStateError
    await asyncio.wait_for(clock.sleep(0), 1.0)
    await asyncio.wait_for(clock.sleep(-1), 1.0)


async def test_system_timer_resolves_and_cancels() -> None:
    clock = SystemClock()
    await asyncio.wait_for(clock.sleep(0), 1.0)
    timer = asyncio.ensure_future(clock.sleep(3600))
    timer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await timer
