"""RFC 9111 by the letter, end to end (issue 14): a real origin on loopback, the proxy with a FakeClock.

Each test checks what the client saw and what reached the origin: an answer the cache reused
leaves the origin's request count where it was.
"""

from __future__ import annotations

from email.utils import formatdate

import pytest

from proxy.clock import FakeClock
from tests.conftest import MakeProxy, Proxy, make_config
from tests.origin import Origin, Reply
from tests.routes import PRICES, WRITES
from tests.upstream.vendor import Seen, Step, Vendor, response

PRICE = {"sku": "A1", "price": 9.5, "currency": "GBP"}
JSON = "application/json"
# A route ttl, so a response without usable freshness would otherwise be fresh for 30 s: an
# invalid Expires must not fall back to it (RFC 9111 5.3: it is already expired).
ROUTES = "\nroutes:\n" + PRICES + "    cache: {ttl: 30s, key: {query: all}}\n" + WRITES


def reply(body: object = PRICE, status: int = 200, /, **headers: str) -> Reply:
    return Reply(status, body, {"Content-Type": JSON, **headers})


def http_date(at: float) -> str:
    return formatdate(at, usegmt=True)


async def twice(proxy: Proxy, path: str = "/api/prices/A1") -> list[str]:
    """X-Cache of two requests in a row."""
    labels = []
    for _ in range(2):
        answer = await proxy.get(path)
        assert answer.status == 200
        labels.append(answer.headers["X-Cache"])
    return labels


# -- strict HTTP-date: an invalid Expires is already expired (RFC 9111 5.3, RFC 9110 5.6.7) ----


def _in_an_hour(clock: FakeClock) -> tuple[str, str, str, str]:
    """(weekday, day, month, year) of clock + 1 h, to build near-miss Expires values."""
    weekday, day, month, year = http_date(clock.now() + 3600).replace(",", "").split()[:4]
    return weekday, day, month, year


@pytest.mark.parametrize(
    "shape",
    [
        "{w}, {d} {m} {yy} {t} GMT",  # two-digit year
        "{w} {d} {m} {y} {t} GMT",  # missing comma
        "{w}, {d}  {m}  {y} {t} GMT",  # several spaces
        "{w}, {d}-{m}-{y} {t} GMT",  # dashes
        "{w}, {d} {m} {y} {tp} GMT",  # periods
        "{w}, {d} {m} {y} {t1} GMT",  # one-digit hour (when the hour has a leading zero)
        "{w}, {d} {m} {y} {t} UTC",  # a zone other than GMT
        "0",
    ],
)
async def test_an_invalid_expires_is_never_reused(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock, shape: str
) -> None:
    clock.set(float(1_700_000_000 - 1_700_000_000 % 86400 + 3600))  # 01:00 GMT: hour "02" in an hour
    w, d, m, y = _in_an_hour(clock)
    expires = shape.format(w=w, d=d, m=m, y=y, yy=y[2:], t="02:00:00", tp="02.00.00", t1="2:00:00")
    origin.json("/prices/A1", PRICE, headers={"Expires": expires})
    proxy = await make_proxy(ROUTES)
    assert await twice(proxy) == ["MISS", "MISS"]
    assert origin.count("/prices/A1") == 2


