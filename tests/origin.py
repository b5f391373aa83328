"""A scripted origin: a real aiohttp server on loopback that follows a script and counts hits.

Tests say what the vendor does next (status, headers, body, delay, hold, reset, garbage) per
path, or give a path a responder with state (`respond`), then check what reached it. It is a
real server: the proxy talks to it over TCP. `Hook` is the alert-webhook receiver.

Which fake vendor is for what (one per job; a new test uses the first that fits):
- `Origin` here: every test that needs an HTTP vendor, in the test's loop (fixture `origin`)
  or on a thread for a proxy run as a subprocess (`serve_in_thread`). Waiting is by event
  (`Reply.hold`, `Origin.reached`), never by sleeping.
- tests/upstream/vendor.py: byte-level faults aiohttp cannot produce (bad framing, trickled
  heads, resets mid-body, pauses between writes); a raw socket server.
- benchmarks/origin.py: the benchmark suite's origin, in its own process, fixed-size bodies, a
  fail switch and counters, as light as possible so it never limits a measurement; benchmarks
  never import tests. benchmarks/outage_load.py, soak.py and ceiling.py keep their own tiny
  apps for what only they measure (hit timelines, 1 GB streams, the bare-aiohttp ceiling).
- proxy/demo_vendor.py: the vendor of `resilient-proxy demo` (prices, catalogue, bookings,
  failure modes switched at runtime); also what tests/e2e drives through the demo.
- Left in their tests on purpose: tests/hardening/test_chaos.py's 64 MB streaming vendor (cut
  mid-body), TLS vendor and SIGTERM-under-load vendor, tests/hardening/test_attacks.py's
  listener-specific origins, tests/integration/test_statuspage_browser.py's fake admin API
  (not a vendor).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

from aiohttp import web


@dataclass
class Reply:
    status: int = 200
    body: bytes | str | Any = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # real seconds to wait before answering (for timeout tests only)
    reset: bool = False  # drop the connection without answering
    garbage: bool = False  # write bytes that are not HTTP
    hold: asyncio.Event | None = None  # answer only once the test sets it (a slow vendor, no sleep)

    def encoded(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


@dataclass
class Seen:
    method: str
    path: str  # raw path with query
    headers: dict[str, str]
    body: bytes


class Origin:
    """`clock`: when given, the origin's Date header follows it, as a vendor's clock would
    follow real time; otherwise aiohttp stamps real time."""

    def __init__(self, clock: Any = None) -> None:
        self.clock = clock
        self.scripts: dict[str, deque[Reply]] = defaultdict(deque)
        self.defaults: dict[str, Reply] = {}
        self.fallback = Reply(404, {"error": "not scripted"}, {"Content-Type": "application/json"})
        self.seen: list[Seen] = []
        self.hits: dict[str, int] = defaultdict(int)
        self.responders: dict[str, Callable[[Seen], Reply]] = {}
        self.url = ""
        self._arrivals: list[asyncio.Event] = []

    def always(self, path: str, reply: Reply) -> None:
        """Answer `path` (path only, no query) with `reply` until told otherwise."""
        self.defaults[path] = reply
        self.scripts[path].clear()

    def respond(self, path: str, responder: Callable[[Seen], Reply]) -> None:
        """Answer `path` with whatever `responder` makes of each request: a vendor with state
        (a bookings API that remembers Idempotency-Keys); scripted replies still come first."""
        self.responders[path] = responder

    def then(self, path: str, *replies: Reply) -> None:
        """Answer the next requests for `path` with these, in order, then the default."""
        self.scripts[path].extend(replies)

    def json(
        self, path: str, doc: Any, status: int = 200, headers: dict[str, str] | None = None, **more: str
    ) -> None:
        merged = {"Content-Type": "application/json", **(headers or {}), **more}
        self.always(path, Reply(status, doc, merged))

    def count(self, path: str | None = None) -> int:
        return len(self.seen) if path is None else self.hits[path]

    async def reached(self, path: str, count: int) -> None:
        """Return once `path` has been asked `count` times: a sync point, not a wait on time."""
        while self.hits[path] < count:
            arrival = asyncio.Event()
            self._arrivals.append(arrival)
            await arrival.wait()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        seen = Seen(request.method, request.raw_path, dict(request.headers), body)
        self.seen.append(seen)
        self.hits[request.path] += 1
        for arrival in self._arrivals:
            arrival.set()
        self._arrivals.clear()
        queue = self.scripts.get(request.path)
        responder = self.responders.get(request.path)
        if queue:
            reply = queue.popleft()
        elif responder is not None:
            reply = responder(seen)
        else:
            reply = self.defaults.get(request.path, self.fallback)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.hold is not None:
            await reply.hold.wait()
        if reply.reset or reply.garbage:
            transport = request.transport
            if transport is not None:
                if reply.garbage:
                    transport.write(b"this is not http\r\n\r\n")
                transport.close()
            raise asyncio.CancelledError
        headers = dict(reply.headers)
        if self.clock is not None and "Date" not in headers:
            headers["Date"] = formatdate(self.clock.now(), usegmt=True)
        return web.Response(status=reply.status, body=reply.encoded(), headers=headers)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app


class Hook:
    """An alert webhook receiver: a real server that records the JSON events POSTed to /hook.

    `hold`: when given, each POST is taken and left unanswered until the test sets it (a hung
    webhook); `reached` is set when the first POST arrives."""

    def __init__(self, hold: asyncio.Event | None = None) -> None:
        self.events: list[dict[str, Any]] = []
        self.hold = hold
        self.reached = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        event = await request.json()
        self.reached.set()
        if self.hold is not None:
            await self.hold.wait()
        self.events.append(event)
        return web.Response(status=204)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        return app


@contextlib.contextmanager
def serve_in_thread(app: web.Application, stop_timeout: float = 20.0) -> Iterator[str]:
    """Serve `app` on a free loopback port from its own event loop on a thread, for tests whose
    proxy runs as a subprocess; yield its URL."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=stop_timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=stop_timeout)
        loop.close()
