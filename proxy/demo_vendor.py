"""A simulated vendor API for `resilient-proxy demo`, with a switch that breaks it.

Owns: the vendor's endpoints (prices, a catalogue, bookings, a health check) and its failure
modes, chosen at runtime with `POST /__vendor/mode {"mode": ...}`:

  ok               everything works
  down             every endpoint answers 503 (the health check too)
  slow             every endpoint waits SLOW_SECONDS before answering
  zero-price       prices come back as 0: valid JSON, wrong data ("it works today")
  empty-catalogue  catalogues come back with no items
  html             the API answers 200 with an HTML error page (a CDN or login wall in the way)

Must not: be imported by the proxy's request path; it is a stand-in for somebody else's server,
used only by `proxy.demo` and the tests. Deterministic: the same SKU always has the same price.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

MODES = ("ok", "down", "slow", "zero-price", "empty-catalogue", "html")
SLOW_SECONDS = 10.0
PRICE_MAX_AGE = 10  # seconds; short, so the demo shows a copy going stale within a minute
CATALOGUE_SIZE = 50
_HTML_PAGE = (
    "<!doctype html><html><head><title>Service temporarily unavailable</title></head>"
    "<body><h1>We'll be right back</h1><p>Our API is under maintenance.</p></body></html>"
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Vendor:
    """The vendor's state: its current mode, the bookings it holds, and what it has served."""

    def __init__(
        self, *, slow_seconds: float = SLOW_SECONDS, on_mode: Callable[[str, str], None] | None = None
    ) -> None:
        self.mode = "ok"
        self.slow_seconds = slow_seconds
        self.on_mode = on_mode  # called with (old, new) on every switch
        self.bookings: dict[str, dict[str, Any]] = {}  # by Idempotency-Key
        self.booked: list[dict[str, Any]] = []
        self.requests = 0  # API requests answered (the switch and /health not counted)

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of: {', '.join(MODES)}")
        old, self.mode = self.mode, mode
        if self.on_mode is not None:
            self.on_mode(old, mode)

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


VENDOR = web.AppKey("vendor", Vendor)


def price_of(sku: str) -> float:
    """A stable, plausible price for any SKU (5.00 to 99.99)."""
    return round(5 + (zlib.crc32(sku.encode()) % 9500) / 100, 2)


def catalogue_items(name: str) -> list[dict[str, Any]]:
    prefix = (name[:3] or "ITM").upper()
    return [
        {"sku": f"{prefix}-{i}", "title": f"{name} item {i}", "price": price_of(f"{prefix}-{i}")}
        for i in range(1, CATALOGUE_SIZE + 1)
    ]


def _json(request: web.Request, doc: Any, cache_control: str) -> web.Response:
    """A JSON answer with a strong ETag, or 304 when the caller already holds it (RFC 9110 13.1.2)."""
    body = json.dumps(doc).encode()
    etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
    headers = {"Cache-Control": cache_control, "ETag": etag}
    wanted = {t.strip() for t in request.headers.get("If-None-Match", "").split(",")}
    if etag in wanted or "*" in wanted:
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, headers=headers, content_type="application/json")


async def prices(request: web.Request) -> web.StreamResponse:
    vendor = request.app[VENDOR]
    sku = request.match_info["sku"]
    price = 0 if vendor.mode == "zero-price" else price_of(sku)
    return _json(request, {"sku": sku, "price": price, "currency": "GBP"}, f"max-age={PRICE_MAX_AGE}")


async def catalogue(request: web.Request) -> web.StreamResponse:
    vendor = request.app[VENDOR]
    name = request.match_info["name"]
    items = [] if vendor.mode == "empty-catalogue" else catalogue_items(name)
    # max-age=0 with an ETag: "check with us every time"; a 304 is cheap, and a broken
    # catalogue is noticed on the very next request.
    return _json(request, {"name": name, "items": items}, "max-age=0")


async def bookings(request: web.Request) -> web.StreamResponse:
    vendor = request.app[VENDOR]
    try:
        order = json.loads(await request.text() or "{}")
    except ValueError:
        order = None
    if not isinstance(order, dict):
        return web.json_response({"error": "invalid_json", "message": "send a JSON object"}, status=400)
    booking, replayed = vendor.book(request.headers.get("Idempotency-Key"), order)
    # Idempotent-Replayed: the header Stripe uses to say "you already made this request".
    headers = {"Idempotent-Replayed": "true"} if replayed else {}
    return web.json_response(booking, status=201, headers=headers)


async def health(request: web.Request) -> web.StreamResponse:
    return web.json_response({"status": "ok", "mode": request.app[VENDOR].mode})


async def get_mode(request: web.Request) -> web.StreamResponse:
    vendor = request.app[VENDOR]
    return web.json_response(
        {
            "mode": vendor.mode,
            "modes": list(MODES),
            "requests": vendor.requests,
            "bookings": len(vendor.booked),
        }
    )


async def set_mode(request: web.Request) -> web.StreamResponse:
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


@web.middleware
async def failure_modes(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Apply the current mode to every request except the switch itself."""
    if request.path.startswith("/__vendor/"):
        return await handler(request)
    vendor = request.app[VENDOR]
    api = request.path.startswith("/v2/")
    if api:
        vendor.requests += 1
    if vendor.mode == "down":
        # A bare 503, no Retry-After: stale copies and the breaker are what the demo shows.
        return web.json_response({"error": "service_unavailable"}, status=503)
    if vendor.mode == "slow":
        await asyncio.sleep(vendor.slow_seconds)
    if vendor.mode == "html" and api:
        return web.Response(text=_HTML_PAGE, content_type="text/html")
    return await handler(request)


def build_vendor_app(vendor: Vendor | None = None) -> web.Application:
    app = web.Application(middlewares=[failure_modes])
    app[VENDOR] = vendor or Vendor()
    app.router.add_get("/v2/prices/{sku}", prices)
    app.router.add_get("/v2/catalogue/{name}", catalogue)
    app.router.add_post("/v2/bookings", bookings)
    app.router.add_get("/health", health)
    app.router.add_get("/__vendor/mode", get_mode)
    app.router.add_post("/__vendor/mode", set_mode)
    return app
