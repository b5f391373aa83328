"""What a vendor answered: `Fetched`, the answer as read, and `BodyStream`, the rest of a body
too large to store.

Owns: decoding a complete coded body once, within bounds (`Fetched.to_identity`), and pacing a
streamed body by its consumer. Must not: send anything, retry, or decide caching; `transport`
makes these, `upstream` and `fetch` read them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Final

from proxy.core.encoding import DecodeError, TooLarge, decode
from proxy.core.errors import UpstreamError, UpstreamTimeout
from proxy.core.headers import among
from proxy.core.model import Headers
from proxy.core.record import Record
from proxy.http1 import FramingError, ResponseFraming
from proxy.pool import Conn, Pool

log = logging.getLogger("proxy.transport")  # its warnings read as the transport's, as before the split


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


DECODE_OFF_LOOP: Final = 64 * 1024  # compressed bytes; inflating more than this takes milliseconds
CODING_HEADERS: Final = frozenset({"content-encoding", "content-length"})
NO_CONTENT: Final = frozenset({204, 304})


class Fetched(Record):
    """A vendor's answer as read (made per exchange: a record, see `core.record`)."""

    __slots__ = (
        "attempts",
        "body",
        "complete",
        "headers",
        "interim",
        "lows_of",
        "request_time",
        "response_time",
        "status",
        "stream",
        "unreadable",
    )

    def __init__(
        self,
        status: int,
        headers: Headers,
        body: bytes,
        request_time: float,
        response_time: float,
        complete: bool = True,
        stream: BodyStream | None = None,
        attempts: int = 1,
        interim: list[tuple[int, Headers]] | None = None,
        unreadable: str | None = None,
        lows_of: tuple[Headers, tuple[str, ...]] | None = None,
    ) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.request_time = request_time
        self.response_time = response_time
        self.complete = complete  # False: too large to store; `body` comes first, `stream` the rest
        self.stream = stream
        self.attempts = attempts
        self.interim: list[tuple[int, Headers]] = [] if interim is None else interim  # 1xx heads
        self.unreadable = unreadable  # why a coded body could not be decoded (see `to_identity`)
        # `headers` with the lower-case name of each field, in order, as the parser read them, so
        # nobody lowers or scans them again (issue 11); `lows()` gives the names.
        self.lows_of = lows_of

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
        if not among("content-encoding", lows) or self.status in NO_CONTENT:
            return None  # a 204 or 304 has no content to decode (RFC 9110 15.3.5, 15.4.5)
        # Every line counts, as one list (RFC 9110 5.3): gzip on two lines is gzip twice.
        lines = [self.headers[i][1] for i, low in enumerate(lows) if low == "content-encoding"]
        value = lines[0] if len(lines) == 1 else ", ".join(lines)
        return None if value.strip().lower() in ("", "identity") else value

    def release(self) -> None:
        if self.stream is not None:
            self.stream.close()
            self.stream = None
