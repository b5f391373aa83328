"""The public port's protocol (proxy/listener.py) byte for byte: keep-alive, pipelining,
HTTP/1.0, chunked bodies, `Expect: 100-continue`, backpressure both ways, deadlines on an
injected timer (no wall-clock waits make time pass), graceful drain, `Upgrade`, and every error
as our JSON without a `Server` header.

The endpoint is a small echo of what the listener parsed (the real handler is exercised by the
rest of the suite through the same listener); sockets are real, on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from proxy.core.errors import ProxyError
from proxy.core.limits import ConnLimits
from proxy.exchange import Endpoint, Request, Response
from proxy.framing import FRAMING_PER_BYTE, READ_SLACK, MessageBytes, Refused
from proxy.listener import Connection
from proxy.publicport import PUBLIC, Listener, PublicSite
from tests.hardening.rawhttp import RawClient, ServerClosed, request
from tests.loops import event_loop_policy  # noqa: F401  (a fixture: every case on both loops)

HIGH = 1 << 18  # exchange.BODY_HIGH_WATER


class FakeTimer:
    """The listener's deadlines on a hand-turned clock: `advance` fires what fell due."""

    def __init__(self) -> None:
        self.t = 1000.0
        self._heap: list[tuple[float, int, _Handle]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self.t

    def call_at(self, when: float, callback: Callable[[], None]) -> _Handle:
        handle = _Handle(callback)
        heapq.heappush(self._heap, (when, next(self._seq), handle))
        return handle

    def advance(self, seconds: float) -> None:
        self.t += seconds
        while self._heap and self._heap[0][0] <= self.t:
            _, _, handle = heapq.heappop(self._heap)
            if not handle.cancelled:
                handle.callback()


@dataclass
class _Handle:
    callback: Callable[[], None]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class Echo(Endpoint):
    """Answers with what it was asked; `/wait/<name>` waits for `gates[name]`, `/stream` relays
    `chunks` pieces of 64 KB, `/hold` keeps its body unread until `gates["hold"]`, `/whole` waits
    for `gates["whole"]`, then answers 8 MB at once."""

    gates: dict[str, asyncio.Event] = field(default_factory=dict)
    seen: list[Request] = field(default_factory=list)
    tasks: list[asyncio.Task[object] | None] = field(default_factory=list)  # that ran each `handle`
    produced: int = 0
    chunks: int = 64

    def now(self) -> float:
        return 1_700_000_000.0

    def fast(self, req: Request, date: Callable[[], bytes]) -> bytes | None:
        return None  # every request takes the full path here

    async def handle(self, req: Request) -> Response:
        self.seen.append(req)
        self.tasks.append(asyncio.current_task())
        path = req.raw_path
        if path.startswith("/wait/") or path in ("/hold", "/whole"):
            await self.gate(path.rsplit("/", 1)[1]).wait()
        if path == "/stream":
            return Response(200, [("Content-Type", "application/octet-stream")], stream=self._pieces())
        if path == "/whole":  # all there at once, far past the transport's high-water mark
            return Response(200, [("Content-Type", "application/octet-stream")], b"w" * (8 << 20))
        body = bytearray()
        if req.body is not None:
            while chunk := await req.body.read():
                body += chunk
        answer = {"method": req.method, "target": path, "body": len(body), "version": req.version}
        return Response(200, [("Content-Type", "application/json")], json.dumps(answer).encode())

    def gate(self, name: str) -> asyncio.Event:
        return self.gates.setdefault(name, asyncio.Event())

    async def _pieces(self) -> AsyncIterator[bytes]:
        for _ in range(self.chunks):
            self.produced += 1
            yield b"x" * 65536


@dataclass
class Port:
    site: PublicSite
    echo: Echo
    timer: FakeTimer

    @property
    def listener(self) -> Listener:
        assert self.site.guard is not None
        return self.site.guard

    def connection(self) -> Connection:
        (conn,) = self.listener.connections
        return conn

    async def connect(self) -> RawClient:
        return await RawClient.connect(self.site.bound_port)


LIMITS = ConnLimits(header_timeout=10.0, body_timeout=30.0, send_timeout=60.0)


@pytest.fixture
async def port() -> AsyncIterator[Port]:
    echo, timer = Echo(), FakeTimer()
    app = web.Application()
    app[PUBLIC] = echo
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = PublicSite(runner, "127.0.0.1", 0, limits=LIMITS, timer=timer, shutdown_timeout=2.0)
    await site.start()
    try:
        yield Port(site, echo, timer)
    finally:
        for event in echo.gates.values():
            event.set()
        await runner.cleanup()


async def until(check: Callable[[], bool]) -> None:
    """Bounded wait for the server side to get somewhere (loop turns, not time passing)."""
    for _ in range(500):
        if check():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition never held")


def body_of(raw: bytes) -> dict[str, object]:
    value = json.loads(raw)
    assert isinstance(value, dict)
    return value


# -- keep-alive, pipelining, HTTP/1.0 -----------------------------------------------------------


async def test_keep_alive_serves_many_requests_on_one_connection(port: Port) -> None:
    client = await port.connect()
    for i in range(3):
        await client.send(request("GET", f"/a/{i}", close=False))
        answer = await client.response()
        assert answer.status == 200 and body_of(answer.body)["target"] == f"/a/{i}"
        assert answer.header("connection") is None
        assert answer.header("server") is None  # never announces Python or aiohttp
        assert answer.header("date") == "Tue, 14 Nov 2023 22:13:20 GMT"
    assert len(port.listener.connections) == 1
    await client.close()


async def test_one_task_answers_a_connection_and_ends_with_it(port: Port) -> None:
    """The connection's worker task serves each request in turn, parked between them (not a task
    per request), and ends when the client goes: no task outlives its connection."""
    first, second = await port.connect(), await port.connect()
    for client in (first, second, first):
        for i in range(2):
            await client.send(request("GET", f"/a/{i}", close=False))
            assert (await client.response()).status == 200
    await first.send(request("GET", "/b", close=False) + request("GET", "/c", close=False))
    assert [(await first.response()).status for _ in range(2)] == [200, 200]
    workers = [task for task in port.echo.tasks if task is not None]
    assert len(workers) == 8 and len(set(workers)) == 2
    assert set(workers[:2]) == set(workers[4:]) != {workers[2]}
    assert not any(task.done() for task in workers)  # parked, not finished
    await first.close()
    await second.close()
    await until(lambda: all(task.done() for task in workers))
    assert not any(task.cancelled() for task in workers)  # ended, not cancelled


async def test_pipelined_answers_come_strictly_in_order(port: Port) -> None:
    client = await port.connect()
    await client.send(
        request("GET", "/wait/first", close=False)
        + request("GET", "/second", close=False)
        + request("GET", "/third")
    )
    await until(lambda: len(port.echo.seen) == 1)  # one request handled at a time
    port.echo.gate("first").set()
    targets = [body_of((await client.response()).body)["target"] for _ in range(3)]
    assert targets == ["/wait/first", "/second", "/third"]
    assert await client.closed()


async def test_http_1_0_closes_unless_kept_alive(port: Port) -> None:
    client = await port.connect()
    await client.send(request("GET", "/old", "Connection: keep-alive", version="HTTP/1.0", close=False))
    answer = await client.response()
    assert answer.version == "HTTP/1.0" and answer.header("connection") == "keep-alive"
    await client.send(request("GET", "/old", version="HTTP/1.0", close=False))
    answer = await client.response()
    assert answer.header("connection") == "close" and body_of(answer.body)["version"] == "1.0"
    assert await client.closed()


@pytest.mark.parametrize("first", ["HTTP/1.1", "HTTP/1.0"])
async def test_each_pipelined_head_is_read_at_its_own_version(port: Port, first: str) -> None:
    """Each head in one chunk is read at its own version, whichever comes first."""
    versions = [first, "HTTP/1.0" if first == "HTTP/1.1" else "HTTP/1.1", first]
    client = await port.connect()
    await client.send(
        b"".join(
            request("GET", f"/{i}", "Connection: keep-alive", version=v, close=False)
            for i, v in enumerate(versions)
        )
    )
    seen = [body_of((await client.response()).body)["version"] for _ in versions]
    assert seen == [v.removeprefix("HTTP/") for v in versions]


@pytest.mark.parametrize("version", ["HTTP/1.0", "HTTP/1.1"])
async def test_an_empty_line_before_the_request_line_shifts_nothing(port: Port, version: str) -> None:
    client = await port.connect()  # RFC 9112 2.2: llhttp skips it; the version is still read right
    await client.send(b"\r\n" + request("GET", "/v", "Connection: keep-alive", version=version, close=False))
    assert body_of((await client.response()).body)["version"] == version.removeprefix("HTTP/")


async def test_nothing_after_connection_close_is_read(port: Port) -> None:
    client = await port.connect()
    await client.send(request("GET", "/last") + request("GET", "/never"))
    assert body_of((await client.response()).body)["target"] == "/last"
    assert await client.closed()
    assert [r.raw_path for r in port.echo.seen] == ["/last"]


# -- request bodies ---------------------------------------------------------------------------


async def test_a_chunked_body_arrives_whole(port: Port) -> None:
    client = await port.connect()
    await client.send(
        request("POST", "/up", "Transfer-Encoding: chunked", body="3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\n\r\n")
    )
    assert body_of((await client.response()).body)["body"] == 7


@pytest.mark.parametrize("spelling", ["Content-Length", "content-length", "CONTENT-LENGTH", "cOnTeNt-LeNgTh"])
async def test_a_framing_field_is_read_however_it_is_spelled(port: Port, spelling: str) -> None:
    """Field names are case-insensitive (RFC 9110 5.1): the common spellings are lowered from a
    table, any other by `bytes.lower`, with the same verdict; a second length that disagrees is
    refused whichever spelling carries it (RFC 9112 6.3)."""
    client = await port.connect()
    await client.send(request("POST", "/up", f"{spelling}: 3", body="abc", close=False))
    assert body_of((await client.response()).body)["body"] == 3
    await client.send(request("POST", "/up", "Content-Length: 3", f"{spelling}: 4", body="abcd"))
    assert (await client.response()).status == 400


async def test_expect_100_continue_is_answered_before_the_body(port: Port) -> None:
    client = await port.connect()
    await client.send(request("POST", "/up", "Content-Length: 5", "Expect: 100-continue"))
    interim = await client.response()
    assert interim.status == 100
    await client.send(b"hello")
    final = await client.response()
    assert final.status == 200 and body_of(final.body)["body"] == 5


async def test_another_expectation_is_417_as_json(port: Port) -> None:
    client = await port.connect()
    await client.send(request("POST", "/up", "Content-Length: 1", "Expect: teapot", body="x"))
    answer = await client.response()
    assert answer.status == 417 and answer.header("content-type") == "application/json"
    assert port.echo.seen == []


async def test_a_body_nobody_reads_pauses_reading_then_flows(port: Port) -> None:
    client = await port.connect()
    size = 4 * HIGH
    await client.send(request("POST", "/hold", f"Content-Length: {size}"))
    client.writer.write(b"y" * size)  # not drained: the server stops reading
    await until(lambda: bool(port.echo.seen) and not port.connection().reading)
    held = port.echo.seen[0].body
    assert held is not None and held.buffered < size  # bounded, not the whole body in memory
    port.echo.gate("hold").set()
    assert body_of((await client.response()).body)["body"] == size


# -- answers ----------------------------------------------------------------------------------


async def test_a_streamed_answer_waits_for_a_slow_reader(port: Port) -> None:
    client = await port.connect()
    client.writer.transport.pause_reading()  # type: ignore[attr-defined]
    await client.send(request("GET", "/stream"))
    await until(lambda: bool(port.listener.connections) and port.connection().writer.paused)
    produced = port.echo.produced
    for _ in range(20):
        await asyncio.sleep(0)
    assert port.echo.produced == produced < port.echo.chunks  # not buffered whole
    client.writer.transport.resume_reading()  # type: ignore[attr-defined]
    answer = await client.response()
    assert answer.header("transfer-encoding") == "chunked" and len(answer.body) == 64 * 65536


async def test_a_client_that_takes_none_of_its_answers_is_cut_at_the_send_deadline(port: Port) -> None:
    """nginx's send_timeout: answers wait on a client that reads nothing; past the deadline the
    connection is cut (not closed gracefully: it would never read a close either), counted, and
    the stream behind the answer stops (its vendor connection would be released)."""
    client = await port.connect()
    client.writer.transport.pause_reading()  # type: ignore[attr-defined]
    await client.send(request("GET", "/stream"))
    await until(lambda: bool(port.listener.connections) and port.connection().writer.paused)
    port.timer.advance(LIMITS.send_timeout - 1)
    assert port.listener.connections and port.listener.stats.send_timeouts == 0
    port.timer.advance(2)
    await until(lambda: not port.listener.connections)
    assert port.listener.stats.send_timeouts == 1
    assert port.listener.slow_total.value(("send",)) == 1
    assert port.echo.produced < port.echo.chunks  # the stream stopped where the client did
    client.writer.transport.resume_reading()  # type: ignore[attr-defined]
    assert await client.closed()


async def test_a_whole_answer_the_client_never_takes_is_cut_too(port: Port) -> None:
    """An answer written whole into the transport (8 MB, no stream waiting to drain): once it is
    out of our hands the connection goes idle, and the idle deadline must not disarm the send
    deadline, or a close would wait on the client's reading for ever."""
    client = await port.connect()
    client.writer.transport.pause_reading()  # type: ignore[attr-defined]
    await client.send(request("GET", "/whole", close=False))
    await until(lambda: bool(port.echo.seen))
    port.timer.advance(LIMITS.header_timeout + 1)  # the connection's timer fires while we answer
    port.echo.gate("whole").set()
    await until(lambda: port.connection().writer.paused and not port.connection().in_message)
    port.timer.advance(LIMITS.send_timeout + 1)
    await until(lambda: not port.listener.connections)
    assert port.listener.stats.send_timeouts == 1


async def test_the_linger_after_a_close_counts_from_the_last_byte_out(port: Port) -> None:
    """`Connection: close` on an answer the transport holds most of (8 MB): the half-close and
    the linger that follows wait for its last byte. A linger counted from the write instead cut
    a client reading at 640 KB/s after one second: 5.6 MB of 8 arrived, then a clean close."""
    client = await port.connect()
    client.writer.transport.pause_reading()  # type: ignore[attr-defined]
    await client.send(request("GET", "/whole"))
    await until(lambda: bool(port.echo.seen))
    port.echo.gate("whole").set()
    await until(lambda: port.connection().reading_done and port.connection().writer.paused)
    port.timer.advance(port.listener.limits.linger * 10)  # the client has not taken it yet
    assert port.listener.connections
    client.writer.transport.resume_reading()  # type: ignore[attr-defined]
    answer = await client.response()
    assert answer.status == 200 and len(answer.body) == 8 << 20
    await until(lambda: port.connection().writer.backlog() == 0)
    port.timer.advance(port.listener.limits.linger + 1)  # now the linger runs, and ends it
    assert await client.closed()


async def test_a_slow_reader_that_keeps_taking_bytes_is_never_cut(port: Port) -> None:
    """The send deadline runs between two takes, not for a whole answer: a client that takes a
    little before each deadline gets all of it, however long that takes in all."""
    client = await port.connect()
    transport = client.writer.transport
    transport.pause_reading()  # type: ignore[attr-defined]
    await client.send(request("GET", "/stream"))
    await until(lambda: bool(port.listener.connections) and port.connection().writer.paused)
    writer = port.connection().writer
    body = bytearray()
    for _ in range(6):  # six times the deadline in all
        port.timer.advance(LIMITS.send_timeout - 1)

        def taken(before: int = writer.backlog()) -> bool:  # the proxy saw the client take some
            return writer.backlog() < before or not writer.paused

        transport.resume_reading()  # type: ignore[attr-defined]
        body += await client.reader.read(65536)
        await until(taken)
        transport.pause_reading()  # type: ignore[attr-defined]
    assert port.listener.connections and port.listener.stats.send_timeouts == 0
    transport.resume_reading()  # type: ignore[attr-defined]
    body += await client.rest()
    assert len(body) > 64 * 65536 and port.listener.stats.send_timeouts == 0


async def test_a_streamed_answer_to_http_1_0_ends_with_the_connection(port: Port) -> None:
    client = await port.connect()
    port.echo.chunks = 2
    await client.send(request("GET", "/stream", version="HTTP/1.0", close=False))
    answer = await client.response()
    assert answer.header("transfer-encoding") is None and answer.header("connection") == "close"
    assert len(answer.body) == 2 * 65536


async def test_head_gets_the_length_without_the_body(port: Port) -> None:
    client = await port.connect()
    await client.send(request("HEAD", "/h", close=False))
    answer = await client.response(method="HEAD")
    assert int(answer.header("content-length") or 0) > 0
    await client.send(request("GET", "/after"))  # the next answer starts right after the head
    assert body_of((await client.response()).body)["target"] == "/after"


# -- errors: always our JSON ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GARBAGE\x01<script>\r\n\r\n", 400),
        (b"GET /a HTTP/1.1\nHost: x\n\n", 400),
        (b"GET /a HTTP/1.1\r\nHost: x\r\nBad Name: <script>\r\n\r\n", 400),
        (b"GET /a HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n", 400),
        (b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        (b"POST /a HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
        (b"GET /a HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        (b"GET /a\r\n\r\n", 400),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET /a HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * 9000 + b"\r\n\r\n", 431),
    ],
)
async def test_every_refusal_is_json_and_echoes_nothing(port: Port, raw: bytes, status: int) -> None:
    client = await port.connect()
    await client.send(raw)
    answer = await client.response()
    assert answer.status == status
    assert answer.header("content-type") == "application/json"
    assert answer.header("server") is None
    assert b"<script>" not in answer.body and b"vvvv" not in answer.body
    assert body_of(answer.body)["request_id"] == answer.header("x-request-id")
    assert await client.closed()
    assert port.echo.seen == []


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET /a HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET /a HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * 9000 + b"\r\n\r\n", 431),
        (b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
    ],
)
async def test_a_refusal_is_its_own_while_the_caller_handles_another(
    port: Port, raw: bytes, status: int
) -> None:
    # The bytes arrive while an exception is being handled, as a compiled coroutine that awaits
    # inside `except` leaves it for whatever the loop runs meanwhile: the refusal the callback
    # raised is answered, not the handled one (`__context__` gave its 502 here).
    client = await port.connect()
    await until(lambda: len(port.listener.connections) == 1)
    try:
        raise Refused(ProxyError("an unrelated refusal being handled"))
    except Refused:
        port.connection().data_received(raw)
    answer = await client.response()
    assert answer.status == status
    assert b"unrelated" not in answer.body


