"""`resilient-proxy demo`: a simulated vendor API and the proxy in front of it, on loopback.

Owns: starting the vendor (`proxy.demo_vendor`) on a free port in this process, loading the demo
config shipped as package data (proxy/static/demo.yaml, a copy of config/demo.yaml) with the
vendor's address filled in, serving the proxy and its admin listener as `run` does, printing what
to try, and stopping everything cleanly on Ctrl-C (exit 0).
Must not: need Redis, files outside the package, or anything not on loopback; contain proxy logic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from importlib import resources

from aiohttp import web

from proxy.app import PROXY_STATE, build_app
from proxy.config import ConfigError, parse_config
from proxy.demo_vendor import Vendor, build_vendor_app
from proxy.serve import _start_admin, setup_logging
from proxy.settings import Config

CONFIG_RESOURCE = "static/demo.yaml"
log = logging.getLogger("proxy.demo")


def run_demo(port: int = 8080) -> int:
    """Serve the demo until SIGINT/SIGTERM. `port` 0 picks a free port (the banner shows it)."""
    try:
        return asyncio.run(_demo(port))
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        return 0


def demo_config(vendor_url: str, listen: str, admin: str) -> Config:
    """The shipped demo config with the vendor's address and the listeners filled in."""
    text = resources.files("proxy").joinpath(CONFIG_RESOURCE).read_text(encoding="utf-8")
    env = {**os.environ, "DEMO_VENDOR_URL": vendor_url, "DEMO_LISTEN": listen, "DEMO_ADMIN": admin}
    return parse_config(text, f"proxy/{CONFIG_RESOURCE}", env)


async def _demo(port: int) -> int:
    vendor = Vendor(on_mode=lambda old, new: print(f"[vendor] mode {old} -> {new}", flush=True))
    # A short shutdown timeout: handlers sleeping in "slow" mode are cancelled, not waited for.
    vendor_runner = web.AppRunner(build_vendor_app(vendor), access_log=None, handle_signals=False,
                                  shutdown_timeout=0.5)
    await vendor_runner.setup()
    runners = [vendor_runner]
    try:
        await web.TCPSite(vendor_runner, "127.0.0.1", 0).start()
        vendor_url = f"http://127.0.0.1:{_bound_port(vendor_runner)}"
        try:
            config = demo_config(vendor_url, f"127.0.0.1:{port}",
                                 os.environ.get("DEMO_ADMIN", "127.0.0.1:0"))
        except ConfigError as exc:  # only a bad DEMO_* variable in the environment gets here
            print(f"demo: {exc}", file=sys.stderr)
            return 1
        setup_logging(config.log.level)
        app = build_app(config)
        proxy_runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                     shutdown_timeout=config.server.shutdown_grace)
        await proxy_runner.setup()
        runners.insert(0, proxy_runner)  # stopped first: its in-flight requests need the vendor
        try:
            await web.TCPSite(proxy_runner, config.server.listen.host, config.server.listen.port).start()
        except OSError as exc:
            print(f"demo: cannot listen on {config.server.listen}: {exc.strerror or exc}; "
                  f"try --port {port + 1} (or --port 0 for any free port)", file=sys.stderr)
            return 1
        admin_runner = await _start_admin(app, config) if config.admin.enabled else None
        if admin_runner is not None:
            runners.insert(0, admin_runner)
        proxy_url = f"http://127.0.0.1:{_bound_port(proxy_runner)}"
        admin_url = f"http://127.0.0.1:{_bound_port(admin_runner)}" if admin_runner else None
        print(banner(proxy_url, vendor_url, admin_url), flush=True)
        await _until_stopped()
        print("demo: stopping (finishing in-flight requests)", flush=True)
        app[PROXY_STATE].ready = False
        return 0
    finally:
        for runner in runners:
            await runner.cleanup()


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


def banner(proxy: str, vendor: str, admin: str | None) -> str:
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
{_STEPS}"""


# Constant text: the commands use $P and $V, so the comments stay aligned for any port.
_STEPS = """
 1. Caching: the first call goes to the vendor, the next is served from the cache.
      curl -i $P/api/prices/ABC-1          # X-Cache: MISS
      curl -i $P/api/prices/ABC-1          # X-Cache: HIT (the vendor said max-age=10)
      curl -i $P/api/catalogue/summer      # 50 items, rechecked with the vendor (ETag) each time

 2. The vendor goes down, and customers still get answers.
      curl -X POST $V/__vendor/mode -d '{"mode":"down"}'
      curl -i $P/api/prices/ABC-1          # the cached price: HIT, then STALE after 10s
      curl -i $P/api/catalogue/summer      # STALE: the last good catalogue
      curl -i $P/api/prices/NEW-1          # never cached: the route's fallback (503)
    Repeat the last one: after 5 failed calls the circuit breaker opens (Cache-Status says
    circuit_open) and the vendor is left alone; after 10s one trial call tests it again.

 3. The vendor lies (200 OK, wrong data): guards refuse it, the last good copy is served.
      curl -X POST $V/__vendor/mode -d '{"mode":"zero-price"}'
      curl -i $P/api/prices/XYZ-2          # refused: never a price of 0
      curl -X POST $V/__vendor/mode -d '{"mode":"empty-catalogue"}'
      curl -i $P/api/catalogue/summer      # STALE: still 50 items
    Also try the modes "html" (an HTML error page with 200) and "slow" (10s; the proxy waits 2s).

 4. Bookings are never cached or served stale; an Idempotency-Key makes a retry safe.
      curl -i -X POST $P/api/bookings -H 'Idempotency-Key: order-1' -d '{"sku":"ABC-1"}'
    Send it twice: the same booking comes back (Idempotent-Replayed: true), not a second one.
    With the vendor down it fails at once with a JSON error, and is never replayed from cache.

 5. Put the vendor back, and see how many calls reached it.
      curl -X POST $V/__vendor/mode -d '{"mode":"ok"}'
      curl -s $V/__vendor/mode

Ctrl-C stops the demo.
"""
