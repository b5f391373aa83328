"""RFC 9111 / RFC 5861 decisions as tables against explicit `now` values, plus properties."""

from __future__ import annotations

from dataclasses import replace
from email.utils import formatdate

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.core import freshness, httpdate
from proxy.core.cachecontrol import parse
from proxy.core.conditional import not_modified
from proxy.core.config.model import RouteCache
from proxy.core.decide import Action, Vendor, on_lookup
from proxy.core.freshness import (
    Deadlines,
    deadlines,
    initial_age,
    lifetime,
    merge_304,
    refreshed,
    storable,
    stored,
    usable_on_error,
    vary_names,
    without_withheld,
)
from proxy.core.model import Entry, Headers

T0 = 1_700_000_000.0  # response_time in most rows: a whole second, so HTTP dates are exact
TTL = RouteCache(ttl=30.0)
NO_TTL = RouteCache()


def date(at: float) -> str:
    return formatdate(at, usegmt=True)


def h(*pairs: tuple[str, str]) -> Headers:
    return tuple(pairs)


def cc_of(headers: Headers) -> str:
    return ", ".join(v for k, v in headers if k.lower() == "cache-control")


def entry(**kw: object) -> Entry:
    base: dict[str, object] = {
        "status": 200,
        "headers": (("Content-Type", "application/json"),),
        "body": b"{}",
        "stored_at": 0.0,
        "initial_age": 0.0,
        "fresh_until": 100.0,
        "stale_until": 160.0,
        "error_until": 3700.0,
        "keep_until": 3700.0,
    }
    base.update(kw)
    return Entry(**base)  # type: ignore[arg-type]


# -- storable ---------------------------------------------------------------------------------

CC_60 = ("Cache-Control", "max-age=60")
ETAG = ("ETag", '"v1"')


