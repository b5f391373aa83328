"""Retry rules: methods, statuses, full-jitter backoff, Retry-After parsing, retry budget."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.core.retry import (
    RetryBudget,
    RetryPolicy,
    backoff_delay,
    is_retryable_status,
    may_retry_method,
    parse_retry_after,
)

# 2015-10-21 07:28:00 UTC as epoch seconds
EPOCH = 1445412480.0


@pytest.mark.parametrize(
    ("method", "key", "allowed"),
    [
        ("GET", False, True),
        ("HEAD", False, True),
        ("OPTIONS", False, True),
        ("get", False, True),
        ("Head", False, True),
        ("post", False, False),
        ("Delete", False, False),
        ("POST", False, False),
        ("POST", True, True),
        ("PUT", False, False),
        ("DELETE", False, False),
        ("PATCH", True, True),
        ("PUT", True, True),
    ],
)
def test_method_rules(method: str, key: bool, allowed: bool) -> None:
    assert may_retry_method(method, key) is allowed


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(502, True), (503, True), (504, True), (500, False), (429, False), (404, False), (200, False)],
)
def test_retryable_statuses(status: int, retryable: bool) -> None:
    assert is_retryable_status(status) is retryable


@pytest.mark.parametrize(
    ("retry_number", "rand", "retry_after", "expected"),
    [
        (1, 1.0, None, 0.1),  # ceiling of the first retry is the base
        (2, 1.0, None, 0.2),
        (3, 1.0, None, 0.4),
        (5, 1.0, None, 1.6),
        (6, 1.0, None, 2.0),  # capped at max_backoff
        (10_000, 1.0, None, 2.0),  # huge retry numbers do not overflow
        (3, 0.5, None, 0.2),  # full jitter scales the whole ceiling
        (3, 0.0, None, 0.0),
        (1, 0.5, 3.0, 3.0),  # never sooner than Retry-After
        (6, 0.9, 0.5, 1.8),  # jittered delay already longer than Retry-After
        (1, 0.5, -4.0, 0.05),  # a negative Retry-After means "now"
    ],
)
def test_backoff_table(retry_number: int, rand: float, retry_after: float | None, expected: float) -> None:
    policy = RetryPolicy(attempts=3, backoff=0.1, max_backoff=2.0)
    assert backoff_delay(policy, retry_number, rand, retry_after) == pytest.approx(expected)


@given(
    backoff=st.floats(0.0, 10.0),
    extra=st.floats(0.0, 100.0),
    retry_number=st.integers(1, 5000),
    rand=st.floats(0.0, 1.0, exclude_max=True),
    retry_after=st.none() | st.floats(-10.0, 1e6),
)
def test_backoff_bounds(
    backoff: float, extra: float, retry_number: int, rand: float, retry_after: float | None
) -> None:
    policy = RetryPolicy(attempts=1, backoff=backoff, max_backoff=backoff + extra)
    delay = backoff_delay(policy, retry_number, rand, retry_after)
    assert 0.0 <= delay <= max(policy.max_backoff, retry_after or 0.0)
    if retry_after is not None:
        assert delay >= retry_after
    # The jitter-free ceiling grows with the retry number (until the cap).
    assert (
        backoff_delay(policy, retry_number, rand, None)
        <= backoff_delay(policy, retry_number + 1, rand, None) + 1e-12
    )


@pytest.mark.parametrize(
    ("kwargs", "retry_number", "rand"),
    [({}, 0, 0.5), ({}, 1, 1.5), ({}, 1, -0.1), ({}, 1, float("nan"))],
)
def test_backoff_rejects_bad_input(kwargs: dict[str, float], retry_number: int, rand: float) -> None:
    with pytest.raises(ValueError):
        backoff_delay(RetryPolicy(**kwargs), retry_number, rand, None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs", [{"attempts": -1}, {"backoff": -0.1}, {"backoff": 3.0, "max_backoff": 2.0}]
)
def test_policy_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        ("  7 ", 7.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("-5", 0.0),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),  # IMF-fixdate
        ("Wednesday, 21-Oct-15 07:29:00 GMT", 60.0),  # obsolete RFC 850 form
        ("Wed Oct 21 07:28:10 2015", 10.0),  # obsolete asctime form, implicitly UTC
        ("Wed, 21 Oct 2015 09:28:30 +0200", 30.0),  # a zone other than GMT still converts
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # in the past: go now
        (None, None),
        ("", None),
        ("soon", None),
        ("12 seconds", None),
        ("1e3", None),
        ("inf", None),
        ("nan", None),
        ("Wed, 32 Oct 2015 07:28:30 GMT", None),
        ("0x10", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, EPOCH) == expected


@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Asia/Kolkata"])
def test_zoneless_dates_are_utc_whatever_the_local_zone(zone: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        assert parse_retry_after("Wed Oct 21 07:28:10 2015", EPOCH) == 10.0
    finally:
        monkeypatch.undo()
        time.tzset()


@given(st.text(max_size=40))
def test_parse_retry_after_never_raises(value: str) -> None:
    result = parse_retry_after(value, EPOCH)
    assert result is None or result >= 0.0


def test_budget_floor_allows_min_retries_at_low_traffic() -> None:
    budget = RetryBudget(ratio=0.2, window=10.0, min_retries=3)
    budget.record_request(0.0)
    assert [budget.try_spend(0.0) for _ in range(5)] == [True, True, True, False, False]


@pytest.mark.parametrize(
    ("requests", "allowed"),
    [(0, 3), (10, 3), (15, 3), (20, 4), (50, 10), (100, 20), (101, 20), (1000, 200)],
)
def test_budget_allows_about_ratio(requests: int, allowed: int) -> None:
    budget = RetryBudget(ratio=0.2, window=10.0, min_retries=3)
    for i in range(requests):
        budget.record_request(i * 0.001)
    assert budget.available(1.0) == allowed
    spent = sum(budget.try_spend(1.0) for _ in range(allowed + 5))
    assert spent == allowed
    assert budget.available(1.0) == 0


@pytest.mark.parametrize(
    ("ratio", "requests", "allowed"),
    [(0.29, 100, 29), (0.57, 100, 57), (0.3, 10, 3), (0.5, 3, 1), (0.0, 100, 0), (1.0, 7, 7)],
)
def test_budget_rounds_down_without_float_dust(ratio: float, requests: int, allowed: int) -> None:
    budget = RetryBudget(ratio=ratio, window=10.0, min_retries=0)
    for _ in range(requests):
        budget.record_request(0.0)
    assert budget.available(0.0) == allowed


def test_budget_refills_as_the_window_slides() -> None:
    budget = RetryBudget(ratio=0.2, window=10.0, min_retries=3)
    for _ in range(100):
        budget.record_request(0.0)
    assert sum(budget.try_spend(0.0) for _ in range(30)) == 20
    assert budget.available(9.0) == 0
    # The spent retries and their requests have left the window: only the floor remains.
    assert budget.available(10.5) == 3
    for _ in range(50):
        budget.record_request(10.5)
    assert budget.available(10.5) == 10


def test_budget_steady_traffic_gets_about_ratio() -> None:
    budget = RetryBudget(ratio=0.2, window=10.0, min_retries=0)
    spent_at: list[float] = []
    for tick in range(600):  # 10 requests a second for 60 s, each one wanting a retry
        now = tick / 10
        budget.record_request(now)
        if budget.try_spend(now):
            spent_at.append(now)
    assert 115 <= len(spent_at) <= 125
    for start in range(0, 51):  # any 10-second span sees about 20% of its 100 requests
        in_span = [t for t in spent_at if start <= t < start + 10]
        assert len(in_span) <= 22


def test_budget_floor_per_window() -> None:
    budget = RetryBudget(ratio=0.2, window=10.0, min_retries=3)
    assert sum(budget.try_spend(0.0) for _ in range(5)) == 3
    assert budget.try_spend(9.0) is False
    assert sum(budget.try_spend(10.0) for _ in range(5)) == 3
