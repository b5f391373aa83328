"""HTTP-date grammar (RFC 9110 5.6.7) as a table: what parses, and every near miss that must not."""

from __future__ import annotations

import calendar
from email.utils import formatdate

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.core.httpdate import parse

SUN_1994 = 784111777.0  # Sun, 06 Nov 1994 08:49:37 GMT, the RFC's own example
AUG_2050 = float(calendar.timegm((2050, 8, 18, 2, 1, 18, 0, 0, 0)))
NOW_2026 = float(calendar.timegm((2026, 12, 4, 0, 0, 0, 0, 0, 0)))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # the three grammars
        ("Sun, 06 Nov 1994 08:49:37 GMT", SUN_1994),  # IMF-fixdate
        ("Sunday, 06-Nov-94 08:49:37 GMT", SUN_1994),  # obsolete RFC 850
        ("Sun Nov  6 08:49:37 1994", SUN_1994),  # asctime: one-digit day padded with a space
        ("Thu Aug 18 02:01:18 2050", AUG_2050),  # asctime, two-digit day
        ("Thu, 18 Aug 2050 02:01:18 GMT", AUG_2050),
        # the field value's own surrounding whitespace is not part of it
        ("  Thu, 18 Aug 2050 02:01:18 GMT\t", AUG_2050),
        # names match case-insensitively (RFC 9111 4.2)
        ("THU, 18 Aug 2050 02:01:18 GMT", AUG_2050),
        ("Thu, 18 AUG 2050 02:01:18 GMT", AUG_2050),
        ("Thu, 18 Aug 2050 02:01:18 gMT", AUG_2050),
        # the day name is not checked against the date
        ("Mon, 18 Aug 2050 02:01:18 GMT", AUG_2050),
        # a leap second reads as :59
        ("Thu, 18 Aug 2050 02:01:60 GMT", AUG_2050 + 41),
        # invalid: each is one departure from the grammar
        ("Thu, 18 Aug 50 02:01:18 GMT", None),  # two-digit year in the IMF form
        ("Thu 18 Aug 2050 02:01:18 GMT", None),  # missing comma
        ("Thu, 18  Aug  2050 02:01:18 GMT", None),  # several spaces
        ("Thu,  18 Aug 2050 02:01:18 GMT", None),
        ("Thu, 18-Aug-2050 02:01:18 GMT", None),  # dashes in the IMF form
        ("Thu, 18 Aug 2050 02.01.18 GMT", None),  # periods
        ("Thu, 18.Aug.2050 02:01:18 GMT", None),
        ("Thu, 18 Aug 2050 2:01:18 GMT", None),  # one-digit hour
        ("Thu, 8 Aug 2050 02:01:18 GMT", None),  # one-digit day
        ("Thu, 18 Aug 2050 02:01:18 UTC", None),  # a zone other than GMT
        ("Thu, 18 Aug 2050 02:01:18 +0000", None),
        ("Thu, 18 Aug 2050 02:01:18 EST", None),
        ("Thu, 18 Aug 2050 02:01:18", None),  # no zone at all
        ("Thu, 18 Aug 2050 02:01:18 GMT, Fri, 19 Aug 2050 02:01:18 GMT", None),  # two lines, combined
        ("Thu, 18 Aug 2050 02:01:18 GMT junk", None),
        ("Thursday, 18 Aug 2050 02:01:18 GMT", None),  # long day name in the IMF form
        ("Thu, 18-Aug-50 02:01:18 GMT", None),  # short day name in the RFC 850 form
        ("Thursday, 18-Aug-2050 02:01:18 GMT", None),  # four-digit year in the RFC 850 form
        ("Sun Nov 6 08:49:37 1994", None),  # asctime day not padded
        ("Sun Nov  6 08:49:37 1994 GMT", None),  # asctime carries no zone
        ("Thu, 18 Augu 2050 02:01:18 GMT", None),
        ("Thu, 31 Sep 2050 02:01:18 GMT", None),  # no such day
        ("Thu, 29 Feb 2050 02:01:18 GMT", None),
        ("Thu, 18 Aug 2050 24:00:00 GMT", None),
        ("Thu, 18 Aug 2050 02:60:00 GMT", None),
        ("Thu, 18 Aug 2050 02:01:61 GMT", None),
        ("Thu, 18 Aug 0000 02:01:18 GMT", None),
        ("Thu, \uff118 Aug 2050 02:01:18 GMT", None),  # a non-ASCII digit (fullwidth one)
        ("0", None),
        ("-1", None),
        ("", None),
        (None, None),
    ],
)
def test_http_date(value: str | None, expected: float | None) -> None:
    assert parse(value) == expected


def test_leap_day_parses() -> None:
    assert parse("Thu, 29 Feb 2024 00:00:00 GMT") == calendar.timegm((2024, 2, 29, 0, 0, 0, 0, 0, 0))


@pytest.mark.parametrize(
    ("value", "year"),
    [
        # RFC 9110 5.6.7: more than 50 years ahead means the last such year in the past
        ("Sunday, 06-Nov-94 08:49:37 GMT", 1994),
        ("Friday, 06-Nov-76 08:49:37 GMT", 2076),  # exactly 50 years ahead of 2026: still ahead
        ("Monday, 06-Nov-77 08:49:37 GMT", 1977),
        ("Friday, 06-Nov-26 08:49:37 GMT", 2026),
        ("Friday, 06-Nov-00 08:49:37 GMT", 2000),
    ],
)
def test_rfc850_two_digit_year_against_now(value: str, year: int) -> None:
    parsed = parse(value, NOW_2026)
    assert parsed is not None
    assert calendar.timegm((year, 11, 6, 8, 49, 37, 0, 0, 0)) == parsed


@given(st.integers(min_value=0, max_value=2**33))
def test_every_imf_fixdate_round_trips(at: int) -> None:
    assert parse(formatdate(at, usegmt=True)) == float(at)


@given(st.text(max_size=40))
def test_never_raises(value: str) -> None:
    result = parse(value)
    assert result is None or isinstance(result, float)