@pytest.mark.parametrize(
    ("status", "headers", "policy", "authorized", "why"),
    [
        # statuses (RFC 9110 15.1 heuristically cacheable; 5xx and 206 never; 1xx never)
        (200, h(CC_60), NO_TTL, False, None),
        (203, h(CC_60), NO_TTL, False, None),
        (204, h(CC_60), NO_TTL, False, None),
        (301, h(CC_60), NO_TTL, False, None),
        (404, h(), TTL, False, None),  # heuristic status + route ttl
        (410, h(), TTL, False, None),
        (500, h(CC_60), TTL, False, "status"),
        (502, h(CC_60), TTL, False, "status"),
        (503, h(("Cache-Control", "public, max-age=60")), TTL, False, "status"),
        (206, h(CC_60), TTL, False, "status"),
        (100, h(CC_60), TTL, False, "status"),
        # not heuristically cacheable: stored only with explicit freshness or public
        (302, h(), TTL, False, "status"),
        (403, h(), TTL, False, "status"),
        (302, h(CC_60), NO_TTL, False, None),
        (403, h(("Expires", date(T0 + 60)), ("Date", date(T0))), NO_TTL, False, None),
        (307, h(("Cache-Control", "public")), TTL, False, None),
        # no-store and private (RFC 9111 3, 5.2.2.5, 5.2.2.7)
        (200, h(("Cache-Control", "no-store, max-age=60")), TTL, False, "no-store"),
        (200, h(("Cache-Control", "private, max-age=60")), TTL, False, "private"),
        # qualified private / no-cache: storable, without the named fields (RFC 9111 5.2.2.4, 5.2.2.7)
        (200, h(("Cache-Control", 'private="Set-Cookie", max-age=60')), TTL, False, None),
        (200, h(("Cache-Control", 'private="X-User", max-age=60'), ("X-User", "ann")), TTL, False, None),
        (200, h(("Cache-Control", 'no-cache="X-User", max-age=60')), TTL, False, None),
        (200, h(("Cache-Control", 'private, private="X-User", max-age=60')), TTL, False, "private"),
        # Set-Cookie named by a qualified directive is withheld, so the rest may be shared
        (
            200,
            h(("Cache-Control", 'private="Set-Cookie", max-age=60'), ("Set-Cookie", "s=1")),
            TTL,
            False,
            None,
        ),
        (
            200,
            h(("Cache-Control", 'no-cache="set-cookie", max-age=60'), ("Set-Cookie", "s=1")),
            TTL,
            False,
            None,
        ),
        (
            200,
            h(("Cache-Control", 'private="X-User", max-age=60'), ("Set-Cookie", "s=1")),
            TTL,
            False,
            "set-cookie",
        ),
        (200, h(("Cache-Control", "no-store")), RouteCache(ttl=30, force_ttl=True), False, "no-store"),
        # Authorization (RFC 9111 3.5): only public, s-maxage or must-revalidate allow sharing
        (200, h(CC_60), TTL, True, "authorization"),
        (200, h(CC_60, ETAG), TTL, True, "authorization"),
        (200, h(("Cache-Control", "public, max-age=60")), TTL, True, None),
        (200, h(("Cache-Control", "s-maxage=60")), TTL, True, None),
        (200, h(("Cache-Control", "must-revalidate, max-age=60")), TTL, True, None),
        (200, h(("Cache-Control", "proxy-revalidate, max-age=60")), TTL, True, "authorization"),
        (200, h(CC_60), RouteCache(ttl=30, share_authorized=True), True, None),
        # Set-Cookie: never stored unless the route says so
        (200, h(CC_60, ("Set-Cookie", "s=1")), TTL, False, "set-cookie"),
        (200, h(CC_60, ("set-cookie", "s=1")), TTL, False, "set-cookie"),
        (200, h(CC_60, ("Set-Cookie", "s=1")), RouteCache(ttl=30, store_set_cookie=True), False, None),
        # Vary: * never matches a later request (RFC 9111 4.1), also inside a list
        (200, h(CC_60, ("Vary", "*")), TTL, False, "vary-star"),
        (200, h(CC_60, ("Vary", "Accept, *")), TTL, False, "vary-star"),
        (200, h(CC_60, ("Vary", "Accept"), ("Vary", "*")), TTL, False, "vary-star"),
        (200, h(CC_60, ("Vary", "Accept-Language")), TTL, False, None),
        # no freshness and no validator: only with a route ttl
        (200, h(), NO_TTL, False, "no-freshness"),
        (200, h(), TTL, False, None),
        (200, h(ETAG), NO_TTL, False, None),
        (200, h(("Last-Modified", date(T0 - 3600))), NO_TTL, False, None),
        (200, h(("Expires", date(T0 + 60))), NO_TTL, False, None),
        (200, h(("Cache-Control", "s-maxage=10")), NO_TTL, False, None),
        (200, h(("Cache-Control", "no-cache")), NO_TTL, False, None),  # stored, always revalidated
        (200, h(("Cache-Control", "public")), NO_TTL, False, "no-freshness"),
    ],
)
def test_storable(
    status: int, headers: Headers, policy: RouteCache, authorized: bool, why: str | None
) -> None:
    cc = parse(cc_of(headers))
    assert storable(status=status, headers=headers, cc=cc, policy=policy, authorized=authorized) == why


@pytest.mark.parametrize(
    ("headers", "names"),
    [
        (h(), ()),
        (h(("Vary", "Accept-Language")), ("accept-language",)),
        (h(("Vary", "Accept-Encoding, accept-language")), ("accept-encoding", "accept-language")),
        (h(("vary", "B"), ("Vary", "a, b")), ("a", "b")),
        (h(("Vary", " , ")), ()),
        (h(("Vary", "*")), None),
        (h(("Vary", "Accept, *")), None),
    ],
)
def test_vary_names(headers: Headers, names: tuple[str, ...] | None) -> None:
    assert vary_names(headers) == names


