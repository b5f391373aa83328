"""The fake vendor's state and the order every request goes through.

Owns `Vendor`: the script (replies per path: `always`, `then`, `respond`, `json`), the failure
mode switched at runtime, the counters, the bookings it holds, and `serve`, which takes every
request that is not a control call through: count it, apply the mode, answer from the script,
else from the endpoint the path is routed to, else `fallback` (404 "not scripted").

Modes (`MODES`, `set_mode`):
  ok               everything works
  down             every request answers 503 (the health check too)
  refuse           every request gets its connection closed without an answer (a dead vendor)
  slow             every request waits `slow_seconds` before it is answered
  zero-price       the shop's prices come back as 0: valid JSON, wrong data ("it works today")
  empty-catalogue  the shop's catalogues come back with no items
  html             200 with an HTML error page (a CDN or login wall in the way); not /health

Counters: `hits` per path and `seen` (when `record`) cover every request; `requests`, `distinct`
and `failed` (answered while the mode was not `ok`) leave out the health check (`/health`),
which is the proxy's probe, not an API call. Control calls (`/__vendor/...`) count nowhere.
Must not: know the endpoints (`items`, `shop` do) or read the clock but through `clock`.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from proxy.vendor.script import Reply, Seen, WallClock, answer, seen

MODES = ("ok", "down", "refuse", "slow", "zero-price", "empty-catalogue", "html")
SLOW_SECONDS = 10.0
HEALTH_PATH = "/health"
JSON = {"Content-Type": "application/json"}
HTML_PAGE = (
    "<!doctype html><html><head><title>Service temporarily unavailable</title></head>"
    "<body><h1>We'll be right back</h1><p>Our API is under maintenance.</p></body></html>"
)
# A bare 503, no Retry-After: stale copies and the breaker are what the demo shows.
_FAULTS = {
    "down": Reply(503, {"error": "service_unavailable"}, JSON),
    "refuse": Reply(reset=True),
    "html": Reply(200, HTML_PAGE, {"Content-Type": "text/html; charset=utf-8"}),
}

Endpoint = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Vendor:
    """`clock`: when given, scripted replies carry a Date from it. `record`: keep every request
    in `seen` (the tests read it; a long-running demo or benchmark must not grow)."""

    def __init__(
        self,
        clock: WallClock | None = None,
        *,
        record: bool = False,
        slow_seconds: float = SLOW_SECONDS,
        on_mode: Callable[[str, str], None] | None = None,
    ) -> None:
        self.clock = clock
        self.scripts: dict[str, deque[Reply]] = defaultdict(deque)
        self.defaults: dict[str, Reply] = {}
        self.responders: dict[str, Callable[[Seen], Reply]] = {}
        self.fallback = Reply(404, {"error": "not scripted"}, JSON)
        self.record = record
        self.seen: list[Seen] = []
        self.hits: dict[str, int] = defaultdict(int)
        self.requests = 0
        self.failed = 0
        self.paths: set[str] = set()  # distinct path+query asked (the health check left out)
        self.mode = "ok"
        self.slow_seconds = slow_seconds
        self.on_mode = on_mode  # called with (old, new) on every switch
        self.bookings: dict[str, dict[str, Any]] = {}  # by Idempotency-Key
        self.booked: list[dict[str, Any]] = []
        self.url = ""  # where it is served, for whoever needs to say so
        self._arrivals: list[asyncio.Event] = []

    # -- the script --------------------------------------------------------------------------

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
        self.always(path, Reply(status, doc, {**JSON, **(headers or {}), **more}))

    def scripted(self, path: str, request: Seen | None) -> Reply | None:
        """The reply the script has for this request, if any: queued, then responder, then default."""
        queue = self.scripts.get(path)
        if queue:
            return queue.popleft()
        responder = self.responders.get(path)
        if responder is not None and request is not None:
            return responder(request)
        return self.defaults.get(path)

    # -- what it saw -------------------------------------------------------------------------

    def count(self, path: str | None = None) -> int:
        return len(self.seen) if path is None else self.hits[path]

    async def reached(self, path: str, count: int) -> None:
        """Return once `path` has been asked `count` times: a sync point, not a wait on time."""
        while self.hits[path] < count:
            arrival = asyncio.Event()
            self._arrivals.append(arrival)
            await arrival.wait()

    def reset(self) -> None:
        """Forget what was asked (counters and `seen`); the script and the mode stay."""
        self.seen.clear()
        self.hits.clear()
        self.paths.clear()
        self.requests = self.failed = 0

    def stats(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "requests": self.requests,
            "distinct": len(self.paths),
            "failed": self.failed,
            "bookings": len(self.booked),
        }

    async def _arrive(self, request: web.Request) -> Seen | None:
        path = request.path
        record = self.record or path in self.responders
        request_seen = await seen(request) if record else None
        if request_seen is not None and self.record:
            self.seen.append(request_seen)
        self.hits[path] += 1
        if path != HEALTH_PATH:
            self.requests += 1
            self.paths.add(request.path_qs)
            if self.mode != "ok":
                self.failed += 1
        if self._arrivals:
            for arrival in self._arrivals:
                arrival.set()
            self._arrivals.clear()
        return request_seen

    # -- the mode ----------------------------------------------------------------------------

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of: {', '.join(MODES)}")
        old, self.mode = self.mode, mode
        if self.on_mode is not None:
            self.on_mode(old, mode)

    async def _fault(self, path: str) -> Reply | None:
        """What the mode answers instead of the vendor (None: answer as usual)."""
        if self.mode == "slow":
            await asyncio.sleep(self.slow_seconds)
            return None
        if self.mode == "html" and path == HEALTH_PATH:
            return None
        return _FAULTS.get(self.mode)

    # -- bookings ----------------------------------------------------------------------------

    def book(self, key: str | None, order: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Record a booking; the same Idempotency-Key returns the first booking (replayed=True)."""
        if key is not None and key in self.bookings:
            return self.bookings[key], True
        booking = {
            "id": f"bk_{len(self.booked) + 1:04d}",
            "sku": order.get("sku"),
            "quantity": order.get("quantity", 1),
            "status": "confirmed",
        }
        self.booked.append(booking)
        if key is not None:
            self.bookings[key] = booking
        return booking, False

    # -- serving -----------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """A path no endpoint is routed to: the script's reply, else `fallback`."""
        return await self.serve(request, None)

    def serving(self, endpoint: Endpoint) -> Endpoint:
        """`endpoint` as a route handler: counted, under the mode, and the script first."""

        async def handler(request: web.Request) -> web.StreamResponse:
            return await self.serve(request, endpoint)

        return handler

    async def serve(self, request: web.Request, endpoint: Endpoint | None) -> web.StreamResponse:
        request_seen = await self._arrive(request)
        if self.mode != "ok":
            fault = await self._fault(request.path)
            if fault is not None:
                return await answer(request, fault)
        if self.scripts or self.defaults or self.responders:
            reply = self.scripted(request.path, request_seen)
            if reply is not None:
                return await answer(request, reply, self.clock)
        if endpoint is not None:
            return await endpoint(request)
        return await answer(request, self.fallback, self.clock)
