"""Raw HTTP/1.1 over sockets for the hardening suites: no client library normalises anything.

- `RawClient`: send bytes byte for byte, read responses (Content-Length, chunked or until close),
  and wait for the server to close, each wait bounded.
- `serve_guarded`: an app served the way `proxy.serve` serves it, through `PublicSite`, on a
  free loopback port.
- `RawOrigin`: a tiny asyncio TCP server that answers each request with scripted raw bytes
  (broken status lines, injected headers, resets, trickles) and records what reached it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import web

from proxy.core.limits import ConnLimits
from proxy.publicport import Listener, PublicSite
from tests.parts import Parts

HOST = "127.0.0.1"


@dataclass
class RawResponse:
    version: str
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        low = name.lower()
        return next((v for k, v in self.headers if k.lower() == low), None)

    def names(self) -> set[str]:
        return {k.lower() for k, _ in self.headers}


class ServerClosed(Exception):
    """The server closed the connection before a complete response."""


async def read_response(
    reader: asyncio.StreamReader, timeout: float = 5.0, method: str = "GET"
) -> RawResponse:
    """One response; interim 1xx responses are returned like any other."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    except asyncio.IncompleteReadError as exc:
        raise ServerClosed(f"closed after {len(exc.partial)} bytes: {exc.partial[:80]!r}") from exc
    lines = head[:-4].decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code, _, reason = rest.partition(" ")
    headers = [(k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in lines[1:])]
    response = RawResponse(version, int(code), reason, headers, b"")
    if response.status < 200 or response.status in (204, 304) or method == "HEAD":
        return response
    length = response.header("content-length")
    if (response.header("transfer-encoding") or "").lower().endswith("chunked"):
        response.body = await asyncio.wait_for(_chunked(reader), timeout)
    elif length is not None:
        response.body = await asyncio.wait_for(reader.readexactly(int(length)), timeout)
    else:
        response.body = await asyncio.wait_for(reader.read(), timeout)
    return response


async def _chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass
            return bytes(body)
        body += await reader.readexactly(size)
        await reader.readexactly(2)