@pytest.mark.parametrize(
    ("headers", "kept"),
    [
        (h(CC_60, ("X-User", "ann")), ("cache-control", "x-user")),
        (h(("Cache-Control", 'private="X-User"'), ("X-User", "ann"), ETAG), ("cache-control", "etag")),
        (h(("Cache-Control", 'no-cache="x-user"'), ("x-USER", "ann"), ETAG), ("cache-control", "etag")),
        # every field line of a withheld name goes, and every name listed
        (
            h(("Cache-Control", 'private="Set-Cookie, X-A", no-cache="X-B"'), ("Set-Cookie", "a=1"))
            + h(("Set-Cookie", "b=2"), ("X-A", "1"), ("X-B", "2"), ("X-C", "3")),
            ("cache-control", "x-c"),
        ),
        # unqualified: nothing to withhold (the whole response is refused or revalidated instead)
        (h(("Cache-Control", "no-cache"), ("X-User", "ann")), ("cache-control", "x-user")),
    ],
)
def test_without_withheld(headers: Headers, kept: tuple[str, ...]) -> None:
    cc = parse(cc_of(headers))
    assert tuple(k.lower() for k, _ in without_withheld(headers, cc)) == kept


def test_qualified_no_cache_is_fresh_and_allows_stale() -> None:
    """Only the named fields need revalidation; the rest of the response keeps its freshness."""
    cc = parse('no-cache="X-User", max-age=60')
    assert lifetime(h(), cc, NO_TTL) == 60.0
    assert not cc.forbids_stale


# -- lifetime ---------------------------------------------------------------------------------

DATE_T0 = ("Date", date(T0))


@pytest.mark.parametrize(
    ("headers", "policy", "expected"),
    [
        # precedence: s-maxage > max-age > Expires - Date > route ttl (RFC 9111 4.2.1)
        (h(("Cache-Control", "s-maxage=5, max-age=60"), ("Expires", date(T0 + 90)), DATE_T0), TTL, 5.0),
        (h(("Cache-Control", "max-age=60"), ("Expires", date(T0 + 90)), DATE_T0), TTL, 60.0),
        (h(("Expires", date(T0 + 90)), DATE_T0), TTL, 90.0),
        (h(DATE_T0), TTL, 30.0),
        (h(DATE_T0), NO_TTL, 0.0),
        (h(("Cache-Control", "public"), DATE_T0), TTL, 30.0),  # no freshness of its own
        (h(("Cache-Control", "max-age=0")), TTL, 0.0),  # explicit zero is not "absent"
        # force_ttl: the route wins over everything the upstream says
        (h(("Cache-Control", "max-age=600")), RouteCache(ttl=30, force_ttl=True), 30.0),
        (h(("Cache-Control", "no-cache, max-age=600")), RouteCache(ttl=30, force_ttl=True), 30.0),
        (h(("Cache-Control", "max-age=600")), RouteCache(ttl=0, force_ttl=True), 600.0),
        # no-cache: stored but stale at once (RFC 9111 5.2.2.4)
        (h(("Cache-Control", "no-cache, max-age=600")), TTL, 0.0),
        # Expires in the past, or invalid (including "0"): already expired (RFC 9111 5.3)
        (h(("Expires", date(T0 - 10)), DATE_T0), TTL, 0.0),
        (h(("Expires", "0"), DATE_T0), TTL, 0.0),
        (h(("Expires", "yesterday"), DATE_T0), TTL, 0.0),
        (h(("Expires", date(T0 + 90)), ("Date", "garbage")), TTL, 0.0),  # and no time received
        # strict HTTP-date (RFC 9110 5.6.7): every near miss is invalid, so already expired
        (h(("Expires", "Tue, 14 Nov 23 22:14:50 GMT"), DATE_T0), TTL, 0.0),  # two-digit year
        (h(("Expires", "Tue 14 Nov 2023 22:14:50 GMT"), DATE_T0), TTL, 0.0),  # missing comma
        (h(("Expires", "Tue, 14  Nov 2023 22:14:50 GMT"), DATE_T0), TTL, 0.0),  # several spaces
        (h(("Expires", "Tue, 14-Nov-2023 22:14:50 GMT"), DATE_T0), TTL, 0.0),  # dashes
        (h(("Expires", "Tue, 14 Nov 2023 22.14.50 GMT"), DATE_T0), TTL, 0.0),  # periods
        (h(("Expires", "Tue, 14 Nov 2023 2:14:50 GMT"), DATE_T0), TTL, 0.0),  # one-digit hour
        (h(("Expires", "Tue, 14 Nov 2023 22:14:50 UTC"), DATE_T0), TTL, 0.0),  # zone not GMT
        # ... while the valid forms of the same instant (T0 + 90) are 90 s of freshness
        (h(("Expires", "Tue, 14 Nov 2023 22:14:50 GMT"), DATE_T0), TTL, 90.0),
        (h(("Expires", "Tuesday, 14-Nov-23 22:14:50 GMT"), DATE_T0), TTL, 90.0),
        (h(("Expires", "Tue Nov 14 22:14:50 2023"), DATE_T0), TTL, 90.0),
        (h(("Expires", "tue, 14 nov 2023 22:14:50 gmt"), DATE_T0), TTL, 90.0),  # RFC 9111 4.2
        # Expires on two field lines, even the same date twice: invalid (RFC 9111 4.2 allows either)
        (h(("Expires", date(T0 + 90)), ("Expires", date(T0 + 90)), DATE_T0), TTL, 0.0),
        # Expires beside an invalid max-age: the invalid max-age (0) still takes precedence
        (h(("Cache-Control", "max-age=soon"), ("Expires", date(T0 + 90)), DATE_T0), TTL, 0.0),
    ],
)
def test_lifetime(headers: Headers, policy: RouteCache, expected: float) -> None:
    assert lifetime(headers, parse(cc_of(headers)), policy) == expected


