"""Circuit breaker per upstream: a pure state machine over (outcomes, now).

Owns: the CLOSED / OPEN / HALF_OPEN states, the sliding time window of call outcomes, probe
accounting in HALF_OPEN, admin overrides, and the list of transitions for logs and alerts.
Must not: read the clock (every method takes `now`), await, do I/O, or decide what a failure is
beyond `is_failure_status` (the caller classifies outcomes). Single-threaded asyncio code calls
it with nothing awaited in between, so it holds no locks.

Semantics follow resilience4j's time-based sliding window and Envoy's outlier ejection:
https://resilience4j.readme.io/docs/circuitbreaker
"""

from __future__ import annotations

import enum
import math
from collections import deque
from dataclasses import dataclass
from typing import Final, TypedDict

# Fixed bucket count: memory stays bounded whatever the call rate (resilience4j does the same).
_BUCKETS: Final = 30
# Transitions nobody drained are dropped oldest-first rather than growing without bound.
_MAX_PENDING: Final = 64


def is_failure_status(status: int) -> bool:
    """True for statuses that count against an upstream: 5xx and 429 (it is overloaded).

    Other 4xx are the client's fault; they say nothing about the upstream's health.
    """
    return status >= 500 or status == 429


class SlidingCounts:
    """Two event counters (e.g. calls and failures) over a sliding time window.

    The window is cut into `buckets` equal slices; an event is forgotten between
    `window - window/buckets` and `window` seconds after it happened. Time going backwards
    (a caller bug) lands in the newest bucket instead of corrupting the order.
    """

    __slots__ = ("_buckets", "_count", "_first", "_newest", "_second", "_width")

    def __init__(self, window: float, buckets: int = _BUCKETS) -> None:
        if not window > 0 or buckets < 1:
            raise ValueError("window must be > 0 and buckets >= 1")
        self._width = window / buckets
        self._count = buckets
        # Each bucket is [index, first, second]; newest on the right, and held as `_newest`
        # (compiled, a deque's `[-1]` is a generic call).
        self._buckets: deque[list[int]] = deque()
        self._newest: list[int] | None = None
        self._first = 0
        self._second = 0

    def add(self, now: float, first: int = 0, second: int = 0) -> None:
        index = math.floor(now / self._width)
        # The common case: the newest slice (or earlier). Its creation evicted everything older
        # than the window then, so nothing is due now.
        bucket = self._newest
        if bucket is None or bucket[0] < index:
            self._evict(now)
            bucket = self._newest = [index, 0, 0]
            self._buckets.append(bucket)
        if first:
            bucket[1] += first
            self._first += first
        if second:
            bucket[2] += second
            self._second += second

    @property
    def any_second(self) -> bool:
        """Whether the window may hold a second-kind event (eviction only lowers the count, so
        False is exact without `now`)."""
        return self._second > 0

    def totals(self, now: float) -> tuple[int, int]:
        self._evict(now)
        return self._first, self._second

    def clear(self) -> None:
        self._buckets.clear()
        self._newest = None
        self._first = 0
        self._second = 0

    def _evict(self, now: float) -> int:
        index = math.floor(now / self._width)
        buckets = self._buckets
        if buckets and buckets[0][0] <= index - self._count:  # the oldest is out (rarely true)
            oldest_kept = index - self._count + 1
            while buckets and buckets[0][0] < oldest_kept:
                _, first, second = buckets.popleft()
                self._first -= first
                self._second -= second
            if not buckets:
                self._newest = None
        return index


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    failure_rate: float = 0.5  # 0 < rate <= 1; open when failures/calls >= this
    minimum_calls: int = 10  # never opens with fewer calls than this in the window
    window: float = 30.0  # seconds, sliding time window of outcomes
    slow_call: float | None = None  # seconds; a call at least this slow counts as a failure
    open_for: float = 15.0  # seconds OPEN before HALF_OPEN
    half_open_probes: int = 1  # max concurrent probes in HALF_OPEN

    def __post_init__(self) -> None:
        if not 0 < self.failure_rate <= 1:
            raise ValueError("failure_rate must be in (0, 1]")
        if self.minimum_calls < 1 or self.half_open_probes < 1:
            raise ValueError("minimum_calls and half_open_probes must be >= 1")
        if not self.window > 0 or not self.open_for >= 0:
            raise ValueError("window must be > 0 and open_for >= 0")
        if self.slow_call is not None and not self.slow_call > 0:
            raise ValueError("slow_call must be > 0 when set")


