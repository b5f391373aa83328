"""The fake vendor's item API: fixed-size JSON, what the benchmarks measure against.

Paths (every one answers JSON of exactly `Items.size` bytes, or the least that holds the id):
- GET /items/{id}   Cache-Control: max-age=`max_age`          (hits, misses, direct)
- GET /stale/{id}   Cache-Control: max-age=0                  (stale-while-revalidate)
- GET /short/{id}   Cache-Control: max-age=`short_max_age`    (outage: copies go stale)
- GET /slow/{id}    like /items, after `slow_delay` seconds   (stampede)
- POST /orders      201, the length of the body it received  (writes)
Every answer waits `delay` seconds first when it is not 0.

Must not: cost more than it must: a benchmark's origin must never be what limits a measurement,
so a body is built from a template (two small escapes and a join), not a dict dumped twice.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass

from aiohttp import web

from proxy.vendor.state import Endpoint

_HEAD = b'{"id":'
_NAME = b',"name":'
_TAIL = b',"price":12.5,"currency":"EUR","items":[1,2,3],"pad":"'
_END = b'"}'


@dataclass(frozen=True, slots=True)
class Items:
    size: int = 1024
    delay: float = 0.0
    max_age: int = 300
    short_max_age: int = 1
    slow_delay: float = 0.2


def make_body(item_id: str, size: int) -> bytes:
    """A JSON object of exactly `size` bytes (or the minimum that holds the id):
    {"id", "name", "price", "currency", "items", "pad"}, compact, padded with "x"."""
    head = b"".join((_HEAD, _quoted(item_id), _NAME, _quoted(f"item {item_id}"), _TAIL))
    return head + b"x" * max(0, size - len(head) - len(_END)) + _END


def _quoted(text: str) -> bytes:
    return json.dumps(text).encode()


def item_endpoints(items: Items) -> Iterator[tuple[str, str, Endpoint]]:
    """(method, path, endpoint) for each path of the item API, shaped by `items`."""

    def item(cache_control: str, wait: float) -> Endpoint:
        headers = {"Cache-Control": cache_control, "Content-Type": "application/json"}

        async def endpoint(request: web.Request) -> web.StreamResponse:
            if wait > 0:
                await asyncio.sleep(wait)
            return web.Response(body=make_body(request.match_info["id"], items.size), headers=headers)

        return endpoint

    async def orders(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if items.delay > 0:
            await asyncio.sleep(items.delay)
        return web.json_response({"ok": True, "received": len(body)}, status=201)

    yield "GET", "/items/{id}", item(f"max-age={items.max_age}", items.delay)
    yield "GET", "/stale/{id}", item("max-age=0", items.delay)
    yield "GET", "/short/{id}", item(f"max-age={items.short_max_age}", items.delay)
    yield "GET", "/slow/{id}", item(f"max-age={items.max_age}", items.delay + items.slow_delay)
    yield "POST", "/orders", orders
