"""The tests' vendor: `Origin`, the fake vendor (proxy/vendor/) recording every request.

Tests say what the vendor does next (status, headers, body, delay, hold, reset, garbage) per
path, or give a path a responder with state (`respond`), then check what reached it (`seen`,
`count`, `reached`). It is a real server: the proxy talks to it over TCP. The scripting lives in
`proxy.vendor.Vendor` (one fake vendor for the tests, the benchmarks and the demo, issue 13); this
module only fixes the tests' defaults. `Hook` is the alert-webhook receiver.

Which fake vendor is for what (one per job; a new test uses the first that fits):
- `Origin` here: every test that needs an HTTP vendor, in the test's loop (fixture `origin`)
  or on a thread for a proxy run as a subprocess (`serve_in_thread`). Waiting is by event
  (`Reply.hold`, `Origin.reached`), never by sleeping. Its switch (`set_mode`, or
  `POST /__vendor/mode`) breaks every path at once (down, refuse, slow, html).
- proxy/vendor/ (`build_vendor_app`) with its built-in APIs: the item API is the benchmark
  suite's origin (benchmarks/origin.py, a CLI over it in its own process; benchmarks never import
  tests); the shop API is the vendor of `resilient-proxy demo` (proxy/demo.py), which tests/e2e
  drive through the demo.
- tests/upstream/vendor.py and tests/hardening/rawhttp.py (`RawOrigin`): byte-level faults
  aiohttp cannot produce (bad framing, trickled heads, resets mid-body, pauses between writes);
  raw socket servers.
- Left on purpose: benchmarks/outage_load.py, soak.py and ceiling.py keep their own tiny apps
  for what only they measure (hit timelines, 1 GB streams, the bare-aiohttp ceiling);
  tests/hardening/test_chaos.py's 64 MB streaming vendor (cut mid-body), TLS vendor and
  SIGTERM-under-load vendor, tests/hardening/test_attacks.py's listener-specific origins,
  tests/integration/test_statuspage_browser.py's fake admin API (not a vendor).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from aiohttp import web

from proxy.vendor import Reply, Seen, Vendor, build_vendor_app

__all__ = ["Hook", "Origin", "Reply", "Seen", "serve_in_thread"]


class Origin(Vendor):
    """The fake vendor as the tests use it: every request kept in `seen`, no built-in API (a
    path nobody scripted answers 404 "not scripted"). `clock`: when given, the origin's Date
    header follows it, as a vendor's clock would follow real time; otherwise aiohttp stamps
    real time."""

    def __init__(self, clock: Any = None) -> None:
        super().__init__(clock, record=True)

    def app(self) -> web.Application:
        return build_vendor_app(self)


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