def test_lifetime_expires_without_date_uses_the_time_received() -> None:
    """RFC 9110 6.6.1: a response without Date is dated when it is received."""
    headers = h(("Expires", date(T0 + 90)))
    assert lifetime(headers, parse(None), NO_TTL, received=T0) == 90.0
    assert lifetime(headers, parse(None), NO_TTL) == 0.0  # no time to compare with


def test_lifetime_expires_with_an_invalid_date_uses_the_time_received() -> None:
    """An invalid Date is as good as none (RFC 9110 6.6.1), not a reason to call Expires invalid."""
    for bad in ("garbage", "Tue, 14 Nov 23 22:13:20 GMT", "Tue, 14 Nov 2023 22:13:20 UTC"):
        headers = h(("Expires", date(T0 + 90)), ("Date", bad))
        assert lifetime(headers, parse(None), NO_TTL, received=T0) == 90.0


# -- initial age ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "request_time", "response_time", "expected"),
    [
        (h(DATE_T0), T0, T0, 0.0),
        (h(), T0, T0, 0.0),
        # apparent age: the response was generated before we received it
        (h(("Date", date(T0 - 12))), T0, T0, 12.0),
        # a Date in the future never makes a negative age
        (h(("Date", date(T0 + 50))), T0, T0, 0.0),
        # Age from an upstream cache counts, plus the response delay (RFC 9111 4.2.3)
        (h(DATE_T0, ("Age", "20")), T0, T0, 20.0),
        (h(DATE_T0, ("Age", "20")), T0 - 3, T0, 23.0),
        (h(("Date", date(T0 - 40)), ("Age", "20")), T0 - 3, T0, 40.0),  # apparent age wins
        (h(("Age", " 7 ")), T0, T0, 7.0),
        # invalid Age values are ignored
        (h(("Age", "-5")), T0, T0, 0.0),
        (h(("Age", "1.5")), T0, T0, 0.0),
        (h(("Age", "soon")), T0, T0, 0.0),
        (h(("Age", "\u00b2")), T0, T0, 0.0),
        # response delay alone
        (h(), T0 - 2.5, T0, 2.5),
    ],
)
def test_initial_age(headers: Headers, request_time: float, response_time: float, expected: float) -> None:
    assert initial_age(headers, request_time, response_time) == expected


# -- deadlines --------------------------------------------------------------------------------

ROUTE = RouteCache(ttl=30, stale_while_revalidate=60, stale_if_error=3600, lkg_max_age=86400)


