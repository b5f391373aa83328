"""Quarantine: bounded per-route rings of rejected payloads, with stable ids."""

from __future__ import annotations

import pytest

from proxy.core.guards import Verdict, Violation
from proxy.quarantine import Quarantine

BAD = Verdict(False, (Violation("gt", "$.price", "0"),), False)
SHRUNK = Verdict(False, (Violation("max_shrink", "$.items", "1 (last good 10)"),), True)
HEADERS = (("Content-Type", "application/json"),)


def fill(q: Quarantine, route: str, n: int) -> list[str]:
    return [q.add(route, f"body{i}".encode(), BAD, float(i), 200, HEADERS) for i in range(n)]


def test_ids_are_route_and_sequence() -> None:
    q = Quarantine()
    assert fill(q, "prices", 2) == ["prices-1", "prices-2"]
    assert q.add("stock-eu", b"{}", BAD, 5.0, 200, HEADERS) == "stock-eu-3"


@pytest.mark.parametrize(("maxlen", "added", "kept"), [(1, 3, 1), (3, 2, 2), (3, 5, 3), (20, 25, 20)])
def test_ring_is_bounded_per_route(maxlen: int, added: int, kept: int) -> None:
    q = Quarantine(maxlen)
    ids = fill(q, "prices", added)
    fill(q, "other", 1)
    assert [s.id for s in q.list("prices")] == ids[::-1][:kept]  # newest first
    assert len(q.list("other")) == 1
    assert len(q) == kept + 1
    for evicted in ids[: added - kept]:
        assert q.get(evicted) is None


def test_list_all_routes_newest_first() -> None:
    q = Quarantine()
    q.add("a", b"1", BAD, 1.0, 200, HEADERS)
    q.add("b-c", b"2", SHRUNK, 2.0, 200, HEADERS)
    q.add("a", b"3", BAD, 3.0, 200, HEADERS)
    assert [s.id for s in q.list()] == ["a-3", "b-c-2", "a-1"]
    assert q.list("missing") == []


def test_summary_and_item() -> None:
    q = Quarantine()
    item_id = q.add("prices", b'{"price": 0}', SHRUNK, 12.5, 200, HEADERS)
    (summary,) = q.list("prices")
    assert summary.violations == ("max_shrink at $.items",)
    assert summary.relative_only and summary.at == 12.5 and summary.size == 12
    assert not summary.truncated
    item = q.get(item_id)
    assert item is not None
    assert item.body == b'{"price": 0}' and item.headers == HEADERS and item.status == 200
    assert item.verdict is SHRUNK


def test_take_removes() -> None:
    q = Quarantine()
    first, second = fill(q, "prices", 2)
    taken = q.take(first)
    assert taken is not None and taken.body == b"body0"
    assert q.take(first) is None
    assert q.get(first) is None
    assert [s.id for s in q.list("prices")] == [second]
    assert q.take(second) is not None
    assert q.list() == [] and len(q) == 0
    assert q.take("nope-1") is None


def test_ids_are_not_reused_after_eviction_or_take() -> None:
    q = Quarantine(maxlen=1)
    first = fill(q, "r", 1)[0]
    q.take(first)
    assert fill(q, "r", 1) != [first]


def test_big_bodies_are_truncated_and_flagged() -> None:
    q = Quarantine(max_body_bytes=4)
    item = q.get(q.add("r", b"0123456789", BAD, 0.0, 200, HEADERS))
    assert item is not None
    assert item.body == b"0123" and item.size == 10 and item.truncated
    assert q.list()[0].truncated


def test_clear() -> None:
    q = Quarantine()
    fill(q, "a", 2)
    fill(q, "b", 3)
    assert q.clear("a") == 2
    assert q.clear("a") == 0
    assert q.clear() == 3
    assert len(q) == 0


@pytest.mark.parametrize("kwargs", [{"maxlen": 0}, {"max_body_bytes": -1}])
def test_bad_limits(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        Quarantine(**kwargs)
