"""The requests of one public-port connection, answered strictly in order (RFC 9112 9.3.2).

Owns: the queue of parsed requests not yet answered (at most `MAX_PIPELINE` before the
connection stops reading, as it does while the client is not reading its answers), one request
handled at a time: a fresh hit written at once in one write (`Endpoint.fast`), anything else by
the connection's one worker task, which awaits `Endpoint.handle`, writes the answer through the
connection's `ResponseWriter` and waits for the next (a task per connection, not per request: a
Task costs its creation, asyncio's WeakSet registration and a weakref callback, ~8k instructions
a miss); a refusal answered in its place after what was asked before it; a body that broke off
answered with its refusal instead of the handler's answer; and what follows each answer: the
next request, the keep-alive deadline, or the close.
Must not: parse, read the socket, or arm deadlines itself (the connection's, `listener`), or
build bytes (`responsewriter`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from proxy.core.errors import ProxyError
from proxy.exchange import Endpoint, Request, Response
from proxy.responsewriter import ResponseWriter, discard, error_response

if TYPE_CHECKING:
    from proxy.listener import Connection
    from proxy.publicport import Listener

log = logging.getLogger("proxy.listener")
MAX_PIPELINE: Final = 16  # requests parsed ahead of the one being answered before reading pauses


class Pipeline:
    """`queue` and `busy` are read by the connection (a head that finds both empty may be
    answered on the spot; reading pauses while the queue is full)."""

    __slots__ = (
        "_conn",
        "_date",
        "_endpoint",
        "_loop",
        "_next",
        "_out",
        "_parked",
        "_refusals",
        "_task",
        "_tried",
        "_working",
        "busy",
        "queue",
    )

    def __init__(self, conn: Connection, listener: Listener, out: ResponseWriter) -> None:
        self._conn = conn
        # What every request asks the listener for, read once per connection: the listener is
        # an interpreted class, so each read of its attributes is a lookup by name.
        self._endpoint: Endpoint = listener.endpoint
        self._date: Callable[[], bytes] = listener.date
        self._loop = listener.loop
        self._out = out
        # A list, not a deque: compiled, a list's append and pop are direct calls, a deque's are
        # methods looked up by name; it holds at most `MAX_PIPELINE`, so `pop(0)` moves few.
        self.queue: list[tuple[Request, Response | None]] = []
        self.busy = False
        # The worker: held here (the loop keeps only a weak reference to a running task);
        # `_working` while it answers, `_next` what it answers after, `_parked` its wait.
        self._task: asyncio.Task[None] | None = None
        self._working = False
        self._next: tuple[Request, Response | None] | None = None
        self._parked: asyncio.Future[tuple[Request, Response | None] | None] | None = None
        self._refusals: dict[Request, ProxyError] = {}  # bodies whose framing broke off
        self._tried: Request | None = None  # the fast path already said no to it (`add`)

    @property
    def full(self) -> bool:
        """Read no more: the queue is at its mark, or the client is not reading its answers (the
        transport's buffer is past its high-water mark; a slow reader pauses its writer)."""
        return len(self.queue) >= MAX_PIPELINE or self._out.paused

    def fast(self, request: Request) -> bytes | None:
        """The whole answer when it is a fresh hit, else None; never while draining, nor while
        the client is not reading (its answers wait in the queue, not in memory as bytes)."""
        if self._conn.draining or self._out.paused:  # the listener's drain marks each connection
            return None
        try:
            return self._endpoint.fast(request, self._date)
        except Exception:  # the full path answers it, and reports what broke
            log.exception("the fast path failed; answering on the full path")
            return None

    def add(self, request: Request, ready: Response | None, *, tried: bool = False) -> None:
        """A parsed request; `ready` is its answer when the connection already knows it;
        `tried`: the connection asked the fast path already (a miss does not ask twice)."""
        self.queue.append((request, ready))
        self._tried = request if tried else None
        if len(self.queue) >= MAX_PIPELINE:
            self._conn.sync_reading()
        self.kick()

    def refuse(self, err: ProxyError, remote: str) -> None:
        """A head refused: answered after what was asked before it, then the connection closes."""
        self.queue.append((Request("GET", "", [], remote=remote, keep_alive=False), error_response(err)))
        self.kick()

    def refuse_body(self, request: Request, err: ProxyError) -> None:
        """`request`'s body broke off: the handler sees a client gone (499 in its log), the
        client gets `err`."""
        self._refusals[request] = err

    def lost(self, exc: Exception) -> None:
        """The connection is gone: the bodies still awaited fail with `exc`; a parked worker ends."""
        for request, _ in self.queue:
            if request.body is not None:
                request.body.fail(exc)
        self.queue.clear()
        self._unpark(None)

    def kick(self) -> None:
        """Answer the next requests in order: those ready at once (fresh hits) in one write
        each, right here; the first that is not ready in a task, which calls `_after`. None
        while the client is not reading its answers: `resume_writing` kicks again."""
        conn = self._conn
        queue = self.queue
        while not self.busy and queue and not conn.closed and not self._out.paused:
            request, ready = queue.pop(0)
            tried = request is self._tried
            if tried:
                self._tried = None
            if (
                ready is None
                and not tried
                and request.body is None
                and request.keep_alive
                and not conn.draining
            ):
                wire = self.fast(request)
                if wire is not None:
                    assert self._out.transport is not None
                    self._out.transport.write(wire)
                    continue
            self.busy = True
            conn.sync_reading()
            self._hand(request, ready)
            return
        conn.sync_reading()

    def _hand(self, request: Request, ready: Response | None) -> None:
        """Give the worker its next request: after the one it answers, or waking it, or a new
        worker when there is none."""
        if self._working:
            self._next = (request, ready)
        elif self._parked is not None:
            self._working = True
            self._unpark((request, ready))
        else:
            self._working = True
            self._task = self._loop.create_task(self._work(request, ready))

    def _unpark(self, item: tuple[Request, Response | None] | None) -> None:
        parked, self._parked = self._parked, None
        if parked is not None and not parked.done():
            parked.set_result(item)

    async def _work(self, request: Request, ready: Response | None) -> None:
        """The connection's worker: answers what it is handed, parked in between."""
        item: tuple[Request, Response | None] | None = (request, ready)
        try:
            while item is not None:
                await self._serve(item[0], item[1])
                item, self._next = self._next, None
                if item is None and not self._conn.closed:
                    self._working = False
                    parked = self._parked = self._loop.create_future()
                    item = await parked
        finally:
            self._working = False
            self._parked = None

    async def _serve(self, request: Request, ready: Response | None) -> None:
        close = True
        conn = self._conn
        try:
            try:
                response = ready if ready is not None else await self._endpoint.handle(request)
            except Exception:
                if request not in self._refusals:
                    raise
                response = Response(400, [])  # replaced below by the refusal
            refused = self._refusals.pop(request, None) if self._refusals else None
            if refused is not None:
                await discard(response)
                response = error_response(refused)
            close = response.close or not request.keep_alive or conn.draining
            if request.body is not None and not request.body.complete:  # closed after it (`_after`):
                close = True  # then say so, RFC 9112 9.6, lest a client pipeline more on it
            if response.stream is None:  # all there: written without a coroutine
                close = self._out.whole(request, response, close)
            else:
                close = await self._out.respond(request, response, close)
        except Exception:
            log.exception("answering on the public port failed")
            conn.abort()
        finally:
            self.busy = False
            try:
                self._after(request, close)
            except Exception:  # else the worker dies with it, and only asyncio says so, if ever
                log.exception("finishing an answer on the public port failed")
                conn.abort()

    def _after(self, request: Request, close: bool) -> None:
        conn = self._conn
        if conn.closed:
            return
        body = request.body
        if body is not None and not body.complete:
            close = True  # an unread body would have to be read to find the next request
        if close or conn.draining:
            conn.finish()
            return
        self.kick()
        if not self.busy and not self.queue and not conn.in_message:
            if conn.reading_done:
                conn.finish()
                return
            conn.idle()