@pytest.mark.parametrize(
    ("cc", "extra", "policy", "lkg", "fresh", "swr", "sie", "lkg_for"),
    [
        # the route widens the upstream's windows (the larger wins)
        ("max-age=10", h(), ROUTE, False, 10, 60, 3600, 0),
        ("max-age=10, stale-while-revalidate=300, stale-if-error=5", h(), ROUTE, False, 10, 300, 3600, 0),
        ("max-age=10", h(), NO_TTL, False, 10, 0, 0, 0),
        ("max-age=10, stale-while-revalidate=20, stale-if-error=40", h(), NO_TTL, False, 10, 20, 40, 0),
        # must-revalidate / proxy-revalidate / no-cache / s-maxage forbid the route's stale windows
        ("max-age=10, must-revalidate", h(), ROUTE, False, 10, 0, 0, 0),
        ("max-age=10, proxy-revalidate", h(), ROUTE, False, 10, 0, 0, 0),
        ("no-cache", h(), ROUTE, False, 0, 0, 0, 0),
        ("s-maxage=10", h(), ROUTE, False, 10, 0, 0, 0),
        # ... unless the response grants its own window (RFC 5861 beats RFC 9111 4.2.4 there)
        ("max-age=10, must-revalidate, stale-if-error=120", h(), ROUTE, False, 10, 0, 120, 0),
        ("s-maxage=10, stale-while-revalidate=15", h(), ROUTE, False, 10, 15, 0, 0),
        # force_ttl: the route's windows, whatever the response says
        (
            "max-age=600, must-revalidate, stale-if-error=9999",
            h(),
            replace(ROUTE, force_ttl=True),
            False,
            30,
            60,
            3600,
            0,
        ),
        # the age at arrival is subtracted from freshness, never below zero
        ("max-age=10", h(("Age", "4")), ROUTE, False, 6, 60, 3600, 0),
        ("max-age=10", h(("Age", "40")), ROUTE, False, 0, 60, 3600, 0),
        # last-known-good: granted for guarded routes unless the response forbids stale use
        ("max-age=10", h(), ROUTE, True, 10, 60, 3600, 86400),
        ("max-age=10, must-revalidate", h(), ROUTE, True, 10, 0, 0, 0),
        ("max-age=10, must-revalidate", h(), replace(ROUTE, force_ttl=True), True, 30, 60, 3600, 86400),
    ],
)
def test_deadlines(
    cc: str,
    extra: Headers,
    policy: RouteCache,
    lkg: bool,
    fresh: float,
    swr: float,
    sie: float,
    lkg_for: float,
) -> None:
    headers = (("Cache-Control", cc), DATE_T0, *extra)
    d = deadlines(headers=headers, cc=parse(cc), policy=policy, request_time=T0, response_time=T0, lkg=lkg)
    assert d.fresh_until == T0 + fresh
    assert d.stale_until == d.fresh_until + swr
    assert d.error_until == d.fresh_until + sie
    assert d.lkg_until == (T0 + lkg_for if lkg_for else 0.0)
    assert d.keep_until == max(d.stale_until, d.error_until, d.lkg_until)


def test_deadlines_keep_an_entry_with_validators_for_revalidation() -> None:
    headers = h(("Cache-Control", "max-age=10"), DATE_T0, ETAG)
    d = deadlines(
        headers=headers, cc=parse("max-age=10"), policy=NO_TTL, request_time=T0, response_time=T0, lkg=False
    )
    assert (d.fresh_until, d.stale_until, d.error_until) == (T0 + 10, T0 + 10, T0 + 10)
    assert d.keep_until == T0 + 10 + 3600  # kept so a 304 can save the body transfer


def test_deadlines_count_the_response_delay() -> None:
    d = deadlines(
        headers=h(("Cache-Control", "max-age=10")),
        cc=parse("max-age=10"),
        policy=NO_TTL,
        request_time=T0 - 3,
        response_time=T0,
        lkg=False,
    )
    assert d.initial_age == 3.0
    assert d.fresh_until == T0 + 7


