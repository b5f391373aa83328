"""Cache keys: only what the route keys on; the Vary variant key (RFC 9111 section 4.1)."""

from __future__ import annotations

import random
from collections.abc import Callable
from urllib.parse import urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.core.config.model import CacheKey
from proxy.core.keys import (
    SEP,
    VARY_SEP,
    normal_query,
    primary_key,
    route_prefix,
    sent_values,
    variant_key,
)

ALL = CacheKey()
NONE = CacheKey(query="none")


def headers(**values: str) -> Callable[[str], str | None]:
    """A case-insensitive header getter, as aiohttp's `request.headers.get`."""
    low = {k.lower().replace("_", "-"): v for k, v in values.items()}
    return lambda name: low.get(name.lower())


@pytest.mark.parametrize(
    ("query", "policy", "expected"),
    [
        ("", ALL, ""),
        ("a=1", ALL, "a=1"),
        # sorted by name, so parameter order cannot split the cache
        ("b=2&a=1", ALL, "a=1&b=2"),
        # repeated names keep their relative order (a=1&a=2 and a=2&a=1 can mean different things)
        ("a=2&b=1&a=1", ALL, "a=2&a=1&b=1"),
        # blank values are kept; a bare name stays bare (the vendor gets what the key holds)
        ("flag&a=", ALL, "a=&flag"),
        ("a=1&&b=2&", ALL, "a=1&b=2"),
        ("a=b=c", ALL, "a=b%3Dc"),
        # encodings normalise to one form, the one the vendor gets
        ("q=a%20b", ALL, "q=a%20b"),
        ("q=a+b", ALL, "q=a%20b"),
        ("q=%2B", ALL, "q=%2B"),
        ("q=%41", ALL, "q=A"),
        ("ids=1,2&at=a:b", ALL, "at=a:b&ids=1,2"),
        # bytes that are not UTF-8 stay distinct (not one U+FFFD for all)
        ("sku=%ff", ALL, "sku=%FF"),
        ("sku=%fe", ALL, "sku=%FE"),
        ("q=%C3%A9", ALL, "q=%C3%A9"),
        # `;` is not a separator to us, so it may not become one to the vendor
        ("q=shoes;q=evil", ALL, "q=shoes%3Bq%3Devil"),
        ("q=shoes;callback=evilFn", CacheKey(query=("q",)), "q=shoes%3Bcallback%3DevilFn"),
        # none: the query is not keyed at all
        ("a=1&b=2", NONE, ""),
        # a list: only the named parameters (tracking parameters cannot fragment the cache)
        ("utm_source=x&sku=A1&page=2", CacheKey(query=("page", "sku")), "page=2&sku=A1"),
        ("utm_source=x", CacheKey(query=("sku",)), ""),
        ("sku=A1&sku=B2", CacheKey(query=("sku",)), "sku=A1&sku=B2"),
    ],
)
def test_normal_query(query: str, policy: CacheKey, expected: str) -> None:
    assert normal_query(query, policy) == expected


@pytest.mark.parametrize(
    ("a", "b", "policy", "same"),
    [
        # path and route are always keyed
        (("prices", "/api/prices/A1", ""), ("prices", "/api/prices/A2", ""), ALL, False),
        (("prices", "/api/prices/A1", ""), ("other", "/api/prices/A1", ""), ALL, False),
        # the path is compared raw: a different encoding is a different resource to us
        (("prices", "/api/prices/A%31", ""), ("prices", "/api/prices/A1", ""), ALL, False),
        (("prices", "/p", "b=2&a=1"), ("prices", "/p", "a=1&b=2"), ALL, True),
        (("prices", "/p", "a=1"), ("prices", "/p", "a=2"), ALL, False),
        (("prices", "/p", "a=1"), ("prices", "/p", "a=2"), NONE, True),
        (("prices", "/p", "a=1"), ("prices", "/p", ""), NONE, True),
        (("prices", "/p", "sku=1&x=1"), ("prices", "/p", "x=2&sku=1"), CacheKey(query=("sku",)), True),
        # "?" only appears when there is a query part left
        (("prices", "/p", "x=1"), ("prices", "/p", ""), CacheKey(query=("sku",)), True),
    ],
)
def test_primary_key_inputs(
    a: tuple[str, str, str], b: tuple[str, str, str], policy: CacheKey, same: bool
) -> None:
    get = headers()

    def key(route: str, path: str, query: str) -> str:
        return primary_key(route, path, normal_query(query, policy), policy, get)

    assert (key(*a) == key(*b)) is same