@pytest.mark.parametrize(
    "shape",
    [
        "{w}, {d} {m} {y} {t} GMT",  # IMF-fixdate
        "{wl}, {d}-{m}-{yy} {t} GMT",  # obsolete RFC 850
        "{w} {m} {d} {t} {y}",  # asctime
        "{W}, {d} {M} {y} {t} gmt",  # names in another case (RFC 9111 4.2)
    ],
)
async def test_a_valid_expires_is_reused(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock, shape: str
) -> None:
    clock.set(float(1_700_000_000 - 1_700_000_000 % 86400 + 3600 * 12))  # the 12th: a 2-digit day
    w, d, m, y = _in_an_hour(clock)
    long_days = {"Mon": "Monday", "Tue": "Tuesday", "Wed": "Wednesday", "Thu": "Thursday"}
    long_days |= {"Fri": "Friday", "Sat": "Saturday", "Sun": "Sunday"}
    expires = shape.format(
        w=w, wl=long_days[w], W=w.upper(), d=d, m=m, M=m.upper(), y=y, yy=y[2:], t=_hms(clock)
    )
    origin.json("/prices/A1", PRICE, headers={"Expires": expires})
    proxy = await make_proxy(ROUTES)
    assert await twice(proxy) == ["MISS", "HIT"]
    clock.advance(3601)  # and it expires when it says
    assert (await proxy.get("/api/prices/A1")).headers["X-Cache"] == "MISS"
    assert origin.count("/prices/A1") == 2


def _hms(clock: FakeClock) -> str:
    return http_date(clock.now() + 3600).split()[4]


async def test_expires_on_two_lines_is_already_expired(make_proxy: MakeProxy, clock: FakeClock) -> None:
    """Two Expires field lines, even with the same date: invalid (RFC 9111 4.2 lets a cache say so)."""
    later = http_date(clock.now() + 3600)

    def two_lines(seen: Seen, n: int) -> list[Step]:
        headers = ("Content-Type: application/json", f"Expires: {later}", f"Expires: {later}")
        return [response("200 OK", *headers, body=b'{"n": %d}' % n)]

    vendor = await Vendor(two_lines).start()
    try:
        proxy = await make_proxy(config=make_config(vendor.url, ROUTES))
        assert await twice(proxy) == ["MISS", "MISS"]
        assert vendor.count("GET") == 2
    finally:
        await vendor.close()


async def test_an_invalid_date_beside_expires_is_the_time_received(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock
) -> None:
    """A Date that is not an HTTP-date is as good as none (RFC 9110 6.6.1): Expires still counts."""
    origin.json("/prices/A1", PRICE, headers={"Expires": http_date(clock.now() + 60), "Date": "yesterday"})
    proxy = await make_proxy(ROUTES)
    assert await twice(proxy) == ["MISS", "HIT"]
    assert origin.count("/prices/A1") == 1


# -- qualified no-cache="Field" and private="Field" (RFC 9111 5.2.2.4, 5.2.2.7) ---------------


@pytest.mark.parametrize("directive", ['private="X-User, Set-Cookie"', 'no-cache="x-user, set-cookie"'])
async def test_qualified_directives_store_the_rest(
    origin: Origin, make_proxy: MakeProxy, directive: str
) -> None:
    origin.json(
        "/prices/A1",
        PRICE,
        headers={"Cache-Control": f"{directive}, max-age=60", "X-User": "ann", "Set-Cookie": "s=ann"},
    )
    proxy = await make_proxy(ROUTES)
    first = await proxy.get("/api/prices/A1")
    # The client that fetched it gets what the vendor sent it, cookie included.
    assert first.headers["X-Cache"] == "MISS"
    assert first.headers["X-User"] == "ann" and first.headers["Set-Cookie"] == "s=ann"
    assert "stored" in first.headers["Cache-Status"]
    second = await proxy.get("/api/prices/A1")
    # Everyone after it gets the stored copy, without the named fields.
    assert second.headers["X-Cache"] == "HIT"
    assert "X-User" not in second.headers and "Set-Cookie" not in second.headers
    assert second.headers["Cache-Control"] == f"{directive}, max-age=60"
    assert await second.json() == PRICE
    assert origin.count("/prices/A1") == 1


async def test_unqualified_private_is_still_never_stored(origin: Origin, make_proxy: MakeProxy) -> None:
    origin.json("/prices/A1", PRICE, headers={"Cache-Control": 'private="X-User", private, max-age=60'})
    proxy = await make_proxy(ROUTES)
    assert await twice(proxy) == ["MISS", "MISS"]
    assert origin.count("/prices/A1") == 2


