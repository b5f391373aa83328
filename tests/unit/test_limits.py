"""proxy.limits: connection admission, request framing and slow-client deadlines (pure, no loop)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.core.limits import (
    Admission,
    ConnLimits,
    ConnTable,
    Throttle,
)

LIMITS = ConnLimits(per_address=2, total=3, header_timeout=10.0, body_timeout=30.0)


# -- ConnTable ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "expected", "open_after", "addresses_after"),
    [
        (["+a", "+a", "+a"], ["ok", "ok", "per_address"], 2, 1),
        (["+a", "+b", "+c", "+d"], ["ok", "ok", "ok", "total"], 3, 3),
        (["+a", "+a", "-a", "+a"], ["ok", "ok", "ok"], 2, 1),
        (["+a", "+a", "+b", "+b"], ["ok", "ok", "ok", "total"], 3, 2),
        (["+a", "-a", "-a", "-b", "+a"], ["ok", "ok"], 1, 1),  # releasing what is not held is a no-op
        (["+a", "+b", "-a", "-b"], ["ok", "ok"], 0, 0),  # an address with nothing open is forgotten
    ],
)
def test_admission_table(
    steps: list[str], expected: list[str], open_after: int, addresses_after: int
) -> None:
    table = ConnTable(LIMITS)
    got = []
    for step in steps:
        if step[0] == "+":
            got.append(table.admit(step[1:]).value)
        else:
            table.release(step[1:])
    assert got == expected
    assert (table.open, table.addresses) == (open_after, addresses_after)


@given(st.lists(st.tuples(st.booleans(), st.sampled_from("abcde")), max_size=200))
def test_admission_invariants(ops: list[tuple[bool, str]]) -> None:
    table = ConnTable(LIMITS)
    held: dict[str, int] = {}
    for admit, address in ops:
        if admit:
            verdict = table.admit(address)
            if verdict is Admission.OK:
                held[address] = held.get(address, 0) + 1
            elif verdict is Admission.TOTAL:
                assert sum(held.values()) == LIMITS.total
            else:
                assert held.get(address, 0) == LIMITS.per_address
        else:
            table.release(address)
            if held.get(address):
                held[address] -= 1
        assert table.open == sum(held.values()) <= LIMITS.total
        assert all(table.count(a) == n <= LIMITS.per_address for a, n in held.items())
        assert table.addresses == sum(1 for n in held.values() if n)
    assert table.peak <= LIMITS.total


@pytest.mark.parametrize(
    "bad",
    [
        {"per_address": 0},
        {"total": 0},
        {"header_timeout": 0.0},
        {"body_timeout": -1.0},
        {"max_head": 0},
        {"linger": 0.0},
    ],
)
def test_limits_must_be_positive(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        ConnLimits(**bad)  # type: ignore[arg-type]


# -- Throttle --------------------------------------------------------------------------------------


def test_throttle_reports_once_per_interval_and_counts_the_rest() -> None:
    gate = Throttle(10.0)
    got = [gate.allow(t) for t in (0.0, 1.0, 2.0, 9.9, 10.0, 10.5, 25.0)]
    assert got == [0, None, None, None, 3, None, 1]