async def test_a_refusal_after_pipelined_requests_is_answered_after_them(port: Port) -> None:
    client = await port.connect()
    await client.send(request("GET", "/wait/a", close=False) + b"BROKEN\r\n\r\n")
    await until(lambda: len(port.echo.seen) == 1)
    port.echo.gate("a").set()
    first, second = await client.response(), await client.response()
    assert (first.status, second.status) == (200, 400)
    assert await client.closed()


async def test_a_chunked_body_that_breaks_off_is_400(port: Port) -> None:
    client = await port.connect()
    await client.send(request("POST", "/up", "Transfer-Encoding: chunked", body="3\r\nabc\r\nzz\r\n"))
    answer = await client.response()
    assert answer.status == 400 and answer.header("content-type") == "application/json"
    assert await client.closed()


# -- Upgrade and CONNECT never switch protocols ------------------------------------------------


async def test_an_upgrade_is_answered_as_a_plain_request_then_closed(port: Port) -> None:
    client = await port.connect()
    await client.send(
        request("GET", "/ws", "Connection: Upgrade", "Upgrade: websocket", close=False)
        + request("GET", "/smuggled", close=False)
    )
    answer = await client.response()
    assert answer.status == 200 and answer.header("connection") == "close"
    assert await client.closed()
    assert [r.raw_path for r in port.echo.seen] == ["/ws"]


