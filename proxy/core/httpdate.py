"""HTTP-date, strictly (RFC 9110 section 5.6.7): the one parser every date a vendor sends goes through.

Owns: turning an `Expires`, `Date`, `Last-Modified`, `If-Modified-Since` or `Retry-After` value
into epoch seconds, or None when it is not an HTTP-date. Must not: read the clock (a caller that
has `now` passes it, for the two-digit years of the obsolete RFC 850 form), or decide what an
invalid date means (an invalid `Expires` is "already expired": that is `freshness`).

Only the three grammars parse: IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the obsolete
RFC 850 form (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime (`Sun Nov  6 08:49:37 1994`).
Anything else is invalid: a two-digit year in the IMF form, a missing comma, several spaces,
dashes or periods in the wrong place, a one-digit hour, a zone other than GMT, trailing text.

Decisions, written down:
- Day, month and zone names match case-insensitively: RFC 9111 4.2 asks that of a cache.
- The day name is not checked against the date (no RFC asks a recipient to).
- A leap second (`:60`) reads as `:59`; any other out-of-range field is invalid.
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime
from typing import Final

_DAY: Final = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_DAY_LONG: Final = r"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)"
_MONTHS: Final = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTH: Final = r"(?P<month>Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_TIME: Final = r"(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})"
_FLAGS: Final = re.IGNORECASE | re.ASCII

IMF_FIXDATE: Final = re.compile(
    rf"{_DAY}, (?P<day>[0-9]{{2}}) {_MONTH} (?P<year>[0-9]{{4}}) {_TIME} GMT", _FLAGS
)
RFC850_DATE: Final = re.compile(
    rf"{_DAY_LONG}, (?P<day>[0-9]{{2}})-{_MONTH}-(?P<year>[0-9]{{2}}) {_TIME} GMT", _FLAGS
)
ASCTIME_DATE: Final = re.compile(
    rf"{_DAY} {_MONTH} (?P<day>[0-9]{{2}}| [0-9]) {_TIME} (?P<year>[0-9]{{4}})", _FLAGS
)


def parse(value: str | None, now: float | None = None) -> float | None:
    """Epoch seconds of an HTTP-date, or None when `value` is not one.

    `now` (epoch seconds) places an RFC 850 two-digit year; without it, 70-99 are 19xx and
    00-69 are 20xx (the POSIX pivot).
    """
    if value is None:
        return None
    text = value.strip(" \t")  # the field value's own OWS, never inner whitespace
    for grammar in (IMF_FIXDATE, RFC850_DATE, ASCTIME_DATE):
        found = grammar.fullmatch(text)
        if found is not None:
            return _epoch(found, two_digit=grammar is RFC850_DATE, now=now)
    return None


def _epoch(found: re.Match[str], *, two_digit: bool, now: float | None) -> float | None:
    year = int(found["year"])
    if two_digit:
        year = _full_year(year, now)
    month = _MONTHS.index(found["month"].lower()) + 1
    day = int(found["day"].strip())
    hour, minute, second = int(found["hour"]), int(found["minute"]), int(found["second"])
    if year < 1 or not 1 <= day <= calendar.monthrange(year, month)[1]:
        return None
    if hour > 23 or minute > 59 or second > 60:
        return None
    return float(calendar.timegm((year, month, day, hour, minute, min(second, 59), 0, 0, 0)))


def _full_year(yy: int, now: float | None) -> int:
    """RFC 9110 5.6.7: a two-digit year more than 50 years ahead is the last such year in the past."""
    if now is None:
        return 1900 + yy if yy >= 70 else 2000 + yy
    this_year = datetime.fromtimestamp(now, UTC).year  # a conversion, not a clock read
    year = this_year - this_year % 100 + yy
    if year > this_year + 50:
        year -= 100
    elif year < this_year - 49:
        year += 100  # the window is [now - 49, now + 50] years: 27 read in 2080 is 2127
    return year