async def test_a_set_cookie_not_named_still_refuses_storage(origin: Origin, make_proxy: MakeProxy) -> None:
    origin.json(
        "/prices/A1", PRICE, headers={"Cache-Control": 'private="X-User", max-age=60', "Set-Cookie": "s=1"}
    )
    proxy = await make_proxy(ROUTES)
    answer = await proxy.get("/api/prices/A1")
    assert answer.headers["Set-Cookie"] == "s=1"
    assert 'detail="not stored: set-cookie"' in answer.headers["Cache-Status"]
    assert await twice(proxy) == ["MISS", "MISS"]
    assert origin.count("/prices/A1") == 3


async def test_withheld_fields_stay_out_after_a_304(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock
) -> None:
    cc = {"Cache-Control": 'no-cache="X-User", max-age=10', "ETag": '"v1"'}
    origin.json("/prices/A1", PRICE, headers={**cc, "X-User": "ann"})
    proxy = await make_proxy(ROUTES)
    await proxy.get("/api/prices/A1")
    clock.advance(20)
    origin.always("/prices/A1", Reply(304, b"", {**cc, "X-User": "bob"}))
    revalidated = await proxy.get("/api/prices/A1")
    assert revalidated.headers["X-Cache"] == "REVALIDATED"
    assert "X-User" not in revalidated.headers
    hit = await proxy.get("/api/prices/A1")
    assert hit.headers["X-Cache"] == "HIT" and "X-User" not in hit.headers
    assert origin.count("/prices/A1") == 2


# -- targeted fields: CDN-Cache-Control (RFC 9213) --------------------------------------------


@pytest.mark.parametrize(
    ("headers", "labels"),
    [
        # a long targeted max-age beats a short Cache-Control, and Cache-Control: no-store
        ({"Cache-Control": "max-age=1", "CDN-Cache-Control": "max-age=3600"}, ["MISS", "HIT"]),
        ({"Cache-Control": "no-store", "CDN-Cache-Control": "max-age=3600"}, ["MISS", "HIT"]),
        # a short or forbidding targeted field beats a long Cache-Control and Expires
        ({"Cache-Control": "max-age=3600", "CDN-Cache-Control": "max-age=1"}, ["MISS", "MISS"]),
        ({"Cache-Control": "max-age=3600", "CDN-Cache-Control": "no-store"}, ["MISS", "MISS"]),
        ({"Cache-Control": "max-age=3600", "CDN-Cache-Control": "private"}, ["MISS", "MISS"]),
        ({"Cache-Control": "max-age=3600", "CDN-Cache-Control": "no-cache"}, ["MISS", "MISS"]),
        # an invalid Structured Field is ignored: Cache-Control applies
        ({"Cache-Control": "no-store", "CDN-Cache-Control": "max-age=10000, &&&&&"}, ["MISS", "MISS"]),
        ({"Cache-Control": "no-store", "CDN-Cache-Control": 'max-age="10000"'}, ["MISS", "MISS"]),
        ({"Cache-Control": "max-age=3600", "CDN-Cache-Control": "max-age =1"}, ["MISS", "HIT"]),
        # our own field comes first in the default target list
        (
            {"Resilient-Proxy-Cache-Control": "max-age=3600", "CDN-Cache-Control": "no-store"},
            ["MISS", "HIT"],
        ),
    ],
)
async def test_cdn_cache_control_replaces_cache_control(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock, headers: dict[str, str], labels: list[str]
) -> None:
    origin.json("/prices/A1", PRICE, headers=headers)
    proxy = await make_proxy("\nroutes:\n" + PRICES + "    cache: {ttl: 0s}\n" + WRITES)
    first = await proxy.get("/api/prices/A1")
    clock.advance(2)  # past max-age=1
    second = await proxy.get("/api/prices/A1")
    assert [first.headers["X-Cache"], second.headers["X-Cache"]] == labels
    # targeted fields are passed on to the client (RFC 9213 3), from the vendor and from the copy
    for answer in (first, second):
        for name, value in headers.items():
            assert answer.headers[name] == value
    assert origin.count("/prices/A1") == labels.count("MISS")


