"""The public port's connections: our own `asyncio.Protocol` on httptools (llhttp, strict).

Owns: one strict parse of each request head (llhttp's refusals, the limits on target and head size,
RFC 9112's framing rules from `framing` on the parsed fields: no second parse in Python), admission
per client address and in total (bookkeeping in `connguard`), keep-alive, HTTP/1.0, chunked bodies,
`Expect: 100-continue`, reading and its backpressure (paused while a request body, the pipeline
queue or the answers the client has not taken are past their mark), what an expired deadline does
(408 on a stalled head; a cut on a stalled body, or on answers the client takes none of within
`send_timeout`; a close when idle), refusals, the half-close after the last answer, graceful drain.
Its parts: `deadlines` (the timers of a connection), `pipeline` (answers in order, one request at
a time, fresh hits written on the spot), `responsewriter` (every answer's bytes: our JSON errors, a
`Date`, no `Server`; a streamed answer waits for the client to drain). Must not: route, cache or
rewrite (`driver.Driver`'s), or read the wall clock (deadlines read the injected `Timer`).
The listening socket, its state and its wiring are `publicport`'s.

A request with `Upgrade`, or a CONNECT, never switches protocols: it is answered as any other
request and the connection is closed after it, so no deadline or framing check is ever lifted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from functools import partial
from typing import TYPE_CHECKING, Final, cast

import httptools

from proxy import framing
from proxy.connguard import RequestTimeout, answer
from proxy.core.errors import BadRequest, HeadersTooLarge, ProxyError, UriTooLong
from proxy.core.limits import Admission
from proxy.deadlines import Deadlines
from proxy.exchange import Body, Request, Response
from proxy.framing import HINT, LOWER, MAX_FIELD, MAX_TARGET, METHODS, NOTED, MessageBytes, Refused
from proxy.pipeline import Pipeline
from proxy.responsewriter import ResponseWriter, error_response

if TYPE_CHECKING:
    from proxy.publicport import Listener

log = logging.getLogger("proxy.listener")
_NO_HINTS: Final[dict[str, str | None]] = {}  # shared by every request without one: never written to
_UNFRAMED: Final[tuple[None, None, None]] = (None, None, None)


class Connection(asyncio.Protocol):
    """One accepted connection."""

    def __init__(self, listener: Listener) -> None:
        self._l = listener
        self._max_head = listener.limits.max_head
        self._bytes = MessageBytes(listener.limits.max_head)  # read for the message being parsed
        self._keepalive = listener.keepalive_timeout  # kept: the listener is interpreted, read by name
        self._transport: asyncio.Transport | None = None
        parser = httptools.HttpRequestParser(self)  # methods bound once, not looked up per request
        self._feed, self._version, self._method = parser.feed_data, parser.get_http_version, parser.get_method
        self._keeps_alive = parser.should_keep_alive
        self._address = ""
        self._admitted, self._turned_away = False, False
        self.closed = False
        self._deadlines = Deadlines(
            listener.timer, self._expired, lambda: self._body_paused, listener.limits.body_timeout
        )
        self._out = ResponseWriter(listener.date, self.abort)
        self._url: list[bytes] = []  # the head being parsed, from here
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_size = 0
        self._lengths: list[bytes] = []  # each Content-Length value, as sent
        self._codings: list[bytes] = []
        self._expect: bytes | None = None
        self._upgrade = False
        self._noted = False  # one of the above was set by the head being parsed
        self._host: bytes | None = None  # its Host; a second one reads as an invalid value
        self.in_message = False  # a request head or body is part-way in
        self._head_done = False
        self._refusal: ProxyError | None = None  # what a callback refused, for `data_received`
        self._hints: dict[str, str | None] = {}
        self._last_keep_alive = True
        self._current: Request | None = None  # whose body is arriving
        self._pipe = Pipeline(self, listener, self._out)
        self.reading_done = False  # nothing more is parsed on this connection
        self.reading = True  # False while paused (backpressure, or nothing more will be read)
        self._body_paused = False
        self.draining = False
        self._discarding = False  # closing: what still arrives is read and dropped
        self._held: memoryview | None = None  # read, not yet parsed: the queue was at its mark
        self._release: asyncio.Handle | None = None  # the call that parses `_held`

    @property
    def writer(self) -> ResponseWriter:  # its `paused` and `backlog()`: the client's side of flow
        return self._out

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it
        self._transport = self._out.transport = transport
        try:
            self._admit(transport)
        except Exception:  # else the socket stays open, unread and with no deadline (either loop)
            log.exception("accepting a connection failed; it is closed")
            self.abort()

    def _admit(self, transport: asyncio.Transport) -> None:
        peer = transport.get_extra_info("peername")
        self._address = str(peer[0]) if isinstance(peer, tuple) and peer else str(peer or "")
        listener = self._l
        verdict = listener.table.admit(self._address)
        if verdict is not Admission.OK:
            self._turned_away = True  # counted as lingering until `connection_lost`
            linger = listener.turn_away(transport, verdict, self._address, self.abort)
            if linger is not None:
                self._deadlines.linger(linger)
            return
        self._admitted = True
        listener.opened(self)
        self._deadlines.set("header", listener.limits.header_timeout)
        if listener.draining:
            self.drain()

    def data_received(self, data: bytes | memoryview) -> None:
        if self.reading_done or self.closed or not self._admitted:
            return
        if len(data) > framing.SLICE:  # a slice at a time: a pipelined flood stops at the queue's mark
            return self._sliced(memoryview(data))
        try:
            self._feed(data)
            if self.in_message:
                if self._bytes.overgrown(len(data)):
                    self._refuse(HeadersTooLarge("request head or trailer section too large"))
                elif not self._head_done and self._deadlines.phase != "header":  # a head cut across reads
                    self._deadlines.set("header", self._l.limits.header_timeout)
        except httptools.HttpParserUpgrade:
            self._stop_reading()  # the request was answered as any other; the connection ends
        except httptools.HttpParserCallbackError:  # not `__context__`: see http1's `feed`
            refusal, self._refusal = self._refusal, None
            if refusal is None and not self.reading_done:
                log.exception("listener callback failed")
            if refusal is not None or not self.reading_done:
                self._refuse(refusal or BadRequest("malformed request"))
        except httptools.HttpParserError as exc:
            if not self.reading_done:  # bytes after `Connection: close` are not read
                self._refuse(BadRequest(f"malformed request: {framing.printable(exc)}"))

    def eof_received(self) -> bool | None:
        current = self._current
        if current is not None and current.body is not None:
            current.body.fail(ConnectionResetError("the client closed while sending its body"))
        if self.in_message and current is None and not self.reading_done:
            self._refuse(BadRequest("the request head was cut short"))
        self._stop_reading()
        return True if self._pipe.busy or self._pipe.queue else None  # half-closed: answers still go

    def pause_writing(self) -> None:
        self._out.pause()
        self._deadlines.stalled(self._l.limits.send_timeout, self._out.backlog)  # it must take some
        self.sync_reading()  # a client that does not read its answers sends no more requests

    def resume_writing(self) -> None:
        self._out.resume()
        self._deadlines.flowing()
        self._pipe.kick()  # what waited answered; reading resumes (`sync_reading`)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._deadlines.stop_timer()
        listener = self._l
        if self._admitted:
            self._admitted = False
            listener.gone(self, self._address)
        elif self._turned_away:
            listener.lingering -= 1
        gone = ConnectionResetError("the client went away")
        if self._current is not None and self._current.body is not None:
            self._current.body.fail(gone)
        self._pipe.lost(gone)
        self._out.lost(gone)
        self._transport = None

    # -- httptools callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        # The head deadline is armed in `data_received`, if the head is still incomplete then.
        self.in_message, self._head_done = True, False
        self._url.clear()
        self._headers = []
        self._head_size, self._host = 0, None
        self._bytes.begin()
        self._hints = _NO_HINTS  # replaced by a new dict at the first hint: requests keep theirs
        if self._noted:  # the last head had framing, an expectation or an upgrade
            self._noted = self._upgrade = False
            self._lengths, self._codings, self._expect = [], [], None

    def on_url(self, url: bytes) -> None:
        self._url.append(url)
        self._head_size += len(url)
        if self._head_size > MAX_TARGET and sum(map(len, self._url)) > MAX_TARGET:
            raise self._refused(UriTooLong(f"request target over {MAX_TARGET} bytes"))

    def on_header(self, name: bytes, value: bytes) -> None:
        size = len(name) + len(value) + 4
        self._head_size += size
        if self._head_size > self._max_head or size > MAX_FIELD:
            raise self._refused(HeadersTooLarge("request head too large"))
        # obs-fold and bare CR or LF (RFC 9112 5.2, 2.2) never get here: llhttp's strict mode refuses them
        self._headers.append((name, value))
        low = LOWER.get(name) or name.lower()
        noted = NOTED.get(low)
        if noted is None:
            return
        if noted == HINT:
            hints = self._hints
            if hints is _NO_HINTS:
                hints = self._hints = {}
            key = low.decode("latin-1")
            hints[key] = None if key in hints else value.decode("latin-1")
            return
        if noted == framing.HOST:
            self._host = value if self._host is None else b"/"
            return
        self._noted = True
        if noted == 1:
            self._lengths.append(value)
        elif noted == 2:
            self._codings.extend(c.strip(b" \t").lower() for c in value.split(b","))
        elif noted == 3:
            self._expect = value.strip(b" \t").lower()
        else:
            self._upgrade = True

    def on_headers_complete(self) -> None:
        self._head_done = True
        version = self._version()
        if (bad := framing.bad_head(version, self._host)) is not None:  # the version, the Host
            raise self._refused(bad)
        raw_method = self._method()
        method = METHODS.get(raw_method) or raw_method.decode("ascii")
        keep_alive = self._keeps_alive() and not self._upgrade and method != "CONNECT"
        if keep_alive and version == "1.0":  # RFC 9112 9.3: close outvotes keep-alive (llhttp: no)
            keep_alive = not framing.closes(self._headers)
        self._last_keep_alive = keep_alive
        target = b"".join(self._url).decode("latin-1")
        framed = self._noted and (self._codings or self._lengths or self._expect is not None)
        body, length, ready = self._framed(version) if framed else _UNFRAMED
        request = Request(
            method, target, self._headers, self._address, version, keep_alive, body, length,
            self._head_size, self._hints,
        )  # fmt: skip
        pipe = self._pipe
        tried = not framed and keep_alive and not pipe.busy and not pipe.queue
        if tried:
            wire = pipe.fast(request)  # a fresh hit: answered right here, deadlines untouched
            if wire is not None and self._transport is not None:
                self._transport.write(wire)
                return
        self._current = request if body is not None else None
        if body is not None:
            self._deadlines.set("body", self._l.limits.body_timeout)
        else:
            self._deadlines.clear()
        pipe.add(request, ready, tried=tried)

    def _framed(self, version: str) -> tuple[Body | None, int | None, Response | None]:
        """RFC 9112 6.1 and 6.3's framing on what llhttp let through: the body's reader, an answer."""
        try:
            chunked, length = framing.body_length(self._codings, self._lengths, version)
        except Refused as refused:
            self._refusal = refused.err
            raise
        announce, failed = framing.expectation(self._expect, version)
        ready = None if failed is None else error_response(failed)
        if not (chunked or length):
            return None, length, ready
        first = self._out.announce_continue if announce else None
        return Body(partial(self._flow, True), partial(self._flow, False), first_read=first), length, ready

    def on_body(self, data: bytes) -> None:
        self._bytes.body += len(data)
        current = self._current
        if current is not None and current.body is not None:
            current.body.feed(data)

    def on_message_complete(self) -> None:
        current = self._current
        if current is not None and current.body is not None:
            current.body.finish()
        self._current = None
        self.in_message = False
        if self._deadlines.phase == "body":
            self._deadlines.clear()
        if not self._last_keep_alive:
            self._stop_reading()  # nothing after `Connection: close` (or an upgrade) is read
        elif not self._pipe.busy and not self._pipe.queue:
            self._deadlines.set("idle", self._keepalive)  # as `idle`, one call less

    # -- refusing, shedding, cutting ----------------------------------------------------------

    def _refused(self, err: ProxyError) -> Refused:
        self._refusal = err
        return Refused(err)

    def _refuse(self, err: ProxyError) -> None:
        """A head or body llhttp or RFC 9112 refuses: nothing more is read; the refusal is answered
        in order after what came before, then the connection closes (a body cut off: a 400)."""
        self._l.refused(err.status)
        self._stop_reading()
        current, self._current = self._current, None
        if current is not None and current.body is not None:
            self._pipe.refuse_body(current, err)
            current.body.fail(ConnectionResetError(err.message))
        else:
            self._pipe.refuse(err, self._address)

    def finish(self) -> None:
        """Close after the last answer: half-close, then read and drop what the client sends for
        `linger` s from its last byte out, lest unread bytes reset the answer (RFC 9112 9.6)."""
        transport = self._transport
        if transport is None or self.closed:
            return
        self.reading_done = True
        if not transport.can_write_eof():
            transport.close()
            return
        self._discarding = True
        self.sync_reading()
        self._out.end(self._linger)

    def _linger(self) -> None:  # the last answer's last byte is out: read and drop for `linger`
        timer = self._l.timer
        self._deadlines.linger(timer.call_at(timer.now() + self._l.limits.linger, self.abort))

    def drain(self) -> None:
        """Graceful shutdown: close now if idle, else after the answer in progress."""
        self.draining = True
        if not (self._pipe.busy or self._pipe.queue or self.in_message) and self._transport is not None:
            self._stop_reading()
            self._transport.close()

    def abort(self) -> None:
        self._deadlines.stop_timer()
        if self._transport is not None:
            self._transport.abort()

    # -- deadlines, and reading ---------------------------------------------------------------

    def idle(self) -> None:
        self._deadlines.set("idle", self._keepalive)

    def _expired(self, phase: str) -> None:
        transport = self._transport
        if self.closed or transport is None:
            return
        self._stop_reading()
        if phase == "idle":
            return transport.close()
        self._l.cut(phase, self._address)  # header, body or send (answers the client never took)
        if phase == "header" and not self._pipe.busy and not self._pipe.queue:
            # Nothing is being answered (no 408 crosses an answer), all it sent was read: a close.
            transport.write(answer(RequestTimeout("the request head did not arrive in time")))
            transport.close()
        else:
            current = self._current
            if current is not None and current.body is not None:
                current.body.fail(ConnectionResetError("the request body did not arrive in time"))
            self.abort()

    def _flow(self, paused: bool) -> None:  # the body's backpressure
        self._body_paused = paused
        self.sync_reading()

    def _stop_reading(self) -> None:
        self.reading_done = True
        self.sync_reading()

    def _sliced(self, data: memoryview | None = None) -> None:
        """Parse `data` (None: `_held`) while the queue has room; hold the rest for `sync_reading`."""
        if data is None:
            data, self._held, self._release = self._held, None, None
        while data and not (self.reading_done or self._pipe.full):
            self.data_received(data[: framing.SLICE])
            data = data[framing.SLICE :]
        self._held = data if data and not self.reading_done else None
        self.sync_reading()

    def sync_reading(self) -> None:
        transport = self._transport
        if transport is None or self.closed:
            return
        want = self._discarding or not (self.reading_done or self._body_paused or self._pipe.full)
        if want and self._held is not None:  # parsed before any new read, and never inside a parse
            want, self._release = False, self._release or self._l.loop.call_soon(self._sliced)
        if want != self.reading:
            self.reading = want
            with contextlib.suppress(RuntimeError, AttributeError):  # a transport closing under us
                if want:
                    transport.resume_reading()
                else:
                    transport.pause_reading()