# -- usable_on_error ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "lkg_until", "usable"),
    [
        (50.0, 0.0, "fresh"),
        (100.0, 0.0, "stale-if-error"),
        (3699.0, 0.0, "stale-if-error"),
        (3700.0, 0.0, None),
        (3700.0, 90_000.0, "last-known-good"),
        (89_999.0, 90_000.0, "last-known-good"),
        (90_000.0, 90_000.0, None),
    ],
)
def test_usable_on_error(now: float, lkg_until: float, usable: str | None) -> None:
    assert usable_on_error(entry(lkg_until=lkg_until), now) == usable


_RANK = {Action.HIT: 0, Action.STALE: 1, Action.FETCH: 2}


@given(
    max_age=st.integers(min_value=-1, max_value=10**6),
    swr=st.integers(min_value=-1, max_value=10**6),
    sie=st.integers(min_value=-1, max_value=10**6),
    age=st.integers(min_value=0, max_value=10**6),
    route_ttl=st.floats(min_value=0, max_value=10**6),
    route_swr=st.floats(min_value=0, max_value=10**6),
    must_revalidate=st.booleans(),
    force=st.booleans(),
    times=st.lists(st.floats(min_value=-(10**7), max_value=10**7), min_size=2, max_size=20),
)
def test_decide_is_monotone_in_time(
    max_age: int,
    swr: int,
    sie: int,
    age: int,
    route_ttl: float,
    route_swr: float,
    must_revalidate: bool,
    force: bool,
    times: list[float],
) -> None:
    """HIT -> STALE -> FETCH as time passes, never back; and error use outlives freshness."""
    parts = [
        f"max-age={max_age}" if max_age >= 0 else "",
        f"stale-while-revalidate={swr}" if swr >= 0 else "",
        f"stale-if-error={sie}" if sie >= 0 else "",
        "must-revalidate" if must_revalidate else "",
    ]
    cc_text = ", ".join(p for p in parts if p)
    headers = h(("Cache-Control", cc_text), ("Age", str(age)))
    policy = RouteCache(
        ttl=route_ttl, stale_while_revalidate=route_swr, stale_if_error=route_swr * 2, force_ttl=force
    )
    d = deadlines(
        headers=headers, cc=parse(cc_text), policy=policy, request_time=0.0, response_time=0.0, lkg=True
    )
    e = entry(
        fresh_until=d.fresh_until,
        stale_until=d.stale_until,
        error_until=d.error_until,
        keep_until=d.keep_until,
        lkg_until=d.lkg_until,
    )
    ranks = [_RANK[on_lookup(e, t, Vendor()).action] for t in sorted(times)]
    assert ranks == sorted(ranks)
    for t in times:
        if on_lookup(e, t, Vendor()).action is Action.HIT:
            assert usable_on_error(e, t) == "fresh"
        if usable_on_error(e, t) is not None:
            assert t < e.keep_until  # the store still holds what the core may use


# -- 304 handling -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stored", "fresh", "merged"),
    [
        # new values replace stored ones; untouched ones are kept
        (
            h(("Content-Type", "a/b"), ("X-Version", "1")),
            h(("X-Version", "2")),
            h(("Content-Type", "a/b"), ("X-Version", "2")),
        ),
        (h(("Content-Type", "a/b")), h(("X-New", "y")), h(("Content-Type", "a/b"), ("X-New", "y"))),
        # names compare case-insensitively
        (
            h(("etag", '"1"')),
            h(("ETag", '"2"')),
            h(
                ("ETag", '"2"'),
            ),
        ),
        # headers the stored body depends on are never taken from a 304 (RFC 9111 3.2)
        (
            h(("Content-Length", "10"), ("Content-Encoding", "gzip")),
            h(("Content-Length", "0"), ("Content-Encoding", "br")),
            h(("Content-Length", "10"), ("Content-Encoding", "gzip")),
        ),
        # every field line of a multi-valued header in the 304 replaces the stored ones
        (
            h(("Link", "<a>"), ("X", "1")),
            h(("Link", "<b>"), ("Link", "<c>")),
            h(("X", "1"), ("Link", "<b>"), ("Link", "<c>")),
        ),
    ],
)
def test_merge_304(stored: Headers, fresh: Headers, merged: Headers) -> None:
    assert merge_304(stored, fresh) == merged


