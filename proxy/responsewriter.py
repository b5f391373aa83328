"""The bytes of every answer on a public-port connection, and its outbound flow control.

Owns: serialising a `Response` (status line, our headers, the framing lines this writer chooses:
`Content-Length`, chunked transfer coding on HTTP/1.1 streams, `Connection`; a `Date` unless the
answer carries one; never a `Server`), writing it (bytes in one write; a stream chunk by chunk,
waiting for the client to drain past the transport's high-water mark), the end of the last
answer (`end`: the half-close, and a call once its last byte is out), what the client has not
taken yet (`backlog`), the vendor's interim heads, `100 Continue`, and our JSON errors as
`Response`s.
Must not: decide whether the connection stays open (the caller says `close`; only an HTTP/1.0
stream, whose end is the connection's, forces it), parse requests, or know about the pipeline
(`listener.Connection` orders the answers and calls `respond` one at a time).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from http import HTTPStatus
from typing import Final

from proxy.connguard import answer
from proxy.core.errors import ProxyError
from proxy.exchange import Request, Response, interim_heads

CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
_NO_BODY: Final = frozenset({204, 304})


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


# HTTP/1.1 status lines made at import: compiled, a dict lookup is a direct call; `lru_cache`'s
# wrapper was a call by name and a hashed tuple (~1,000 instructions an answer).
_LINES_11: Final = {int(s): f"HTTP/1.1 {int(s)} {s.phrase}\r\n" for s in HTTPStatus}


def _status_line(version: str, status: int) -> str:
    if version == "1.1":
        line = _LINES_11.get(status)
        if line is not None:
            return line
    return f"HTTP/{version} {status} {_reason(status)}\r\n"


def status_and_fields(version: str, status: int, headers: list[tuple[str, str]]) -> tuple[bytes, bool]:
    """The status line and header lines (each ending in CRLF), and whether a `Date` is among
    them. A field whose name or value carries CR or LF is dropped: never a split response.
    The full path's heads and the fast hit's prepared ones are both made here."""
    text, has_date = _head_text(version, status, headers)
    return _encoded(text), has_date


def _head_text(version: str, status: int, headers: list[tuple[str, str]]) -> tuple[str, bool]:
    """`status_and_fields` as text, to be encoded once with what follows it."""
    if not headers:
        return _status_line(version, status), False
    # "name: value": compiled, an f-string is one native build (~25% faster than `map` with
    # `": ".join`, which pure Python prefers by a few percent)
    lines = [f"{name}: {value}" for name, value in headers]
    # No CR or LF in any name or value (the common case): two memchr scans of the lines run
    # together, before the line ends are put in, instead of four `in` tests per field.
    probe = "".join(lines)
    if "\n" in probe or "\r" in probe:
        return _checked(version, status, headers)
    fields = "\r\n".join(lines)
    has_date = False
    for name, _ in headers:
        if len(name) == 4 and name.lower() == "date":
            has_date = True
            break
    return f"{_status_line(version, status)}{fields}\r\n", has_date


def _encoded(text: str) -> bytes:
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8")


def _checked(version: str, status: int, headers: list[tuple[str, str]]) -> tuple[str, bool]:
    """`_head_text` dropping each field with a CR or LF in its name or value."""
    lines = [_status_line(version, status)]
    has_date = False
    for name, value in headers:
        if "\n" in value or "\r" in value or "\n" in name or "\r" in name:
            continue
        if not has_date and name.lower() == "date":
            has_date = True
        lines.append(f"{name}: {value}\r\n")
    return "".join(lines), has_date


def serialize_head(
    version: str, status: int, headers: list[tuple[str, str]], framing: str, date: bytes
) -> bytes:
    """Status line and headers. `framing` is the Content-Length/Transfer-Encoding/Connection
    lines the writer chose; our `Date` unless the answer carries one."""
    text, has_date = _head_text(version, status, headers)
    # one encoding: the framing lines are ASCII, so the head encodes as it would alone
    return _encoded(text + framing) + (b"\r\n" if has_date else date + b"\r\n")


def _connection(version: str, close: bool) -> str:
    return "Connection: close\r\n" if close else "Connection: keep-alive\r\n" if version == "1.0" else ""


def error_response(err: ProxyError) -> Response:
    """Our JSON error (`connguard.answer`) as a `Response` this writer frames, closing after."""
    raw = answer(err)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")[1:]
    headers = [
        (k, v.strip())
        for k, _, v in (line.partition(":") for line in lines)
        if k.lower() not in ("content-length", "connection")
    ]
    return Response(err.status, headers, body, close=True)


async def discard(response: Response) -> None:
    """An answer that is never written: its relay is closed (freeing the vendor's connection)."""
    aclose = getattr(response.stream, "aclose", None)
    if aclose is not None:
        await aclose()
    if response.done is not None:
        response.done()


class ResponseWriter:
    """The outbound side of one connection: `transport` is None once it is gone; `pause` and
    `resume` are the transport's flow control, relayed by the protocol."""

    __slots__ = ("_abort", "_date", "_ended", "_waiter", "paused", "transport")

    def __init__(self, date: Callable[[], bytes], abort: Callable[[], None]) -> None:
        self.transport: asyncio.Transport | None = None
        self.paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._date = date
        self._abort = abort
        self._ended: Callable[[], None] | None = None  # `end`'s callback, once the last byte is out

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        ended, self._ended = self._ended, None
        if ended is not None:
            ended()

    def end(self, then: Callable[[], None]) -> None:
        """Half-close after the last answer (RFC 9112 9.6), and `then` once its last byte is out:
        from here any byte not yet taken pauses writing (the send deadline guards a client that
        takes none), and `resume` calls `then` when none is left."""
        transport = self.transport
        if transport is None:
            return
        with contextlib.suppress(OSError):  # reset by the client already (ENOTCONN): nothing to end
            transport.write_eof()
        self._ended = then
        transport.set_write_buffer_limits(high=0)  # pauses now if a byte is left (asyncio, uvloop)
        if not self.paused:
            self.resume()

    def backlog(self) -> int:
        """Bytes of answers written that the client has not taken yet (the transport's buffer)."""
        return 0 if self.transport is None else self.transport.get_write_buffer_size()

    def lost(self, exc: Exception) -> None:
        """The connection is gone: a stream waiting to drain fails with `exc`."""
        self.transport = None
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def announce_continue(self) -> None:
        """`Expect: 100-continue`: the handler is about to read the body (RFC 9110 10.1.1)."""
        if self.transport is not None:
            self.transport.write(CONTINUE)

    def whole(self, request: Request, response: Response, close: bool) -> bool:
        """`respond` for an answer whose body is all there (no stream): one write, no await."""
        version = request.version
        status = response.status
        transport = self.transport
        try:
            if response.interim and version == "1.1" and transport is not None:
                transport.write(interim_heads(response.interim))
            text, has_date = _head_text(version, status, response.headers)
            body = response.body
            if status >= 200 and status not in _NO_BODY:
                text += f"Content-Length: {len(body)}\r\n"
            else:
                body = b""
            if close:
                text += "Connection: close\r\n"
            elif version == "1.0":
                text += "Connection: keep-alive\r\n"
            if request.method == "HEAD":
                body = b""
            # one encoding (the framing lines are ASCII), one join: head, our Date, body
            if transport is not None:
                date = b"" if has_date else self._date()
                transport.write(b"".join((_encoded(text), date, b"\r\n", body)))
            return close
        finally:
            if response.done is not None:
                response.done()

    async def respond(self, request: Request, response: Response, close: bool) -> bool:
        """Write one answer; True when the connection must close after it."""
        stream = response.stream
        if stream is None:
            return self.whole(request, response, close)
        version = request.version
        status = response.status
        bare = status in _NO_BODY or status < 200
        head_only = bare or request.method == "HEAD"
        if response.interim and version == "1.1" and self.transport is not None:
            self.transport.write(interim_heads(response.interim))
        try:
            chunked = version == "1.1" and not head_only
            if version != "1.1" and not head_only:
                close = True  # HTTP/1.0: the body ends where the connection does
            framing = ("Transfer-Encoding: chunked\r\n" if chunked else "") + _connection(version, close)
            head = serialize_head(version, status, response.headers, framing, self._date())
            if self.transport is None:
                return True
            self.transport.write(head)
            if not head_only:
                async for chunk in stream:
                    if not chunk:
                        continue
                    transport = self.transport
                    if transport is None:
                        raise ConnectionResetError("the client went away")
                    transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
                    if self.paused:
                        await self._drained()
                if chunked and self.transport is not None:
                    self.transport.write(b"0\r\n\r\n")
            return close
        except Exception:
            self._abort()  # the status line is gone already: a cut connection says it broke
            return True
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()
            if response.done is not None:
                response.done()

    async def _drained(self) -> None:
        if not self.paused:
            return
        waiter = self._waiter
        if waiter is None:
            waiter = self._waiter = asyncio.get_running_loop().create_future()
        await waiter
