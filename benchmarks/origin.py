"""The local origin the suite measures against: the fake vendor's item API, in its own process.

`python -m benchmarks.origin --port P [--size 1024] [--delay 0] [--max-age 300]` serves
`proxy.vendor.build_vendor_app` with the item API (`proxy/vendor/items.py`: /items, /stale,
/short, /slow, POST /orders, fixed-size JSON) and the vendor's control calls:
GET /__vendor/mode (counters: "requests", "distinct", "failed"), POST /__vendor/reset, and
POST /__vendor/mode {"mode": "down"|"refuse"|"ok"|...} to simulate an outage.
Owns only the command line and the loop; it must not bind anything but 127.0.0.1.
"""

from __future__ import annotations

import argparse

from aiohttp import web

from proxy.vendor import Items, Vendor, build_vendor_app, make_body

__all__ = ["install_uvloop", "main", "make_body"]


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
    items = Items(
        size=args.size,
        delay=args.delay,
        max_age=args.max_age,
        short_max_age=args.short_max_age,
        slow_delay=args.slow_delay,
    )
    app = build_vendor_app(Vendor(), items=items)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None, backlog=4096)


if __name__ == "__main__":
    main()
