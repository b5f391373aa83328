"""Our HTTP/1.1 exchange with one upstream: one request per attempt, strict framing, pooled.

Owns: the one-method seam `Transport.send`, the upstream URL parsed once (host, port, TLS, path
prefix, the precomputed `Host` line), the connect and total deadlines (the total on one timer per
connection, see `pool.Conn`), the choice of connection for a write, and the only place where
socket, TLS and framing failures become the project's error tree (as httpx's transports do).
See docs/upstream.md for the decisions.
Must not: retry or re-send anything (retries are `upstream`'s, with `retry`'s policy and budget),
open breakers, decide caching or decompress (bodies are passed on as the vendor sent them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

from proxy.clock import Clock
from proxy.core.config.model import Timeouts, UpstreamConfig
from proxy.core.encoding import DecodeError, TooLarge, decode
from proxy.core.errors import UpstreamConnectError, UpstreamError, UpstreamOutcomeUnknown, UpstreamTimeout
from proxy.core.model import Headers
from proxy.core.retry import may_retry_method
from proxy.http1 import FramingError, ResponseFraming, head_prefix, request_bytes
from proxy.pool import IDLE_TIMEOUT, Conn, ExchangeTimeout, Pool

log = logging.getLogger("proxy.transport")

# A write without Idempotency-Key goes out once, ever; a pooled connection the vendor is closing
# at that very moment would turn it into an unknown outcome. Servers close idle connections after
# 2 s (gunicorn) to 75 s (nginx): a connection idle for longer than this is not used for one.
WRITE_MAX_IDLE = 1.0


@dataclass(slots=True)
class Outbound:
    method: str
    path_qs: str  # already rewritten, percent-encoded, starting with "/"
    headers: list[tuple[str, str]]
    body: bytes | None = None
    timeout: Timeouts | None = None
    idempotency_key: bool = False
    credentials: bool = False  # the client sent Authorization or Cookie (RFC 9111 3.5)
    # A cached fetch sends only keyed headers; this gives the client's value of one we held
    # back, asked only when the vendor's Vary names it (see `fetch.vary_refetch`).
    offered: Callable[[str], str | None] | None = field(default=None, repr=False)


class BodyStream:
    """The rest of a body too large to store, as an async iterator of chunks.

    Reading is paced by the consumer: the vendor's socket is paused while unread bytes pile up
    (pool.HIGH_WATER). The upstream's total deadline still runs. `close()` before the end
    discards the connection (its unread bytes would be the next answer).
    """

    def __init__(self, pool: Pool, conn: Conn, framing: ResponseFraming, first: bytes, deadline: float):
        self._pool, self._framing = pool, framing
        self._conn: Conn | None = conn
        self._first, self._deadline = first, deadline
        conn.streaming = True

    def __aiter__(self) -> BodyStream:
        return self

    async def __anext__(self) -> bytes:
        if self._first:
            chunk, self._first = self._first, b""
            return chunk
        conn = self._conn
        if conn is None:
            raise StopAsyncIteration
        while True:
            if self._framing.body:
                return conn.take()
            if self._framing.complete:  # bytes after it, if any, only cost the connection
                self._pool.release(conn)
                self._conn = None
                raise StopAsyncIteration
            if conn.error is not None:
                self.close()
                raise UpstreamError(f"broken body: {conn.error.message}")
            conn.wake = conn.loop.create_future()
            try:
                async with asyncio.timeout_at(self._deadline):
                    await conn.wake
            except FramingError:
                continue  # conn.error is set
            except TimeoutError as exc:
                self.close()
                raise UpstreamTimeout("timed out reading the body") from exc

    def __del__(self) -> None:
        if self._conn is not None:  # dropped unread: its connection must not hold a slot forever
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):  # the loop may be gone already
                log.warning("upstream %s: a body stream was dropped unread", self._pool.name)
                self._pool.discard(conn)

    def close(self) -> None:
        """Stop reading: a connection whose response was read off the wire to the end goes back
        to the pool; one with unread bytes is discarded."""
        if self._conn is not None:
            if self._framing.complete:
                self._pool.release(self._conn)
            else:
                self._pool.discard(self._conn)
            self._conn = None


DECODE_OFF_LOOP = 64 * 1024  # compressed bytes; inflating more than this takes milliseconds
CODING_HEADERS = frozenset({"content-encoding", "content-length"})


@dataclass(slots=True)
class Fetched:
    status: int
    headers: Headers
    body: bytes
    request_time: float
    response_time: float
    complete: bool = True  # False: too large to store; `body` comes first, `stream` holds the rest
    stream: BodyStream | None = field(default=None, repr=False)
    attempts: int = 1
    interim: list[tuple[int, Headers]] = field(default_factory=list)  # 1xx heads, in order
    unreadable: str | None = None  # why a coded body could not be decoded (see `to_identity`)
    # `headers` with the lower-case name of each field, in order, as the parser read them, so
    # nobody lowers or scans them again (issue 11); `lows()` gives the names.
    lows_of: tuple[Headers, tuple[str, ...]] | None = field(default=None, repr=False)

    @property
    def elapsed(self) -> float:
        return self.response_time - self.request_time

    def lows(self) -> tuple[str, ...]:
        """The lower-case name of each of `headers`, in order: the parser's, while `headers` is
        still the tuple it read (whoever replaces `headers` need not know), else lowered now."""
        known = self.lows_of
        if known is not None and known[0] is self.headers:
            return known[1]
        lows = tuple([key.lower() for key, _ in self.headers])
        self.lows_of = (self.headers, lows)
        return lows

    async def to_identity(self, limit: int) -> None:
        """Decode a complete coded body once, within bounds, so guards, the store and every
        client see one encoding; a large one inflates on a thread (zlib frees the GIL), so a
        bomb never stalls unrelated requests. Failure is `unreadable`, never an exception."""
        coding = self.coding()
        if not self.complete or coding is None:
            return
        try:
            if len(self.body) >= DECODE_OFF_LOOP:
                self.body = await asyncio.to_thread(decode, self.body, coding, limit)
            else:
                self.body = decode(self.body, coding, limit)
        except TooLarge:  # stays coded and streams, like any body over the limit
            self.complete = False
            return
        except DecodeError as exc:
            self.unreadable = str(exc)
            return
        lows = self.lows()
        kept = [i for i, low in enumerate(lows) if low not in CODING_HEADERS]
        self.headers = tuple([self.headers[i] for i in kept])
        self.lows_of = (self.headers, tuple([lows[i] for i in kept]))

    def coding(self) -> str | None:
        """The content coding the body is in, None for identity (asked before `to_identity`,
        so an uncoded answer costs no coroutine)."""
        lows = self.lows()
        if "content-encoding" not in lows:
            return None
        value = self.headers[lows.index("content-encoding")][1]
        return None if value.strip().lower() in ("", "identity") else value

    def release(self) -> None:
        if self.stream is not None:
            self.stream.close()
            self.stream = None


class Exchange(Protocol):
    """The one seam between the request path and the wire, as httpx's transports: `send` one
    request, get one `Fetched` or an `UpstreamError`. `Transport` is ours over sockets; a test
    or an embedding may pass another through `build_app(transports=...)`."""

    protocol_errors: dict[str, int]  # by reason, for rproxy_upstream_protocol_errors

    @property
    def closed(self) -> bool: ...  # after `close()`: a reload retired it

    async def send(self, out: Outbound, limit: int) -> Fetched: ...

    async def close(self) -> None: ...


# Builds the exchange of one upstream (called again for an upstream a reload changes).
Transports = Callable[[UpstreamConfig, Clock], Exchange]


class Transport:
    """One pool of HTTP/1.1 connections per upstream."""

    def __init__(
        self,
        config: UpstreamConfig,
        clock: Clock,
        *,
        on_protocol_error: Callable[[str, str, str], None] | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        parts = urlsplit(config.url)
        self.https = parts.scheme == "https"
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if self.https else 80)
        self._prefix = parts.path.rstrip("/")
        self._head = head_prefix(parts.netloc.rpartition("@")[2], ())
        self._head_lines = self._head.count("\n")  # counted once, not per request
        self._pool: Pool | None = None
        self.protocol_errors: dict[str, int] = {}  # by reason, for rproxy_upstream_protocol_errors
        self._on_protocol_error = on_protocol_error

    @property
    def closed(self) -> bool:
        return self._pool is None

    def target(self, path_qs: str) -> str:
        # The path was checked raw and must reach the vendor byte for byte.
        return self._prefix + path_qs

    def _open(self) -> Pool:
        if self._pool is None:
            self._pool = Pool(
                self.config.name,
                self.host,
                self.port,
                size=self.config.max_connections,
                tls=self._tls() if self.https else None,
                on_error=self._protocol_error,
            )
        return self._pool

    def _tls(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.config.ca_file)
        if not self.config.verify_tls:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def _protocol_error(self, reason: str, message: str) -> None:
        self.protocol_errors[reason] = self.protocol_errors.get(reason, 0) + 1
        if self._on_protocol_error is not None:
            self._on_protocol_error(self.config.name, reason, message)

    async def send(self, out: Outbound, limit: int) -> Fetched:
        """Exactly one request on one connection; the body is read whole up to `limit` bytes,
        else `Fetched.stream` holds the rest. Never re-sends."""
        timeouts = out.timeout or self.config.timeout
        once = not may_retry_method(out.method, out.idempotency_key)  # a write sent once, ever
        pool = self._pool
        if pool is None:
            try:
                pool = self._open()
            except (OSError, ValueError) as exc:  # a CA file that cannot be read
                raise UpstreamConnectError(f"cannot set up TLS: {_why(exc)}") from exc
        try:
            target = self._prefix + out.path_qs  # `target`, inline
            data = request_bytes(
                out.method, target, self._head, out.headers, out.body, prefix_lines=self._head_lines
            )
        except (ValueError, UnicodeEncodeError) as exc:  # nothing was sent
            raise UpstreamError(f"refused to send the request: {_why(exc)}") from exc
        deadline = pool.loop.time() + timeouts.total
        request_time = self.clock.now()
        conn: Conn | None = None
        framing: ResponseFraming | None = None
        written = False
        try:
            max_idle = WRITE_MAX_IDLE if once else IDLE_TIMEOUT
            conn = pool.take_idle(max_idle)  # the common case: no wait, no timer
            if conn is None:
                conn = await pool.acquire(max_idle, timeouts.connect, deadline)
            waiter = conn.begin(out.method == "HEAD", limit, deadline)
            framing = conn.framing
            assert conn.transport is not None and framing is not None
            conn.transport.write(data)
            written = True
            await waiter
        except (TimeoutError, ExchangeTimeout) as exc:
            if conn is not None:
                pool.discard(conn)
            if not written:
                raise UpstreamTimeout(f"cannot connect within {timeouts.connect:g}s") from exc
            unknown = "; the vendor may or may not have acted on it" if once else ""
            raise UpstreamTimeout(f"no response within {timeouts.total:g}s{unknown}") from exc
        except FramingError as exc:
            assert framing is not None  # only the waiter fails with it
            raise self._failed(exc, framing, once) from exc
        except OSError as exc:  # refused, unreachable, DNS, TLS verification
            if conn is not None:
                pool.discard(conn)
            raise UpstreamConnectError(f"cannot connect: {_why(exc)}") from exc
        except BaseException:  # cancelled: the exchange is cut, the connection with it
            if conn is not None:
                pool.discard(conn)
            raise
        return self._fetched(pool, conn, framing, limit, request_time, deadline)

    def _failed(self, exc: FramingError, framing: ResponseFraming, once: bool) -> UpstreamError:
        if once:  # the write went out: whether the vendor acted is unknown
            return UpstreamOutcomeUnknown(
                f"the connection failed after the request was sent ({exc.message}); "
                "the vendor may or may not have acted on it"
            )
        if not framing.started:
            return UpstreamError("the upstream closed the connection before answering")
        return UpstreamError(f"bad response: {exc.message}")

    def _fetched(
        self,
        pool: Pool,
        conn: Conn,
        framing: ResponseFraming,
        limit: int,
        request_time: float,
        deadline: float,
    ) -> Fetched:
        assert framing.head is not None
        status, headers = framing.head
        interim, lows = framing.interim, (headers, framing.lows)
        now = self.clock.now()
        if framing.complete and framing.body_bytes <= limit:
            body = framing.take_body()
            pool.release(conn)
            return Fetched(status, headers, body, request_time, now, interim=interim, lows_of=lows)
        data = conn.take()
        first, rest = data[: limit + 1], data[limit + 1 :]
        stream = BodyStream(pool, conn, framing, rest, deadline)
        return Fetched(
            status, headers, first, request_time, now, False, stream, interim=interim, lows_of=lows
        )

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None


def _why(exc: BaseException) -> str:
    """Why, without the vendor's address: the message reaches the client's JSON error, and an
    OSError's text names the host and port (`Connect call failed ('10.0.0.5', 8080)`)."""
    if isinstance(exc, OSError) and exc.errno is not None and exc.errno > 0:
        return os.strerror(exc.errno)
    text = str(exc) or type(exc).__name__
    return text[:200]
