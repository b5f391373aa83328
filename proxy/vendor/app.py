"""The fake vendor's one app factory, and its control endpoints.

`build_vendor_app(vendor, items=..., shop=...)` serves, in this order of routes:
- the control calls, never counted, never under a mode:
    GET  /__vendor/mode    {"mode", "modes", "requests", "distinct", "failed", "bookings"}
    POST /__vendor/mode    {"mode": "<one of MODES>"} switches the mode (400 otherwise)
    POST /__vendor/reset   forgets the counters (the mode and the script stay)
- the item API (`items.py`) when `items` is given: what the benchmarks use;
- the shop API (`shop.py`) when `shop` is true: what the demo uses;
- every other path and method: the vendor's script, else its fallback (404 "not scripted").
Every route but the control calls goes through `Vendor.serve` (counted, the mode applied, a reply
scripted for the path first), so a test can script a fault on a built-in path too.
Must not: bind anything; the caller serves the app (on loopback).
"""

from __future__ import annotations

import json

from aiohttp import web

from proxy.vendor.items import Items, item_endpoints
from proxy.vendor.shop import shop_endpoints
from proxy.vendor.state import MODES, Vendor

VENDOR = web.AppKey("vendor", Vendor)


def build_vendor_app(
    vendor: Vendor | None = None, *, items: Items | None = None, shop: bool = False
) -> web.Application:
    vendor = vendor if vendor is not None else Vendor()
    app = web.Application()
    app[VENDOR] = vendor
    app.router.add_get("/__vendor/mode", _get_mode)
    app.router.add_post("/__vendor/mode", _set_mode)
    app.router.add_post("/__vendor/reset", _reset)
    routes = [*(item_endpoints(items) if items is not None else ())]
    routes += shop_endpoints(vendor) if shop else ()
    for method, path, endpoint in routes:
        app.router.add_route(method, path, vendor.serving(endpoint))
    app.router.add_route("*", "/{tail:.*}", vendor.handle)
    return app


async def _get_mode(request: web.Request) -> web.StreamResponse:
    return web.json_response({**request.app[VENDOR].stats(), "modes": list(MODES)})


async def _set_mode(request: web.Request) -> web.StreamResponse:
    vendor = request.app[VENDOR]
    try:
        doc = json.loads(await request.text())
    except ValueError:
        doc = None
    mode = doc.get("mode") if isinstance(doc, dict) else None
    if not isinstance(mode, str) or mode not in MODES:
        return web.json_response(
            {"error": "bad_mode", "message": f'send {{"mode": "..."}} with one of: {", ".join(MODES)}'},
            status=400,
        )
    vendor.set_mode(mode)
    return web.json_response({"mode": vendor.mode})


async def _reset(request: web.Request) -> web.StreamResponse:
    request.app[VENDOR].reset()
    return web.json_response({"ok": True})
