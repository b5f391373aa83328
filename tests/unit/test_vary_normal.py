"""The Vary secondary key's normalisation (RFC 9111 4.1) as a table: which request values are
the same variant, and which must stay apart."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from proxy.core.config.model import CacheKey
from proxy.core.headers import field_value
from proxy.core.keys import normal_vary, primary_key, variant_key


@pytest.mark.parametrize(
    ("name", "a", "b", "same"),
    [
        # case, whitespace, empty elements
        ("accept-language", "en-GB, fr", "en-gb,fr", True),
        ("Accept-Language", "EN-gb ,  FR", "en-gb, fr", True),
        ("accept-language", "en,, fr,", "en, fr", True),
        ("accept-language", " en ; q=0.5 , fr ", "fr, en;q=0.5", True),
        # q: the default 1 written or not, its spelling, its case
        ("accept-language", "en;q=1, fr;q=1.000", "en, fr", True),
        ("accept-language", "fr;q=0.50", "fr;Q=0.5", True),
        # order by q: a lower-q element listed first is the same list
        ("accept-language", "de;q=0.3, en, fr;q=0.7", "en, fr;q=0.7, de;q=0.3", True),
        # equal q: order "cannot be relied upon" (RFC 9110 12.5.4), so it is sorted away
        ("accept-language", "en, de", "de, en", True),
        ("accept", "application/json, text/html", "text/html, application/json", True),
        ("accept-language", "en, de;q=0.5, fr;q=0.5", "fr;q=0.5, en, de;q=0.5", True),
        ("accept-encoding", "gzip, br", "br, gzip", True),
        ("accept-encoding", "gzip;q=1.0, BR", "br,gzip", True),
        ("accept-charset", "utf-8, iso-8859-1", "ISO-8859-1, UTF-8", True),
        # different q, different language, different parameter: different variants
        ("accept-language", "en, fr;q=0.5", "en, fr;q=0.6", False),
        ("accept-language", "en", "en-gb", False),
        ("accept-encoding", "gzip", "gzip;q=0", False),
        ("accept", "text/html;level=1", "text/html;level=2", False),
        ("accept", "text/html;level=1", "TEXT/HTML; LEVEL=1", True),
        # an invalid q is kept as written and sorts as q=1
        ("accept-language", "en;q=abc", "en;q=abc", True),
        ("accept-language", "en;q=abc", "en", False),
        # absent and empty are the same (nothing sent)
        ("accept-language", None, "", True),
        ("accept-language", None, "en", False),
        # other headers: whitespace runs collapse and whitespace around commas goes (RFC 9110
        # 5.6.1); case and order count
        ("x-tenant", "a   b", "a b", True),
        ("foo", "1,2", " 1, 2 ", True),
        ("foo", "1 ,2", "1,2", True),
        ("x-tenant", "A", "a", False),
        ("x-tenant", "a,b", "b,a", False),
        ("x-tenant", "a b", "ab", False),
    ],
)
def test_normal_vary(name: str, a: str | None, b: str | None, same: bool) -> None:
    assert (normal_vary(name, a) == normal_vary(name, b)) is same


def test_the_lookup_key_uses_the_same_rule() -> None:
    primary = primary_key("r", "/p", "", CacheKey(), lambda _: None)
    sent = {"accept-language": "fr;q=0.5, EN"}
    stored = primary + "\x1e" + normal_vary("accept-language", sent["accept-language"])
    assert variant_key(primary, ("accept-language",), {"accept-language": "en, fr;q=0.5"}.get) == stored


@given(st.lists(st.sampled_from(["en", "fr;q=0.5", "de;q=0.1", "it;q=0.9", "es;q=0"]), unique=True))
def test_order_by_q_is_idempotent(elements: list[str]) -> None:
    once = normal_vary("accept-language", ", ".join(elements))
    assert normal_vary("accept-language", once) == once


@given(st.text(max_size=30))
def test_never_raises(value: str) -> None:
    for name in ("accept", "accept-language", "x-other"):
        assert isinstance(normal_vary(name, value), str)


def test_several_field_lines_match_one_combined_line() -> None:
    two = CIMultiDict([("Foo", "1"), ("Foo", "2"), ("Accept-Language", "de"), ("Accept-Language", "en")])
    assert normal_vary("foo", field_value(two, "foo")) == normal_vary("foo", "1, 2")
    assert normal_vary("accept-language", field_value(two, "accept-language")) == normal_vary(
        "accept-language", "en,de"
    )
