"""A vendor written on raw bytes, for the upstream client's fault tests.

Every request it reads (head, and a body by Content-Length) is recorded with the index of the
connection it came on, then answered by `reply(seen)`: a list of steps (bytes to write, CLOSE,
RESET, HANG, or an asyncio.Event to wait for). The test can also `inject` bytes on a connection
at any time (a stray response on an idle keep-alive connection) and wait until the proxy closed
a connection (`closed_by_peer`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field

HOST = "127.0.0.1"
CLOSE = "close"  # FIN after the steps before it
RESET = "reset"  # RST
HANG = "hang"  # never answer (until the peer goes)
Step = bytes | str | asyncio.Event  # an Event: wait until the test sets it


@dataclass
class Seen:
    conn: int
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


def response(
    status: str = "200 OK", *headers: str, body: bytes = b"", length: bool = True, version: str = "HTTP/1.1"
) -> bytes:
    lines = [f"{version} {status}", *headers]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def own_body(seen: Seen, n: int) -> bytes:
    """A body that names the request it answers: a shifted answer cannot pass for the right one."""
    return json.dumps({"path": seen.path, "n": n, "price": 1.5}).encode()


def ok_bytes(seen: Seen, n: int) -> bytes:
    return response(
        "200 OK", "Content-Type: application/json", "Cache-Control: max-age=60", body=own_body(seen, n)
    )


def ok(seen: Seen, n: int) -> list[Step]:
    return [ok_bytes(seen, n)]


Reply = Callable[[Seen, int], list[Step]]


@dataclass
class Vendor:
    reply: Reply = ok
    seen: list[Seen] = field(default_factory=list)
    port: int = 0
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    ended: list[asyncio.Event] = field(default_factory=list)  # the peer closed connection i
    _server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def connections(self) -> int:
        return len(self.writers)

    def count(self, method: str | None = None) -> int:
        return sum(1 for s in self.seen if method is None or s.method == method)

    async def start(self) -> Vendor:
        self._server = await asyncio.start_server(self._serve, HOST, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def close(self) -> None:
        for writer in self.writers:
            writer.transport.abort()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await self._server.wait_closed()

    async def inject(self, conn: int, data: bytes) -> None:
        """Bytes nobody asked for, written on connection `conn` now."""
        self.writers[conn].write(data)
        await self.writers[conn].drain()

    async def closed_by_peer(self, conn: int, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            await self.ended[conn].wait()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = len(self.writers)
        self.writers.append(writer)
        self.ended.append(asyncio.Event())
        try:
            while True:
                seen = await self._read(reader, index)
                if seen is None:
                    return
                self.seen.append(seen)
                if not await self._play(self.reply(seen, len(self.seen)), reader, writer):
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            return  # cancelled: the test is over and the loop is closing
        finally:
            self.ended[index].set()
            writer.close()

    async def _read(self, reader: asyncio.StreamReader, index: int) -> Seen | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        lines = head[:-4].decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = [(k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in lines[1:])]
        length = int(next((v for k, v in headers if k.lower() == "content-length"), "0"))
        body = await reader.readexactly(length) if length else b""
        return Seen(index, method, path, headers, body)

    async def _play(
        self, steps: list[Step], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        for step in steps:
            if isinstance(step, bytes):
                writer.write(step)
                await writer.drain()
            elif isinstance(step, asyncio.Event):
                await step.wait()
            elif step == RESET:
                writer.transport.abort()
                return False
            elif step == CLOSE:
                return False
            elif step == HANG:
                await reader.read()  # until the peer closes
                return False
        return True
