"""One exchange on the public port: the client's request as the listener parsed it, and our answer.

Owns: `Request` (method, raw target, headers as a case-insensitive multimap plus the raw pairs,
client address, HTTP version, keep-alive, the body as it arrives), `Body` (the request body with
backpressure: the listener feeds it, the handler reads it, reading resumes below a low-water
mark), and `Response` (status, header list, bytes or an async iterator of chunks, close flag).
Must not: parse bytes (that is `listener`) or decide anything about caching (that is `handler`).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from http import HTTPStatus
from typing import Final

from multidict import CIMultiDict, CIMultiDictProxy
from mypy_extensions import mypyc_attr

from proxy.core.headers import field_value
from proxy.framing import HINTED_NAMES

BODY_HIGH_WATER: Final = 1 << 18  # bytes of request body buffered before the listener stops reading


class Body:
    """The request body as it arrives. `feed`/`finish`/`fail` are the listener's; `read` the
    handler's. Past `high` buffered bytes `pause` is called, and `resume` once reads bring the
    buffer under half of it (RFC 9112 does not say: nginx and aiohttp do the same)."""

    __slots__ = (
        "_chunks",
        "_done",
        "_error",
        "_first_read",
        "_high",
        "_pause",
        "_paused",
        "_resume",
        "_size",
        "_waiter",
        "received",
    )

    def __init__(
        self,
        pause: Callable[[], None],
        resume: Callable[[], None],
        *,
        high: int = BODY_HIGH_WATER,
        first_read: Callable[[], None] | None = None,
    ) -> None:
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._done = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._pause, self._resume, self._high = pause, resume, high
        self._paused = False
        self._first_read = first_read
        self.received = 0

    # -- the listener's side --------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        if self._done or self._error is not None:
            return
        self._chunks.append(data)
        self._size += len(data)
        self.received += len(data)
        if self._size > self._high and not self._paused:
            self._paused = True
            self._pause()
        self._wake()

    def finish(self) -> None:
        self._done = True
        self._wake()

    def fail(self, exc: BaseException) -> None:
        if self._done:
            return
        self._error = exc
        self._wake()

    @property
    def buffered(self) -> int:
        return self._size

    @property
    def complete(self) -> bool:
        return self._done

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- the handler's side ---------------------------------------------------------------------

    def at_eof(self) -> bool:
        return self._done and not self._chunks

    async def read(self, n: int = -1) -> bytes:
        """Up to `n` bytes (all buffered with -1); b"" at the end; raises what broke the body."""
        if self._first_read is not None:
            announce, self._first_read = self._first_read, None
            if not self._done:
                announce()  # `Expect: 100-continue`: the client waits for this before sending
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._done:
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        chunk = self._chunks.popleft()
        if 0 <= n < len(chunk):
            self._chunks.appendleft(chunk[n:])
            chunk = chunk[:n]
        self._size -= len(chunk)
        if self._paused and self._size <= self._high // 2:
            self._paused = False
            self._resume()
        return chunk


class Request:
    """A request head as parsed once by the listener, and its body."""

    __slots__ = (
        "_headers",
        "body",
        "content_length",
        "head_size",
        "hints",
        "keep_alive",
        "method",
        "plan",
        "raw_headers",
        "raw_path",
        "remote",
        "version",
    )

    def __init__(
        self,
        method: str,
        raw_path: str,
        raw_headers: list[tuple[bytes, bytes]],
        remote: str = "",
        version: str = "1.1",
        keep_alive: bool = True,
        body: Body | None = None,
        content_length: int | None = None,
        head_size: int = 0,
        hints: dict[str, str | None] | None = None,
    ) -> None:
        self.method = method
        self.raw_path = raw_path  # the request target exactly as sent
        self.raw_headers = raw_headers
        self._headers: CIMultiDictProxy[str] | None = None
        # A few header values by lower-case name, noted while parsing (None: sent more than
        # once); without them, `hint` reads the multimap.
        self.hints = hints
        self.remote = remote
        self.version = version
        self.keep_alive = keep_alive
        self.body = body
        self.content_length = content_length
        self.head_size = head_size  # bytes of target and header lines, an upper bound of either
        self.plan: object = None  # what the fast path worked out from the target (`fasthit.Plan`)

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        """The headers as a case-insensitive multimap, built on first use (a fresh hit may
        never need it)."""
        headers = self._headers
        if headers is None:
            built: CIMultiDict[str] = CIMultiDict()
            for name, value in self.raw_headers:
                built.add(name.decode("latin-1"), value.decode("latin-1"))
            headers = self._headers = CIMultiDictProxy(built)
        return headers

    def hint(self, name: str) -> tuple[bool, str | None]:
        """(known, value) of a lower-case header name: value None when absent; known False
        when it was sent more than once (the caller reads `headers` for the joined value)."""
        hints = self.hints
        if hints is None:
            values = self.headers.getall(name, [])
            return len(values) <= 1, values[0] if values else None
        if name not in hints:
            return True, None
        value = hints[name]
        return value is not None, value

    def first(self, name: str) -> str | None:
        """`headers.get(name)` for a lower-case `name`, from the values noted while parsing
        when it is one of them (`framing.HINTED`): a miss need not build the multimap."""
        hints = self.hints
        if hints is not None and name in HINTED_NAMES:
            if name not in hints:
                return None
            value = hints[name]
            if value is not None:
                return value
        return self.headers.get(name)

    def has(self, name: str) -> bool:
        """Whether a lower-case `name` was sent, read as `first` reads it."""
        hints = self.hints
        if hints is not None and name in HINTED_NAMES:
            return name in hints
        return name in self.headers

    def field(self, name: str) -> str | None:
        """`headers.field_value` of a lower-case `name` (lines joined, None when Connection
        names it), from the noted values when it was sent at most once and no Connection was."""
        hints = self.hints
        if hints is not None and name in HINTED_NAMES and "connection" not in hints:
            if name not in hints:
                return None
            value = hints[name]
            if value is not None:
                return value
        return field_value(self.headers, name)

    @property
    def body_exists(self) -> bool:
        return self.body is not None

    @property
    def host(self) -> str:
        return self.headers.get("Host", "")


class Response:
    """Our answer: `body` bytes, or `stream` chunks relayed as they come (chunked on HTTP/1.1).
    `close` ends the connection after it; `done` runs once the last byte is written or the
    write failed (the access log of a streamed answer waits for it)."""

    __slots__ = ("body", "close", "done", "headers", "interim", "status", "stream")

    def __init__(
        self,
        status: int,
        headers: list[tuple[str, str]],
        body: bytes = b"",
        *,
        stream: AsyncIterator[bytes] | None = None,
        close: bool = False,
    ) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.stream = stream
        self.close = close
        self.done: Callable[[], None] | None = None
        # The vendor's interim answers (102, 103 Early Hints), relayed before this one to an
        # HTTP/1.1 client (RFC 9110 15.2), never stored.
        self.interim: Sequence[tuple[int, Sequence[tuple[str, str]]]] = ()

    def header(self, name: str) -> str | None:
        low = name.lower()
        return next((v for k, v in self.headers if k.lower() == low), None)


RELAYED_INTERIM: Final = frozenset({102, 103})  # 100 answers our own Expect; 101 is never accepted


def interim_heads(heads: Sequence[tuple[int, Sequence[tuple[str, str]]]]) -> bytes:
    """The vendor's 102/103 heads as the client gets them, hop-by-hop fields already gone."""
    out = []
    for status, headers in heads:
        if status in RELAYED_INTERIM:
            lines = "".join(f"{k}: {v}\r\n" for k, v in headers if "\r" not in v and "\n" not in v)
            out.append(
                f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n{lines}\r\n".encode("latin-1", "replace")
            )
    return b"".join(out)


@mypyc_attr(allow_interpreted_subclasses=True)  # the listener's own tests serve an echo
class Endpoint:
    """What the listener serves: `driver.Driver`. A base class, not a `Protocol`: compiled, the
    listener's calls per request (`fast`, then `handle` for the full path) are then direct, where
    on a `Protocol` each is a method looked up by name."""

    def fast(self, request: Request, date: Callable[[], bytes]) -> bytes | None:
        """The whole answer when it is ready at once (a fresh hit), else None."""
        raise NotImplementedError

    async def handle(self, request: Request) -> Response:
        raise NotImplementedError

    def now(self) -> float:
        raise NotImplementedError
