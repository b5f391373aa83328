"""`run`: listeners, signals, worker processes and graceful shutdown.

Owns: process-level lifecycle: uvloop, the public listener (optionally TLS), the admin listener,
SIGTERM/SIGINT (stop accepting, finish in-flight requests within `server.shutdown_grace`, exit 0),
SIGHUP (reload), and `server.workers` processes sharing the port with SO_REUSEPORT.
Must not: contain request logic.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import ssl
import sys

from aiohttp import web

from proxy.app import build_app
from proxy.core.config.model import Config
from proxy.health import HEALTH
from proxy.logformat import JsonFormatter
from proxy.parts import LIFECYCLE, LIVE, RELOADER, TELEMETRY
from proxy.publicport import PublicSite

log = logging.getLogger("proxy.serve")
# The cyclic collector's thresholds while serving (CPython's default is (700, 10, 10)). A miss
# allocates a few hundred container objects, so the default collected the young generation every
# few requests and the old ones over the whole heap often enough to be the misses' p99.
GC_THRESHOLDS = (20_000, 20, 20)


def setup_logging(level: str, secret_values: tuple[str, ...] = ()) -> None:
    """Every line on stderr is JSON (proxy/logformat.py), as the access log is."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(secret_values))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # we write our own access log
    # aiohttp logs each malformed request with a traceback at ERROR: a client could flood the
    # log with them. They are answered 400 and counted; the traceback is for debugging only.
    if level.lower() != "debug":
        logging.getLogger("aiohttp.server").addFilter(_quiet_bad_requests)


def _quiet_bad_requests(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("Error handling request")


def serve(config: Config) -> int:
    setup_logging(config.log.level, config.secret_values())
    _install_uvloop()
    workers = config.server.workers or os.cpu_count() or 1
    if workers > 1:
        from proxy.fleet import supervise

        return asyncio.run(supervise(config, workers))
    return run_worker(config, index=0, admin_socket=None)


def run_worker(
    config: Config,
    *,
    index: int,
    admin_socket: str | None,
    ready_fd: int | None = None,
    lifeline_fd: int | None = None,
) -> int:
    """One serving process. Under a fleet (`admin_socket` set) it shares the port with its
    siblings (SO_REUSEPORT), serves its admin app on a private Unix socket instead, writes
    one line to `ready_fd` once it listens (how the supervisor knows, see proxy/fleet.py), and
    stops as on SIGTERM when `lifeline_fd` reads EOF: the supervisor is gone, even if killed."""
    setup_logging(config.log.level, config.secret_values())
    _install_uvloop()
    try:
        asyncio.run(
            _main(config, index=index, admin_socket=admin_socket, ready_fd=ready_fd, lifeline_fd=lifeline_fd)
        )
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return 1
    return 0


def _report_listening(ready_fd: int | None) -> None:
    """Tell the supervisor this worker listens: one line on its pipe, then the pipe closes."""
    if ready_fd is None:
        return
    try:
        os.write(ready_fd, b"listening\n")
    finally:
        os.close(ready_fd)


def _hold_lifeline(loop: asyncio.AbstractEventLoop, fd: int, stop: asyncio.Event, index: int) -> None:
    """The supervisor never writes on the lifeline: it becomes readable (EOF) only when the
    supervisor's end closes, which the kernel does when it dies however it dies. Then this
    worker drains and stops as on SIGTERM, instead of serving on with nobody to restart it."""

    def orphaned() -> None:
        loop.remove_reader(fd)
        os.close(fd)
        log.error("worker %d: the supervisor is gone; stopping", index)
        stop.set()

    loop.add_reader(fd, orphaned)


def tune_gc() -> None:
    """What exists once the proxy listens (config, routes, pools, the app) lives as long as the
    process: moved out of every collection (`gc.freeze`), after one last collection so no garbage
    is frozen with it; then the young generation collected every GC_THRESHOLDS[0] allocations.
    Reference counting still frees everything at once; only cycles wait a little longer.
    Measured (benchmarks, miss): CPU per request -18 to -28%, p99 68 -> 19 ms. Frozen objects
    that later become cyclic garbage are never collected: that is the first runtime's cycles
    after a reload, once (later runtimes are made after the freeze and collected as usual)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _install_uvloop() -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a hard dependency off Windows
        log.warning("uvloop not available; using the default event loop")


async def _main(
    config: Config,
    *,
    index: int,
    admin_socket: str | None,
    ready_fd: int | None = None,
    lifeline_fd: int | None = None,
) -> None:
    app = build_app(config)
    lifecycle = app[LIFECYCLE]
    # aiohttp reads a timeout <= 0 as "none": a grace of 0 must still mean "stop now".
    grace = max(0.01, config.server.shutdown_grace)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=grace, handle_signals=False)
    await runner.setup()
    lifecycle.ready = False  # the app has started; ready also means listening (issue 12): below
    ssl_ctx = _ssl(config)
    # The public port is our own protocol (proxy/listener.py): connection caps per address and in
    # total, header/body deadlines for slow clients, framing refusals, graceful drain.
    site = PublicSite(
        runner,
        config.server.listen.host,
        config.server.listen.port,
        ssl_context=ssl_ctx,
        reuse_port=admin_socket is not None,
        backlog=1024,
        registry=app[TELEMETRY].registry,
        limits=config.server.limits,
        shutdown_timeout=grace,
    )
    await site.start()
    admin_runner = await _start_admin(app, config, admin_socket) if config.admin.enabled else None
    tune_gc()
    lifecycle.ready = True
    _report_listening(ready_fd)
    scheme = "https" if ssl_ctx else "http"
    log.info("worker %d listening on %s://%s", index, scheme, config.server.listen)
    if admin_socket is None:
        print(
            f"resilient-proxy listening on {scheme}://{config.server.listen}"
            + (f", admin on http://{config.admin.listen}" if admin_runner else ""),
            flush=True,
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: _reload(app))
    if lifeline_fd is not None:
        _hold_lifeline(loop, lifeline_fd, stop, index)
    await stop.wait()
    log.info("worker %d stopping: finishing in-flight requests", index)
    lifecycle.ready = False
    if admin_runner is not None:
        await admin_runner.cleanup()
    await runner.cleanup()  # stops accepting, waits up to shutdown_timeout for handlers


async def _start_admin(
    app: web.Application, config: Config, admin_socket: str | None = None
) -> web.AppRunner:
    from proxy.admin import build_admin_app

    runner = web.AppRunner(build_admin_app(app), access_log=None, handle_signals=False)
    await runner.setup()
    if admin_socket is not None:
        await web.UnixSite(runner, admin_socket).start()
    else:
        await web.TCPSite(runner, config.admin.listen.host, config.admin.listen.port).start()
    return runner


def _reload(app: web.Application) -> None:
    result = app[RELOADER].from_file()
    if result.errors:
        log.error("reload refused, old config keeps serving:\n%s", "\n".join(result.errors))
    else:
        log.info("reloaded %s", app[LIVE].runtime.config.path)
        if HEALTH in app:
            app[HEALTH].start()  # health checks for upstreams the new config adds


def _ssl(config: Config) -> ssl.SSLContext | None:
    tls = config.server.tls
    if tls is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tls.cert_file, tls.key_file)
    return ctx