async def test_cdn_cache_control_ignores_expires(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock
) -> None:
    later = http_date(clock.now() + 3600)
    origin.json("/prices/A1", PRICE, headers={"CDN-Cache-Control": "max-age=10", "Expires": later})
    proxy = await make_proxy(ROUTES)
    assert await twice(proxy) == ["MISS", "HIT"]
    clock.advance(11)  # Expires says fresh for an hour; the targeted field said 10 s
    assert (await proxy.get("/api/prices/A1")).headers["X-Cache"] == "MISS"


@pytest.mark.parametrize(
    ("top", "route", "labels"),
    [
        ("", ", targeted_fields: []", ["MISS", "MISS"]),  # off for this route: Cache-Control rules
        ("cache: {targeted_fields: []}\n", "", ["MISS", "MISS"]),  # off for the proxy
        ("cache: {targeted_fields: []}\n", ", targeted_fields: [CDN-Cache-Control]", ["MISS", "HIT"]),
        ("", ", targeted_fields: [Acme-Cache-Control]", ["MISS", "MISS"]),  # CDN-Cache-Control not listed
    ],
)
async def test_the_target_list_is_configurable(
    origin: Origin, make_proxy: MakeProxy, top: str, route: str, labels: list[str]
) -> None:
    origin.json("/prices/A1", PRICE, headers={"Cache-Control": "no-store", "CDN-Cache-Control": "max-age=60"})
    body = "\nroutes:\n" + PRICES + "    cache: {ttl: 30s" + route + "}\n" + WRITES
    proxy = await make_proxy(config=make_config(origin.url, top + body))
    assert await twice(proxy) == labels


# -- Vary: list headers match after normalisation (RFC 9111 4.1) ------------------------------


async def test_vary_matches_list_headers_after_normalising(origin: Origin, make_proxy: MakeProxy) -> None:
    vary = {"Cache-Control": "max-age=60", "Vary": "Accept-Language"}
    # The first fetch of a URL sends no unkeyed header; its Vary costs one more, with the header.
    langs = ("default", "en", "fr")
    origin.then("/prices/A1", *(reply({"lang": lang}, **vary) for lang in langs))
    proxy = await make_proxy(ROUTES)
    first = await proxy.get("/api/prices/A1", headers={"Accept-Language": "en-GB, fr;q=0.5"})
    assert first.headers["X-Cache"] == "MISS" and await first.json() == {"lang": "en"}
    # the same list in another case, spacing and order (by q), q=1 spelled out: the same variant
    for same in ("fr;q=0.50,EN-gb", " en-gb ;q=1.0 , fr ; Q=0.5 ", "en-GB,,fr;q=0.5"):
        hit = await proxy.get("/api/prices/A1", headers={"Accept-Language": same})
        assert hit.headers["X-Cache"] == "HIT", same
        assert await hit.json() == {"lang": "en"}
    # the same languages with other weights (both q=1): another variant, fetched and stored apart
    other = await proxy.get("/api/prices/A1", headers={"Accept-Language": "fr, en-GB"})
    assert other.headers["X-Cache"] == "MISS" and await other.json() == {"lang": "fr"}
    # equal q in another order, or on two field lines: the same list (RFC 9110 12.5.4, 5.3)
    lang = "Accept-Language"
    for headers in ([(lang, "en-gb , FR")], [(lang, "en-GB"), (lang, "fr")]):
        again = await proxy.get("/api/prices/A1", headers=headers)
        assert again.headers["X-Cache"] == "HIT" and await again.json() == {"lang": "fr"}, headers
    assert origin.count("/prices/A1") == 3


