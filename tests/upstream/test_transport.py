"""The upstream client on its own seam (`Transport.send`) and large bodies through the proxy."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import AsyncIterator

import pytest

from proxy.clock import FakeClock
from proxy.config import parse_config
from proxy.core.config.model import Timeouts, UpstreamConfig
from proxy.core.errors import UpstreamError, UpstreamTimeout
from proxy.fetched import Fetched
from proxy.pool import HIGH_WATER, IDLE_TIMEOUT
from proxy.transport import WRITE_MAX_IDLE, Outbound, Transport
from tests.conftest import MakeProxy
from tests.routes import PRICES
from tests.upstream.vendor import CLOSE, HANG, Seen, Step, Vendor, ok, ok_bytes, response
from tests.waiting import until

MB = 1024 * 1024


@pytest.fixture
async def vendor() -> AsyncIterator[Vendor]:
    v = await Vendor().start()
    yield v
    await v.close()


@pytest.fixture
async def transport(vendor: Vendor, clock: FakeClock) -> AsyncIterator[Transport]:
    t = Transport(UpstreamConfig("vendor", vendor.url + "/v2", max_connections=2), clock)
    yield t
    await t.close()


async def get(t: Transport, path: str, limit: int = 1 << 20, method: str = "GET") -> Fetched:
    return await t.send(Outbound(method, path, [("Accept", "application/json")]), limit)


async def test_the_request_as_the_vendor_reads_it(vendor: Vendor, transport: Transport) -> None:
    await get(transport, "/prices/a%2Fb;x?q=%20&q=2")
    seen = vendor.seen[0]
    assert (seen.method, seen.path) == ("GET", "/v2/prices/a%2Fb;x?q=%20&q=2")  # byte for byte
    assert seen.headers == [("Host", f"127.0.0.1:{vendor.port}"), ("Accept", "application/json")]
    await transport.send(Outbound("POST", "/b", [], body=b'{"a": 1}'), 100)
    assert vendor.seen[1].header("Content-Length") == "8" and vendor.seen[1].body == b'{"a": 1}'
    assert all(s.header("User-Agent") is None for s in vendor.seen)


async def test_interim_heads_come_back_beside_the_answer(vendor: Vendor, transport: Transport) -> None:
    early = response("103 Early Hints", "Link: </a.css>; rel=preload", length=False)
    vendor.reply = lambda seen, n: [early + ok_bytes(seen, n)]
    fetched = await get(transport, "/prices/A1")
    assert fetched.status == 200 and json.loads(fetched.body)["path"] == "/v2/prices/A1"
    assert fetched.interim == [(103, (("Link", "</a.css>; rel=preload"),))]


async def test_a_head_request_does_not_wait_for_the_announced_body(
    vendor: Vendor, transport: Transport
) -> None:
    vendor.reply = lambda seen, n: [response("200 OK", "Content-Length: 5000", length=False)]
    fetched = await get(transport, "/prices/A1", method="HEAD")
    assert (fetched.status, fetched.body, fetched.complete) == (200, b"", True)
    fetched = await get(transport, "/prices/A2", method="HEAD")
    assert vendor.connections == 2  # a connection is not reused after a HEAD


async def test_the_pool_never_opens_more_than_max_connections(vendor: Vendor, transport: Transport) -> None:
    vendor.reply = lambda seen, n: [HANG] if seen.path.endswith("/H") else ok(seen, n)
    hanging = [asyncio.ensure_future(get(transport, "/H")) for _ in range(2)]
    queued = asyncio.ensure_future(get(transport, "/prices/Q"))
    await until(lambda: vendor.count() >= 2, what="both requests at the vendor")
    assert vendor.connections == 2 and not queued.done()
    hanging[0].cancel()  # frees a slot: the queued request gets a connection of its own
    fetched = await queued
    assert json.loads(fetched.body)["path"] == "/v2/prices/Q"
    assert vendor.connections == 3
    hanging[1].cancel()
    await asyncio.gather(*hanging, return_exceptions=True)


async def test_a_queued_request_takes_the_connection_an_answer_frees(
    vendor: Vendor, transport: Transport
) -> None:
    go = asyncio.Event()
    vendor.reply = lambda seen, n: [go, *ok(seen, n)] if seen.path.endswith("/S") else ok(seen, n)
    slow = [asyncio.ensure_future(get(transport, "/S")) for _ in range(2)]
    await until(lambda: vendor.count() >= 2, what="both requests at the vendor")
    queued = asyncio.ensure_future(get(transport, "/prices/Q"))
    await asyncio.sleep(0)
    assert not queued.done()
    go.set()
    assert [f.status for f in await asyncio.gather(*slow)] == [200, 200]
    assert json.loads((await queued).body)["path"] == "/v2/prices/Q"
    assert vendor.connections == 2  # reused, not a third


async def test_a_write_without_a_key_never_takes_a_connection_idle_for_long(
    vendor: Vendor, transport: Transport
) -> None:
    await get(transport, "/prices/A1")
    pool = transport._pool
    assert pool is not None and len(pool.idle) == 1
    pool.idle[0].idle_since -= WRITE_MAX_IDLE + 0.5  # as if it had waited that long
    await transport.send(Outbound("PUT", "/prices/A1", [], body=b"{}"), 100)
    assert vendor.connections == 2 and [s.conn for s in vendor.seen] == [0, 1]
    pool.idle[-1].idle_since -= WRITE_MAX_IDLE + 0.5
    await transport.send(
        Outbound("PUT", "/prices/A1", [("Idempotency-Key", "k")], body=b"{}", idempotency_key=True), 100
    )
    assert vendor.connections == 2  # a keyed write may: a failure would be retried safely


async def test_a_connection_idle_past_the_timeout_is_closed_not_reused(
    vendor: Vendor, transport: Transport
) -> None:
    await get(transport, "/prices/A1")
    pool = transport._pool
    assert pool is not None
    pool.idle[0].idle_since -= IDLE_TIMEOUT + 0.5
    await get(transport, "/prices/A2")
    await vendor.closed_by_peer(0)
    assert vendor.connections == 2 and pool.open == 1


async def test_the_total_deadline_covers_the_body(vendor: Vendor, transport: Transport) -> None:
    vendor.reply = lambda seen, n: [response("200 OK", "Content-Length: 10", length=False) + b"12345", HANG]
    out = Outbound("GET", "/slow", [], timeout=Timeouts(connect=1.0, total=0.2))
    with pytest.raises(UpstreamTimeout):
        await transport.send(out, 100)


async def test_a_reused_connection_times_out_at_the_new_requests_own_deadline(
    vendor: Vendor, transport: Transport
) -> None:
    # The first exchange arms the connection's one timer a minute out; the next, shorter
    # deadline on the same connection must still hold.
    await transport.send(Outbound("GET", "/a", [], timeout=Timeouts(connect=1.0, total=60.0)), 100)
    vendor.reply = lambda seen, n: [HANG]
    async with asyncio.timeout(10):  # a test that fails, not one that waits out the minute
        with pytest.raises(UpstreamTimeout, match=r"no response within 0\.2s"):
            await transport.send(Outbound("GET", "/b", [], timeout=Timeouts(connect=1.0, total=0.2)), 100)
    assert vendor.connections == 1 and len(vendor.seen) == 2  # the same connection carried both
    assert transport._pool is not None and not transport._pool.idle  # and was not kept


async def test_an_earlier_exchanges_timer_does_not_cut_a_later_longer_one(
    vendor: Vendor, transport: Transport
) -> None:
    await transport.send(Outbound("GET", "/a", [], timeout=Timeouts(connect=1.0, total=0.05)), 100)
    pool = transport._pool
    assert pool is not None and len(pool.idle) == 1
    conn = pool.idle[0]
    first = conn._timer_at
    go = asyncio.Event()
    vendor.reply = lambda seen, n: [go, ok_bytes(seen, n)]
    out = Outbound("GET", "/b", [], timeout=Timeouts(connect=1.0, total=60.0))
    pending = asyncio.ensure_future(transport.send(out, 100))
    # The timer armed for the first exchange fires while the second waits: it re-arms instead.
    await until(lambda: conn._timer_at > first + 30, what="the timer re-armed for the second deadline")
    assert not pending.done()
    go.set()
    fetched = await pending
    assert fetched.status == 200 and vendor.connections == 1


async def test_a_slow_consumer_pauses_the_vendor_socket(vendor: Vendor, transport: Transport) -> None:
    size = 16 * MB
    piece = b"x" * MB

    def big(seen: Seen, n: int) -> list[Step]:
        return [response("200 OK", f"Content-Length: {size}", length=False), *[piece] * 16]

    vendor.reply = big
    out = Outbound("GET", "/big", [], timeout=Timeouts(connect=1.0, total=60.0))
    fetched = await transport.send(out, 1000)
    assert not fetched.complete and len(fetched.body) == 1001 and fetched.stream is not None
    pool = transport._pool
    assert pool is not None
    conn = fetched.stream._conn
    assert conn is not None
    await until(lambda: conn.paused, what="the socket paused")
    assert conn.pending < HIGH_WATER + 2 * MB
    total = len(fetched.body)
    async for chunk in fetched.stream:
        total += len(chunk)
    assert total == size
    assert pool.idle and pool.idle[0] is conn  # read to the end: reusable


async def test_a_stream_released_early_discards_its_connection(vendor: Vendor, transport: Transport) -> None:
    def reply(seen: Seen, n: int) -> list[Step]:
        if seen.path.endswith("/big"):  # 50 of 100,000 bytes now, the rest never
            return [response("200 OK", "Content-Length: 100000", length=False) + b"y" * 50, HANG]
        return ok(seen, n)

    vendor.reply = reply
    fetched = await get(transport, "/big", limit=10)
    assert not fetched.complete and fetched.body == b"y" * 11
    fetched.release()
    await get(transport, "/prices/A1")
    assert vendor.connections == 2


async def test_a_stream_dropped_unread_frees_its_slot(vendor: Vendor, transport: Transport) -> None:
    vendor.reply = lambda seen, n: [
        response("200 OK", "Content-Length: 100000", length=False) + b"y" * 50,
        HANG,
    ]
    fetched = await get(transport, "/big", limit=10)
    pool = transport._pool
    assert pool is not None and pool.open == 1
    del fetched  # a bug elsewhere forgets release(): the connection must not hold a slot forever
    gc.collect()
    assert pool.open == 0


async def test_a_streamed_body_cut_short_raises_not_ends(vendor: Vendor, transport: Transport) -> None:
    vendor.reply = lambda seen, n: [
        response("200 OK", "Content-Length: 100000", length=False) + b"y" * 50,
        CLOSE,
    ]
    fetched = await get(transport, "/big", limit=10)
    assert fetched.stream is not None
    received = b""
    with pytest.raises(UpstreamError, match="broken body"):
        async for chunk in fetched.stream:
            received += chunk
    assert fetched.body + received == b"y" * 50  # what came, and then an error: never a short "end"


async def test_a_body_over_the_limit_is_never_complete(vendor: Vendor, transport: Transport) -> None:
    vendor.reply = lambda seen, n: [response("200 OK", body=b"0123456789" * 10)]
    fetched = await get(transport, "/big", limit=10)  # all 100 bytes arrive in one read
    assert not fetched.complete and fetched.body == b"01234567890" and fetched.stream is not None
    rest = b"".join([chunk async for chunk in fetched.stream])
    assert fetched.body + rest == b"0123456789" * 10
    await get(transport, "/prices/A1")
    assert vendor.connections == 1  # read to the end: reused


def vmrss_kb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_a_64mb_body_streams_through_without_being_buffered(
    vendor: Vendor, make_proxy: MakeProxy
) -> None:
    size, piece = 64 * MB, b"z" * MB
    vendor.reply = lambda seen, n: [
        response("200 OK", f"Content-Length: {size}", length=False),
        *[piece] * 64,
    ]
    text = (
        "server: {listen: 127.0.0.1:0}\nlog: {access: off}\n"
        f"upstreams:\n  vendor:\n    url: {vendor.url}\n    timeout: {{connect: 5s, total: 120s}}\n"
        f"routes:\n{PRICES}    max_object_size: 64KB\n    cache: {{ttl: 30s}}\n"
    )
    proxy = await make_proxy(config=parse_config(text, "test.yaml", {}))
    before = peak = vmrss_kb()
    answer = await proxy.get("/api/prices/BIG")
    assert answer.status == 200
    total = 0
    async for chunk in answer.content.iter_chunked(256 * 1024):
        total += len(chunk)
        peak = max(peak, vmrss_kb())
    assert total == size
    print(f"64 MB streamed; RSS growth {(peak - before) / 1024:.1f} MB")
    assert (peak - before) * 1024 < 40 * MB, f"RSS grew by {(peak - before) // 1024} MB"
    assert len(proxy.state.store) == 0
