"""The public port as a listening socket: what its connections share, and how it is served.

Owns: `Listener` (the protocol factory: the guard's bookkeeping, the endpoint, the deadline
`Timer`, the open connections for a graceful drain, the `Date` line, the 503 that turns away a
connection past the caps), `PublicSite` (an aiohttp
`BaseSite` that listens on a host and port or a socket, with TLS, and drains on stop), and the
`Endpoint` the port serves, hung off the app under `PUBLIC`.
Must not: parse requests (that is `listener.Connection`) or answer them (`driver.Driver`).

Wiring (decided here): `build_app` still returns the aiohttp `Application` that owns the
lifecycle (startup/cleanup hooks, the admin app reads its state); the public endpoint hangs off
it under `PUBLIC` and is served by `PublicSite`, so `AppRunner` keeps the order it has always had:
startup hooks before we listen, stop accepting and drain before the cleanup hooks. The aiohttp
application itself has no routes and is never exposed.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from email.utils import formatdate
from typing import Any, cast

from aiohttp import web

from proxy.connguard import ConnGuard, TooManyConnections, answer
from proxy.core.limits import Admission, ConnLimits
from proxy.deadlines import Cancellable, LoopTimer, Timer
from proxy.exchange import Endpoint
from proxy.listener import Connection
from proxy.metrics import Registry

KEEPALIVE_TIMEOUT = 75.0  # seconds an idle kept-alive connection stays open, as aiohttp's default


PUBLIC = web.AppKey("public_endpoint", Endpoint)


class Listener(ConnGuard):
    """The protocol factory of one listening socket: the guard's bookkeeping plus what every
    connection shares (endpoint, timer, the open connections for a graceful drain)."""

    def __init__(
        self,
        endpoint: Endpoint,
        limits: ConnLimits | None = None,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        registry: Registry | None = None,
        timer: Timer | None = None,
        keepalive_timeout: float = KEEPALIVE_TIMEOUT,
    ) -> None:
        super().__init__(limits, loop=loop, registry=registry)
        self.endpoint = endpoint
        self.timer: Timer = timer or LoopTimer(self.loop)
        self.keepalive_timeout = keepalive_timeout
        self.connections: set[Connection] = set()
        self.draining = False
        self._date_at = -1
        self._date = b""

    def __call__(self) -> asyncio.Protocol:
        return Connection(self)

    def opened(self, conn: Connection) -> None:
        """`conn` was admitted: counted, and kept for a graceful drain."""
        self.admitted()
        self.connections.add(conn)

    def gone(self, conn: Connection, address: str) -> None:
        """An admitted `conn` from `address` closed."""
        self.released(address)
        self.connections.discard(conn)

    def date(self) -> bytes:
        """`Date: ...\\r\\n` (RFC 9110 6.6.1), formatted once a second."""
        now = int(self.endpoint.now())
        if now != self._date_at:
            self._date_at = now
            self._date = f"Date: {formatdate(now, usegmt=True)}\r\n".encode("ascii")
        return self._date

    def turn_away(
        self, transport: asyncio.Transport, why: Admission, address: str, abort: Callable[[], None]
    ) -> Cancellable | None:
        """A connection past the caps: our 503 and a half-close, or a reset when too many turned
        away linger already. Returns the linger timer that ends it (`abort`), if any."""
        self.shed(why, address)
        self.lingering += 1  # undone in connection_lost
        if self.lingering > self.limits.max_lingering:
            self.stats.reset += 1
            transport.abort()
            return None
        scope = "in total" if why is Admission.TOTAL else "from your address"
        transport.write(
            answer(TooManyConnections(f"too many connections {scope}; retry shortly"), ("Retry-After", "1"))
        )
        if not transport.can_write_eof():
            transport.close()
            return None
        # Half-close: the client reads the 503, then EOF. Closing outright while its request is
        # unread would send a reset that can destroy the 503 in flight (RFC 9112 9.6).
        transport.write_eof()
        return self.loop.call_later(self.limits.linger, abort)

    async def drain(self, grace: float) -> None:
        """Stop taking requests: idle connections close now, busy ones after their answer
        (marked `Connection: close`); whatever is left after `grace` seconds is cut."""
        self.draining = True
        for conn in list(self.connections):
            conn.drain()
        deadline = self.loop.time() + grace
        while self.connections and self.loop.time() < deadline:
            await asyncio.sleep(0.02)
        for conn in list(self.connections):
            conn.abort()


class PublicSite(web.BaseSite):
    """Serves `runner.app[PUBLIC]` through a `Listener` (`site.guard` once started) on a host
    and port or an open socket; TLS with `ssl_context`. `stop` drains gracefully."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str | None = None,
        port: int | None = None,
        *,
        sock: socket.socket | None = None,
        ssl_context: ssl.SSLContext | None = None,
        backlog: int = 1024,
        reuse_port: bool | None = None,
        limits: ConnLimits | None = None,
        registry: Registry | None = None,
        timer: Timer | None = None,
        shutdown_timeout: float = 5.0,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=backlog)
        self._host, self._port, self._sock = host, port, sock
        self._reuse_port = reuse_port
        self._limits = limits or ConnLimits()
        self._registry = registry
        self._timer = timer
        self._grace = shutdown_timeout
        self.guard: Listener | None = None
        self._listening: int | None = None

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self._host}:{self._listening or self._port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        app = cast(Any, self._runner).app
        self.guard = Listener(
            app[PUBLIC], self._limits, loop=loop, registry=self._registry, timer=self._timer
        )
        tls = self._ssl_context
        timeout = self._limits.header_timeout if tls is not None else None
        where: dict[str, Any] = (
            {"sock": self._sock}
            if self._sock is not None
            else {
                "host": self._host,
                "port": self._port or 0,
                "reuse_address": True,
                "reuse_port": self._reuse_port,
            }
        )
        server = await loop.create_server(
            self.guard, ssl=tls, backlog=self._backlog, ssl_handshake_timeout=timeout, **where
        )
        self._server = server
        self._listening = int(server.sockets[0].getsockname()[1]) if server.sockets else self._port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()  # stop accepting first
        if self.guard is not None:
            await self.guard.drain(self._grace)
        await super().stop()

    @property
    def bound_port(self) -> int:
        """The port actually listened on (the configured one may be 0)."""
        assert self._listening is not None, "not started"
        return self._listening
