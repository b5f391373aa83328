"""Cache-Control parsing (RFC 9111 section 5.2): table tests, plus junk that must never raise."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.core.cachecontrol import EMPTY, CacheControl, parse


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        # absent or empty: nothing present
        (None, EMPTY),
        ("", EMPTY),
        ([], EMPTY),
        # plain directives
        ("max-age=60", CacheControl(max_age=60, present=True)),
        ("s-maxage=30", CacheControl(s_maxage=30, present=True)),
        ("no-store", CacheControl(no_store=True, present=True)),
        ("no-cache", CacheControl(no_cache=True, present=True)),
        ("private", CacheControl(private=True, present=True)),
        ("public, max-age=5", CacheControl(public=True, max_age=5, present=True)),
        ("must-revalidate", CacheControl(must_revalidate=True, present=True)),
        ("proxy-revalidate", CacheControl(proxy_revalidate=True, present=True)),
        ("only-if-cached", CacheControl(only_if_cached=True, present=True)),
        (
            "stale-while-revalidate=10, stale-if-error=20",
            CacheControl(stale_while_revalidate=10, stale_if_error=20, present=True),
        ),
        # case-insensitive names (RFC 9111 5.2: directive names are case-insensitive)
        ("MAX-AGE=7, No-Store", CacheControl(max_age=7, no_store=True, present=True)),
        # quoted values are accepted for delta-seconds (RFC 9111 5.2: senders should not, recipients may)
        ('max-age="60"', CacheControl(max_age=60, present=True)),
        # a quoted comma does not split directives; the qualified forms name fields to withhold
        # and leave the response storable (RFC 9111 5.2.2.4, 5.2.2.7)
        (
            'private="Set-Cookie, X-Foo", max-age=9',
            CacheControl(private_fields=("set-cookie", "x-foo"), max_age=9, present=True),
        ),
        (
            'no-cache="Set-Cookie", s-maxage=3',
            CacheControl(no_cache_fields=("set-cookie",), s_maxage=3, present=True),
        ),
        ("no-cache=X-Token", CacheControl(no_cache_fields=("x-token",), present=True)),  # a bare token
        ('no-cache="a,,  B "', CacheControl(no_cache_fields=("a", "b"), present=True)),
        # several qualified directives add up
        (
            'no-cache="A", private="B", no-cache="C"',
            CacheControl(no_cache_fields=("a", "c"), private_fields=("b",), present=True),
        ),
        # the unqualified form wins beside a qualified one: the stricter reading
        ('no-cache="A", no-cache', CacheControl(no_cache=True, no_cache_fields=("a",), present=True)),
        ('private, private="A"', CacheControl(private=True, private_fields=("a",), present=True)),
        # a qualified form naming nothing usable is read as unqualified
        ('no-cache=""', CacheControl(no_cache=True, present=True)),
        ('private=" , "', CacheControl(private=True, present=True)),
        ('private="not a field"', CacheControl(private=True, present=True)),
        # duplicates: the first occurrence wins (RFC 9111 4.2.1 lets a cache pick; we pick the first)
        ("max-age=10, max-age=99", CacheControl(max_age=10, present=True)),
        (["max-age=10", "max-age=99"], CacheControl(max_age=10, present=True)),
        ("s-maxage=1, s-maxage=2", CacheControl(s_maxage=1, present=True)),
        # several field lines are one list
        (["public", "max-age=3"], CacheControl(public=True, max_age=3, present=True)),
        # invalid delta-seconds: treated as 0, i.e. stale (RFC 9111 4.2.1)
        ("max-age=abc", CacheControl(max_age=0, present=True)),
        ("max-age=-5", CacheControl(max_age=0, present=True)),
        ("max-age=1.5", CacheControl(max_age=0, present=True)),
        ("max-age", CacheControl(max_age=0, present=True)),
        ("max-age=", CacheControl(max_age=0, present=True)),
        ("stale-if-error=soon", CacheControl(stale_if_error=0, present=True)),
        # only ASCII DIGIT is delta-seconds (RFC 9111 1.2.2): other Unicode digits are invalid
        ("max-age=\u00b2", CacheControl(max_age=0, present=True)),
        ("max-age=\u0661\u0662", CacheControl(max_age=0, present=True)),
        # overflow is clamped to 2^31 (RFC 9111 1.2.2)
        ("max-age=99999999999999999999", CacheControl(max_age=2**31, present=True)),
        # whitespace around names, values and commas
        ("  max-age = 12 ,  public ", CacheControl(max_age=12, public=True, present=True)),
        # junk: empty members, unknown directives, stray '=' and quotes are ignored
        (",,, ,", CacheControl(present=True)),
        ("foo, bar=baz, =1, max-age=4", CacheControl(max_age=4, present=True)),
        ('community="UCI", max-age=8', CacheControl(max_age=8, present=True)),
        ('"unterminated, max-age=3', CacheControl(present=True)),
    ],
)
def test_parse(header: str | list[str] | None, expected: CacheControl) -> None:
    assert parse(header) == expected


@pytest.mark.parametrize(
    ("header", "forbids"),
    [
        ("max-age=60", False),
        ("max-age=60, public", False),
        ("must-revalidate", True),
        ("proxy-revalidate", True),
        ("no-cache", True),
        ("s-maxage=0", True),  # s-maxage implies proxy-revalidate (RFC 9111 5.2.2.10)
        ("s-maxage=60", True),
        ("stale-if-error=60", False),
    ],
)
def test_forbids_stale(header: str, forbids: bool) -> None:
    assert parse(header).forbids_stale is forbids


@given(st.one_of(st.text(), st.lists(st.text(), max_size=4)))
def test_parse_never_raises_and_values_are_sane(header: str | list[str]) -> None:
    cc = parse(header)
    for value in (cc.max_age, cc.s_maxage, cc.stale_while_revalidate, cc.stale_if_error):
        assert -1 <= value <= 2**31


@given(
    st.lists(
        st.sampled_from(["max-age=1", "max-age=2", "public", "no-store", "x=y", ""]), min_size=1, max_size=6
    )
)
def test_first_max_age_wins(parts: list[str]) -> None:
    cc = parse(", ".join(parts))
    ages = [int(p.split("=")[1]) for p in parts if p.startswith("max-age=")]
    assert cc.max_age == (ages[0] if ages else -1)
    assert cc.no_store is ("no-store" in parts)
