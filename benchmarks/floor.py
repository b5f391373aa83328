"""The floor: a bare asyncio Protocol on uvloop and httptools answering pre-serialised bytes.

What any Python HTTP server can cost per request on this machine, at least: no routing, no
headers built per request, no objects but the parser's. The proxy's fresh hit (the same 1 KB
body plus its per-request headers) is read against it and against nginx.
It owns no state and must not bind anything but 127.0.0.1.
Run: `python -m benchmarks.floor --port P [--size 1024]`.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import cast

import httptools

from benchmarks.origin import install_uvloop, make_body


def answer_bytes(size: int, max_age: int) -> bytes:
    body = make_body("1", size)
    head = (
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        f"Cache-Control: max-age={max_age}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


class Floor(asyncio.Protocol):
    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's do not subclass it

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    def on_message_complete(self) -> None:
        if self.transport is not None:
            self.transport.write(self.answer)


async def serve(port: int, answer: bytes) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Floor(answer), "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.floor", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--max-age", type=int, default=300)
    args = parser.parse_args(argv)
    install_uvloop()
    asyncio.run(serve(args.port, answer_bytes(args.size, args.max_age)))


if __name__ == "__main__":
    main()
