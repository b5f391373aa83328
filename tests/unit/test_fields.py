"""`core.fields.Fields`: a response's caching fields read in one pass, as tables, and the same
answers as the scans it replaces (`freshness.header`, `headers.end_to_end`, `effective`)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.core import freshness
from proxy.core.cachecontrol import DEFAULT_TARGETS, effective, governing
from proxy.core.fields import READ, Fields
from proxy.core.headers import HOP_BY_HOP, among, end_to_end
from proxy.core.model import Headers

SAMPLE: Headers = (
    ("Date", "Tue, 14 Nov 2023 22:13:20 GMT"),
    ("ETag", '"v1"'),
    ("etag", '"v2"'),
    ("Vary", "Accept-Language"),
    ("VARY", "X-Tenant"),
    ("X-Custom", "one"),
    ("x-custom", "two"),
    ("CDN-Cache-Control", "max-age=60"),
)


@pytest.mark.parametrize(
    ("name", "targets", "expected"),
    [
        ("date", (), "Tue, 14 Nov 2023 22:13:20 GMT"),
        ("etag", (), '"v1"'),  # the first line, as `freshness.header` answers
        ("x-custom", (), "one"),  # not read in the pass: found by a scan
        ("age", (), None),  # read in the pass, absent
        ("expires", (), None),
        ("cdn-cache-control", (), "max-age=60"),  # not a target here: a scan
        ("cdn-cache-control", DEFAULT_TARGETS, "max-age=60"),
        ("resilient-proxy-cache-control", DEFAULT_TARGETS, None),
        ("x-missing", (), None),
    ],
)
def test_first(name: str, targets: tuple[str, ...], expected: str | None) -> None:
    assert Fields(SAMPLE, targets).first(name) == expected
    assert Fields(SAMPLE, targets).has(name) is (expected is not None)


@pytest.mark.parametrize(
    ("name", "targets", "expected"),
    [
        ("etag", (), ['"v1"', '"v2"']),
        ("vary", (), ["Accept-Language", "X-Tenant"]),
        ("expires", (), []),
        ("cdn-cache-control", DEFAULT_TARGETS, ["max-age=60"]),
    ],
)
def test_all(name: str, targets: tuple[str, ...], expected: list[str]) -> None:
    assert Fields(SAMPLE, targets).all(name) == expected


def test_lows_are_every_line_lower_cased_in_order() -> None:
    assert Fields(SAMPLE).lows == [k.lower() for k, _ in SAMPLE]


@pytest.mark.parametrize(
    ("headers", "drop", "expected"),
    [
        ((("A", "1"), ("Connection", "close"), ("B", "2")), frozenset(), (("A", "1"), ("B", "2"))),
        # a name listed in Connection is hop-by-hop too, whatever its case, over several lines
        (
            (("Connection", "X-Hop, keep-alive"), ("x-hop", "1"), ("Connection", "y-hop"), ("Y-Hop", "2")),
            frozenset(),
            (),
        ),
        ((("Transfer-Encoding", "chunked"), ("Keep-Alive", "t=5"), ("TE", "x")), frozenset(), ()),
        (
            (("Content-Length", "3"), ("Age", "5"), ("Set-Cookie", "a=b"), ("ETag", '"x"')),
            frozenset({"content-length", "age", "set-cookie"}),
            (("ETag", '"x"'),),
        ),
        # a drop set that already holds the hop-by-hop names (what the store passes)
        ((("Upgrade", "h2c"), ("Age", "1"), ("B", "2")), HOP_BY_HOP | {"age"}, (("B", "2"),)),
        ((), frozenset({"age"}), ()),
    ],
)
def test_without(headers: Headers, drop: frozenset[str], expected: Headers) -> None:
    assert Fields(headers).without(drop) == expected


NAMES = st.sampled_from(
    [*sorted(READ), "Connection", "ETag", "Vary", "Keep-Alive", "X-A", "x-a", "CDN-Cache-Control", "Upgrade"]
)
VALUES = st.sampled_from(
    [
        "",
        "x-a",
        "max-age=60",
        'no-cache="X-A"',
        "Tue, 14 Nov 2023 22:13:20 GMT",
        "Tue, 14 Nov 2023 23:13:20 GMT",
        "Accept-Language, *",
        "Accept-Encoding",
        "12",
        '"v1"',
        "a=b",
    ]
)
HEADERS = st.lists(st.tuples(NAMES, VALUES), max_size=8).map(tuple)


@given(HEADERS, st.sampled_from([(), DEFAULT_TARGETS]))
def test_read_once_answers_as_the_scans_do(headers: Headers, targets: tuple[str, ...]) -> None:
    """Every question the store path asks of `Fields` gets the answer the per-question scans
    give: `freshness.header`, `end_to_end`, `effective`."""
    fields = Fields(headers, targets)
    for name in ("date", "etag", "x-a", "expires", "cdn-cache-control"):
        assert fields.first(name) == freshness.header(headers, name)
    drop = frozenset({"content-length", "age", "x-a"})
    assert fields.without(drop) == end_to_end(headers, drop)
    assert governing(fields.lines, targets) == effective(headers, targets)


@given(
    HEADERS, st.sampled_from([frozenset(), frozenset({"age", "x-a"}), HOP_BY_HOP | {"content-length", "age"}])
)
def test_the_lines_kept_in_the_pass_are_what_a_second_pass_keeps(
    headers: Headers, drop: frozenset[str]
) -> None:
    """The lines `Fields` keeps while reading (for the `drop` it was given) are exactly what
    `end_to_end` keeps, Connection-named lines included; any other set is filtered afresh."""
    fields = Fields(headers, (), drop)
    assert fields.kept(fields.dropped(drop)) == end_to_end(headers, drop)
    assert fields.without(drop) == end_to_end(headers, drop)
    other = frozenset({"etag"})
    assert fields.without(other) == end_to_end(headers, other)


@given(
    HEADERS, st.sampled_from([(), DEFAULT_TARGETS]), st.sampled_from([HOP_BY_HOP, frozenset({"age", "x-a"})])
)
def test_names_lowered_by_the_caller_give_the_same_answers(
    headers: Headers, targets: tuple[str, ...], drop: frozenset[str]
) -> None:
    """`Fields` given the lower-case names (the parser's, as `Fetched.lows()` hands them on)
    answers every question as it does lowering them itself, and as the scans do."""
    given_lows = tuple(k.lower() for k, _ in headers)
    read, own = Fields(headers, targets, drop, given_lows), Fields(headers, targets, drop)
    assert list(read.lows) == list(own.lows) == list(given_lows)
    assert read.lines == own.lines
    for name in ("date", "etag", "x-a", "expires", "cdn-cache-control", "upgrade"):
        assert read.first(name) == own.first(name) == freshness.header(headers, name)
    assert read.kept(read.dropped(drop)) == own.kept(own.dropped(drop)) == end_to_end(headers, drop)
    other = frozenset({"etag"})
    assert read.without(other) == end_to_end(headers, other)
    assert governing(read.lines, targets) == effective(headers, targets)


def test_the_names_given_are_the_names_read() -> None:
    """The pass reads the names it is given, not the lines' own: the caller vouches for them
    (a mismatch in length is a programming error, refused)."""
    headers: Headers = (("Date", "d"), ("X-A", "1"))
    fields = Fields(headers, (), HOP_BY_HOP, ("date", "x-a"))
    assert fields.first("date") == "d" and fields.first("x-a") == "1"
    with pytest.raises(ValueError):
        Fields(headers, (), HOP_BY_HOP, ("date",))


@given(
    st.sampled_from(["location", "content-location", "content-encoding", "", "x"]),
    st.lists(st.text(max_size=20)),
)
def test_among_is_membership(name: str, names: list[str]) -> None:
    """`among` (membership compared as strings, for compiled code) answers as `in` does."""
    for where in (names, [*names, name], [name, *names]):
        assert among(name, tuple(where)) is (name in where)
