"""Heuristic freshness (RFC 9111 4.2.2) as tables: when a guess from Last-Modified applies,
how long it is, and that the stored entry remembers it was a guess."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from proxy.config import ConfigError, parse_config
from proxy.core.cachecontrol import effective
from proxy.core.config.model import RouteCache
from proxy.core.freshness import deadlines, heuristic_lifetime, lifetime
from proxy.core.model import Entry, Headers
from proxy.store.codec import decode, encode

T0 = 1_700_000_000.0
DAY = 86400.0
ON = RouteCache()  # 10%, capped at a day
OFF = RouteCache(heuristic_fraction=0.0)


def date(at: float) -> str:
    return formatdate(at, usegmt=True)


def lm(ago: float) -> tuple[tuple[str, str], ...]:
    return (("Date", date(T0)), ("Last-Modified", date(T0 - ago)))


@pytest.mark.parametrize(
    ("headers", "policy", "status", "expected"),
    [
        (lm(1000), ON, 200, 100.0),  # 10% of the time since Last-Modified
        (lm(1000), RouteCache(heuristic_fraction=0.25), 200, 250.0),
        (lm(100 * DAY), ON, 200, DAY),  # capped
        (lm(100 * DAY), RouteCache(heuristic_max=3600.0), 200, 3600.0),
        # every heuristically cacheable status (RFC 9110 15.1), and only those...
        (lm(1000), ON, 404, 100.0),
        (lm(1000), ON, 301, 100.0),
        (lm(1000), ON, 410, 100.0),
        (lm(1000), ON, 302, None),
        (lm(1000), ON, 403, None),
        # ... unless the response is public (RFC 9111 4.2.2)
        ((*lm(1000), ("Cache-Control", "public")), ON, 302, 100.0),
        # off, no status given, no usable Last-Modified, or one not before Date
        (lm(1000), OFF, 200, None),
        (lm(1000), ON, None, None),
        ((("Date", date(T0)),), ON, 200, None),
        ((("Date", date(T0)), ("Last-Modified", "yesterday")), ON, 200, None),
        ((("Date", date(T0)), ("Last-Modified", "Tue, 14 Nov 23 22:13:20 GMT")), ON, 200, None),  # not strict
        (lm(0), ON, 200, None),
        (lm(-60), ON, 200, None),  # modified in the future
        # no (or an invalid) Date: the time received stands in
        ((("Last-Modified", date(T0 - 1000)),), ON, 200, 100.0),
        ((("Date", "garbage"), ("Last-Modified", date(T0 - 1000))), ON, 200, 100.0),
    ],
)
def test_heuristic_lifetime(
    headers: Headers, policy: RouteCache, status: int | None, expected: float | None
) -> None:
    assert heuristic_lifetime(headers, effective(headers), policy, T0, status) == expected


@pytest.mark.parametrize(
    ("extra", "policy", "expected", "heuristic"),
    [
        ((), ON, 100.0, True),
        ((), OFF, 0.0, False),
        # explicit freshness of any kind wins (RFC 9111 4.2.2: only without it)
        ((("Cache-Control", "max-age=5"),), ON, 5.0, False),
        ((("Cache-Control", "s-maxage=5"),), ON, 5.0, False),
        ((("Expires", date(T0 + 7)),), ON, 7.0, False),
        ((("Expires", "0"),), ON, 0.0, False),  # an invalid Expires is already expired, not a guess
        ((("Cache-Control", "no-cache"),), ON, 0.0, False),
        ((("CDN-Cache-Control", "max-age=9"),), ON, 9.0, False),
        ((("CDN-Cache-Control", "none"), ("Cache-Control", "max-age=5")), ON, 100.0, True),
        # the route's ttl is the operator's own guess, and beats ours; force_ttl beats all
        ((), RouteCache(ttl=30.0), 30.0, False),
        ((("Cache-Control", "max-age=5"),), RouteCache(ttl=30.0, force_ttl=True), 30.0, False),
    ],
)
def test_heuristic_only_without_explicit_freshness(
    extra: Headers, policy: RouteCache, expected: float, heuristic: bool
) -> None:
    headers = (*lm(1000), *extra)
    cc = effective(headers, ("cdn-cache-control",))
    assert lifetime(headers, cc, policy, T0, 200) == expected
    d = deadlines(
        headers=headers, cc=cc, policy=policy, request_time=T0, response_time=T0, lkg=False, status=200
    )
    assert (d.fresh_until - T0, d.heuristic) == (expected, heuristic)


def test_heuristic_freshness_is_used_up_by_age() -> None:
    headers = (*lm(1000), ("Age", "40"))
    d = deadlines(
        headers=headers,
        cc=effective(headers),
        policy=ON,
        request_time=T0,
        response_time=T0,
        lkg=False,
        status=200,
    )
    assert (d.fresh_until, d.heuristic) == (T0 + 60.0, True)


def test_without_a_status_no_heuristic_is_applied() -> None:
    """Callers that do not pass the status (older call sites) keep the old answer: no guess."""
    assert lifetime(lm(1000), effective(()), ON, T0) == 0.0


@pytest.mark.parametrize("heuristic", [True, False])
def test_the_codec_keeps_the_mark(heuristic: bool) -> None:
    entry = Entry(200, (("A", "b"),), b"x", T0, 0.0, T0 + 1, T0 + 1, T0 + 1, T0 + 2, heuristic=heuristic)
    assert decode(encode(entry)) == entry
    assert decode(encode(entry)).heuristic is heuristic


BASE = """
upstreams: {vendor: {url: "http://127.0.0.1:9"}}
routes:
  - name: prices
    match: /api/prices/{sku}
    methods: [GET]
    upstream: vendor
    cache: {ttl: 0s%s}
"""


@pytest.mark.parametrize(
    ("text", "fraction", "cap"),
    [
        ("", 0.1, DAY),
        (", heuristic: on", 0.1, DAY),
        (", heuristic: off", 0.0, DAY),
        (", heuristic: {fraction: 25%}", 0.25, DAY),
        (", heuristic: {max: 1h}", 0.1, 3600.0),
        (", heuristic: {fraction: 0%}", 0.0, DAY),
    ],
)
def test_heuristic_config(text: str, fraction: float, cap: float) -> None:
    cache = parse_config(BASE % text, "t.yaml", {}).routes[0].cache
    assert cache is not None
    assert (cache.heuristic_fraction, cache.heuristic_max) == (fraction, cap)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (", heuristic: {fraction: 150%}", "routes[0].cache.heuristic.fraction: expected a percentage"),
        (", heuristic: {max: soon}", "routes[0].cache.heuristic.max:"),
        (", heuristic: {factor: 2}", "routes[0].cache.heuristic.factor: unknown key"),
        (", heuristic: 3", "routes[0].cache.heuristic: expected a mapping"),
    ],
)
def test_heuristic_config_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(BASE % text, "t.yaml", {})
    assert message in str(caught.value)