async def test_deadlines_still_apply_after_an_upgrade_header(port: Port) -> None:
    client = await port.connect()
    await client.send(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nX-Tr")
    await until(lambda: port.connection().in_message)
    port.timer.advance(LIMITS.header_timeout + 1)
    answer = await client.response()
    assert answer.status == 408
    assert await client.closed()


# -- deadlines on the injected timer ----------------------------------------------------------


async def test_a_head_that_never_completes_gets_408_at_the_deadline(port: Port) -> None:
    client = await port.connect()
    await client.send(b"GET /slow HTTP/1.1\r\nHost: x\r\n")
    await until(lambda: bool(port.listener.connections) and port.connection().in_message)
    port.timer.advance(LIMITS.header_timeout - 1)
    assert port.listener.stats.header_timeouts == 0
    port.timer.advance(2)
    answer = await client.response()
    assert answer.status == 408 and answer.header("content-type") == "application/json"
    assert await client.closed()
    assert port.listener.stats.header_timeouts == 1


async def test_a_body_that_stalls_is_cut_at_the_body_deadline(port: Port) -> None:
    client = await port.connect()
    await client.send(request("POST", "/up", "Content-Length: 10", body="abc"))
    await until(lambda: bool(port.echo.seen))
    port.timer.advance(LIMITS.body_timeout + 1)
    assert await client.closed()
    assert port.listener.stats.body_timeouts == 1


async def test_an_idle_kept_alive_connection_outlives_the_head_deadline(port: Port) -> None:
    client = await port.connect()
    await client.send(request("GET", "/a", close=False))
    assert (await client.response()).status == 200
    port.timer.advance(LIMITS.header_timeout * 3)
    await client.send(request("GET", "/b", close=False))
    assert (await client.response()).status == 200
    port.timer.advance(port.listener.keepalive_timeout + 1)
    assert await client.closed()
    assert port.listener.stats.header_timeouts == port.listener.stats.body_timeouts == 0


async def test_a_slow_second_head_is_cut(port: Port) -> None:
    client = await port.connect()
    await client.send(request("GET", "/a", close=False))
    assert (await client.response()).status == 200
    await client.send(b"GET /b HTTP/1.1\r\n")
    await until(lambda: port.connection().in_message)
    port.timer.advance(LIMITS.header_timeout + 1)
    assert (await client.response()).status == 408
    assert port.listener.stats.header_timeouts == 1


# -- graceful drain ---------------------------------------------------------------------------


async def test_drain_closes_idle_connections_and_finishes_busy_ones(port: Port) -> None:
    idle, busy = await port.connect(), await port.connect()
    await idle.send(request("GET", "/a", close=False))
    assert (await idle.response()).status == 200
    await busy.send(request("GET", "/wait/slow", close=False))
    await until(lambda: len(port.echo.seen) == 2)
    draining = asyncio.ensure_future(port.listener.drain(5.0))
    assert await idle.closed()
    port.echo.gate("slow").set()
    answer = await busy.response()
    assert answer.status == 200 and answer.header("connection") == "close"
    assert await busy.closed()
    port.timer.advance(port.listener.limits.linger + 1)  # the half-closed connection lingers, then goes
    await asyncio.wait_for(draining, 5)
    with contextlib.suppress(ServerClosed, ConnectionError):
        fresh = await port.connect()
        await fresh.send(request("GET", "/late"))
        assert await fresh.closed()


# `event_loop_policy` runs every case on asyncio and on uvloop (production serves on uvloop,
# whose transports differ), as tests/hardening does.
pytestmark = pytest.mark.filterwarnings('ignore:Overriding the "event_loop_policy" fixture')


class BrokenTimer(FakeTimer):
    """A timer that fails whenever it is armed: a fault inside `connection_made`."""

    def call_at(self, when: float, callback: Callable[[], None]) -> _Handle:
        raise RuntimeError("the timer broke")


async def test_a_connection_whose_setup_fails_is_closed_logged_and_uncounted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = web.Application()
    app[PUBLIC] = Echo()
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = PublicSite(runner, "127.0.0.1", 0, limits=LIMITS, timer=BrokenTimer(), shutdown_timeout=2.0)
    await site.start()
    try:
        client = await RawClient.connect(site.bound_port)
        # Such a socket was left open, unread and with no deadline, on either loop.
        assert await client.closed()
        assert "accepting a connection failed" in caplog.text
        listener = site.guard
        assert listener is not None
        await until(lambda: not listener.connections)
        assert listener.table.open == 0 and listener.lingering == 0
    finally:
        await runner.cleanup()


def test_a_message_is_bounded_by_its_head_limit_a_read_and_its_body() -> None:
    """`MessageBytes`: what a field that never ends may take before it is refused."""
    bound = MessageBytes(1000)
    assert not bound.overgrown(1000 + READ_SLACK)
    assert bound.overgrown(1)
    bound.begin()  # the next message starts afresh
    bound.body = 10_000  # as llhttp hands the body over, its chunk framing is allowed in proportion
    assert not bound.overgrown(10_000 + 1000 + READ_SLACK + FRAMING_PER_BYTE * 10_000)
    assert bound.overgrown(1)
