"""Byte ranges from a stored representation (proxy/core/ranges.py), RFC 9110 14."""

from __future__ import annotations

import pytest

from proxy.core.ranges import MAX_PARTS, UNSATISFIABLE, Part, if_range_holds, requested

LENGTH = 100
RANGES = [
    (None, None),
    ("bytes=0-9", Part(0, 9)),
    ("bytes=10-", Part(10, 99)),
    ("bytes=-10", Part(90, 99)),  # suffix: the last 10 bytes
    ("bytes=-500", Part(0, 99)),  # a suffix longer than the representation: all of it
    ("bytes=90-500", Part(90, 99)),  # last-pos past the end is clipped (14.1.1)
    ("bytes=99-99", Part(99, 99)),
    ("BYTES = 0-9", Part(0, 9)),
    ("bytes=0-4, 5-9", Part(0, 9)),  # adjacent: merged
    ("bytes=0-9,5-20", Part(0, 20)),  # overlapping: merged
    ("bytes=0-4,50-60", None),  # disjoint: the whole representation, no multipart
    ("bytes=100-", UNSATISFIABLE),  # starts past the end: 416 (15.5.17)
    ("bytes=100-200, 300-", UNSATISFIABLE),
    ("bytes=-0", UNSATISFIABLE),
    ("bytes=100-,0-9", Part(0, 9)),  # one satisfiable range is enough
    # invalid syntax: the header is ignored (14.2)
    ("bytes=9-0", None),
    ("bytes=a-b", None),
    ("bytes=-", None),
    ("bytes=", None),
    ("bytes=1-2-3", None),
    ("items=0-9", None),
    ("bytes=\u0660-\u0669", None),  # digits, but not ASCII ones
    ("bytes=" + ",".join(["0-1"] * (MAX_PARTS + 1)), None),
]


@pytest.mark.parametrize(("header", "part"), RANGES)
def test_requested(header: str | None, part: Part | None) -> None:
    assert requested(header, LENGTH) == part


def test_content_range() -> None:
    assert Part(0, 9).content_range(100) == "bytes 0-9/100"


@pytest.mark.parametrize(
    ("if_range", "etag", "last_modified", "holds"),
    [
        (None, None, None, True),
        ('"v1"', '"v1"', None, True),
        ('"v1"', '"v2"', None, False),
        ('"v1"', None, None, False),
        ('W/"v1"', 'W/"v1"', None, False),  # weak validators never hold (14.5)
        ('"v1"', 'W/"v1"', None, False),
        ("Tue, 01 Dec 2026 10:00:00 GMT", None, "Tue, 01 Dec 2026 10:00:00 GMT", True),
        ("Tue, 01 Dec 2026 10:00:00 GMT", None, "Tue, 01 Dec 2026 10:00:01 GMT", False),
        ("Tue, 01 Dec 2026 10:00:00 GMT", '"v1"', None, False),
    ],
)
def test_if_range(if_range: str | None, etag: str | None, last_modified: str | None, holds: bool) -> None:
    assert if_range_holds(if_range, etag, last_modified) is holds
