"""The bulkhead's queue (`upstream.Gate`): FIFO within each request's own deadline, on the
injected clock; refused at once only what cannot be answered in time (issue 11, speed and load).
"""

from __future__ import annotations

import asyncio

import pytest

from proxy.clock import FakeClock
from proxy.core.config.model import Timeouts
from proxy.core.errors import Overloaded
from proxy.core.ratelimit import Bulkhead
from proxy.gate import Gate
from proxy.transport import Outbound
from tests.waiting import until

TIMEOUTS = Timeouts(connect=1.0, total=5.0)


def gate(clock: FakeClock, *, active: int = 1, queue: int = 100) -> Gate:
    return Gate(Bulkhead(active, queue), clock, "vendor")


def out(path: str = "/a") -> Outbound:
    return Outbound("GET", path, [])


async def queued(g: Gate, clock: FakeClock, path: str) -> asyncio.Task[Outbound]:
    """A call that found no free slot, waiting in the queue (its deadline watched)."""
    assert not g.enter()
    waiting = g.waiting()
    task = asyncio.ensure_future(g.queue(out(path), TIMEOUTS, clock.now()))
    await until(lambda: g.waiting() == waiting + 1 and clock.timers() == 1, what="the call queued")
    return task


async def test_a_queued_call_runs_when_a_slot_frees_with_what_is_left_of_its_deadline(
    clock: FakeClock,
) -> None:
    g = gate(clock)
    assert g.enter()  # the only slot
    waiting = await queued(g, clock, "/b")
    clock.advance(4.0)  # most of its deadline passes in the queue: still waiting, not refused
    assert not waiting.done()
    assert (g.bulkhead.active, g.bulkhead.queued) == (1, 1)
    g.leave()
    sent = await waiting
    assert sent.path_qs == "/b"
    assert sent.timeout is not None  # 5 s from its start: 1 s left, and no more to connect
    assert sent.timeout.connect == 1.0 and abs(sent.timeout.total - 1.0) < 1e-9
    assert (g.bulkhead.active, g.bulkhead.queued) == (1, 0)
    assert clock.timers() == 0  # its deadline timer is gone with it
    g.leave()
    assert g.is_idle()


async def test_a_queued_call_is_refused_at_its_deadline_and_its_place_is_freed(clock: FakeClock) -> None:
    g = gate(clock)
    assert g.enter()
    waiting = await queued(g, clock, "/b")
    clock.advance(5.0)
    with pytest.raises(Overloaded, match="within the request's deadline") as err:
        await waiting
    assert err.value.retry_after == 1.0
    assert (g.bulkhead.active, g.bulkhead.queued) == (1, 0)
    assert not g.is_idle()  # the first call still runs
    g.leave()
    assert g.is_idle()
    assert g.enter()  # the freed slot is there for the next call: nothing leaked


async def test_the_queue_is_first_in_first_out_and_a_cancelled_place_passes_on(clock: FakeClock) -> None:
    g = gate(clock)
    assert g.enter()
    first = await queued(g, clock, "/1")
    second = await queued(g, clock, "/2")
    third = await queued(g, clock, "/3")
    second.cancel()  # its client went away while it queued
    with pytest.raises(asyncio.CancelledError):
        await second
    assert g.bulkhead.queued == 2
    g.leave()
    assert (await first).path_qs == "/1"
    assert not third.done()
    g.leave()
    assert (await third).path_qs == "/3"
    g.leave()
    assert (g.bulkhead.active, g.bulkhead.queued) == (0, 0) and g.is_idle()


