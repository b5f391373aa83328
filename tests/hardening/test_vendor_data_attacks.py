"""A hostile or broken vendor above the wire: bodies the guards must read as clients will, cache
directives and statuses that must not turn a bad answer into a stored one, and numbers in
Retry-After that must not silence or hammer the vendor.

Each case says what the client got, what is cached afterwards and what the vendor received, on
the test's FakeClock (tests/hardening/hostile.py). What tests/hardening/test_chaos.py's bad data
and tests/integration/test_vendor_data.py already cover is not repeated.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from proxy.clock import FakeClock
from tests.hardening.hostile import CT, FIXED, GOOD, Hostile, Proxy, hostile_and_proxy, ok
from tests.hardening.rawhttp import raw_reply


@pytest.fixture
async def pair(clock: FakeClock) -> AsyncIterator[tuple[Hostile, Proxy]]:
    async with hostile_and_proxy(clock) as both:
        yield both


UTF8 = '{"sku": "A1", "price": 9.5}'
HUGE = "1" + "0" * 400  # an integer no double holds: JSON.parse reads Infinity
UNREADABLE: dict[str, bytes] = {
    # RFC 8259 8.1: JSON between systems is UTF-8; json.loads would guess these and pass them
    "utf-16-with-bom": UTF8.encode("utf-16"),
    "utf-16-le-without-bom": UTF8.encode("utf-16-le"),
    "utf-32-be": UTF8.encode("utf-32-be"),
    "a-surrogate-encoded-raw": b'{"sku": "\xed\xa0\x80", "price": 9.5}',  # not UTF-8 (RFC 3629 3)
    "invalid-utf-8": b'{"sku": "A\xff1", "price": 9.5}',
    "a-400-digit-price": f'{{"sku": "A1", "price": {HUGE}}}'.encode(),
    "a-400-digit-negative-integer-elsewhere": f'{{"sku": "A1", "price": 9.5, "stock": -{HUGE}}}'.encode(),
    "a-10000-digit-price": b'{"sku": "A1", "price": ' + b"9" * 10_000 + b"}",  # past int()'s own limit
}


@pytest.mark.parametrize("body", list(UNREADABLE.values()), ids=list(UNREADABLE))
async def test_a_body_clients_cannot_read_as_the_guards_did_is_refused(
    pair: tuple[Hostile, Proxy], clock: FakeClock, body: bytes
) -> None:
    """Before the fix UTF-16 and -32 bodies, a raw surrogate and 400-digit integers passed
    `gt: 0` and were stored: bytes no UTF-8 reader takes as that JSON, or a number every
    JavaScript client reads as Infinity. (Invalid UTF-8 and a 10,000-digit integer, past
    Python's int limit, were refused already.)"""
    vendor, proxy = pair
    vendor.always(ok())
    assert (await proxy.get("/api/prices/A1")).body == GOOD
    clock.advance(5)
    vendor.always(ok(body))
    answer = await proxy.get("/api/prices/A1")
    assert (answer.status, answer.header("X-Cache"), answer.body) == (200, "STALE", GOOD)
    assert 'detail="guard: json at $"' in (answer.header("Cache-Status") or "")
    assert proxy.stored() == [GOOD]
    proxy.state.store.clear()
    cold = await proxy.get("/api/prices/A1")
    assert cold.status == 502 and json.loads(cold.body)["error"] == "upstream_data_rejected"
    assert proxy.stored() == []
    vendor.always(ok(FIXED))
    assert (await proxy.get("/api/prices/A1")).body == FIXED
    assert vendor.count() == 4


async def test_the_largest_integer_a_double_holds_still_passes(pair: tuple[Hostile, Proxy]) -> None:
    vendor, proxy = pair
    body = b'{"sku": "A1", "price": 1' + b"0" * 308 + b"}"  # 1e308 < 1.8e308
    vendor.always(ok(body))
    assert (await proxy.get("/api/prices/A1")).body == body and proxy.stored() == [body]


async def test_a_206_to_a_request_without_range_is_no_answer(
    pair: tuple[Hostile, Proxy], clock: FakeClock
) -> None:
    """A cached fetch never sends Range (the cache serves ranges from the whole copy): a 206 is
    part of a document, RFC 9110 15.3.7. Before the fix it was relayed to a client that asked
    for the whole, in place of the good copy, and its part was what the guards checked."""
    vendor, proxy = pair
    part = b'{"sku": "A1", "price": 1}'  # a part that happens to parse, and to pass the guards
    partial = raw_reply("HTTP/1.1 206 Partial Content", CT, "Content-Range: bytes 0-24/900", body=part)
    vendor.always(ok())
    for path in ("/api/prices/A1", "/api/plain/A1"):
        assert (await proxy.get(path)).body == GOOD
    clock.advance(5)
    vendor.always(partial)
    for path in ("/api/prices/A1", "/api/plain/A1"):
        answer = await proxy.get(path)
        assert (answer.status, answer.header("X-Cache"), answer.body) == (200, "STALE", GOOD)
    proxy.state.store.clear()
    cold = await proxy.get("/api/plain/A1")
    assert cold.status == 502 and json.loads(cold.body)["error"] == "upstream_status"
    assert proxy.stored() == [] and vendor.count() == 5
    assert all(b"range" not in raw.lower() for raw in vendor.heads)


NOT_STORABLE_304 = {
    "no-store": ("Cache-Control: no-store",),
    "private": ("Cache-Control: private, max-age=100",),
    "vary-star": ("Cache-Control: max-age=100", "Vary: *"),
}


@pytest.mark.parametrize("fields", list(NOT_STORABLE_304.values()), ids=list(NOT_STORABLE_304))
async def test_a_304_that_forbids_storing_refreshes_nothing(
    pair: tuple[Hostile, Proxy], clock: FakeClock, fields: tuple[str, ...]
) -> None:
    """The copy as the 304 updates it (RFC 9111 4.3.4) must itself be storable (section 3).
    Before the fix it was refreshed and served as a shared HIT for the route's TTL or max-age:
    `private` to everyone, `no-store` stored, `Vary: *` matched."""
    vendor, proxy = pair
    vendor.always(ok(GOOD, 'ETag: "v1"'))
    assert (await proxy.get("/api/plain/A1")).body == GOOD
    clock.advance(5)
    vendor.always(raw_reply("HTTP/1.1 304 Not Modified", 'ETag: "v1"', *fields, length=False))
    for n in (2, 3):  # each request asks the vendor again: nothing was refreshed
        answer = await proxy.get("/api/plain/A1")
        assert (answer.status, answer.body, answer.header("X-Cache")) == (200, GOOD, "MISS")
        assert "not stored" in (answer.header("Cache-Status") or "") and vendor.count() == n
    [(_, entry)] = proxy.state.store.items()
    assert entry.fresh_until < clock.now() and ("Cache-Control", "max-age=1") in entry.headers


NINES = "9" * 400
# Odd cache directives: served, and stored for as long as the rules allow (RFC 9111 1.2.2,
# 4.2.1: an invalid or duplicated value is stale or the first, never an overflow).
DIRECTIVES: dict[str, tuple[tuple[str, ...], bool]] = {
    "max-age-negative": (("Cache-Control: max-age=-1",), False),
    "max-age-exponent": (("Cache-Control: max-age=1e9",), False),
    "max-age-twice-first-wins": (("Cache-Control: max-age=0", "Cache-Control: max-age=99999"), False),
    "no-store-beside-max-age": (("Cache-Control: no-store, max-age=100",), False),
    "s-maxage-zero-beats-max-age": (("Cache-Control: s-maxage=0, max-age=100",), False),
    "expires-zero": (("Expires: 0",), False),
    "expires-past-date-future": (
        ("Date: Fri, 01 Jan 2100 00:00:00 GMT", "Expires: Thu, 01 Jan 1970 00:00:00 GMT"),
        False,
    ),
    "date-and-expires-in-9999": (
        ("Date: Fri, 31 Dec 9999 23:59:59 GMT", "Expires: Fri, 31 Dec 9999 23:59:59 GMT"),
        False,
    ),
    "s-maxage-5000-digits": ((f"Cache-Control: s-maxage={'9' * 5000}",), True),
    "age-negative": (("Cache-Control: max-age=100", "Age: -5"), True),
    "age-a-list": (("Cache-Control: max-age=100", "Age: 1, 2"), True),
    "swr-and-sie-400-digits": (
        (f"Cache-Control: max-age=100, stale-while-revalidate={NINES}, stale-if-error={NINES}",),
        True,
    ),
    "vary-500-names": (
        ("Cache-Control: max-age=100", "Vary: " + ", ".join(f"X-H{i}" for i in range(500))),
        True,
    ),
}


@pytest.mark.parametrize(("fields", "hit"), list(DIRECTIVES.values()), ids=list(DIRECTIVES))
async def test_odd_cache_directives_never_stretch_a_copy(
    pair: tuple[Hostile, Proxy], clock: FakeClock, fields: tuple[str, ...], hit: bool
) -> None:
    vendor, proxy = pair
    vendor.always(raw_reply("HTTP/1.1 200 OK", CT, *fields, body=GOOD))
    for _ in range(2):
        answer = await proxy.get("/api/plain/A1")
        assert (answer.status, answer.body) == (200, GOOD)
        assert int(answer.header("Age") or 0) <= 2**31
    assert (answer.header("X-Cache"), vendor.count()) == (("HIT", 1) if hit else ("MISS", 2))
    for _, entry in proxy.state.store.items():
        assert entry.fresh_until <= clock.now() + 2**31 and entry.stale_until <= clock.now() + 2**32


RETRY_AFTER = {  # on a 503: retried after our backoff, or, when longer than it allows, not at all
    "negative": ("-5", 3),
    "5000-digits": ("9" * 5000, 1),
    "a-date-in-9999": ("Fri, 31 Dec 9999 23:59:59 GMT", 1),
    "a-date-in-year-1": ("Mon, 01 Jan 0001 00:00:00 GMT", 3),
    "garbage": ("soon", 3),
}


@pytest.mark.parametrize(("value", "asked"), list(RETRY_AFTER.values()), ids=list(RETRY_AFTER))
async def test_retry_after_on_a_503_neither_silences_nor_hammers_the_vendor(
    clock: FakeClock, value: str, asked: int
) -> None:
    async with hostile_and_proxy(clock, retries=2) as (vendor, proxy):
        vendor.always(ok())
        assert (await proxy.get("/api/plain/A1")).body == GOOD
        clock.advance(5)
        vendor.always(raw_reply("HTTP/1.1 503 Service Unavailable", f"Retry-After: {value}", body=b"down"))
        answer = await proxy.get("/api/plain/A1")
        assert (answer.status, answer.header("X-Cache"), answer.body) == (200, "STALE", GOOD)
        assert vendor.count() == 1 + asked and proxy.stored() == [GOOD]
        vendor.always(ok(FIXED))
        clock.advance(60)  # a minute later the vendor is asked again, whatever it said
        assert (await proxy.get("/api/plain/A1")).body == FIXED


@pytest.mark.parametrize(
    "value", ["Fri, 31 Dec 9999 23:59:59 GMT", "9" * 5000, "-1", "Mon, 01 Jan 0001 00:00:00 GMT"]
)
async def test_retry_after_on_a_429_holds_off_at_most_five_minutes(
    pair: tuple[Hostile, Proxy], clock: FakeClock, value: str
) -> None:
    vendor, proxy = pair
    vendor.always(raw_reply("HTTP/1.1 429 Too Many Requests", f"Retry-After: {value}", body=b"slow down"))
    first = await proxy.get("/api/plain/A1")
    assert first.status == 502 and json.loads(first.body)["upstream_status"] == 429
    held = await proxy.get("/api/plain/B2")  # not asked while it holds us off
    assert held.status == 503 and 1 <= int(held.header("Retry-After") or 0) <= 300
    assert vendor.count() == 1
    vendor.always(ok(FIXED))
    clock.advance(301)
    assert (await proxy.get("/api/plain/A1")).body == FIXED and vendor.count() == 2
