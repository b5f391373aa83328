"""Circuit breaker: table tests with explicit `now`, plus a stateful hypothesis model."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    rule,
)

from proxy.core.breaker import (
    BreakerPolicy,
    CircuitBreaker,
    Permit,
    SlidingCounts,
    State,
    Transition,
    is_failure_status,
)

POLICY = BreakerPolicy(
    failure_rate=0.5,
    minimum_calls=4,
    window=10.0,
    slow_call=2.0,
    open_for=5.0,
    half_open_probes=2,
)


def call(b: CircuitBreaker, now: float, ok: bool, duration: float = 0.1) -> Transition | None:
    permit = b.acquire(now)
    assert permit is not None and not permit.probe
    return b.record(permit, now, ok=ok, duration=duration)


def tripped(now: float = 0.0, policy: BreakerPolicy = POLICY) -> CircuitBreaker:
    """A breaker that opened at `now` after minimum_calls failures."""
    b = CircuitBreaker("up", policy)
    for _ in range(policy.minimum_calls):
        call(b, now, ok=False)
    assert b.state(now) is State.OPEN
    b.drain_transitions()
    return b


@pytest.mark.parametrize(
    ("status", "failure"),
    [
        (200, False),
        (304, False),
        (400, False),
        (404, False),
        (429, True),
        (499, False),
        (500, True),
        (502, True),
        (503, True),
        (599, True),
    ],
)
def test_is_failure_status(status: int, failure: bool) -> None:
    assert is_failure_status(status) is failure


@pytest.mark.parametrize(
    ("outcomes", "state"),
    [
        ([False] * 3, State.CLOSED),  # 100% failures but below minimum_calls
        ([False] * 4, State.OPEN),  # minimum reached, 100%
        ([True, True, False, False], State.OPEN),  # exactly the rate: >= opens
        ([True, True, True, False], State.CLOSED),  # 25% < 50%
        ([True] * 10, State.CLOSED),
        ([True] * 6 + [False] * 3, State.CLOSED),  # 3/9 < 50%
        ([True] * 6 + [False] * 6, State.OPEN),  # 6/12
    ],
)
def test_closed_to_open_by_rate_and_minimum(outcomes: list[bool], state: State) -> None:
    b = CircuitBreaker("up", POLICY)
    for ok in outcomes:
        call(b, 1.0, ok)
    assert b.state(1.0) is state


def test_opening_transition_is_returned_and_drained() -> None:
    b = CircuitBreaker("up", POLICY)
    results = [call(b, 3.0, ok=False) for _ in range(4)]
    assert results[:3] == [None, None, None]
    opened = results[3]
    assert opened is not None
    assert (opened.upstream, opened.old, opened.new, opened.at) == ("up", State.CLOSED, State.OPEN, 3.0)
    assert b.drain_transitions() == [opened]
    assert b.drain_transitions() == []


@pytest.mark.parametrize(
    ("ok", "duration", "state"),
    [
        (True, 1.99, State.CLOSED),
        (True, 2.0, State.OPEN),
        (True, 30.0, State.OPEN),
        (False, 0.01, State.OPEN),
    ],
)
def test_slow_calls_count_as_failures(ok: bool, duration: float, state: State) -> None:
    b = CircuitBreaker("up", POLICY)
    for _ in range(4):
        call(b, 0.0, ok, duration)
    assert b.state(0.0) is state


def test_no_slow_call_threshold_means_slow_is_fine() -> None:
    b = CircuitBreaker("up", BreakerPolicy(minimum_calls=2, slow_call=None))
    for _ in range(5):
        call(b, 0.0, True, duration=1e6)
    assert b.state(0.0) is State.CLOSED


@pytest.mark.parametrize(
    ("second_batch_at", "state"),
    [(5.0, State.OPEN), (9.0, State.OPEN), (10.0, State.CLOSED), (25.0, State.CLOSED)],
)
def test_window_slides_and_forgets_old_failures(second_batch_at: float, state: State) -> None:
    b = CircuitBreaker("up", POLICY)
    for _ in range(2):
        call(b, 0.0, ok=False)
    for _ in range(2):
        call(b, second_batch_at, ok=False)
    assert b.state(second_batch_at) is state


def test_snapshot_counts_only_the_window() -> None:
    b = CircuitBreaker("up", POLICY)
    call(b, 0.0, ok=False)
    call(b, 4.0, ok=True)
    call(b, 4.0, ok=True)
    snap = b.snapshot(5.0)
    assert (snap["calls"], snap["failures"], snap["state"]) == (3, 1, "closed")
    assert snap["failure_rate"] == pytest.approx(1 / 3)
    later = b.snapshot(12.0)
    assert (later["calls"], later["failures"], later["failure_rate"]) == (2, 0, 0.0)
    assert b.snapshot(100.0)["calls"] == 0


@pytest.mark.parametrize(
    ("now", "state", "admitted", "retry_after"),
    [
        (0.0, State.OPEN, False, 5.0),
        (1.5, State.OPEN, False, 3.5),
        (4.999, State.OPEN, False, pytest.approx(0.001)),
        (5.0, State.HALF_OPEN, True, 0.0),
        (50.0, State.HALF_OPEN, True, 0.0),
    ],
)
def test_open_rejects_until_open_for_passes(
    now: float, state: State, admitted: bool, retry_after: float
) -> None:
    b = tripped(0.0)
    assert b.retry_after(now) == retry_after
    assert b.state(now) is state
    assert (b.acquire(now) is not None) is admitted


@pytest.mark.parametrize("opened_at", [7.3, 0.1, 1e9 + 0.7])
def test_retry_after_never_exceeds_open_for(opened_at: float) -> None:
    b = tripped(opened_at, BreakerPolicy(minimum_calls=1, open_for=1.0))
    assert 0.0 < b.retry_after(opened_at) <= 1.0


def test_lazy_half_open_is_reported() -> None:
    b = tripped(0.0)
    assert b.acquire(6.0) == Permit(probe=True, generation=2)
    [t] = b.drain_transitions()
    assert (t.old, t.new, t.at, t.reason) == (State.OPEN, State.HALF_OPEN, 6.0, "open_for elapsed")


def test_half_open_admits_at_most_probe_count() -> None:
    b = tripped(0.0)
    first, second = b.acquire(5.0), b.acquire(5.0)
    assert first is not None and first.probe
    assert second is not None and second.probe
    assert b.acquire(5.0) is None
    assert b.acquire(6.0) is None
    b.release(first)  # a cancelled probe gives its slot back
    third = b.acquire(6.0)
    assert third is not None and third.probe
    assert b.snapshot(6.0)["probes_in_flight"] == 2


@pytest.mark.parametrize(
    ("ok", "duration", "new", "reason"),
    [
        (True, 0.1, State.CLOSED, "probe succeeded"),
        (False, 0.1, State.OPEN, "probe failed"),
        (True, 2.5, State.OPEN, "probe slow"),
    ],
)
def test_probe_outcome(ok: bool, duration: float, new: State, reason: str) -> None:
    b = tripped(0.0)
    probe = b.acquire(7.0)
    assert probe is not None
    t = b.record(probe, 7.5, ok=ok, duration=duration)
    assert t is not None and (t.old, t.new, t.reason) == (State.HALF_OPEN, new, reason)
    assert b.state(7.5) is new
    if new is State.OPEN:  # a fresh open_for starts at the failed probe
        assert b.retry_after(7.5) == 5.0
        assert b.state(12.49) is State.OPEN
        assert b.state(12.5) is State.HALF_OPEN
    else:  # closed with a cleared window: one failure does not reopen it
        assert b.snapshot(7.5)["calls"] == 0
        assert call(b, 8.0, ok=False) is None


def test_second_probe_after_the_first_decided_is_ignored() -> None:
    b = tripped(0.0)
    p1, p2 = b.acquire(5.0), b.acquire(5.0)
    assert p1 is not None and p2 is not None
    assert b.record(p1, 5.1, ok=True, duration=0.1) is not None
    assert b.record(p2, 5.2, ok=False, duration=0.1) is None
    assert b.state(5.2) is State.CLOSED


def test_stale_generation_records_are_ignored() -> None:
    b = CircuitBreaker("up", POLICY)
    early = [b.acquire(0.0) for _ in range(3)]
    for _ in range(4):
        call(b, 0.0, ok=False)
    assert b.state(0.0) is State.OPEN
    for permit in early:  # slow successes/failures of calls started while CLOSED
        assert permit is not None
        assert b.record(permit, 1.0, ok=True, duration=0.1) is None
    assert b.state(1.0) is State.OPEN
    probe = b.acquire(5.0)
    assert probe is not None
    late = early[0]
    assert late is not None
    assert b.record(late, 5.0, ok=False, duration=0.1) is None  # not a probe failure
    assert b.state(5.0) is State.HALF_OPEN
    b.release(late)  # stale release must not free the live probe's slot
    assert b.snapshot(5.0)["probes_in_flight"] == 1


def test_force_open_holds_until_closed() -> None:
    b = CircuitBreaker("up", POLICY)
    t = b.force_open(1.0)
    assert t is not None and (t.old, t.new) == (State.CLOSED, State.OPEN)
    assert b.acquire(1000.0) is None
    assert b.state(1000.0) is State.OPEN
    assert b.retry_after(1000.0) == POLICY.open_for  # a hint, not a promise
    assert b.snapshot(1000.0)["forced"] is True
    assert b.force_open(1001.0) is None  # already open
    t = b.force_close(1002.0)
    assert t is not None and (t.old, t.new) == (State.OPEN, State.CLOSED)
    assert b.force_close(1003.0) is None
    assert b.acquire(1003.0) is not None


def test_force_open_until_then_probes() -> None:
    b = CircuitBreaker("up", POLICY)
    b.force_open(0.0, until=30.0)
    assert b.retry_after(10.0) == 20.0
    assert b.state(29.9) is State.OPEN
    assert b.state(30.0) is State.HALF_OPEN
    assert b.snapshot(30.0)["forced"] is False


def test_force_open_holds_an_already_open_breaker() -> None:
    b = tripped(0.0)
    assert b.force_open(1.0) is None
    assert b.state(100.0) is State.OPEN


def test_force_close_from_half_open_invalidates_probes() -> None:
    b = tripped(0.0)
    probe = b.acquire(5.0)
    assert probe is not None
    assert b.force_close(5.5) is not None
    assert b.record(probe, 6.0, ok=False, duration=0.1) is None
    assert b.state(6.0) is State.CLOSED


def test_reset_clears_window_and_in_flight_outcomes() -> None:
    b = CircuitBreaker("up", POLICY)
    for _ in range(3):
        call(b, 0.0, ok=False)
    pending = b.acquire(0.0)
    assert pending is not None
    assert b.reset(0.5) is None  # CLOSED stays CLOSED
    assert b.snapshot(0.5)["calls"] == 0
    assert b.record(pending, 0.6, ok=False, duration=0.1) is None
    assert b.snapshot(0.6)["calls"] == 0
    b2 = tripped(0.0)
    t = b2.reset(1.0)
    assert t is not None and t.new is State.CLOSED


def test_snapshot_shape_when_open() -> None:
    b = tripped(2.0)
    snap = b.snapshot(4.0)
    assert snap["state"] == "open"
    assert snap["opened_at"] == 2.0
    assert snap["retry_after"] == 3.0
    assert snap["name"] == "up"


def test_unacknowledged_transitions_are_bounded() -> None:
    b = CircuitBreaker("up", BreakerPolicy(minimum_calls=1, open_for=1.0))
    for i in range(200):
        b.force_open(float(i))
        b.force_close(float(i))
    assert 0 < len(b.drain_transitions()) <= 64


@pytest.mark.parametrize(
    "kwargs",
    [
        {"failure_rate": 0.0},
        {"failure_rate": 1.5},
        {"minimum_calls": 0},
        {"window": 0.0},
        {"open_for": -1.0},
        {"half_open_probes": 0},
        {"slow_call": 0.0},
    ],
)
def test_policy_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        BreakerPolicy(**kwargs)  # type: ignore[arg-type]


def test_sliding_counts_memory_is_bounded() -> None:
    counts = SlidingCounts(10.0, buckets=10)
    for i in range(10_000):
        counts.add(i * 0.01, 1, i % 2)
    assert counts.totals(99.99) == (1000, 500)
    assert len(counts._buckets) <= 10
    counts.add(50.0, 1, 1)  # time stepping back lands in the newest bucket
    assert counts.totals(99.99) == (1001, 501)


# -- stateful model ----------------------------------------------------------------------------


class BreakerMachine(RuleBasedStateMachine):
    """Random call sequences; the model tracks only what the invariants need."""

    permits = Bundle("permits")

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.policy = BreakerPolicy()
        self.breaker = CircuitBreaker("m", self.policy)
        # (time, failed) of outcomes recorded by normal permits since the breaker last closed
        self.outcomes: list[tuple[float, bool]] = []
        self.probes_out: set[int] = set()  # ids of model probe tokens in flight
        self.next_id = 0

    @initialize(
        rate=st.sampled_from([0.2, 0.5, 1.0]),
        minimum=st.integers(1, 5),
        # Integer times with windows of whole buckets (30 buckets: 1 s or 0.5 s wide) make the
        # bucketed window exactly "the last `window` seconds", so the model can be exact.
        window=st.sampled_from([15.0, 30.0]),
        open_for=st.sampled_from([0.0, 1.0, 4.0]),
        probes=st.integers(1, 3),
    )
    def setup(self, rate: float, minimum: int, window: float, open_for: float, probes: int) -> None:
        self.policy = BreakerPolicy(
            failure_rate=rate,
            minimum_calls=minimum,
            window=window,
            slow_call=1.0,
            open_for=open_for,
            half_open_probes=probes,
        )
        self.breaker = CircuitBreaker("m", self.policy)

    @rule(target=permits)
    def acquire(self) -> object:
        self._expect_quiet(self.breaker.drain_transitions())
        permit = self.breaker.acquire(self.now)
        self._expect_quiet(self.breaker.drain_transitions())
        if permit is None:
            return multiple()
        self.next_id += 1
        if permit.probe:
            self.probes_out.add(self.next_id)
        return (self.next_id, permit)

    @rule(item=consumes(permits), ok=st.booleans(), duration=st.sampled_from([0.1, 1.5]))
    def record(self, item: tuple[int, Permit], ok: bool, duration: float) -> None:
        ident, permit = item
        self._expect_quiet(self.breaker.drain_transitions())
        current = permit.generation == self.breaker.snapshot(self.now)["generation"]
        self._expect_quiet(self.breaker.drain_transitions())
        before = self.breaker.state(self.now)
        failed = not ok or duration >= 1.0
        caused = self.breaker.record(permit, self.now, ok=ok, duration=duration)
        self.probes_out.discard(ident)
        if current and not permit.probe:
            self.outcomes.append((self.now, failed))
        recent = [f for at, f in self.outcomes if at > self.now - self.policy.window]
        should_open = (
            len(recent) >= self.policy.minimum_calls
            and any(recent)
            and sum(recent) / len(recent) >= self.policy.failure_rate
        )
        if current and not permit.probe:
            assert (caused is not None and caused.new is State.OPEN) is should_open
        for t in self.breaker.drain_transitions():
            self.probes_out.clear()  # every transition makes older probes stale
            if t.old is State.CLOSED and t.new is State.OPEN:
                assert len(recent) >= self.policy.minimum_calls, t
                assert should_open
            if t.old is State.HALF_OPEN and t.new is State.CLOSED:
                assert current and permit.probe and not failed, t
                assert before is State.HALF_OPEN
            assert t.new is not State.HALF_OPEN  # record never causes the lazy move itself
            if t.new is State.CLOSED:
                self.outcomes.clear()
        if not current:  # stale outcomes never move the state
            assert self.breaker.state(self.now) is before

    @rule(item=consumes(permits))
    def release(self, item: tuple[int, Permit]) -> None:
        self._expect_quiet(self.breaker.drain_transitions())
        before = self.breaker.state(self.now)
        self.breaker.release(item[1])
        self.probes_out.discard(item[0])
        assert self.breaker.state(self.now) is before
        self._expect_quiet(self.breaker.drain_transitions())

    @rule(dt=st.sampled_from([0.0, 1.0, 2.0, 5.0, 20.0]))
    def advance(self, dt: float) -> None:
        self.now += dt
        self._expect_quiet(self.breaker.drain_transitions())

    def _expect_quiet(self, transitions: list[Transition]) -> None:
        """Outside record(), only the lazy OPEN -> HALF_OPEN move may happen."""
        for t in transitions:
            assert (t.old, t.new) == (State.OPEN, State.HALF_OPEN), t
            self.probes_out.clear()  # probes of earlier generations are stale now

    @invariant()
    def probes_bounded(self) -> None:
        snap = self.breaker.snapshot(self.now)
        self._expect_quiet(self.breaker.drain_transitions())
        assert snap["probes_in_flight"] <= self.breaker.policy.half_open_probes
        assert snap["probes_in_flight"] == len(self.probes_out)
        if snap["state"] != "half_open":
            assert snap["probes_in_flight"] == 0
        assert 0.0 <= snap["retry_after"] <= self.breaker.policy.open_for
        assert snap["calls"] >= snap["failures"] >= 0


TestBreakerMachine = BreakerMachine.TestCase
TestBreakerMachine.settings = settings(max_examples=200, stateful_step_count=60, deadline=None)
