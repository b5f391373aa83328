"""A hostile vendor on raw sockets and a proxy in front of it, for the vendor attack suites.

`Hostile` reads each request head (and, unless told not to, its body by Content-Length),
records it, and answers with scripted steps: bytes, a real reset (`RST`: SO_LINGER 0, so the
kernel sends RST, not the FIN a plain close sends), a clean close (`FIN`), or `SINK`: read and
drop whatever comes, answer nothing, until the peer goes. `Proxy` is `build_app` on the test's
FakeClock behind `PublicSite`, spoken to with raw bytes (`tests.hardening.rawhttp`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import socket
import struct
import termios
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from proxy.app import build_app
from proxy.clock import FakeClock
from proxy.config import parse_config
from tests.hardening.rawhttp import Live, raw_reply, serve_guarded
from tests.parts import Parts
from tests.waiting import until

HOST = "127.0.0.1"
RST = "rst"
FIN = "fin"
SINK = "sink"
Step = bytes | str
GOOD = b'{"sku": "A1", "price": 9.5, "currency": "GBP"}'
FIXED = b'{"sku": "A1", "price": 9.75, "currency": "GBP"}'
CT = "Content-Type: application/json"

ROUTES = """
routes:
  - name: prices
    match: /api/prices/{sku}
    methods: [GET, HEAD]
    upstream: vendor
    rewrite: /prices/{sku}
    cache: {ttl: 30s, stale_while_revalidate: 0s, stale_if_error: 1h}
    guards:
      - {path: $.price, gt: 0}
      - {required: [$.sku, $.price]}
  - name: plain
    match: /api/plain/{sku}
    methods: [GET, HEAD]
    upstream: vendor
    rewrite: /plain/{sku}
    cache: {ttl: 30s, stale_while_revalidate: 0s, stale_if_error: 1h}
  - name: big
    match: /api/big/{sku}
    methods: [GET]
    upstream: vendor
    rewrite: /big/{sku}
    cache: {ttl: 30s}
    max_object_size: 1KB
  - name: writes
    match: /api/w/{sku}
    methods: [POST]
    upstream: vendor
    rewrite: /w/{sku}
    cache: off
    max_body: 32MB
"""


def ok(body: bytes = GOOD, *headers: str, cache_control: str = "max-age=1") -> bytes:
    return raw_reply("HTTP/1.1 200 OK", CT, f"Cache-Control: {cache_control}", *headers, body=body)


@dataclass
class Seen:
    conn: int
    method: str
    path: str


@dataclass
class Hostile:
    default: list[Step] = field(default_factory=list)
    queued: deque[list[Step]] = field(default_factory=deque)
    read_body: bool = True  # False: answer as soon as the head is in, the body unread
    sunk: int = 0  # bytes a SINK step read
    seen: list[Seen] = field(default_factory=list)
    heads: list[bytes] = field(default_factory=list)  # each request head as it came
    ended: list[asyncio.Event] = field(default_factory=list)  # the peer closed connection i
    port: int = 0
    _server: asyncio.Server | None = None
    _writers: list[asyncio.StreamWriter] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def connections(self) -> int:
        return len(self.ended)

    def always(self, *steps: Step) -> None:
        self.default = list(steps)
        self.queued.clear()

    def then(self, *steps: Step) -> None:
        """The answer to the next request not yet answered (before `always`'s)."""
        self.queued.append(list(steps))

    def count(self, method: str | None = None) -> int:
        return sum(1 for s in self.seen if method is None or s.method == method)

    async def closed_by_peer(self, conn: int, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            await self.ended[conn].wait()

    async def start(self) -> Hostile:
        self._server = await asyncio.start_server(self._serve, HOST, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def close(self) -> None:
        for writer in self._writers:
            writer.transport.abort()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = len(self.ended)
        self.ended.append(asyncio.Event())
        self._writers.append(writer)
        try:
            while await self._one(index, reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            return
        finally:
            self.ended[index].set()
            writer.close()

    async def _one(self, index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return False
        lines = head[:-4].decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        length = next(
            (int(v) for k, _, v in (x.partition(":") for x in lines[1:]) if k.lower() == "content-length"), 0
        )
        if length and self.read_body:
            await reader.readexactly(length)
        self.seen.append(Seen(index, method, path))
        self.heads.append(head)
        steps = self.queued.popleft() if self.queued else self.default
        for step in steps:
            if isinstance(step, bytes):
                writer.write(step)
                await writer.drain()
            elif step == RST:
                await reset(writer)
                return False
            elif step == FIN:
                return False
            elif step == SINK:
                while chunk := await reader.read(1 << 16):
                    self.sunk += len(chunk)
                return False
        return True


async def reset(writer: asyncio.StreamWriter) -> None:
    """A real RST once what was written has reached the peer (a reset drops unsent bytes)."""
    sock = writer.get_extra_info("socket")

    def unsent() -> int:  # SIOCOUTQ: bytes in the send queue not yet acknowledged
        return int(struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0])

    await until(lambda: unsent() == 0, what="the vendor's bytes acknowledged")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@dataclass
class Proxy(Live):
    """`rawhttp.Live` with what the attack suites read after each attack."""

    def stored(self) -> list[bytes]:
        return [entry.body for _, entry in self.state.store.items()]

    def protocol_errors(self) -> dict[str, int]:
        return dict(self.state.runtime.upstreams["vendor"].transport.protocol_errors)


Start = Callable[..., Awaitable[Proxy]]


def config_text(url: str, retries: int) -> str:
    return (
        "server: {listen: 127.0.0.1:0}\nlog: {access: off}\nupstreams:\n  vendor:\n"
        f"    url: {url}\n    timeout: {{connect: 1s, total: 2s}}\n"
        f"    retries: {{attempts: {retries}, backoff: 1ms, max_backoff: 1s}}\n{ROUTES}"
    )


@contextlib.asynccontextmanager
async def hostile_and_proxy(clock: FakeClock, retries: int = 0) -> AsyncIterator[tuple[Hostile, Proxy]]:
    vendor = await Hostile().start()
    app = build_app(parse_config(config_text(vendor.url, retries), "attacks.yaml", {}), clock=clock)
    try:
        async with serve_guarded(app) as served:
            yield vendor, Proxy(served, Parts(app))
    finally:
        await vendor.close()