async def test_vary_on_any_header_combines_lines_and_drops_list_whitespace(
    origin: Origin, make_proxy: MakeProxy
) -> None:
    origin.json("/prices/A1", PRICE, headers={"Cache-Control": "max-age=60", "Vary": "Foo"})
    proxy = await make_proxy(ROUTES)
    assert (await proxy.get("/api/prices/A1", headers={"Foo": "1,2"})).headers["X-Cache"] == "MISS"
    for same in ([("Foo", " 1, 2 ")], [("Foo", "1"), ("Foo", "2")]):
        hit = await proxy.get("/api/prices/A1", headers=same)
        assert hit.headers["X-Cache"] == "HIT", same
    for other in ([("Foo", "2, 1")], [("Foo", "1")]):  # order still counts
        assert (await proxy.get("/api/prices/A1", headers=other)).headers["X-Cache"] == "MISS", other
    # absence too: its variant was stored by the first fetch, sent before Vary: Foo was known
    assert (await proxy.get("/api/prices/A1")).headers["X-Cache"] == "HIT"
    assert origin.count("/prices/A1") == 4


# -- heuristic freshness (RFC 9111 4.2.2) -----------------------------------------------------

NO_TTL_ROUTES = "\nroutes:\n" + PRICES + "    cache: {ttl: 0s%s}\n" + WRITES


async def test_heuristic_freshness_from_last_modified(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock
) -> None:
    modified = http_date(clock.now() - 1000)  # 10% of 1000 s: fresh for 100 s
    origin.json("/prices/A1", PRICE, headers={"Last-Modified": modified})
    proxy = await make_proxy(NO_TTL_ROUTES % "")
    first = await proxy.get("/api/prices/A1")
    assert first.headers["X-Cache"] == "MISS"
    assert first.headers["Cache-Status"].endswith('ttl=100; stored; detail="heuristic"')
    clock.advance(99)
    hit = await proxy.get("/api/prices/A1")
    assert hit.headers["X-Cache"] == "HIT" and hit.headers["Age"] == "99"
    assert hit.headers["Cache-Status"] == 'resilient-proxy; hit; ttl=1; detail="heuristic"'
    assert origin.count("/prices/A1") == 1
    clock.advance(2)  # the guess has run out: revalidated with the vendor's own validator
    origin.always("/prices/A1", Reply(304, b"", {"Last-Modified": modified}))
    revalidated = await proxy.get("/api/prices/A1")
    assert revalidated.headers["X-Cache"] == "REVALIDATED"
    assert origin.seen[-1].headers["If-Modified-Since"] == modified
    assert await revalidated.json() == PRICE


@pytest.mark.parametrize(
    ("route", "status", "headers"),
    [
        (", heuristic: off", 200, {}),  # off for the route
        ("", 302, {}),  # 302 is not heuristically cacheable (stored only with explicit freshness)
        ("", 200, {"Cache-Control": "max-age=0"}),  # explicit freshness, even zero, wins
        ("", 200, {"Cache-Control": "no-cache"}),
    ],
)
async def test_no_heuristic_freshness(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock, route: str, status: int, headers: dict[str, str]
) -> None:
    modified = http_date(clock.now() - 1000)
    origin.json("/prices/A1", PRICE, status, headers={"Last-Modified": modified, **headers})
    proxy = await make_proxy(NO_TTL_ROUTES % route)
    for _ in range(2):
        answer = await proxy.get("/api/prices/A1", allow_redirects=False)
        assert answer.status == status
        assert answer.headers["X-Cache"] != "HIT"
        assert "heuristic" not in answer.headers["Cache-Status"]
    assert origin.count("/prices/A1") == 2


async def test_the_route_ttl_beats_the_heuristic(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock
) -> None:
    origin.json("/prices/A1", PRICE, headers={"Last-Modified": http_date(clock.now() - 1000)})
    proxy = await make_proxy(ROUTES)  # ttl: 30s
    first = await proxy.get("/api/prices/A1")
    assert "ttl=30; stored" in first.headers["Cache-Status"]
    assert "heuristic" not in first.headers["Cache-Status"]
    clock.advance(31)  # the heuristic would have given 100 s
    assert (await proxy.get("/api/prices/A1")).headers["X-Cache"] != "HIT"