class State(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


# The members as plain names: `State.OPEN` is a lookup through the enum's metaclass on 3.11
# (about 25 times a local name's cost), and the call path asks one to three times per call.
_CLOSED: Final = State.CLOSED
_OPEN: Final = State.OPEN
_HALF_OPEN: Final = State.HALF_OPEN


@dataclass(frozen=True, slots=True)
class Permit:
    """Returned by acquire(); hand it back to record() or release()."""

    probe: bool
    generation: int  # breaker generation at acquire time; older ones never move the state


@dataclass(frozen=True, slots=True)
class Transition:
    upstream: str
    old: State
    new: State
    at: float
    reason: str


class BreakerSnapshot(TypedDict):
    name: str
    state: str
    calls: int
    failures: int
    failure_rate: float
    opened_at: float | None
    retry_after: float
    probes_in_flight: int
    forced: bool
    generation: int


class CircuitBreaker:
    """One upstream's breaker. Every call that acquired a permit must record() or release() it,
    otherwise a HALF_OPEN probe slot stays taken (use try/finally in the shell)."""

    def __init__(self, name: str, policy: BreakerPolicy) -> None:
        self.name = name
        self.policy = policy
        self._state = _CLOSED
        # Bumped on every transition: outcomes of permits from an older state are stale.
        self._generation = 0
        self._opened_at: float | None = None
        self._forced = False  # held OPEN by an admin until force_close/reset (or _forced_until)
        self._forced_until: float | None = None
        self._probes = 0
        self._window = SlidingCounts(policy.window)
        self._pending: deque[Transition] = deque(maxlen=_MAX_PENDING)
        # Permits are immutable: CLOSED hands out one per generation, not one per call.
        self._closed_permit = Permit(probe=False, generation=0)

    # -- queries -------------------------------------------------------------------------------

    def state(self, now: float) -> State:
        """Current state; OPEN turns HALF_OPEN lazily once open_for has elapsed."""
        if self._state is _OPEN and now >= self._open_until():
            self._forced = False
            self._forced_until = None
            self._move(_HALF_OPEN, now, "open_for elapsed")
        return self._state

    def retry_after(self, now: float) -> float:
        """Seconds left OPEN (0 when not open). A hold without an end reports open_for."""
        if self.state(now) is not _OPEN:
            return 0.0
        until = self._open_until()
        if math.isinf(until):
            return self.policy.open_for
        left = max(0.0, until - now)
        # (opened_at + open_for) - now can round a hair above open_for; never report more.
        return left if self._forced else min(left, self.policy.open_for)

    def snapshot(self, now: float) -> BreakerSnapshot:
        state = self.state(now)
        calls, failures = self._window.totals(now)
        return BreakerSnapshot(
            name=self.name,
            state=state.value,
            calls=calls,
            failures=failures,
            failure_rate=failures / calls if calls else 0.0,
            opened_at=self._opened_at if state is _OPEN else None,
            retry_after=self.retry_after(now),
            probes_in_flight=self._probes,
            forced=self._forced,
            generation=self._generation,
        )

    @property
    def transitions_pending(self) -> bool:
        """Whether `drain_transitions` has anything (asked after every call, so cheap)."""
        return bool(self._pending)

    def drain_transitions(self) -> list[Transition]:
        """Every transition since the last drain, including lazy OPEN->HALF_OPEN ones and those
        also returned by record()/force_*(); the shell should log/alert from this list only."""
        if not self._pending:  # the healthy path: asked after every call
            return []
        out = list(self._pending)
        self._pending.clear()
        return out

    # -- the call path -------------------------------------------------------------------------

    def acquire(self, now: float) -> Permit | None:
        """A permit to call the upstream, or None: OPEN, or every HALF_OPEN probe slot taken
        (one slow probe must not turn into a probe storm)."""
        state = self._state
        if state is not _CLOSED:  # CLOSED never turns lazily: no need to ask `state`
            state = self.state(now)
        if state is _CLOSED:
            permit = self._closed_permit
            if permit.generation != self._generation:
                permit = self._closed_permit = Permit(probe=False, generation=self._generation)
            return permit
        if state is _HALF_OPEN and self._probes < self.policy.half_open_probes:
            self._probes += 1
            return Permit(probe=True, generation=self._generation)
        return None

    def release(self, permit: Permit) -> None:
        """Give a permit back without an outcome (the call was cancelled or never sent)."""
        if permit.probe and self._is_current(permit) and self._probes > 0:
            self._probes -= 1

    def record(self, permit: Permit, now: float, *, ok: bool, duration: float) -> Transition | None:
        """Record a call's outcome; returns the transition it caused, if any."""
        if self._state is not _CLOSED:
            self.state(now)  # OPEN may turn HALF_OPEN (lazily); CLOSED stays as it is
        if not self._is_current(permit):
            return None  # the breaker moved on since acquire: this outcome is about the past
        slow_call = self.policy.slow_call
        failed = not ok or (slow_call is not None and duration >= slow_call)
        if permit.probe:
            self._probes = max(0, self._probes - 1)
            if failed:
                return self._open(now, "probe slow" if ok else "probe failed")
            return self._close(now, "probe succeeded")
        window = self._window
        if not failed:
            window.add(now, 1)
            if not window.any_second:  # no failure in the window: nothing to trip on
                return None
        else:
            window.add(now, 1, 1)
        return self._maybe_trip(now)

    # -- admin ---------------------------------------------------------------------------------

    def force_open(self, now: float, *, until: float | None = None) -> Transition | None:
        """Hold OPEN until `until` (absolute, same clock as now) or, when None, until
        force_close()/reset(): ops taking a vendor out must not see it probe itself back in.
        Returns None when it was already OPEN (the hold still applies)."""
        was_open = self.state(now) is _OPEN
        self._forced = True
        self._forced_until = until
        if was_open:
            return None
        return self._open(now, "forced open by admin")

    def force_close(self, now: float) -> Transition | None:
        """CLOSED now with a cleared window, whatever the state."""
        self._forced = False
        self._forced_until = None
        if self._state is _CLOSED:
            return None
        return self._close(now, "forced closed by admin")

    def reset(self, now: float) -> Transition | None:
        """Back to a fresh breaker: CLOSED, empty window; in-flight outcomes are ignored."""
        transition = self.force_close(now)
        if transition is None:
            self._window.clear()
            self._generation += 1
        return transition

    # -- internals -----------------------------------------------------------------------------

    def _is_current(self, permit: Permit) -> bool:
        return permit.generation == self._generation

    def _open_until(self) -> float:
        if self._forced:
            return math.inf if self._forced_until is None else self._forced_until
        assert self._opened_at is not None
        return self._opened_at + self.policy.open_for

    def _maybe_trip(self, now: float) -> Transition | None:
        calls, failures = self._window.totals(now)
        if calls < self.policy.minimum_calls or failures == 0:
            return None
        rate = failures / calls  # division, not rate*calls: 3/10 >= 0.3 holds exactly
        if rate < self.policy.failure_rate:
            return None
        return self._open(now, f"failure rate {rate:.0%} over {calls} calls")

    def _open(self, now: float, reason: str) -> Transition:
        self._opened_at = now
        self._probes = 0
        return self._move(_OPEN, now, reason)

    def _close(self, now: float, reason: str) -> Transition:
        self._opened_at = None
        self._probes = 0
        self._window.clear()
        return self._move(_CLOSED, now, reason)

    def _move(self, new: State, now: float, reason: str) -> Transition:
        transition = Transition(self.name, self._state, new, now, reason)
        self._state = new
        self._generation += 1
        self._pending.append(transition)
        return transition
