"""The local origin the suite measures against: an aiohttp app serving fixed-size JSON.

Owns the origin's behaviour and its request counter. Run it in its own process:
`python -m benchmarks.origin --port P [--size 1024] [--delay 0] [--max-age 300]`.

Paths (all answer JSON of `--size` bytes; every non-`/__` request is counted):
- GET /items/{id}   Cache-Control: max-age=--max-age           (hits, misses, direct)
- GET /stale/{id}   Cache-Control: max-age=0                    (stale-while-revalidate)
- GET /short/{id}   Cache-Control: max-age=--short-max-age      (outage: copies go stale)
- GET /slow/{id}    like /items, after --slow-delay seconds     (stampede)
- POST /orders      201, echoes the body length                 (writes)
- GET /__stats -> {"requests", "distinct", "failed"}; POST /__reset;
  POST /__fail with body `503`, `refuse` or `off` (`on` means 503) to simulate an outage.
It must not bind anything but 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import dataclass, field

from aiohttp import web

FAIL_MODES = ("off", "503", "refuse")


@dataclass
class OriginState:
    """Counters and the failure switch of one origin process."""

    requests: int = 0
    failed: int = 0
    paths: set[str] = field(default_factory=set)
    fail_mode: str = "off"


def make_body(item_id: str, size: int) -> bytes:
    """A JSON object of exactly `size` bytes (or the minimum that holds the id)."""
    head = {
        "id": item_id,
        "name": f"item {item_id}",
        "price": 12.5,
        "currency": "EUR",
        "items": [1, 2, 3],
        "pad": "",
    }
    base = json.dumps(head, separators=(",", ":")).encode()
    pad = max(0, size - len(base))
    head["pad"] = "x" * pad
    return json.dumps(head, separators=(",", ":")).encode()


STATE_KEY = web.AppKey("state", OriginState)


def build_app(
    *, size: int, delay: float, max_age: int, short_max_age: int, slow_delay: float
) -> web.Application:
    app = web.Application()
    state = OriginState()
    app[STATE_KEY] = state

    def counted(request: web.Request) -> web.StreamResponse | None:
        """Count the request; answer it as the failure switch says (None = answer normally)."""
        state.requests += 1
        state.paths.add(request.path_qs)
        if state.fail_mode == "off":
            return None
        state.failed += 1
        if state.fail_mode == "refuse" and request.transport is not None:
            # Drop the connection without a response: what a dead vendor looks like.
            request.transport.close()
        return web.json_response({"error": "origin down"}, status=503)

    async def item(request: web.Request, cache_control: str, wait: float) -> web.StreamResponse:
        failure = counted(request)
        if failure is not None:
            return failure
        if wait > 0:
            await asyncio.sleep(wait)
        return web.Response(
            body=make_body(request.match_info["id"], size),
            content_type="application/json",
            headers={"Cache-Control": cache_control},
        )

    async def items(request: web.Request) -> web.StreamResponse:
        return await item(request, f"max-age={max_age}", delay)

    async def stale(request: web.Request) -> web.StreamResponse:
        return await item(request, "max-age=0", delay)

    async def short(request: web.Request) -> web.StreamResponse:
        return await item(request, f"max-age={short_max_age}", delay)

    async def slow(request: web.Request) -> web.StreamResponse:
        return await item(request, f"max-age={max_age}", delay + slow_delay)

    async def orders(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        failure = counted(request)
        if failure is not None:
            return failure
        if delay > 0:
            await asyncio.sleep(delay)
        return web.json_response({"ok": True, "received": len(body)}, status=201)

    async def stats(request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {"requests": state.requests, "distinct": len(state.paths), "failed": state.failed}
        )

    async def reset(request: web.Request) -> web.StreamResponse:
        state.requests = 0
        state.failed = 0
        state.paths.clear()
        return web.json_response({"ok": True})

    async def fail(request: web.Request) -> web.StreamResponse:
        mode = (await request.text()).strip().strip('"').lower() or "503"
        mode = {"on": "503", "true": "503", "false": "off"}.get(mode, mode)
        if mode not in FAIL_MODES:
            return web.json_response({"error": f"mode must be one of {FAIL_MODES}"}, status=400)
        state.fail_mode = mode
        return web.json_response({"fail": mode})

    app.router.add_get("/items/{id}", items)
    app.router.add_get("/stale/{id}", stale)
    app.router.add_get("/short/{id}", short)
    app.router.add_get("/slow/{id}", slow)
    app.router.add_post("/orders", orders)
    app.router.add_get("/__stats", stats)
    app.router.add_post("/__reset", reset)
    app.router.add_post("/__fail", fail)
    return app


def install_uvloop() -> str:
    """Use uvloop when it is installed, as the proxy does; return the loop's name."""
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    uvloop.install()
    return "uvloop"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.origin",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--size", type=int, default=1024, help="body bytes (default 1024)")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before answering")
    parser.add_argument("--max-age", type=int, default=300)
    parser.add_argument("--short-max-age", type=int, default=1)
    parser.add_argument("--slow-delay", type=float, default=0.2)
    parser.add_argument("--no-uvloop", action="store_true")
    args = parser.parse_args(argv)
    if not args.no_uvloop:
        install_uvloop()
    app = build_app(
        size=args.size,
        delay=args.delay,
        max_age=args.max_age,
        short_max_age=args.short_max_age,
        slow_delay=args.slow_delay,
    )
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None, backlog=4096)


if __name__ == "__main__":
    main()
