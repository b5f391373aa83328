"""The decisions of the request path (proxy/core/decide.py) as tables: lookup, failure, slow."""

from __future__ import annotations

import pytest

from proxy.core.decide import Action, Failure, Plan, Vendor, on_failure, on_lookup, retry_after, slow_budget
from proxy.core.model import Entry
from tests.unit.test_freshness import entry  # fresh until 100, swr until 160, sie until 3700

UP, OPEN, DOWN = Vendor(), Vendor(available=False), Vendor(available=False, unhealthy=True)


STALE_SWR = Plan(Action.STALE, "stale-while-revalidate", "UPDATING", refresh=True)
LOOKUP = [
    # entry, now, vendor, only-if-cached, plan
    (None, 0.0, UP, False, Plan(Action.FETCH)),
    (None, 0.0, OPEN, False, Plan(Action.FETCH)),  # nothing to serve: the breaker answers in fetch
    (None, 0.0, UP, True, Plan(Action.NOT_CACHED)),  # RFC 9111 5.2.1.7
    (entry(), 0.0, UP, True, Plan(Action.HIT, None, "HIT")),
    (entry(), 99.9, UP, False, Plan(Action.HIT, None, "HIT")),
    (entry(), 99.9, OPEN, False, Plan(Action.HIT, None, "HIT")),  # fresh is fresh, breaker or not
    (entry(heuristic=True), 50.0, UP, False, Plan(Action.HIT, "heuristic", "HIT")),  # RFC 9111 4.2.2
    (entry(), 100.0, UP, False, STALE_SWR),  # freshness ends at fresh_until exactly
    (entry(), 159.9, UP, False, STALE_SWR),  # RFC 5861 3
    (entry(), 160.0, UP, False, Plan(Action.FETCH)),
    (entry(), 160.0, UP, True, Plan(Action.NOT_CACHED)),
    (entry(stale_until=100.0), 100.0, UP, False, Plan(Action.FETCH)),  # no stale window
    # the vendor cannot be asked: a copy usable on error answers, and says why
    (entry(), 100.0, OPEN, False, Plan(Action.STALE, "circuit-open", "STALE", refresh=True)),
    (entry(), 3699.0, OPEN, False, Plan(Action.STALE, "circuit-open", "STALE", refresh=True)),
    (entry(), 3699.0, DOWN, False, Plan(Action.STALE, "upstream-unhealthy", "STALE", refresh=True)),
    (entry(), 3700.0, OPEN, False, Plan(Action.FETCH)),  # past stale-if-error: the error answers
    (entry(lkg_until=9000.0), 5000.0, OPEN, False, Plan(Action.STALE, "circuit-open", "STALE", refresh=True)),
]


@pytest.mark.parametrize(("stored", "now", "vendor", "only_if_cached", "plan"), LOOKUP)
def test_on_lookup(
    stored: Entry | None, now: float, vendor: Vendor, only_if_cached: bool, plan: Plan
) -> None:
    assert on_lookup(stored, now, vendor, only_if_cached=only_if_cached) == plan


FAILURE = [
    # entry, now, circuit open, guard verdict, fallback configured -> answer, detail
    (None, 0.0, False, None, False, (Failure.ERROR, None)),
    (None, 0.0, False, None, True, (Failure.FALLBACK, None)),
    (entry(), 50.0, False, None, True, (Failure.COPY, "fresh")),
    (entry(), 200.0, False, None, True, (Failure.COPY, "stale-if-error")),  # RFC 5861 4
    (entry(), 200.0, True, None, False, (Failure.COPY, "circuit-open")),
    (entry(), 200.0, False, "guard: gt at $.price", False, (Failure.COPY, "guard: gt at $.price")),
    (entry(), 3700.0, False, None, False, (Failure.ERROR, None)),
    (entry(), 3700.0, False, None, True, (Failure.FALLBACK, None)),
    (entry(lkg_until=9000.0), 5000.0, False, None, True, (Failure.COPY, "last-known-good")),
]


@pytest.mark.parametrize(("stored", "now", "circuit_open", "guard", "fallback", "answer"), FAILURE)
def test_on_failure(
    stored: Entry | None,
    now: float,
    circuit_open: bool,
    guard: str | None,
    fallback: bool,
    answer: tuple[Failure, str | None],
) -> None:
    assert on_failure(stored, now, circuit_open=circuit_open, guard=guard, has_fallback=fallback) == answer


SLOW = [
    # entry, now, stale_if_slow, flight started -> seconds left (None: wait for the vendor)
    (None, 200.0, 0.2, None, None),  # no copy: waits
    (entry(), 200.0, 0.0, None, None),  # no budget configured
    (entry(), 4000.0, 0.2, None, None),  # a copy too old to stand in
    (entry(), 200.0, 0.2, None, pytest.approx(0.2)),  # this request starts the fetch
    (entry(), 200.0, 0.5, 199.8, pytest.approx(0.3)),  # joins one started 0.2 s ago
    (entry(), 200.0, 0.2, 199.0, pytest.approx(-0.8)),  # past it: answered at once
]


@pytest.mark.parametrize(("stored", "now", "budget", "started", "left"), SLOW)
def test_slow_budget(
    stored: Entry | None, now: float, budget: float, started: float | None, left: object
) -> None:
    assert slow_budget(stored, now, stale_if_slow=budget, started=started) == left


@pytest.mark.parametrize(
    ("asked", "breaker_wait", "seconds"),
    [
        (None, 0.0, 5),  # nobody says: 5 s
        (None, 6.5, 7),  # the open breaker's remaining time, rounded up
        (2.2, 30.0, 3),  # the vendor's own Retry-After wins (RFC 9110 10.2.3)
        (0.0, 0.0, 1),  # never 0: a client would come straight back
    ],
)
def test_retry_after(asked: float | None, breaker_wait: float, seconds: int) -> None:
    assert retry_after(asked, breaker_wait) == seconds
