"""The public port's connections: our own `asyncio.Protocol` on httptools (llhttp, strict).

Owns: one strict parse of each request head (llhttp's refusals plus RFC 9112's framing rules on
the parsed fields: no second parse in Python), admission per client address and in total (the
guard's bookkeeping in `connguard`), the head, body and keep-alive deadlines on ONE timer per
connection, keep-alive, pipelining (answers strictly in order, one request handled at a time),
`Expect: 100-continue`, HTTP/1.0, chunked request bodies, backpressure both ways (reading pauses
while a request body or the pipeline queue is past its mark; a streamed answer waits for the
client to drain), graceful drain, and the bytes of every answer: our JSON for every error, a
`Date`, never a `Server` header.
Must not: route, cache or rewrite (that is the endpoint's, `driver.Driver`), or read the wall
clock itself (deadlines read the injected `Timer`; `Date` the endpoint's clock). The listening
socket, its shared state and the wiring into `build_app` are `publicport`'s.

A request with `Upgrade`, or a CONNECT, never switches protocols: it is answered as any other
request and the connection is closed after it, so no deadline or framing check is ever lifted.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from http import HTTPStatus
from typing import TYPE_CHECKING, cast

import httptools

from proxy.connguard import RequestTimeout, TooManyConnections, VersionNotSupported, answer
from proxy.core.errors import BadRequest, HeadersTooLarge, ProxyError, UriTooLong
from proxy.core.limits import Admission
from proxy.exchange import Body, Request, Response, interim_heads

if TYPE_CHECKING:
    from proxy.publicport import Cancellable, Listener

log = logging.getLogger("proxy.listener")
MAX_PIPELINE = 16  # requests parsed ahead of the one being answered before reading pauses
MAX_TARGET = 8190  # as nginx's large_client_header_buffers; the handler answers 414 from 4 KB
MAX_FIELD = 8190  # one header line, as nginx's large_client_header_buffers
# Request headers the fast path reads, noted as the head is parsed (`Request.hints`).
_METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")}
HINTED = frozenset({b"range", b"if-none-match", b"if-modified-since", b"x-request-id"})
_CONTINUE = {"1.1": b"HTTP/1.1 100 Continue\r\n\r\n"}
_NO_BODY = frozenset({204, 304})


class ExpectationFailed(ProxyError):
    status, code = 417, "expectation_failed"


class _Refused(Exception):
    def __init__(self, err: ProxyError) -> None:
        super().__init__(err.message)
        self.err = err


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def serialize_head(
    version: str, status: int, headers: list[tuple[str, str]], framing: str, date: bytes
) -> bytes:
    """Status line and headers. `framing` is the Content-Length/Transfer-Encoding/Connection
    lines the writer chose. Values carrying CR or LF are dropped: never a split response."""
    lines = [f"HTTP/{version} {status} {_reason(status)}"]
    has_date = False
    for name, value in headers:
        if "\n" in value or "\r" in value or "\n" in name or "\r" in name:
            continue
        if not has_date and name.lower() == "date":
            has_date = True
        lines.append(f"{name}: {value}")
    text = "\r\n".join(lines) + "\r\n" + framing
    try:
        head = text.encode("latin-1")
    except UnicodeEncodeError:
        head = text.encode("utf-8")
    return head + (b"\r\n" if has_date else date + b"\r\n")


class Connection(asyncio.Protocol):
    """One accepted connection."""

    def __init__(self, listener: Listener) -> None:
        self._l = listener
        self._max_head = listener.limits.max_head
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._address = ""
        self._admitted = False
        self._closed = False
        # the one timer
        self._deadline: float | None = None
        self._phase = "header"
        self._timer: Cancellable | None = None
        self._timer_at: float | None = None
        # the head being parsed
        self._url: list[bytes] = []
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_size = 0
        self._lengths = 0
        self._codings: list[bytes] = []
        self._expect: bytes | None = None
        self._upgrade = False
        self._in_message = False
        self._head_done = False
        self._hints: dict[str, str | None] = {}
        self._last_keep_alive = True
        self._current: Request | None = None  # whose body is arriving
        # answering
        self._queue: deque[tuple[Request, Response | None]] = deque()
        self._refusals: dict[Request, ProxyError] = {}  # bodies whose framing broke off
        self._busy = False
        self._task: asyncio.Task[None] | None = None
        self._asked = 0  # complete heads seen
        self._reading_done = False  # nothing more is parsed on this connection
        self._reading = True
        self._body_paused = False
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._draining = False
        self._discarding = False  # closing: what still arrives is read and dropped

    @property
    def reading(self) -> bool:
        """False while reading is paused (backpressure, or nothing more will be read)."""
        return self._reading

    @property
    def write_paused(self) -> bool:
        return self._write_paused

    @property
    def in_message(self) -> bool:
        """A request head or body is part-way in."""
        return self._in_message

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it
        self._transport = transport
        peer = transport.get_extra_info("peername")
        self._address = str(peer[0]) if isinstance(peer, tuple) and peer else str(peer or "")
        listener = self._l
        verdict = listener.table.admit(self._address)
        if verdict is not Admission.OK:
            self._shed(verdict)
            return
        self._admitted = True
        listener.admitted()
        listener.connections.add(self)
        self._set_deadline("header", listener.limits.header_timeout)
        if listener.draining:
            self.drain()

    def data_received(self, data: bytes) -> None:
        if self._reading_done or self._closed or not self._admitted:
            return
        try:
            self._parser.feed_data(data)
            if self._in_message and not self._head_done and self._phase != "header":
                self._set_deadline("header", self._l.limits.header_timeout)  # a head cut across chunks
        except httptools.HttpParserUpgrade:
            self._stop_reading()  # the request was answered as any other; the connection ends
        except httptools.HttpParserCallbackError as exc:
            context = exc.__context__
            if isinstance(context, _Refused):
                self._refuse(context.err)
            elif not self._reading_done:
                log.exception("listener callback failed")
                self._refuse(BadRequest("malformed request"))
        except httptools.HttpParserError as exc:
            if not self._reading_done:  # bytes after `Connection: close` are not read
                self._refuse(BadRequest(f"malformed request: {_why(exc)}"))

    def eof_received(self) -> bool | None:
        current = self._current
        if current is not None and current.body is not None:
            current.body.fail(ConnectionResetError("the client closed while sending its body"))
        if self._in_message and current is None and not self._reading_done:
            self._refuse(BadRequest("the request head was cut short"))
        self._stop_reading()
        if not self._busy and not self._queue:
            return None  # close now: nothing to answer
        return True  # half-closed: the answers in flight are still written

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._cancel_timer()
        listener = self._l
        if self._admitted:
            self._admitted = False
            listener.released(self._address)
            listener.connections.discard(self)
        else:
            listener.lingering -= 1
        gone = ConnectionResetError("the client went away")
        for body in {r.body for r, _ in self._queue} | {self._current.body if self._current else None}:
            if body is not None:
                body.fail(gone)
        self._queue.clear()
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(gone)
        self._transport = None

    # -- httptools callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        # The head deadline is armed after the chunk is parsed, and only if the head is still
        # incomplete then (`data_received`): a request that arrives whole never touches it.
        self._in_message = True
        self._head_done = False
        self._url.clear()
        self._headers = []
        self._head_size = 0
        self._lengths = 0
        if self._codings:
            self._codings = []
        self._hints = {}  # a new one each time: the last request holds the old one
        self._expect = None
        self._upgrade = False

    def on_url(self, url: bytes) -> None:
        self._url.append(url)
        self._head_size += len(url)
        if self._head_size > MAX_TARGET and sum(map(len, self._url)) > MAX_TARGET:
            raise _Refused(UriTooLong(f"request target over {MAX_TARGET} bytes"))

    def on_header(self, name: bytes, value: bytes) -> None:
        size = len(name) + len(value) + 4
        self._head_size += size
        if self._head_size > self._max_head or size > MAX_FIELD:
            raise _Refused(HeadersTooLarge("request head too large"))
        # Obsolete line folding and bare CR or LF (RFC 9112 5.2, 2.2) never get here: llhttp's
        # strict mode refuses them (tests/listener pins that).
        low = name.lower()
        if low == b"content-length":
            self._lengths += 1
        elif low == b"transfer-encoding":
            self._codings.extend(c.strip(b" \t").lower() for c in value.split(b","))
        elif low == b"expect":
            self._expect = value.strip(b" \t").lower()
        elif low == b"upgrade":
            self._upgrade = True
        elif low in HINTED:
            key = low.decode("latin-1")
            self._hints[key] = None if key in self._hints else value.decode("latin-1")
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._head_done = True
        parser = self._parser
        version = parser.get_http_version()
        if version != "1.1" and version != "1.0":
            if version == "0.9":  # llhttp's reading of a request line without a version
                raise _Refused(BadRequest("the request line has no HTTP version"))
            raise _Refused(VersionNotSupported("only HTTP/1.0 and HTTP/1.1 are served here"))
        raw_method = parser.get_method()
        method = _METHODS.get(raw_method) or raw_method.decode("ascii")
        keep_alive = parser.should_keep_alive() and not self._upgrade and method != "CONNECT"
        self._last_keep_alive = keep_alive
        self._asked += 1
        target = b"".join(self._url).decode("latin-1")
        if self._codings or self._lengths or self._expect is not None:
            self._framed(method, target, version, keep_alive)
            return
        request = Request(
            method,
            target,
            self._headers,
            self._address,
            version,
            keep_alive,
            None,
            None,
            self._head_size,
            self._hints,
        )
        if not self._busy and not self._queue and keep_alive:
            wire = self._fast(request)  # a fresh hit: answered right here, deadlines untouched
            if wire is not None and self._transport is not None:
                self._transport.write(wire)
                return
        self._clear_deadline()
        self._enqueue(request, None)

    def _framed(self, method: str, target: str, version: str, keep_alive: bool) -> None:
        """A head with a body, or an expectation: RFC 9112 6.1 and 6.3's framing rules on what
        llhttp let through, then the body's reader and deadline."""
        chunked = bool(self._codings)
        if chunked:
            if self._lengths:
                raise _Refused(BadRequest("both Content-Length and Transfer-Encoding"))
            if version != "1.1":
                raise _Refused(BadRequest("Transfer-Encoding in an HTTP/1.0 request"))
            if self._codings[-1] != b"chunked" or self._codings.count(b"chunked") != 1:
                raise _Refused(BadRequest("Transfer-Encoding must end in chunked, once"))
        elif self._lengths > 1:
            raise _Refused(BadRequest("more than one Content-Length"))  # RFC 9112 6.3 (5)
        length = self._content_length() if self._lengths else None
        ready: Response | None = None
        body: Body | None = None
        if chunked or length:
            announce = None
            if self._expect == b"100-continue" and version == "1.1":
                announce = self._announce_continue
            body = Body(self._pause_body, self._resume_body, first_read=announce)
        if self._expect is not None and self._expect != b"100-continue":
            ready = self._error(ExpectationFailed("only 100-continue is expected here"))  # RFC 9110 10.1.1
        request = Request(
            method,
            target,
            self._headers,
            self._address,
            version,
            keep_alive,
            body,
            length,
            self._head_size,
            self._hints,
        )
        self._current = request if body is not None else None
        if body is not None:
            self._set_deadline("body", self._l.limits.body_timeout)
        else:
            self._clear_deadline()
        self._enqueue(request, ready)

    def _enqueue(self, request: Request, ready: Response | None) -> None:
        self._queue.append((request, ready))
        if len(self._queue) >= MAX_PIPELINE:
            self._sync_reading()
        self._kick()

    def on_body(self, data: bytes) -> None:
        current = self._current
        if current is not None and current.body is not None:
            current.body.feed(data)

    def on_message_complete(self) -> None:
        current = self._current
        if current is not None and current.body is not None:
            current.body.finish()
        self._current = None
        self._in_message = False
        if self._phase == "body":
            self._clear_deadline()
        if not self._last_keep_alive:
            self._stop_reading()  # nothing after `Connection: close` (or an upgrade) is read
        elif not self._busy and not self._queue:
            self._idle()

    def _content_length(self) -> int:
        value = next(v for n, v in self._headers if n.lower() == b"content-length").strip(b" \t")
        if not value.isdigit() or len(value) > 18:
            raise _Refused(BadRequest("invalid Content-Length"))
        return int(value)

    # -- answering, in order ------------------------------------------------------------------

    def _kick(self) -> None:
        """Answer the next requests in order: those ready at once (fresh hits) in one write
        each, right here; the first that is not ready in a task, which calls `_after`."""
        while not self._busy and self._queue and not self._closed:
            request, ready = self._queue.popleft()
            if ready is None and request.body is None and request.keep_alive and not self._draining:
                wire = self._fast(request)
                if wire is not None:
                    assert self._transport is not None
                    self._transport.write(wire)
                    continue
            self._busy = True
            self._sync_reading()
            # Held here: the loop keeps only a weak reference to a running task.
            self._task = asyncio.get_running_loop().create_task(self._serve(request, ready))
            return
        self._sync_reading()

    def _fast(self, request: Request) -> bytes | None:
        listener = self._l
        if listener.draining or self._draining:
            return None
        try:
            return listener.endpoint.fast(request, listener.date)
        except Exception:  # the full path answers it, and reports what broke
            log.exception("the fast path failed; answering on the full path")
            return None

    async def _serve(self, request: Request, ready: Response | None) -> None:
        close = True
        try:
            try:
                response = ready if ready is not None else await self._l.endpoint.handle(request)
            except Exception:
                if request not in self._refusals:
                    raise
                response = Response(400, [])  # replaced below by the refusal
            refused = self._refusals.pop(request, None)
            if refused is not None:
                await _discard(response)
                response = self._error(refused)
            close = await self._write(request, response)
        except Exception:
            log.exception("answering on the public port failed")
            self.abort()
        finally:
            self._busy = False
            self._after(request, close)

    def _after(self, request: Request, close: bool) -> None:
        if self._closed:
            return
        body = request.body
        if body is not None and not body.complete:
            close = True  # an unread body would have to be read to find the next request
        if close or self._draining:
            self._finish()
            return
        self._kick()
        if not self._busy and not self._queue and not self._in_message:
            if self._reading_done:
                self._finish()
                return
            self._idle()

    async def _write(self, request: Request, response: Response) -> bool:
        """Write one answer; True when the connection must close after it."""
        transport = self._transport
        version = request.version
        close = response.close or not request.keep_alive or self._draining or self._l.draining
        status = response.status
        bare = status in _NO_BODY or status < 200
        head_only = bare or request.method == "HEAD"
        stream = response.stream
        if response.interim and version == "1.1" and transport is not None and not self._closed:
            transport.write(interim_heads(response.interim))
        try:
            if stream is None:
                body = response.body
                framing = "" if bare else f"Content-Length: {len(body)}\r\n"
                framing += _connection(version, close)
                head = serialize_head(version, status, response.headers, framing, self._l.date())
                if transport is not None and not self._closed:
                    transport.write(head if head_only else head + body)
                return close
            chunked = version == "1.1" and not head_only
            if version != "1.1" and not head_only:
                close = True  # HTTP/1.0: the body ends where the connection does
            framing = ("Transfer-Encoding: chunked\r\n" if chunked else "") + _connection(version, close)
            head = serialize_head(version, status, response.headers, framing, self._l.date())
            if transport is None or self._closed:
                return True
            transport.write(head)
            if not head_only:
                async for chunk in stream:
                    if not chunk:
                        continue
                    if self._closed or self._transport is None:
                        raise ConnectionResetError("the client went away")
                    self._transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
                    if self._write_paused:
                        await self._drained()
                if chunked and self._transport is not None:
                    self._transport.write(b"0\r\n\r\n")
            return close
        except Exception:
            if stream is not None:
                self.abort()  # the status line is gone already: a cut connection says it broke
                return True
            raise
        finally:
            if stream is not None:
                aclose = getattr(stream, "aclose", None)
                if aclose is not None:
                    await aclose()
            if response.done is not None:
                response.done()

    async def _drained(self) -> None:
        if not self._write_paused:
            return
        waiter = self._drain_waiter
        if waiter is None:
            waiter = self._drain_waiter = asyncio.get_running_loop().create_future()
        await waiter

    def _announce_continue(self) -> None:
        if self._transport is not None and not self._closed:
            self._transport.write(_CONTINUE["1.1"])

    def _error(self, err: ProxyError) -> Response:
        raw = answer(err)
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")[1:]
        headers = [
            (k, v.strip())
            for k, _, v in (line.partition(":") for line in lines)
            if k.lower() not in ("content-length", "connection")
        ]
        return Response(err.status, headers, body, close=True)

    # -- refusing, shedding, cutting ----------------------------------------------------------

    def _refuse(self, err: ProxyError) -> None:
        """A head or body llhttp or RFC 9112 refuses: nothing more is read; the refusal is
        answered in order after what was asked before it, then the connection closes. A body
        that breaks off fails its request (the handler answers 400)."""
        self._l.refused(err.status)
        self._stop_reading()
        current = self._current
        if current is not None and current.body is not None:
            # The handler sees a client gone (499 in its log); the client gets our 400.
            self._refusals[current] = err
            current.body.fail(ConnectionResetError(err.message))
            self._current = None
            return
        self._current = None
        self._queue.append((Request("GET", "", [], remote=self._address, keep_alive=False), self._error(err)))
        self._kick()

    def _shed(self, why: Admission) -> None:
        listener, transport = self._l, self._transport
        assert transport is not None
        listener.shed(why, self._address)
        listener.lingering += 1  # undone in connection_lost
        if listener.lingering > listener.limits.max_lingering:
            listener.stats.reset += 1
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
            self._timer = listener.loop.call_later(listener.limits.linger, self.abort)
        else:
            transport.close()

    def _finish(self) -> None:
        """Close after the last answer: half-close, then read and drop whatever the client still
        sends for up to `linger` seconds, so bytes left unread do not turn our close into a reset
        that destroys the answer in flight (RFC 9112 9.6)."""
        transport = self._transport
        if transport is None or self._closed:
            return
        self._reading_done = True
        if not transport.can_write_eof():
            transport.close()
            return
        self._discarding = True
        self._sync_reading()
        transport.write_eof()
        self._cancel_timer()
        self._timer = self._l.loop.call_later(self._l.limits.linger, self.abort)

    def drain(self) -> None:
        """Graceful shutdown: close now if idle, else after the answer in progress."""
        self._draining = True
        if not self._busy and not self._queue and not self._in_message and self._transport is not None:
            self._stop_reading()
            self._transport.close()

    def abort(self) -> None:
        self._cancel_timer()
        if self._transport is not None:
            self._transport.abort()

    # -- the one timer ------------------------------------------------------------------------

    def _idle(self) -> None:
        self._set_deadline("idle", self._l.keepalive_timeout)

    def _set_deadline(self, phase: str, seconds: float) -> None:
        timer = self._l.timer
        self._phase = phase
        self._deadline = deadline = timer.now() + seconds
        if self._timer_at is None or deadline < self._timer_at:
            self._cancel_timer()
            self._timer_at = deadline
            self._timer = timer.call_at(deadline, self._on_timer)
        # a later deadline: the armed timer fires early and re-arms (cheaper than re-arming)

    def _clear_deadline(self) -> None:
        self._phase = "none"
        self._deadline = None

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._timer_at = None

    def _on_timer(self) -> None:
        self._timer, self._timer_at = None, None
        deadline = self._deadline
        if deadline is None or self._closed or self._transport is None:
            return
        timer = self._l.timer
        now = timer.now()
        if now < deadline or (self._phase == "body" and self._body_paused):
            # early, or the body waits on us (reading paused for backpressure), not on the client
            at = deadline if now < deadline else now + self._l.limits.body_timeout
            self._deadline = at
            self._timer_at = at
            self._timer = timer.call_at(at, self._on_timer)
            return
        phase = self._phase
        self._deadline = None
        if phase == "idle":
            self._stop_reading()
            self._transport.close()
            return
        self._l.cut("header" if phase == "header" else "body", self._address)
        self._stop_reading()
        if phase == "header" and not self._busy and not self._queue:
            # Nothing is being answered on this connection, so a 408 cannot cross an answer.
            # All it sent was read: a plain close (no lingering for a client that stalled).
            self._transport.write(answer(RequestTimeout("the request head did not arrive in time")))
            self._transport.close()
        else:
            current = self._current
            if current is not None and current.body is not None:
                current.body.fail(ConnectionResetError("the request body did not arrive in time"))
            self.abort()

    # -- reading ------------------------------------------------------------------------------

    def _pause_body(self) -> None:
        self._body_paused = True
        self._sync_reading()

    def _resume_body(self) -> None:
        self._body_paused = False
        self._sync_reading()

    def _stop_reading(self) -> None:
        self._reading_done = True
        self._sync_reading()

    def _sync_reading(self) -> None:
        transport = self._transport
        if transport is None or self._closed:
            return
        want = self._discarding or not (
            self._reading_done or self._body_paused or len(self._queue) >= MAX_PIPELINE
        )
        if want != self._reading:
            self._reading = want
            try:
                if want:
                    transport.resume_reading()
                else:
                    transport.pause_reading()
            except (RuntimeError, AttributeError):  # a transport closing underneath us
                pass


async def _discard(response: Response) -> None:
    """An answer that is never written: its relay is closed (freeing the vendor's connection)."""
    aclose = getattr(response.stream, "aclose", None)
    if aclose is not None:
        await aclose()
    if response.done is not None:
        response.done()


def _connection(version: str, close: bool) -> str:
    return "Connection: close\r\n" if close else "Connection: keep-alive\r\n" if version == "1.0" else ""


def _why(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return "".join(c if " " <= c < "\x7f" else "?" for c in text)[:120]
