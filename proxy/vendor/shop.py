"""The fake vendor's shop API: what `resilient-proxy demo` puts the proxy in front of.

Paths:
- GET /v2/prices/{sku}       {"sku", "price", "currency"}, max-age=PRICE_MAX_AGE, ETag (304)
- GET /v2/catalogue/{name}   {"name", "items": [CATALOGUE_SIZE items]}, max-age=0, ETag (304)
- POST /v2/bookings          201 with a booking; the same Idempotency-Key replays the first
- GET /health                {"status": "ok", "mode": ...}
Deterministic: the same SKU always has the same price. The data modes (`zero-price`,
`empty-catalogue`) are read here; the others apply to every path (`state.Vendor.serve`).
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Iterator
from typing import Any

from aiohttp import web

from proxy.vendor.state import HEALTH_PATH, Endpoint, Vendor

PRICE_MAX_AGE = 10  # seconds; short, so the demo shows a copy going stale within a minute
CATALOGUE_SIZE = 50


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


def shop_endpoints(vendor: Vendor) -> Iterator[tuple[str, str, Endpoint]]:
    """(method, path, endpoint) for each path of the shop API, over `vendor`'s state."""

    async def prices(request: web.Request) -> web.StreamResponse:
        sku = request.match_info["sku"]
        price = 0 if vendor.mode == "zero-price" else price_of(sku)
        return _json(request, {"sku": sku, "price": price, "currency": "GBP"}, f"max-age={PRICE_MAX_AGE}")

    async def catalogue(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        items = [] if vendor.mode == "empty-catalogue" else catalogue_items(name)
        # max-age=0 with an ETag: "check with us every time"; a 304 is cheap, and a broken
        # catalogue is noticed on the very next request.
        return _json(request, {"name": name, "items": items}, "max-age=0")

    async def bookings(request: web.Request) -> web.StreamResponse:
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
        return web.json_response({"status": "ok", "mode": vendor.mode})

    yield "GET", "/v2/prices/{sku}", prices
    yield "GET", "/v2/catalogue/{name}", catalogue
    yield "POST", "/v2/bookings", bookings
    yield "GET", HEALTH_PATH, health