async def test_a_call_that_cannot_meet_its_deadline_is_refused_at_once(clock: FakeClock) -> None:
    g = gate(clock, active=2)
    g.served(2.0)  # exchanges take 2 s lately
    assert g.enter() and g.enter()
    # Places 1..5 over 2 slots, 2 s each: an expected wait of 1, 2, 3, 4, 5 s within 5 s.
    waiting = [await queued(g, clock, f"/{n}") for n in range(5)]
    assert not g.enter()
    with pytest.raises(Overloaded, match="longer than the request's deadline"):
        await g.queue(out("/late"), TIMEOUTS, clock.now())  # 6 s expected: no point in waiting
    assert g.bulkhead.queued == 5  # its place was given back, the others kept theirs
    assert not any(t.done() for t in waiting)
    for task in waiting:
        g.leave()
        await task
    assert g.bulkhead.queued == 0


async def test_a_full_queue_refuses_at_once(clock: FakeClock) -> None:
    g = gate(clock, active=1, queue=1)
    assert g.enter()
    waiting = await queued(g, clock, "/b")
    with pytest.raises(Overloaded, match="too many requests in flight"):
        g.enter()
    assert (g.bulkhead.active, g.bulkhead.queued) == (1, 1)
    g.leave()
    await waiting
    g.leave()


async def test_whoever_waits_for_idle_wakes_when_the_last_call_leaves_not_before(clock: FakeClock) -> None:
    """What a retiring upstream waits on: not while a call runs or queues; at once when none
    does; a waiter that gives up (its grace ran out) is not kept."""
    g = gate(clock)
    await asyncio.wait_for(g.idle(), 1.0)  # nothing in flight: at once
    assert g.enter()
    waiter = asyncio.ensure_future(g.idle())
    gone = asyncio.ensure_future(g.idle())
    second = await queued(g, clock, "/b")
    g.leave()  # the queued call takes the slot: still not idle
    assert (await second).path_qs == "/b"
    await asyncio.sleep(0)
    assert not waiter.done() and not gone.done()
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert len(g._idlers) == 1  # the one that gave up is not kept
    g.leave()
    await asyncio.wait_for(waiter, 1.0)
    assert g.is_idle() and g._idlers == []


async def test_each_queued_call_is_refused_at_its_own_deadline(clock: FakeClock) -> None:
    """The deadlines share one timer: each place still expires at its own time, an earlier
    deadline queued behind a later one first, and no timer is left once nobody waits."""
    g = gate(clock)
    assert g.enter()
    first = await queued(g, clock, "/1")  # due at 5 s
    clock.advance(2.0)
    second = await queued(g, clock, "/2")  # due at 7 s
    assert not g.enter()
    short = Timeouts(connect=1.0, total=1.0)
    third = asyncio.ensure_future(g.queue(out("/3"), short, clock.now()))  # due at 3 s: first out
    await until(lambda: g.waiting() == 3, what="the third call queued")
    assert clock.timers() == 1  # one timer for three deadlines
    clock.advance(1.0)
    with pytest.raises(Overloaded, match="within the request's deadline"):
        await third
    assert not first.done() and not second.done() and g.bulkhead.queued == 2
    clock.advance(2.0)
    with pytest.raises(Overloaded, match="within the request's deadline"):
        await first
    assert not second.done() and g.bulkhead.queued == 1
    clock.advance(1.75)
    await asyncio.sleep(0)
    assert not second.done()
    g.leave()  # a slot frees before its deadline: it runs, with what is left (2 s - 1.75 s)
    sent = await second
    assert sent.path_qs == "/2" and sent.timeout is not None and sent.timeout.total == 0.25
    assert clock.timers() == 0 and g.waiting() == 0
    g.leave()
    assert g.is_idle()


def test_the_time_left_is_the_only_thing_changed_in_the_request() -> None:
    """`Outbound.with_timeout` carries every other field (its `__slots__` name them all)."""
    original = Outbound(
        "POST",
        "/a?b=1",
        [("x-a", "1")],
        b"body",
        TIMEOUTS,
        idempotency_key=True,
        credentials=True,
        offered=lambda name: None,
    )
    shorter = Timeouts(connect=0.5, total=0.5)
    changed = original.with_timeout(shorter)
    assert changed.timeout is shorter
    for name in Outbound.__slots__:
        if name != "timeout":
            assert getattr(changed, name) is getattr(original, name), name
