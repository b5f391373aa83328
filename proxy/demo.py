"""`resilient-proxy demo`: a simulated vendor API and the proxy in front of it, on loopback.

Owns: starting the fake vendor with its shop API (`proxy.vendor`) on a free port in this
process, loading the demo config shipped as package data (proxy/static/demo.yaml, a copy of
config/demo.yaml) with the vendor's address filled in, serving the proxy and its admin listener
as `run` does, printing what to try, and stopping everything cleanly on Ctrl-C (exit 0).
Must not: need Redis, files outside the package, or anything not on loopback; contain proxy logic.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from importlib import resources
from pathlib import Path

from aiohttp import web

from proxy.admin import build_admin_app
from proxy.app import build_app
from proxy.config import ConfigError, load_config
from proxy.core.breaker import BreakerPolicy
from proxy.core.config.model import Config
from proxy.parts import LIFECYCLE
from proxy.publicport import PublicSite
from proxy.serve import setup_logging
from proxy.vendor import Vendor, build_vendor_app

CONFIG_RESOURCE = "static/demo.yaml"


def run_demo(port: int = 8080) -> int:
    """Serve the demo until SIGINT/SIGTERM. `port` 0 picks a free port (the banner shows it)."""
    # as_file: a real path even from a zipped install, so POST /reload can reread the file.
    with resources.as_file(resources.files("proxy").joinpath(CONFIG_RESOURCE)) as path:
        try:
            return asyncio.run(_demo(port, path))
        except KeyboardInterrupt:  # a second Ctrl-C during shutdown
            return 0


def demo_config(path: Path, vendor_url: str, listen: str) -> Config:
    """The demo config with the vendor's address and the listeners filled in.

    They go into os.environ (this process only) rather than a private mapping, so that a reload
    (SIGHUP, POST /reload), which rereads the file with the environment, sees the same values.
    """
    os.environ["DEMO_VENDOR_URL"] = vendor_url
    os.environ["DEMO_LISTEN"] = listen
    os.environ.setdefault("DEMO_ADMIN", "127.0.0.1:0")  # any free port, unless the user chose one
    return load_config(str(path))


async def _demo(port: int, path: Path) -> int:
    runners: list[web.AppRunner] = []  # stopped in this order: admin, proxy, then the vendor
    try:
        vendor_url = f"http://127.0.0.1:{await _start_vendor(runners)}"
        try:
            config = demo_config(path, vendor_url, f"127.0.0.1:{port}")
        except ConfigError as exc:  # only a bad DEMO_* variable in the environment gets here
            print(f"demo: {exc}", file=sys.stderr)
            return 1
        setup_logging(config.log.level, config.secret_values())
        app = build_app(config)
        try:
            proxy_port = await _start(
                runners,
                app,
                config.server.listen.host,
                config.server.listen.port,
                config.server.shutdown_grace,
                public=True,
            )
        except OSError as exc:
            print(
                f"demo: cannot listen on {config.server.listen} ({exc}); "
                f"try --port {port + 1}, or --port 0 for any free port",
                file=sys.stderr,
            )
            return 1
        admin_url = None
        if config.admin.enabled:
            listen = config.admin.listen
            admin_port = await _start(runners, build_admin_app(app), listen.host, listen.port, 1.0)
            admin_url = f"http://{listen.host}:{admin_port}"
        policy = config.upstreams[0].circuit_breaker
        print(banner(f"http://127.0.0.1:{proxy_port}", vendor_url, admin_url, policy), flush=True)
        await _until_stopped()
        print("demo: stopping (finishing in-flight requests)", flush=True)
        app[LIFECYCLE].ready = False
        return 0
    finally:
        for runner in runners:
            await runner.cleanup()


async def _start_vendor(runners: list[web.AppRunner]) -> int:
    vendor = Vendor(on_mode=lambda old, new: print(f"[vendor] mode {old} -> {new}", flush=True))
    # A short shutdown timeout: handlers sleeping in "slow" mode are cancelled, not waited for.
    return await _start(runners, build_vendor_app(vendor, shop=True), "127.0.0.1", 0, 0.5)


async def _start(
    runners: list[web.AppRunner],
    app: web.Application,
    host: str,
    port: int,
    shutdown_timeout: float,
    *,
    public: bool = False,
) -> int:
    """Serve `app` on host:port (the proxy's public port through our listener); return the port
    it got. Each new runner is stopped first."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    runners.insert(0, runner)
    if public:
        await PublicSite(runner, host, port, shutdown_timeout=shutdown_timeout).start()
    else:
        await web.TCPSite(runner, host, port).start()
    return _bound_port(runner)


async def _until_stopped() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # Windows: Ctrl-C raises instead
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def _bound_port(runner: web.AppRunner) -> int:
    """The port a site really got (the config may say 0: "any free port")."""
    address = runner.addresses[0]
    return int(address[1])


def breaker_text(policy: BreakerPolicy) -> str:
    """The configured breaker policy in words, as step 2 describes it."""
    return (
        f"the circuit breaker opens once at least {policy.minimum_calls} calls to the vendor in "
        f"{policy.window:g}s\n    have been made and {policy.failure_rate:.0%} of them failed "
        "(every route's calls count, retries\n    and background refreshes too, so it can open "
        f"sooner than you expect); it stays open {policy.open_for:g}s"
    )


def banner(proxy: str, vendor: str, admin: str | None, policy: BreakerPolicy | None = None) -> str:
    """What to try; the commands use $P for the proxy and $V for the vendor."""
    status = f"{admin}/status" if admin else "(no admin listener in this build)"
    width = max(len(proxy), len(vendor))
    return f"""
resilient-proxy demo is running
  proxy   {proxy:<{width}}  what your website calls instead of the vendor
  vendor  {vendor:<{width}}  a simulated pricing and bookings API, with a switch to break it
  status  {status}{"  breakers, cache, guard rejections" if admin else ""}

In another terminal, paste this line first, then try the steps below:
  P={proxy} V={vendor}
{_STEPS.replace("{breaker}", breaker_text(policy or BreakerPolicy()))}"""


# Constant text: the commands use $P and $V, so the comments stay aligned for any port.
_STEPS = """
 1. Caching: the first call goes to the vendor, the next is served from the cache.
      curl -i $P/api/prices/ABC-1          # X-Cache: MISS
      curl -i $P/api/prices/ABC-1          # X-Cache: HIT (the vendor said max-age=10)
      curl -i $P/api/catalogue/summer      # 50 items, rechecked with the vendor (ETag) each time

 2. The vendor goes down, and customers still get answers.
      curl -X POST $V/__vendor/mode -d '{"mode":"down"}'
      curl -i $P/api/prices/ABC-1          # the cached price: HIT, then after 10s UPDATING
                                           # (stale, a refresh tried) or STALE
      curl -i $P/api/catalogue/summer      # STALE: the last good catalogue
      curl -i $P/api/prices/NEW-1          # never cached: X-Cache: FALLBACK, the route's 503
    Repeat the last one: {breaker}
    (Cache-Status says circuit-open) and the vendor is left alone; then one trial call tests it.

 3. The vendor lies (200 OK, wrong data): guards refuse it, the last good copy is served.
      curl -X POST $V/__vendor/mode -d '{"mode":"zero-price"}'
      curl -i $P/api/prices/XYZ-2          # refused: never a price of 0
      curl -X POST $V/__vendor/mode -d '{"mode":"empty-catalogue"}'
      curl -i $P/api/catalogue/summer      # STALE: still 50 items
    Also try the modes "html" (an HTML error page with 200 OK) and "slow" (10s an answer;
    the proxy gives up after 2s a try).

 4. Bookings are never cached or served stale; an Idempotency-Key makes a retry safe.
      curl -i -X POST $P/api/bookings -H 'Idempotency-Key: order-1' -d '{"sku":"ABC-1"}'
    Send it twice: the same booking comes back (Idempotent-Replayed: true), not a second one.
    With the vendor down it fails at once with a JSON error, and is never replayed from cache.

 5. Put the vendor back, and see how many calls reached it.
      curl -X POST $V/__vendor/mode -d '{"mode":"ok"}'
      curl -s $V/__vendor/mode             # "requests": calls that reached the vendor
    Compare "requests" with the number of curl calls you made to $P: every HIT, every answer
    served while the breaker was open and every coalesced wait is a call the vendor never saw.

Ctrl-C stops the demo.
"""
