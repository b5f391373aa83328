"""The public listener's connection guard: an asyncio protocol wrapped around aiohttp's.

Owns: admitting connections per client address and in total (the excess is answered 503 at once
and closed: load is shed with fast errors, not queued in memory), cutting slow clients with the
header and body deadlines `limits.RequestReader` computes (aiohttp's server has no header
timeout), refusing request framing RFC 9112 forbids before aiohttp's parser sees it, and
`GuardedSite`, a `web.TCPSite` that serves through the guard.
Must not: route, cache or rewrite: bytes of requests that pass reach aiohttp's parser unchanged.
Deadlines are loop timers (`loop.call_at`), as aiohttp's own keep-alive timer; the decisions
about them are `limits`'s, which are given `loop.time()` as `now`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, cast

from aiohttp import web

from proxy.errors import BadRequest, HeadersTooLarge, ProxyError, error_body
from proxy.limits import Admission, ConnLimits, ConnTable, Refusal, RequestReader, Throttle
from proxy.metrics import Registry

log = logging.getLogger("proxy.connguard")
REPORT_EVERY = 10.0  # seconds between log lines about shed load or cut clients


class TooManyConnections(ProxyError):
    status, code = 503, "too_many_connections"


class RequestTimeout(ProxyError):
    status, code = 408, "request_timeout"


class VersionNotSupported(ProxyError):
    status, code = 505, "http_version_not_supported"


# An interim answer to `Expect: 100-continue` (RFC 9110 10.1.1) is not a response: a final
# answer may still follow it.
_CONTINUE = frozenset({b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.0 100 Continue\r\n\r\n"})
_REFUSALS: dict[int, type[ProxyError]] = {400: BadRequest, 431: HeadersTooLarge, 505: VersionNotSupported}


@dataclass(slots=True)
class GuardStats:
    admitted: int = 0
    shed_per_address: int = 0
    shed_total: int = 0
    reset: int = 0  # shed while too many shed connections were lingering: closed without a word
    header_timeouts: int = 0
    body_timeouts: int = 0
    refused: int = 0


def answer(err: ProxyError, *extra: tuple[str, str]) -> bytes:
    """A complete HTTP/1.1 error response in the proxy's JSON shape, closing the connection."""
    rid = f"guard-{secrets.token_hex(6)}"
    body = error_body(err, route=None, upstream=None, request_id=rid)
    head = [
        f"HTTP/1.1 {err.status} {HTTPStatus(err.status).phrase}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
        f"X-Request-Id: {rid}",
        *(f"{k}: {v}" for k, v in extra),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


class ConnGuard:
    """The protocol factory a listener is created with; one per listening site."""

    def __init__(
        self,
        factory: Callable[[], asyncio.Protocol] | None,
        limits: ConnLimits | None = None,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        registry: Registry | None = None,
    ) -> None:
        self.factory = factory
        self.limits = limits or ConnLimits()
        self.loop = loop or asyncio.get_running_loop()
        self.table = ConnTable(self.limits)
        self.stats = GuardStats()
        self.lingering = 0
        self._shed_log = Throttle(REPORT_EVERY)
        self._slow_log = Throttle(REPORT_EVERY)
        r = registry or Registry()  # a private one when nobody exports them
        self.open_gauge = r.gauge("rproxy_connections_open", "Client connections open on the public listener")
        self.shed_total = r.counter(
            "rproxy_connections_shed_total",
            "Connections answered 503 at once: over the per-address or total limit",
            ("reason",),
        )
        self.slow_total = r.counter(
            "rproxy_slow_clients_closed_total",
            "Connections cut for not sending a request head or body in time",
            ("phase",),
        )
        self.refused_total = r.counter(
            "rproxy_requests_refused_total", "Requests refused by the listener for their framing", ("status",)
        )

    def __call__(self) -> asyncio.Protocol:
        assert self.factory is not None
        return GuardedConnection(self)

    def admitted(self) -> None:
        self.stats.admitted += 1
        self.open_gauge.set((), self.table.open)

    def released(self, address: str) -> None:
        self.table.release(address)
        self.open_gauge.set((), self.table.open)

    def refused(self, refusal: Refusal) -> None:
        self.stats.refused += 1
        self.refused_total.inc((str(refusal.status),))

    def shed(self, why: Admission, address: str) -> None:
        self.shed_total.inc((why.value,))
        if why is Admission.TOTAL:
            self.stats.shed_total += 1
        else:
            self.stats.shed_per_address += 1
        held = self._shed_log.allow(self.loop.time())
        if held is not None:
            log.warning(
                "shedding connections (%s): %d open of %d, %d from %s of %d; %d more shed since "
                "the last report",
                why.value,
                self.table.open,
                self.limits.total,
                self.table.count(address),
                address,
                self.limits.per_address,
                held,
            )

    def cut(self, which: str, address: str) -> None:
        self.slow_total.inc((which,))
        if which == "header":
            self.stats.header_timeouts += 1
        else:
            self.stats.body_timeouts += 1
        held = self._slow_log.allow(self.loop.time())
        if held is not None:
            log.info(
                "closed a slow client (%s timeout) from %s; %d more since the last report",
                which,
                address,
                held,
            )


class _Tap(asyncio.Transport):
    """The real transport as aiohttp's handler sees it, noting whether anything was written: only
    then may the guard answer a refused request itself without crossing a response in flight.
    (asyncio's sendfile fallback wants its own transport class; the proxy serves no files.)"""

    __slots__ = ("_real", "wrote")

    def __init__(self, real: asyncio.Transport) -> None:
        super().__init__()
        self._real = real
        self.wrote = False

    def write(self, data: bytes | bytearray | memoryview[Any]) -> None:
        if not self.wrote and data not in _CONTINUE:
            self.wrote = True
        self._real.write(data)

    def writelines(self, list_of_data: Any) -> None:
        self.wrote = True
        self._real.writelines(list_of_data)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._real.get_extra_info(name, default)

    def is_closing(self) -> bool:
        return self._real.is_closing()

    def close(self) -> None:
        self._real.close()

    def abort(self) -> None:
        self._real.abort()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._real.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._real.get_protocol()

    def is_reading(self) -> bool:
        return self._real.is_reading()

    def pause_reading(self) -> None:
        self._real.pause_reading()

    def resume_reading(self) -> None:
        self._real.resume_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._real.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self._real.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._real.get_write_buffer_limits()

    def can_write_eof(self) -> bool:
        return self._real.can_write_eof()

    def write_eof(self) -> None:
        self._real.write_eof()


class GuardedConnection(asyncio.Protocol):
    """One accepted connection: the guard's bookkeeping around aiohttp's RequestHandler."""

    __slots__ = (
        "_address",
        "_armed",
        "_closed",
        "_guard",
        "_inner",
        "_reader",
        "_tap",
        "_timer",
        "_transport",
    )

    def __init__(self, guard: ConnGuard) -> None:
        self._guard = guard
        self._inner: asyncio.Protocol | None = None
        self._reader: RequestReader | None = None
        self._transport: asyncio.Transport | None = None
        self._tap: _Tap | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._armed: float | None = None
        self._address = ""
        self._closed = False

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it
        guard = self._guard
        self._transport = transport
        peer = transport.get_extra_info("peername")
        self._address = str(peer[0]) if isinstance(peer, tuple) and peer else str(peer or "")
        verdict = guard.table.admit(self._address)
        if verdict is not Admission.OK:
            self._shed(verdict)
            return
        guard.admitted()
        self._reader = RequestReader(guard.limits, guard.loop.time())
        assert guard.factory is not None
        self._inner = guard.factory()
        self._tap = _Tap(transport)
        self._inner.connection_made(self._tap)
        self._arm(self._reader.deadline)

    def data_received(self, data: bytes) -> None:
        inner, reader = self._inner, self._reader
        if inner is None or reader is None or self._closed:
            return  # a shed connection: its request is not read
        refusal = reader.feed(data, self._guard.loop.time())
        if refusal is None:
            if reader.deadline != self._armed:
                self._arm(reader.deadline)
            inner.data_received(data)
            return
        if reader.passed:
            inner.data_received(data[: reader.passed])
        self._refuse(refusal)

    def eof_received(self) -> bool | None:
        if self._inner is None:
            return None  # shed: the client read its 503 and left; close our side too
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._disarm()
        if self._inner is not None:
            self._guard.released(self._address)
            self._inner.connection_lost(exc)
            self._inner = None
        else:
            self._guard.lingering -= 1
        self._transport = None

    # -- shedding, refusing, cutting ----------------------------------------------------------

    def _shed(self, why: Admission) -> None:
        guard, transport = self._guard, self._transport
        assert transport is not None
        guard.shed(why, self._address)
        guard.lingering += 1  # undone in connection_lost
        if guard.lingering > guard.limits.max_lingering:
            guard.stats.reset += 1
            transport.abort()
            return
        scope = "in total" if why is Admission.TOTAL else "from your address"
        transport.write(
            answer(TooManyConnections(f"too many connections {scope}; retry shortly"), ("Retry-After", "1"))
        )
        if transport.can_write_eof():
            # Half-close: the client reads the 503, then EOF. Closing outright while its request is
            # unread would send a reset that can destroy the 503 in flight (RFC 9112 9.6).
            transport.write_eof()
            self._timer = guard.loop.call_later(guard.limits.linger, self._close_now)
        else:
            transport.close()

    def _refuse(self, refusal: Refusal) -> None:
        self._guard.refused(refusal)
        transport = self._transport
        if transport is None:
            return
        if refusal.request == 1 and self._tap is not None and not self._tap.wrote:
            kind = _REFUSALS.get(refusal.status, BadRequest)
            transport.write(answer(kind(refusal.reason)))
        self._closed = True
        self._disarm()
        transport.close()

    def _on_deadline(self) -> None:
        self._timer, self._armed = None, None
        reader, transport = self._reader, self._transport
        if reader is None or transport is None or self._closed:
            return
        which = reader.expired(self._guard.loop.time())
        if which is None:  # timers may fire a little early: look again at the real deadline
            self._arm(reader.deadline)
            return
        self._guard.cut(which, self._address)
        self._closed = True
        if which == "header" and reader.requests == 0:
            # Nothing was asked on this connection yet, so nothing else can be answering on it.
            transport.write(answer(RequestTimeout("the request head did not arrive in time")))
            transport.close()
        else:
            transport.abort()

    def _close_now(self) -> None:
        self._timer = None
        if self._transport is not None:
            self._transport.abort()

    def _arm(self, deadline: float | None) -> None:
        self._disarm()
        self._armed = deadline
        if deadline is not None:
            self._timer = self._guard.loop.call_at(deadline, self._on_deadline)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._armed = None


class GuardedSite(web.TCPSite):
    """`web.TCPSite` whose connections go through a `ConnGuard` (`site.guard` once started);
    with `registry`, the guard's counters are exported with the proxy's metrics."""

    __slots__ = ("_limits", "_listening", "_registry", "guard")

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str | None = None,
        port: int | None = None,
        *,
        limits: ConnLimits | None = None,
        registry: Registry | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(runner, host, port, **kwargs)
        self._limits = limits or ConnLimits()
        self._registry = registry
        self.guard: ConnGuard | None = None
        self._listening: int | None = None

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers with the runner; TCPSite.start would bind unguarded
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None
        self.guard = ConnGuard(server, self._limits, loop=loop, registry=self._registry)
        tls = self._ssl_context
        listener = await loop.create_server(
            self.guard,
            self._host,
            self._port,
            ssl=tls,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
            ssl_handshake_timeout=self._limits.header_timeout if tls is not None else None,
        )
        self._server = listener
        self._listening = int(listener.sockets[0].getsockname()[1]) if listener.sockets else self._port
        with contextlib.suppress(AttributeError):  # aiohttp >= 3.11 reports the bound port as `port`
            self._bound_port = self._listening

    @property
    def bound_port(self) -> int:
        """The port actually listened on (the configured one may be 0)."""
        assert self._listening is not None, "not started"
        return self._listening
