"""Targeted cache fields (RFC 9213) as tables: the Structured Field grammar, the directives, the
choice between a targeted field and Cache-Control, and the target list in the configuration."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.config import ConfigError, parse_config
from proxy.core.cachecontrol import DEFAULT_TARGETS, CacheControl, effective, parse_targeted
from proxy.core.config.model import RouteCache
from proxy.core.freshness import lifetime, storable
from proxy.core.structured import parse_dictionary

CDN = "cdn-cache-control"
OURS = "resilient-proxy-cache-control"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("max-age=60", {"max-age": 60}),
        ("no-store", {"no-store": True}),
        ("a=1, b, c=?0", {"a": 1, "b": True, "c": False}),
        ("a=1,b=2", {"a": 1, "b": 2}),
        ("  a=1 ,\tb=2  ", {"a": 1, "b": 2}),
        ('a="x, y"', {"a": "x, y"}),
        ('a="q\\"uote\\\\"', {"a": 'q"uote\\'}),
        ("a=tok/en:1", {"a": "tok/en:1"}),
        ("a=-5", {"a": -5}),
        ("a=1.5", {"a": 1.5}),
        ("a=:aGk=:", {"a": b"hi"}),
        ("a=(1 2);p", {"a": [1, 2]}),
        ("a;p=1;q", {"a": True}),  # parameters are dropped
        ("a=1;p=x", {"a": 1}),
        ("a=1, a=2", {"a": 2}),  # a dictionary: the last one wins (RFC 8941 4.2.2)
        ("*k=1", {"*k": 1}),
        ("", {}),
        # errors: the whole field is invalid
        ("max-age =1", None),
        ("max-age= 1", None),
        ("MaX-aGe=1", None),  # keys are lower case
        ("a=1,", None),
        ("a=1,,b", None),
        ("a=1 b=2", None),
        ("&&&", None),
        ("a=1, &&&", None),
        ('a="unterminated', None),
        ('a="bad\\escape"', None),
        ("a=1234567890123456", None),  # more than 15 digits
        ("a=1.", None),
        ("a=1.2345", None),
        ("a=1234567890123.5", None),
        ("a=?2", None),
        ("a=:not base64!:", None),
        ("a=(1 2", None),
        ("a=é", None),
        ('a="é"', None),
    ],
)
def test_parse_dictionary(value: str, expected: dict[str, object] | None) -> None:
    assert parse_dictionary(value) == expected


@given(st.text(max_size=40))
def test_parse_dictionary_never_raises(value: str) -> None:
    result = parse_dictionary(value)
    assert result is None or isinstance(result, dict)


def t(**kw: object) -> CacheControl:
    return CacheControl(present=True, targeted=CDN, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["max-age=3600"], t(max_age=3600)),
        (["max-age=0"], t(max_age=0)),
        (["max-age=2147483648"], t(max_age=2**31)),
        (["max-age=99999999999"], t(max_age=2**31)),  # beyond 2^31 is 2^31 (RFC 9111 1.2.2)
        (
            ["s-maxage=10, stale-while-revalidate=5, stale-if-error=7"],
            t(s_maxage=10, stale_while_revalidate=5, stale_if_error=7),
        ),
        (["no-store"], t(no_store=True)),
        (["no-cache"], t(no_cache=True)),
        (["private"], t(private=True)),
        (
            ["must-revalidate, proxy-revalidate, public"],
            t(must_revalidate=True, proxy_revalidate=True, public=True),
        ),
        (['no-cache="Set-Cookie, X-User"'], t(no_cache_fields=("set-cookie", "x-user"))),
        (['private="X-User"'], t(private_fields=("x-user",))),
        (['private=""'], t(private=True)),  # a qualified form naming nothing: the stricter reading
        (["no-store=?0"], t()),  # Boolean false: not set
        (["foobar, max-age=3600"], t(max_age=3600)),  # unknown directives are ignored
        (["none"], t()),  # RFC 9213 3.1: present, valid, no directive: Cache-Control is ignored
        (["only-if-cached"], t()),  # a request directive means nothing here
        (["max-age=60", "no-store"], t(max_age=60, no_store=True)),  # field lines combine
        # ignored: empty or invalid (RFC 9213 2.1), including a known directive of the wrong type
        ([], None),
        ([""], None),
        (["   "], None),
        (['max-age="60"'], None),
        (["max-age=1.5"], None),
        (["max-age=-1"], None),
        (["max-age"], None),  # Boolean true is not an Integer
        (["no-store=1"], None),
        (["no-cache=3"], None),
        (["max-age=10000, &&&&&"], None),
        (["max-age =100"], None),
        (["MaX-aGe=3600"], None),
    ],
)
def test_parse_targeted(lines: list[str], expected: CacheControl | None) -> None:
    assert parse_targeted(lines, CDN) == expected


@pytest.mark.parametrize(
    ("headers", "targets", "max_age", "source"),
    [
        # the targeted field replaces Cache-Control wholesale, in both directions
        ((("Cache-Control", "max-age=1"), ("CDN-Cache-Control", "max-age=600")), DEFAULT_TARGETS, 600, CDN),
        ((("Cache-Control", "max-age=600"), ("CDN-Cache-Control", "max-age=1")), DEFAULT_TARGETS, 1, CDN),
        ((("Cache-Control", "no-store"), ("cdn-cache-control", "max-age=60")), DEFAULT_TARGETS, 60, CDN),
        # first present and valid in target-list order
        (
            (("CDN-Cache-Control", "max-age=1"), ("Resilient-Proxy-Cache-Control", "max-age=2")),
            DEFAULT_TARGETS,
            2,
            OURS,
        ),
        (
            (("CDN-Cache-Control", "max-age=1"), ("Resilient-Proxy-Cache-Control", "max-age=2")),
            (CDN, OURS),
            1,
            CDN,
        ),
        (
            (("CDN-Cache-Control", "max-age=1"), ("Resilient-Proxy-Cache-Control", "bad =")),
            DEFAULT_TARGETS,
            1,
            CDN,
        ),
        # none valid: Cache-Control as ever
        ((("Cache-Control", "max-age=5"), ("CDN-Cache-Control", "max-age =100")), DEFAULT_TARGETS, 5, ""),
        ((("Cache-Control", "max-age=5"), ("CDN-Cache-Control", "")), DEFAULT_TARGETS, 5, ""),
        # a field not on the target list changes nothing (RFC 9213 2.2)
        ((("Cache-Control", "max-age=5"), ("CDN-Cache-Control", "max-age=100")), (), 5, ""),
        ((("Cache-Control", "max-age=5"), ("Other-Cache-Control", "max-age=100")), DEFAULT_TARGETS, 5, ""),
        ((), DEFAULT_TARGETS, -1, ""),
    ],
)
def test_effective(
    headers: tuple[tuple[str, str], ...], targets: tuple[str, ...], max_age: int, source: str
) -> None:
    cc = effective(headers, targets)
    assert (cc.max_age, cc.targeted) == (max_age, source)


T0 = 1_700_000_000.0
DATE = ("Date", "Tue, 14 Nov 2023 22:13:20 GMT")  # T0
EXPIRES_LATER = ("Expires", "Tue, 14 Nov 2023 23:13:20 GMT")  # T0 + 3600


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        # a targeted field overrides Expires as well as Cache-Control (RFC 9213 2.2)
        ((("CDN-Cache-Control", "max-age=60"), EXPIRES_LATER, DATE), 60.0),
        ((("CDN-Cache-Control", "max-age=60"), ("Expires", "0"), DATE), 60.0),
        ((("CDN-Cache-Control", "max-age=0"), EXPIRES_LATER, DATE), 0.0),
        ((("CDN-Cache-Control", "none"), EXPIRES_LATER, DATE), 30.0),  # the route's ttl, not Expires
        ((("CDN-Cache-Control", "no-cache"), ("Cache-Control", "max-age=60")), 0.0),
        # without a valid targeted field, Expires counts again
        ((("CDN-Cache-Control", "max-age=x"), EXPIRES_LATER, DATE), 3600.0),
    ],
)
def test_targeted_lifetime(headers: tuple[tuple[str, str], ...], expected: float) -> None:
    assert lifetime(headers, effective(headers, DEFAULT_TARGETS), RouteCache(ttl=30.0), T0) == expected


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ((("CDN-Cache-Control", "no-store"), ("Cache-Control", "max-age=60")), "no-store"),
        ((("CDN-Cache-Control", "private"), ("Cache-Control", "max-age=60")), "private"),
        ((("CDN-Cache-Control", "max-age=60"), ("Cache-Control", "no-store, private")), None),
        # Expires is not explicit freshness under a targeted field: a 302 needs max-age then
        ((("CDN-Cache-Control", "none"), EXPIRES_LATER, DATE), "status"),
        ((("CDN-Cache-Control", "max-age=60"), EXPIRES_LATER, DATE), None),
    ],
)
def test_targeted_storable(headers: tuple[tuple[str, str], ...], why: str | None) -> None:
    status = 302 if any(k == "Expires" for k, _ in headers) else 200
    cc = effective(headers, DEFAULT_TARGETS)
    assert storable(status=status, headers=headers, cc=cc, policy=RouteCache(), authorized=False) == why


# -- the target list in the configuration --------------------------------------------------------

BASE = """
upstreams: {vendor: {url: "http://127.0.0.1:9"}}
routes:
  - name: prices
    match: /api/prices/{sku}
    methods: [GET]
    upstream: vendor
    cache: {ttl: 30s%s}
