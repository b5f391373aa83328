"""What the fake vendor answers when told to: a `Reply`, and `Seen`, a request as it arrived.

Owns: turning a reply into what goes on the wire, faults included (a delay, a hold until an event
is set, a reset connection, bytes that are not HTTP). Must not: decide which reply a request
gets (`state.Vendor` does) or know any endpoint.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any, Protocol

from aiohttp import web


class WallClock(Protocol):
    def now(self) -> float: ...


@dataclass
class Reply:
    status: int = 200
    body: bytes | str | Any = b""  # bytes and str as they are; anything else as JSON
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # real seconds to wait before answering (for timeout tests only)
    reset: bool = False  # drop the connection without answering
    garbage: bool = False  # write bytes that are not HTTP
    hold: asyncio.Event | None = None  # answer only once the test sets it (a slow vendor, no sleep)

    def encoded(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


@dataclass
class Seen:
    method: str
    path: str  # raw path with query
    headers: dict[str, str]
    body: bytes


async def seen(request: web.Request) -> Seen:
    return Seen(request.method, request.raw_path, dict(request.headers), await request.read())


async def answer(request: web.Request, reply: Reply, clock: WallClock | None = None) -> web.StreamResponse:
    """Send `reply`. `clock`: when given, it stamps the Date header (a vendor's clock follows
    real time, the tests' follows their fake clock); otherwise aiohttp stamps real time."""
    if reply.delay:
        await asyncio.sleep(reply.delay)
    if reply.hold is not None:
        await reply.hold.wait()
    if reply.reset or reply.garbage:
        transport = request.transport
        if transport is not None:
            if reply.garbage:
                transport.write(b"this is not http\r\n\r\n")
            transport.close()
        raise asyncio.CancelledError  # aiohttp writes nothing for a cancelled handler
    headers = dict(reply.headers)
    if clock is not None and "Date" not in headers:
        headers["Date"] = formatdate(clock.now(), usegmt=True)
    return web.Response(status=reply.status, body=reply.encoded(), headers=headers)
