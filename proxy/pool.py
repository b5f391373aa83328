"""Connections to one upstream: open, reuse, discard, and the body stream of a large response.

Owns: the keep-alive pool (at most `size` connections, LIFO reuse, an idle timeout), the rule for
reuse (the last response was read completely, it allowed keep-alive, no byte arrived since, and
our request was written whole), the asyncio Protocol that feeds a connection's bytes into
`http1.ResponseFraming`, and backpressure (a slow consumer of a streamed body pauses the vendor's
socket).
Must not: write requests, map errors onto the project's tree, retry, or read the injected clock:
idle ages are transport timing on the event loop's monotonic clock, as asyncio's own timeouts.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque
from collections.abc import Callable
from typing import Final

from proxy.http1 import FramingError, Names, ResponseFraming

log = logging.getLogger("proxy.pool")

IDLE_TIMEOUT: Final = 4.0  # below the 5 s keep-alive of Node, uvicorn and Apache: we close first
HIGH_WATER: Final = 256 * 1024  # streamed bytes waiting for the consumer before the socket is paused
LOW_WATER: Final = 64 * 1024

OnProtocolError = Callable[[str, str], None]  # (reason, message)


class ExchangeTimeout(Exception):
    """The exchange's deadline passed before its response (head and body up to the limit)."""


class Conn(asyncio.Protocol):
    """One connection; at most one exchange at a time. `framing` is None while idle; the
    `ResponseFraming` (and its llhttp parser) is kept across exchanges while they end cleanly.

    The exchange's deadline is one loop timer per connection, not one per request: a request
    on a reused connection only moves `deadline`, and the timer, when it fires early, re-arms
    itself for the current one (arming and cancelling a timer per request costs more than the
    parsing of a small response).
    """

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.framing: ResponseFraming | None = None
        self._parsing: ResponseFraming | None = None  # `framing`, also while idle: for `begin`
        self.waiter: asyncio.Future[None] | None = None  # the head (and body up to limit)
        self.wake: asyncio.Future[None] | None = None  # the streaming consumer
        self.error: FramingError | None = None
        self.limit = 0
        self.streaming = False
        self.pending = 0  # streamed bytes not yet taken
        self.paused = False
        self.dead = False
        self.counted = True  # holds one of the pool's `size` slots
        self.idle_since = 0.0
        self.deadline = 0.0  # loop time by which the waiter must be answered
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport

    def data_received(self, data: bytes) -> None:
        framing = self.framing
        if framing is None:  # nobody asked: a stray response or late bytes; never read as an answer
            self.pool.protocol_error("idle_bytes", f"{len(data)} bytes arrived on an idle connection")
            self.pool.discard(self)
            return
        before = framing.body_bytes
        try:
            framing.feed(data)
        except FramingError as exc:
            self._fail(exc)
            return
        if self.streaming:
            self.pending += framing.body_bytes - before
            if self.pending > HIGH_WATER and not self.paused and self.transport is not None:
                self.paused = True
                self.transport.pause_reading()
        self._progress()

    def eof_received(self) -> bool:
        self._ended(reset=False)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended(reset=exc is not None)  # a reset (or a TLS error) is no end of a body
        self.dead = True
        self.disarm()
        self.pool.forget(self)
        if self._parsing is not None:
            self._parsing.close()

    # -- the exchange ------------------------------------------------------------------------

    def begin(self, head_only: bool, limit: int, deadline: float) -> asyncio.Future[None]:
        """Start an exchange (its framing is `self.framing`); the waiter fails with
        `ExchangeTimeout` once `deadline` (loop time) passes without the response."""
        framing = self._parsing
        if framing is None or not framing.restart(head_only=head_only):
            framing = self._parsing = ResponseFraming(head_only=head_only, names=self.pool.names)
        self.framing, self.limit, self.error = framing, limit, None
        self.streaming, self.pending = False, 0
        loop = self.loop
        self.waiter = waiter = loop.create_future()
        self.deadline = deadline
        if self._timer is None or self._timer_at > deadline:
            self.disarm()
            self._timer = loop.call_at(deadline, self._on_timer)
            self._timer_at = deadline
        return waiter

    def _on_timer(self) -> None:
        self._timer = None
        waiter = self.waiter
        if waiter is None or waiter.done() or self.dead:
            return  # idle or answered since: nothing to time out
        loop = self.loop
        if loop.time() < self.deadline:  # armed for an earlier exchange on this connection
            self._timer = loop.call_at(self.deadline, self._on_timer)
            self._timer_at = self.deadline
            return
        waiter.set_exception(ExchangeTimeout())
        waiter.exception()  # retrieved: the owner may have gone (cancelled)

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def take(self) -> bytes:
        """Body bytes received so far (streaming); resumes a paused socket."""
        assert self.framing is not None
        data = self.framing.take_body()
        self.pending = 0
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return data

    def reusable(self) -> bool:
        framing = self.framing
        return (
            framing is not None
            and framing.complete
            and framing.keep_alive
            and not framing.body
            and not self.dead
            and self.transport is not None
            and not self.transport.is_closing()
            # An answer before our request was all written (an early 413): the rest of it would
            # precede the next request, for the vendor to read as one (Go's transport also waits).
            and not self.transport.get_write_buffer_size()
        )

    def _ended(self, *, reset: bool) -> None:
        framing = self.framing
        if framing is None or framing.complete or self.error is not None:
            return
        try:
            framing.feed_eof(reset=reset)
        except FramingError as exc:
            self._fail(exc)
            return
        self._progress()

    def _progress(self) -> None:
        framing = self.framing
        assert framing is not None
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            if framing.complete or (framing.head is not None and framing.body_bytes > self.limit):
                waiter.set_result(None)
        elif self.wake is not None and not self.wake.done():
            self.wake.set_result(None)

    def _fail(self, exc: FramingError) -> None:
        self.error = exc
        if exc.reason != "truncated" or (self.framing is not None and self.framing.started):
            self.pool.protocol_error(exc.reason, exc.message)
        self.abort()
        for fut in (self.waiter, self.wake):
            if fut is not None and not fut.done():
                fut.set_exception(exc)
                fut.exception()  # retrieved: the owner may have gone (timeout, cancel)

    def abort(self) -> None:
        self.dead = True
        self.disarm()
        if self.transport is not None:
            self.transport.abort()


