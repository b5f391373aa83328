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

import logging
import os
import ssl
from collections.abc import Callable
from typing import Final
from urllib.parse import urlsplit

from mypy_extensions import mypyc_attr

from proxy.clock import Clock
from proxy.core.config.model import Timeouts, UpstreamConfig
from proxy.core.errors import UpstreamConnectError, UpstreamError, UpstreamOutcomeUnknown, UpstreamTimeout
from proxy.core.record import Record
from proxy.core.retry import may_retry_method
from proxy.fetched import BodyStream, Fetched
from proxy.http1 import FramingError, ResponseFraming, head_prefix, request_bytes
from proxy.pool import IDLE_TIMEOUT, Conn, ExchangeTimeout, Pool

log = logging.getLogger("proxy.transport")

# A write without Idempotency-Key goes out once, ever; a pooled connection the vendor is closing
# at that very moment would turn it into an unknown outcome. Servers close idle connections after
# 2 s (gunicorn) to 75 s (nginx): a connection idle for longer than this is not used for one.
WRITE_MAX_IDLE: Final = 1.0


class Outbound(Record):
    """One request to send to the vendor (made per request: a record, see `core.record`)."""

    __slots__ = (
        "body",
        "credentials",
        "headers",
        "idempotency_key",
        "method",
        "offered",
        "path_qs",
        "timeout",
    )

    def __init__(
        self,
        method: str,
        path_qs: str,
        headers: list[tuple[str, str]],
        body: bytes | None = None,
        timeout: Timeouts | None = None,
        idempotency_key: bool = False,
        credentials: bool = False,
        offered: Callable[[str], str | None] | None = None,
    ) -> None:
        self.method = method
        self.path_qs = path_qs  # already rewritten, percent-encoded, starting with "/"
        self.headers = headers
        self.body = body
        self.timeout = timeout
        self.idempotency_key = idempotency_key
        self.credentials = credentials  # the client sent Authorization or Cookie (RFC 9111 3.5)
        # A cached fetch sends only keyed headers; this gives the client's value of one we held
        # back, asked only when the vendor's Vary names it (see `fetch.vary_refetch`).
        self.offered = offered

    def with_headers(self, headers: list[tuple[str, str]], *, offered: bool = True) -> Outbound:
        """This request with other headers; `offered=False`: nothing more to offer."""
        return self._copy(headers, self.timeout, self.offered if offered else None)

    def with_timeout(self, timeout: Timeouts) -> Outbound:
        return self._copy(self.headers, timeout, self.offered)

    def _copy(
        self,
        headers: list[tuple[str, str]],
        timeout: Timeouts | None,
        offered: Callable[[str], str | None] | None,
    ) -> Outbound:
        """The cheap copy (`Record.replaced` looks each field up by name): the rest carried."""
        return Outbound(
            self.method,
            self.path_qs,
            headers,
            self.body,
            timeout,
            self.idempotency_key,
            self.credentials,
            offered,
        )


@mypyc_attr(allow_interpreted_subclasses=True)  # a test's scripted vendor, an embedding's own
class Exchange:
    """The one seam between the request path and the wire, as httpx's transports: `send` one
    request, get one `Fetched` or an `UpstreamError`. `Transport` is ours over sockets; a test
    or an embedding may pass a subclass through `build_app(transports=...)`. A base class, not a
    `Protocol`: compiled, `send` is then a direct call awaited natively, where on a `Protocol` it
    is a method looked up by name and a generic await, once per miss."""

    protocol_errors: dict[str, int]  # by reason, for rproxy_upstream_protocol_errors

    @property
    def closed(self) -> bool:  # after `close()`: a reload retired it
        raise NotImplementedError

    async def send(self, out: Outbound, limit: int) -> Fetched:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


# Builds the exchange of one upstream (called again for an upstream a reload changes).
Transports = Callable[[UpstreamConfig, Clock], Exchange]


class Transport(Exchange):
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
            data = request_bytes(out.method, target, self._head, out.headers, out.body)
        except (ValueError, UnicodeEncodeError) as exc:  # nothing was sent
            raise UpstreamError(f"refused to send the request: {_why(exc)}") from exc
        deadline = pool.time() + timeouts.total
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