"""


def targets_of(top: str = "", route: str = "") -> tuple[tuple[str, ...], tuple[str, ...]]:
    config = parse_config(top + BASE % route, "t.yaml", {})
    cache = config.routes[0].cache
    assert cache is not None
    return config.cache.targeted_fields, cache.targeted_fields


@pytest.mark.parametrize(
    ("top", "route", "expected"),
    [
        ("", "", (DEFAULT_TARGETS, DEFAULT_TARGETS)),
        ("cache: {targeted_fields: [CDN-Cache-Control]}\n", "", ((CDN,), (CDN,))),  # the route inherits
        ("cache: {targeted_fields: []}\n", "", ((), ())),
        ("", ", targeted_fields: []", (DEFAULT_TARGETS, ())),
        (
            "",
            ", targeted_fields: [Acme-Cache-Control, CDN-Cache-Control]",
            (DEFAULT_TARGETS, ("acme-cache-control", CDN)),
        ),
        ("cache: {targeted_fields: []}\n", ", targeted_fields: [CDN-Cache-Control]", ((), (CDN,))),
    ],
)
def test_config_target_list(top: str, route: str, expected: tuple[tuple[str, ...], tuple[str, ...]]) -> None:
    assert targets_of(top, route) == expected


@pytest.mark.parametrize(
    ("route", "message"),
    [
        (", targeted_fields: [Cache-Control]", "routes[0].cache.targeted_fields[0]: Cache-Control is what"),
        (
            ", targeted_fields: [CDN-Cache-Control, cdn-cache-control]",
            "targeted_fields[1]: 'cdn-cache-control' is listed twice",
        ),
        (", targeted_fields: ['not a field']", "targeted_fields[0]: expected a header field name"),
        (", targeted_fields: CDN-Cache-Control", "targeted_fields: expected a list"),
    ],
)
def test_config_target_list_errors(route: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(BASE % route, "t.yaml", {})
    assert message in str(caught.value)
    assert "t.yaml:8:" in str(caught.value)  # file:line: key: message