class RawClient:
    """One TCP connection; `local` binds the client side (any 127/8 address works on Linux)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int, host: str = HOST, local: str | None = None) -> RawClient:
        reader, writer = await asyncio.open_connection(
            host, port, local_addr=(local, 0) if local else None, limit=1 << 22
        )
        return cls(reader, writer)

    async def send(self, data: bytes | str) -> None:
        self.writer.write(data.encode("latin-1") if isinstance(data, str) else data)
        await self.writer.drain()

    async def response(self, timeout: float = 5.0, method: str = "GET") -> RawResponse:
        return await read_response(self.reader, timeout, method)

    async def closed(self, timeout: float = 5.0) -> bool:
        """True once the server has closed (EOF or reset) within `timeout`; False if still open.
        Bytes the server sends meanwhile are read and dropped."""
        try:
            async with asyncio.timeout(timeout):
                while await self.reader.read(65536):
                    pass
        except TimeoutError:
            return False
        except ConnectionError:
            return True
        return True

    async def rest(self, timeout: float = 5.0) -> bytes:
        """Everything the server sends until it closes (bounded)."""
        data = bytearray()
        with contextlib.suppress(ConnectionError, TimeoutError):
            async with asyncio.timeout(timeout):
                while chunk := await self.reader.read(65536):
                    data += chunk
        return bytes(data)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


async def exchange(port: int, data: bytes | str, timeout: float = 5.0) -> RawResponse:
    """Send `data` on a new connection and read one response."""
    client = await RawClient.connect(port)
    try:
        await client.send(data)
        return await client.response(timeout)
    finally:
        await client.close()


def request(
    method: str,
    target: str,
    *headers: str,
    body: bytes | str = b"",
    host: str = "proxy.test",
    version: str = "HTTP/1.1",
    close: bool = True,
) -> bytes:
    lines = [f"{method} {target} {version}", f"Host: {host}", *headers]
    if close:
        lines.append("Connection: close")
    raw_body = body.encode("latin-1") if isinstance(body, str) else body
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + raw_body


# -- the proxy served as `proxy.serve` serves it -------------------------------------------------


@dataclass
class Served:
    runner: web.AppRunner
    site: PublicSite
    port: int

    @property
    def guard(self) -> Listener:
        assert self.site.guard is not None
        return self.site.guard


@dataclass
class Live:
    """A proxy served through `PublicSite`, with its state, and raw-request helpers."""

    served: Served
    state: Parts

    @property
    def port(self) -> int:
        return self.served.port

    async def connect(self, local: str | None = None) -> RawClient:
        return await RawClient.connect(self.port, local=local)

    async def send(self, data: bytes | str, timeout: float = 5.0) -> RawResponse:
        client = await self.connect()
        try:
            await client.send(data)
            return await client.response(timeout)
        finally:
            await client.close()

    async def get(self, target: str, *headers: str, timeout: float = 5.0) -> RawResponse:
        return await self.send(request("GET", target, *headers), timeout)


@contextlib.asynccontextmanager
async def serve_guarded(app: web.Application, limits: ConnLimits | None = None) -> AsyncIterator[Served]:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0, handle_signals=False)
    await runner.setup()
    site = PublicSite(runner, HOST, 0, limits=limits)
    await site.start()
    try:
        yield Served(runner, site, site.bound_port)
    finally:
        await runner.cleanup()


# -- an origin that writes whatever bytes it is told --------------------------------------------


@dataclass(frozen=True)
class Pause:
    seconds: float  # real time: the origin is slow (the proxy's timeouts are what is tested)


@dataclass(frozen=True)
class Trickle:
    data: bytes
    every: float  # one byte per `every` seconds


RESET = "reset"  # abort the connection (RST)
CLOSE = "close"  # close it (FIN)
Step = bytes | Pause | Trickle | str


@dataclass
class RawSeen:
    head: bytes
    body: bytes

    @property
    def path(self) -> str:
        return self.head.split(b" ", 2)[1].decode("latin-1")


def raw_reply(
    status_line: str = "HTTP/1.1 200 OK", *headers: str, body: bytes = b"", length: bool = True
) -> bytes:
    lines = [status_line, *headers]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass
class RawOrigin:
    default: list[Step] = field(default_factory=list)
    scripts: dict[str, deque[list[Step]]] = field(default_factory=dict)
    seen: list[RawSeen] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def always(self, *steps: Step) -> None:
        self.default = list(steps)
        self.scripts.clear()

    def then(self, path: str, *steps: Step) -> None:
        self.scripts.setdefault(path, deque()).append(list(steps))

    def count(self, path: str | None = None) -> int:
        return len(self.seen) if path is None else sum(1 for s in self.seen if s.path == path)

    async def start(self) -> RawOrigin:
        self._server = await asyncio.start_server(self._serve, HOST, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length) if length else b""
                seen = RawSeen(head, body)
                self.seen.append(seen)
                queue = self.scripts.get(seen.path.split("?")[0])
                steps = queue.popleft() if queue else self.default
                if not await self._play(steps, writer):
                    return
        except ConnectionError:
            return
        finally:
            writer.close()

    async def _play(self, steps: list[Step], writer: asyncio.StreamWriter) -> bool:
        """Write the steps; False when the connection is finished."""
        for step in steps:
            if isinstance(step, bytes):
                writer.write(step)
                await writer.drain()
            elif isinstance(step, Pause):
                await asyncio.sleep(step.seconds)
            elif isinstance(step, Trickle):
                for byte in step.data:
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(step.every)
            elif step == RESET:
                writer.transport.abort()
                return False
            elif step == CLOSE:
                await writer.drain()
                return False
        return True