def test_primary_key_shape() -> None:
    key = primary_key(
        "prices", "/api/p", "a=1&b=2", CacheKey(headers=("accept-language",)), headers(Accept_Language="en")
    )
    assert key == "prices" + SEP + "/api/p?a=1&b=2" + SEP + "accept-language=en"
    assert key.startswith(route_prefix("prices", "/api/p"))


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ({"Accept_Language": "en"}, {"Accept_Language": "fr"}, False),
        ({"Accept_Language": "en"}, {"accept_language": "en"}, True),
        # whitespace inside a value is normalised
        ({"Accept_Language": "en,  fr"}, {"Accept_Language": " en, fr "}, True),
        # a missing header and an empty one are the same input
        ({}, {"Accept_Language": ""}, True),
        # headers the route does not name are never keyed (or the cache could be split at will)
        ({"X_Forwarded_Host": "evil"}, {}, True),
        ({"Accept_Language": "en", "Cookie": "a=1"}, {"Accept_Language": "en"}, True),
    ],
)
def test_keyed_headers(a: dict[str, str], b: dict[str, str], same: bool) -> None:
    policy = CacheKey(headers=("accept-language",))
    key_a = primary_key("r", "/p", "", policy, headers(**a))
    key_b = primary_key("r", "/p", "", policy, headers(**b))
    assert (key_a == key_b) is same


def test_keyed_headers_in_order_are_distinct_parts() -> None:
    policy = CacheKey(headers=("x-a", "x-b"))
    one = primary_key("r", "/p", "", policy, headers(X_A="1", X_B=""))
    two = primary_key("r", "/p", "", policy, headers(X_A="", X_B="1"))
    assert one != two


@pytest.mark.parametrize(
    ("vary", "a", "b", "same"),
    [
        ((), {"Accept_Language": "en"}, {"Accept_Language": "fr"}, True),
        (("accept-language",), {"Accept_Language": "en"}, {"Accept_Language": "fr"}, False),
        (("accept-language",), {"Accept_Language": "en"}, {"Accept_Language": "en"}, True),
        (("accept-language",), {"Accept_Language": "en"}, {"Accept_Language": " en "}, True),
        (("accept-language",), {"Accept_Language": "en", "X": "1"}, {"Accept_Language": "en"}, True),
        (
            ("accept", "accept-language"),
            {"Accept": "a", "Accept_Language": "b"},
            {"Accept": "b", "Accept_Language": "a"},
            False,
        ),
    ],
)
def test_variant_key(vary: tuple[str, ...], a: dict[str, str], b: dict[str, str], same: bool) -> None:
    primary = primary_key("r", "/p", "", ALL, headers())
    key_a, key_b = variant_key(primary, vary, headers(**a)), variant_key(primary, vary, headers(**b))
    assert (key_a == key_b) is same
    assert key_a.startswith(primary)
    assert (VARY_SEP in key_a) is bool(vary)


def test_variant_key_without_vary_is_the_primary_key() -> None:
    primary = primary_key("r", "/p", "a=1", ALL, headers())
    assert variant_key(primary, (), headers(Accept="x")) == primary


@given(
    st.lists(st.tuples(st.sampled_from("abcxyz"), st.text(alphabet="01 +%&=", max_size=3)), max_size=6),
    st.randoms(),
)
def test_query_order_never_matters_between_names(pairs: list[tuple[str, str]], rnd: random.Random) -> None:
    """Shuffling parameters with different names never changes the key."""
    by_name: dict[str, list[tuple[str, str]]] = {}
    for name, value in pairs:
        by_name.setdefault(name, []).append((name, value))
    names = list(by_name)
    rnd.shuffle(names)
    shuffled = [pair for name in names for pair in by_name[name]]
    assert normal_query(urlencode(pairs), ALL) == normal_query(urlencode(shuffled), ALL)


def test_sent_values_combine_every_line_of_a_name_as_the_lookup_does() -> None:
    """The values a stored variant is keyed on: each Vary name's lines as sent, in any case,
    joined and normalised like the lookup's (RFC 9110 5.3); a name not sent is empty."""
    sent = [("Accept-Language", "fr"), ("X-Tenant", " a  b "), ("accept-language", "EN;q=0.5")]
    values = sent_values(sent, ("accept-language", "x-tenant", "x-missing"))
    assert values == ("fr,en;q=0.5", "a b", "")
