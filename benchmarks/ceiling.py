"""The ceiling: plain aiohttp returning the same fixed bytes as the origin, and nothing else.

It is what Python and aiohttp can do at all on this machine, so the proxy's hit path is measured
against it with the same process count (`--workers N` shares the port with SO_REUSEPORT, like the
proxy's `server.workers`). It owns no state and must not bind anything but 127.0.0.1.
Run: `python -m benchmarks.ceiling --port P [--size 1024] [--workers 1]`.
"""

from __future__ import annotations

import argparse
import multiprocessing
import signal
import sys
from types import FrameType

from aiohttp import web

from benchmarks.origin import install_uvloop, make_body


def build_app(size: int, max_age: int) -> web.Application:
    body = make_body("1", size)
    headers = {"Cache-Control": f"max-age={max_age}"}

    async def handle(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, content_type="application/json", headers=headers)

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    return app


def serve(port: int, size: int, max_age: int, reuse_port: bool, uvloop: bool) -> None:
    if uvloop:
        install_uvloop()
    web.run_app(
        build_app(size, max_age),
        host="127.0.0.1",
        port=port,
        access_log=None,
        print=None,
        reuse_port=reuse_port,
        backlog=4096,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ceiling", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--max-age", type=int, default=300)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--no-uvloop", action="store_true")
    args = parser.parse_args(argv)
    if args.workers <= 1:
        serve(args.port, args.size, args.max_age, False, not args.no_uvloop)
        return
    ctx = multiprocessing.get_context("fork")
    workers = [
        ctx.Process(target=serve, args=(args.port, args.size, args.max_age, True, not args.no_uvloop))
        for _ in range(args.workers)
    ]
    for proc in workers:
        proc.start()

    def stop(signum: int, frame: FrameType | None) -> None:
        for proc in workers:
            proc.terminate()
        for proc in workers:
            proc.join(5)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for proc in workers:
        proc.join()


if __name__ == "__main__":
    main()
