"""The miss floor: the least a Python caching proxy can do per miss, on uvloop and httptools.

Each client connection gets its own keep-alive connection to the origin. A GET for
`/api/items/{id}` is forwarded as `/items/{id}` (request line and Host only), the answer is
parsed with httptools, its body kept in a dict under the path, and written back with a status
line, Content-Type and Content-Length. No routing, no key rules, no freshness, no guards, no
headers but those, no task per request (callbacks only): what the proxy's miss (and nginx's) is
read against, as `floor` is for hits. Must not bind anything but 127.0.0.1.
Run: `python -m benchmarks.floor_miss --port P --origin-port O`.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import cast

import httptools

from benchmarks.origin import install_uvloop

PREFIX = b"/api"


class Upstream(asyncio.Protocol):
    """One keep-alive connection to the origin, one exchange at a time."""

    def __init__(self, client: FloorMiss) -> None:
        self.client = client
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.body: list[bytes] = []
        self.content_type = b"application/json"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"content-type":
            self.content_type = value

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        body = b"".join(self.body)
        self.body = []
        self.client.answered(self.parser.get_status_code(), self.content_type, body)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.upstream = None


class FloorMiss(asyncio.Protocol):
    def __init__(self, origin_port: int, store: dict[bytes, bytes]) -> None:
        self.origin_port = origin_port
        self.host = b"Host: 127.0.0.1:%d\r\n\r\n" % origin_port
        self.store = store
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.upstream: Upstream | None = None
        self.url = b""
        self.path = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_message_complete(self) -> None:
        self.path = self.url[len(PREFIX) :] if self.url.startswith(PREFIX) else self.url
        request = b"GET " + self.path + b" HTTP/1.1\r\n" + self.host
        upstream = self.upstream
        if upstream is not None and upstream.transport is not None:
            upstream.transport.write(request)
            return
        asyncio.get_running_loop().create_task(self._connect(request))  # once per connection

    async def _connect(self, request: bytes) -> None:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(lambda: Upstream(self), "127.0.0.1", self.origin_port)
        self.upstream = protocol
        assert protocol.transport is not None
        protocol.transport.write(request)

    def answered(self, status: int, content_type: bytes, body: bytes) -> None:
        self.store[self.path] = body
        if self.transport is not None:
            head = b"HTTP/1.1 %d OK\r\nContent-Type: %b\r\nContent-Length: %d\r\n\r\n" % (
                status,
                content_type,
                len(body),
            )
            self.transport.write(head + body)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.close()


async def serve(port: int, origin_port: int) -> None:
    loop = asyncio.get_running_loop()
    store: dict[bytes, bytes] = {}
    server = await loop.create_server(lambda: FloorMiss(origin_port, store), "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.floor_miss", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--origin-port", type=int, required=True)
    args = parser.parse_args(argv)
    install_uvloop()
    asyncio.run(serve(args.port, args.origin_port))


if __name__ == "__main__":
    main()