class Pool:
    """At most `size` connections to one host:port; idle ones are reused newest first."""

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        *,
        size: int,
        tls: ssl.SSLContext | None,
        on_error: OnProtocolError,
    ) -> None:
        self.name, self.host, self.port, self.size, self.tls = name, host, port, max(1, size), tls
        # Made on the loop it serves (`Transport` opens it in `send`); asking for the running
        # loop costs a getpid() system call in CPython, three times per exchange.
        self.loop = asyncio.get_running_loop()
        # The loop's clock, bound once: compiled, `loop.time()` is a method looked up by name,
        # and a miss reads it three times (its deadline, taking and returning a connection).
        self.time: Callable[[], float] = self.loop.time
        # A list, not a deque: compiled, a list's append and pop are direct calls, a deque's
        # are methods looked up by name (three a miss); the oldest leaves only on expiry.
        self.idle: list[Conn] = []
        self.open = 0
        self.closed = False
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._on_error = on_error
        self.names: dict[bytes, Names] = {}  # the vendor's field-name sequences, read once

    def take_idle(self, max_idle: float) -> Conn | None:
        """The newest idle connection idle for less than `max_idle` seconds, else None."""
        now = self.time()
        while self.idle and now - self.idle[0].idle_since > IDLE_TIMEOUT:  # oldest first
            self.discard(self.idle.pop(0))
        while self.idle:
            conn = self.idle.pop()
            if conn.dead or conn.transport is None or conn.transport.is_closing():
                self.discard(conn)
                continue
            if now - conn.idle_since > max_idle:
                self.idle.append(conn)  # good for a read, too old for a write: keep it
                return None
            return conn
        return None

    async def acquire(self, max_idle: float, connect_timeout: float, deadline: float) -> Conn:
        """A new connection once a slot is free (after `take_idle` found none): TimeoutError
        when `deadline` (loop time) passes first, or `connect_timeout` while connecting."""
        async with asyncio.timeout_at(deadline) as timer:
            return await self._acquire(max_idle, connect_timeout, timer)

    async def _acquire(self, max_idle: float, connect_timeout: float, timer: asyncio.Timeout) -> Conn:
        while True:
            conn = self.take_idle(max_idle)
            if conn is not None:
                return conn
            if self.open < self.size:
                break
            if self.idle:  # idle but too old for this request: make room
                self.discard(self.idle.pop(0))
                continue
            fut = self.loop.create_future()
            self._waiting.append(fut)
            try:
                await fut
            except BaseException:  # cancelled after being woken: pass the free slot on
                if fut.done() and not fut.cancelled():
                    self._wake_one()
                raise
            finally:
                if fut in self._waiting:
                    self._waiting.remove(fut)
        loop = self.loop
        deadline = timer.when()
        assert deadline is not None
        timer.reschedule(min(loop.time() + connect_timeout, deadline))
        conn = await self._connect()
        timer.reschedule(deadline)
        return conn

    async def _connect(self) -> Conn:
        self.open += 1
        try:
            transport, conn = await self.loop.create_connection(
                lambda: Conn(self),
                self.host,
                self.port,
                ssl=self.tls,
                server_hostname=self.host if self.tls is not None else None,
            )
        except BaseException:
            self.open -= 1
            self._wake_one()
            raise
        conn.transport = transport  # uvloop may call connection_made after this returns
        return conn

    def release(self, conn: Conn) -> None:
        """The exchange is over: back to the pool when reusable, else closed."""
        if conn.reusable() and not self.closed:
            conn.framing = conn.waiter = conn.wake = None
            conn.idle_since = self.time()
            self.idle.append(conn)
            if self._waiting:
                self._wake_one()
        else:
            self.discard(conn)

    def discard(self, conn: Conn) -> None:
        conn.framing = None
        transport = conn.transport
        if transport is not None and not transport.is_closing():
            if transport.get_write_buffer_size():  # the rest of a body nobody reads: never sent
                transport.abort()  # RFC 9112 9.5: cease transmitting the body, close our side
            else:
                transport.close()
        conn.dead = True
        conn.disarm()
        self.forget(conn)

    def forget(self, conn: Conn) -> None:
        if conn in self.idle:
            self.idle.remove(conn)
        if conn.counted:
            conn.counted = False
            self.open -= 1
            self._wake_one()

    def protocol_error(self, reason: str, message: str) -> None:
        log.warning("upstream %s: %s; connection discarded", self.name, message)
        self._on_error(reason, message)

    def _wake_one(self) -> None:
        while self._waiting:
            fut = self._waiting.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    def close(self) -> None:
        """Close the idle connections; busy ones are closed when their exchange ends."""
        self.closed = True
        while self.idle:
            self.discard(self.idle.pop())
