"""Token bucket refill, burst and 429 penalties; bulkhead accounting."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.core.ratelimit import Bulkhead, TokenBucket


def drain(bucket: TokenBucket, now: float) -> int:
    """How many single tokens can be taken at `now` (bounded so a bug cannot hang)."""
    taken = 0
    while taken < 10_000 and bucket.try_take(now):
        taken += 1
    return taken


@pytest.mark.parametrize(
    ("per_second", "burst", "first_at", "then_at", "expected"),
    [
        (10.0, 5, 0.0, 0.0, 0),  # empty right after the burst
        (10.0, 5, 0.0, 0.1, 1),
        (10.0, 5, 0.0, 0.3, 3),  # 0.3 * 10 is a hair under 3 in floats
        (10.0, 5, 0.0, 0.35, 3),
        (10.0, 5, 0.0, 10.0, 5),  # never more than burst
        (0.5, 2, 100.0, 101.0, 0),
        (0.5, 2, 100.0, 102.0, 1),
        (1000.0, 100, 0.0, 0.05, 50),
    ],
)
def test_refill_and_burst(
    per_second: float, burst: int, first_at: float, then_at: float, expected: int
) -> None:
    bucket = TokenBucket(per_second, burst)
    assert drain(bucket, first_at) == burst  # starts full
    assert drain(bucket, then_at) == expected


@pytest.mark.parametrize(
    ("taken", "now", "n", "expected"),
    [
        (0, 0.0, 1.0, 0.0),
        (4, 0.0, 1.0, 0.0),  # one left
        (5, 0.0, 1.0, 0.1),
        (5, 0.0, 3.0, 0.3),
        (5, 0.05, 1.0, 0.05),
        (5, 0.0, 6.0, math.inf),  # more than the bucket can ever hold
        (2, 0.0, 3.0, 0.0),
        (3, 0.0, 3.0, 0.1),
    ],
)
def test_wait_time(taken: int, now: float, n: float, expected: float) -> None:
    bucket = TokenBucket(10.0, 5)
    for _ in range(taken):
        assert bucket.try_take(0.0)
    assert bucket.wait_time(now, n) == pytest.approx(expected)


def test_take_is_all_or_nothing() -> None:
    bucket = TokenBucket(1.0, 3)
    assert bucket.try_take(0.0, 2.0)
    assert not bucket.try_take(0.0, 2.0)  # one left: nothing taken
    assert bucket.try_take(0.0, 1.0)
    assert bucket.tokens(0.0) == pytest.approx(0.0)


def test_clock_stepping_back_refills_nothing() -> None:
    bucket = TokenBucket(10.0, 5)
    drain(bucket, 10.0)
    assert drain(bucket, 9.0) == 0
    assert drain(bucket, 10.1) == 1


@pytest.mark.parametrize(
    ("until", "probe_at", "available"),
    [(5.0, 4.9, 0), (5.0, 5.0, 0), (5.0, 5.1, 1), (5.0, 6.0, 5), (0.5, 1.0, 5)],
)
def test_penalise_blocks_until_then_refills_from_empty(until: float, probe_at: float, available: int) -> None:
    bucket = TokenBucket(10.0, 5)
    bucket.penalise(0.0, until)  # a full bucket does not help against a vendor 429
    assert drain(bucket, probe_at) == available


def test_penalise_wait_time_and_longest_penalty_wins() -> None:
    bucket = TokenBucket(10.0, 5)
    bucket.penalise(1.0, 4.0)
    assert bucket.wait_time(1.0) == pytest.approx(3.1)
    bucket.penalise(2.0, 3.0)  # a shorter Retry-After does not cut the first one short
    assert bucket.wait_time(2.0) == pytest.approx(2.1)
    assert not bucket.try_take(3.5)
    assert bucket.try_take(4.1)


def test_penalise_in_the_past_still_empties() -> None:
    bucket = TokenBucket(10.0, 5)
    bucket.penalise(3.0, 2.0)
    assert not bucket.try_take(3.0)
    assert bucket.wait_time(3.0) == pytest.approx(0.1)


@given(steps=st.lists(st.tuples(st.floats(0.0, 2.0), st.floats(0.1, 3.0)), min_size=1, max_size=40))
def test_wait_time_is_honest(steps: list[tuple[float, float]]) -> None:
    """After waiting wait_time(), the take succeeds; just before, it does not."""
    bucket = TokenBucket(4.0, 3)
    now = 0.0
    for dt, n in steps:
        now += dt
        wait = bucket.wait_time(now, n)
        if wait == 0.0:
            assert bucket.try_take(now, n)
        else:
            assert not bucket.try_take(now, n)
            if wait > 1e-6:
                assert not bucket.try_take(now + wait - 1e-6, n)
            assert bucket.try_take(now + wait, n)
            now += wait
        assert -1e-9 <= bucket.tokens(now) <= 3


@pytest.mark.parametrize(("per_second", "burst"), [(0.0, 1), (-1.0, 1), (1.0, 0), (float("nan"), 1)])
def test_bucket_rejects_nonsense(per_second: float, burst: int) -> None:
    with pytest.raises(ValueError):
        TokenBucket(per_second, burst)


def test_bucket_rejects_nonpositive_n() -> None:
    bucket = TokenBucket(1.0, 1)
    with pytest.raises(ValueError):
        bucket.try_take(0.0, 0.0)
    with pytest.raises(ValueError):
        bucket.wait_time(0.0, -1.0)


# -- bulkhead ----------------------------------------------------------------------------------


def test_bulkhead_runs_then_queues_then_rejects() -> None:
    b = Bulkhead(max_active=2, max_queue=1)
    assert [b.try_enter() for _ in range(4)] == ["run", "run", "queue", "reject"]
    assert (b.active, b.queued) == (2, 1)


def test_bulkhead_leave_wakes_and_promotes_a_waiter() -> None:
    b = Bulkhead(max_active=1, max_queue=2)
    assert b.try_enter() == "run"
    assert b.try_enter() == "queue"
    assert b.try_promote() is False  # still busy
    assert b.leave() is True  # someone waits and a slot is free
    # A newcomer does not overtake the waiter that was just woken.
    assert b.try_enter() == "queue"
    assert b.try_promote() is True
    assert (b.active, b.queued) == (1, 1)
    assert b.leave() is True
    assert b.try_promote() is True
    assert b.leave() is False  # nobody left waiting
    assert (b.active, b.queued) == (0, 0)
    assert b.try_enter() == "run"


def test_bulkhead_dequeue_hands_the_slot_on() -> None:
    b = Bulkhead(max_active=1, max_queue=3)
    b.try_enter()
    b.try_enter()
    b.try_enter()
    assert b.dequeue() is False  # gave up while the slot is still busy
    assert b.leave() is True
    assert b.dequeue() is False  # the woken waiter timed out, and nobody else waits
    assert (b.active, b.queued) == (0, 0)
    b.try_enter()
    b.try_enter()
    b.try_enter()
    b.leave()  # wakes a waiter...
    assert b.dequeue() is True  # ...which gave up: the next one must be woken instead
    assert b.try_promote() is True


def test_bulkhead_zero_queue_rejects_at_capacity() -> None:
    b = Bulkhead(max_active=1, max_queue=0)
    assert b.try_enter() == "run"
    assert b.try_enter() == "reject"


@pytest.mark.parametrize("call", ["leave", "dequeue", "try_promote"])
def test_bulkhead_unbalanced_calls_raise(call: str) -> None:
    b = Bulkhead(max_active=1, max_queue=1)
    with pytest.raises(RuntimeError):
        getattr(b, call)()


@pytest.mark.parametrize(("max_active", "max_queue"), [(0, 1), (1, -1)])
def test_bulkhead_rejects_nonsense(max_active: int, max_queue: int) -> None:
    with pytest.raises(ValueError):
        Bulkhead(max_active, max_queue)


@given(st.lists(st.sampled_from(["enter", "promote", "dequeue", "leave"]), max_size=80))
def test_bulkhead_counts_stay_within_bounds(ops: list[str]) -> None:
    b = Bulkhead(max_active=3, max_queue=2)
    running = waiting = 0  # the model: callers in each state
    for op in ops:
        if op == "enter":
            verdict = b.try_enter()
            running += verdict == "run"
            waiting += verdict == "queue"
        elif op == "promote" and waiting:
            if b.try_promote():
                waiting, running = waiting - 1, running + 1
        elif op == "dequeue" and waiting:
            b.dequeue()
            waiting -= 1
        elif op == "leave" and running:
            b.leave()
            running -= 1
        assert (b.active, b.queued) == (running, waiting)
        assert 0 <= running <= 3 and 0 <= waiting <= 2