def test_refreshed_takes_new_validators_from_the_merged_headers() -> None:
    old = entry(
        headers=h(("ETag", '"v1"'), ("Last-Modified", date(T0 - 60))),
        etag='"v1"',
        last_modified=date(T0 - 60),
    )
    merged = merge_304(old.headers, h(("ETag", '"v2"'), DATE_T0))
    d = deadlines(
        headers=merged, cc=parse("max-age=10"), policy=NO_TTL, request_time=T0, response_time=T0, lkg=False
    )
    new = refreshed(old, merged, d, T0)
    assert (new.etag, new.last_modified) == ('"v2"', date(T0 - 60))
    assert new.fresh_until == T0 + 10 and new.stored_at == T0 and new.body == old.body


LM = date(T0 - 3600)


@pytest.mark.parametrize(
    ("etag", "last_modified", "inm", "ims", "expected"),
    [
        ('"v1"', None, '"v1"', None, True),
        ('"v1"', None, '"v2"', None, False),
        ('"v1"', None, '"v0", "v1"', None, True),
        ('"v1"', None, '"v0" ,"v1" ', None, True),
        ('"v1"', None, "*", None, True),
        # weak comparison for If-None-Match (RFC 9110 13.1.2)
        ('W/"v1"', None, '"v1"', None, True),
        ('"v1"', None, 'W/"v1"', None, True),
        ('W/"v1"', None, 'W/"v2"', None, False),
        # no stored ETag: only * matches
        (None, LM, '"v1"', None, False),
        (None, LM, "*", None, True),
        # If-Modified-Since alone
        (None, LM, None, LM, True),
        (None, LM, None, date(T0), True),
        (None, LM, None, date(T0 - 7200), False),
        (None, LM, None, "not a date", False),
        (None, None, None, LM, False),
        # If-None-Match takes precedence: when present, If-Modified-Since is ignored (RFC 9110 13.2.2)
        ('"v1"', LM, '"v2"', date(T0), False),
        ('"v1"', LM, '"v1"', date(T0 - 7200), True),
        # neither
        ('"v1"', LM, None, None, False),
    ],
)
def test_not_modified(
    etag: str | None, last_modified: str | None, inm: str | None, ims: str | None, expected: bool
) -> None:
    e = entry(etag=etag, last_modified=last_modified)
    assert not_modified(e, inm, ims) is expected


def test_an_entry_is_made_once_from_its_response_and_deadlines() -> None:
    d = Deadlines(3.0, 110.0, 170.0, 3710.0, 7310.0, 9000.0, heuristic=True)
    headers = h(("ETag", '"v1"'), ("Last-Modified", "Tue, 01 Dec 2026 10:00:00 GMT"))
    made = stored(200, headers, b"{}", d, 10.0, vary=("accept",), vary_values=("json",), url="/p")
    assert made == Entry(
        200, headers, b"{}", 10.0, 3.0, 110.0, 170.0, 3710.0, 7310.0, 9000.0,
        '"v1"', "Tue, 01 Dec 2026 10:00:00 GMT", ("accept",), ("json",), "/p", True,
    )  # fmt: skip
    assert refreshed(made, headers, d, 10.0) == made  # the same deadlines: the same entry


@pytest.mark.parametrize(
    "value",
    [
        "Sun, 06 Nov 1994 08:49:37 GMT",  # IMF-fixdate: memoised
        "Sun, 31 Feb 1994 08:49:37 GMT",  # the right length, not a date: None, memoised too
        "Sunday, 06-Nov-94 08:49:37 GMT",  # RFC 850: its year depends on `now`
        "Sun Nov  6 08:49:37 1994",  # asctime
        "  Sun, 06 Nov 1994 08:49:37 GMT ",
        "garbage",
    ],
)
def test_dates_read_as_the_http_date_parser_reads_them(value: str) -> None:
    for now in (784111777.0, 4102444800.0 + 86400 * 365 * 60):  # 1994, and 2090: 94 is 2094 then
        assert freshness.http_date(value, now) == httpdate.parse(value, now)
        assert freshness.http_date(value, now) == freshness.http_date(value, now)  # memo agrees
