"""In-process cost of one upstream exchange: `Upstream.request` against a local origin.

Owns: a timing harness of the vendor exchange alone (breaker, retry budget, bulkhead, pool,
framing, the request head) and of `relay.forward_headers`, in CPU microseconds of this process
per call, so a change to that path can be measured without the listener, the cache or wrk.
The origin (`benchmarks.origin`) runs in its own process: its CPU is not counted.
Must not: bind anything but 127.0.0.1.
Run: `python -m benchmarks.exchange --origin-port P [--n 20000] [--concurrency 50]`
(without `--origin-port` it starts an origin on a free port itself).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
import timeit

from benchmarks.origin import install_uvloop
from benchmarks.procs import REPO_ROOT, free_port
from proxy.clock import SystemClock
from proxy.core.config.model import UpstreamConfig
from proxy.core.retry import RetryPolicy
from proxy.exchange import Request
from proxy.relay import forward_headers
from proxy.transport import Outbound
from proxy.upstream import Upstream

ORDER = b'{"sku":"A-1","quantity":2,"customer":"bench"}'
BROWSER = [
    (b"Host", b"127.0.0.1:8080"),
    (b"User-Agent", b"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"),
    (b"Accept", b"application/json"),
    (b"Accept-Language", b"en-GB,en;q=0.5"),
    (b"Accept-Encoding", b"gzip, deflate, br"),
    (b"Connection", b"keep-alive"),
    (b"Cookie", b"session=abc123"),
    (b"Content-Type", b"application/json"),
]


async def _exchanges(up: Upstream, n: int, concurrency: int, write: bool) -> float:
    """CPU seconds of this process for `n` exchanges, `concurrency` at a time."""
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            if write:
                out = Outbound("POST", "/orders", [("Content-Type", "application/json")], body=ORDER)
            else:
                out = Outbound("GET", f"/items/{i}", [("Accept-Encoding", "gzip, deflate")])
            fetched = await up.request(out, 1 << 20)
            assert fetched.status in (200, 201), fetched.status

    start = time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.process_time() - start


ANSWERS = {
    b"GET": b"HTTP/1.1 200 OK\r\nCache-Control: max-age=300\r\nContent-Type: application/json\r\n"
    b"Content-Length: 1024\r\nDate: Fri, 04 Dec 2026 09:03:53 GMT\r\nServer: Python/3.11 aiohttp/3.14.5"
    b"\r\n\r\n" + b"x" * 1024,
    b"POST": b"HTTP/1.1 201 Created\r\nContent-Type: application/json; charset=utf-8\r\n"
    b"Content-Length: 27\r\nDate: Fri, 04 Dec 2026 09:03:53 GMT\r\nServer: Python/3.11 aiohttp/3.14.5"
    b'\r\n\r\n{"ok": true, "received": 2}',
}


class Wire(asyncio.Transport):
    """A connection with the origin's answers in memory: a write is answered on the next loop
    turn, so the exchange's own Python (and the loop's scheduling) is all that is measured."""

    def __init__(self, conn: asyncio.Protocol) -> None:
        super().__init__()
        self.conn = conn

    def write(self, data: bytes | bytearray | memoryview) -> None:
        sent = bytes(data)
        asyncio.get_running_loop().call_soon(self.conn.data_received, ANSWERS[sent[: sent.index(b" ")]])

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


def wired(up: Upstream, connections: int) -> None:
    """Give the upstream's pool `connections` in-memory connections to reuse."""
    from proxy.pool import Conn
    from proxy.transport import Transport

    assert isinstance(up.transport, Transport)
    pool = up.transport._open()
    for _ in range(connections):
        conn = Conn(pool)
        conn.connection_made(Wire(conn))
        conn.idle_since = asyncio.get_running_loop().time() + 1e9  # never too old
        pool.idle.append(conn)
        pool.open += 1


async def run(origin_port: int | None, n: int, concurrency: int, rounds: int) -> None:
    url = f"http://127.0.0.1:{origin_port or 1}"
    config = UpstreamConfig("origin", url, retries=RetryPolicy(attempts=0), max_connections=200)
    up = Upstream(config, SystemClock(), on_transition=lambda _: None)
    if origin_port is None:
        wired(up, concurrency)
    await _exchanges(up, 2000, concurrency, False)  # warm: connections open, code paths hot
    for kind in ("miss", "write"):
        per = [await _exchanges(up, n, concurrency, kind == "write") / n * 1e6 for _ in range(rounds)]
        rounds_text = ", ".join(f"{p:.1f}" for p in per)
        print(
            f"{kind:6} min {min(per):6.1f} median {statistics.median(per):6.1f} us/exchange ({rounds_text})"
        )
    await up.close()


def time_forward_headers() -> None:
    upstream = UpstreamConfig("origin", "http://127.0.0.1:1")
    for name, raw in (("wrk", [(b"Host", b"127.0.0.1:8080")]), ("browser", BROWSER)):
        for cacheable in (True, False):

            def call(raw: list[tuple[bytes, bytes]] = raw, cacheable: bool = cacheable) -> object:
                request = Request("GET", "/api/items/1", raw, remote="127.0.0.1")
                return forward_headers(request, upstream, cacheable=cacheable)

            best = min(timeit.repeat(call, number=20000, repeat=5)) / 20000 * 1e6
            print(f"forward_headers {name:7} cacheable={cacheable!s:5} {best:5.2f} us")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.exchange", description=__doc__)
    parser.add_argument("--origin-port", type=int)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    install_uvloop()
    time_forward_headers()
    print("in memory (no sockets):")
    asyncio.run(run(None, args.n, args.concurrency, args.rounds))
    print("against the origin on loopback:")
    if args.origin_port is not None:
        asyncio.run(run(args.origin_port, args.n, args.concurrency, args.rounds))
        return
    port = free_port()
    origin = subprocess.Popen([sys.executable, "-m", "benchmarks.origin", "--port", str(port)], cwd=REPO_ROOT)
    try:
        time.sleep(1.5)
        asyncio.run(run(port, args.n, args.concurrency, args.rounds))
    finally:
        origin.terminate()
        origin.wait()


if __name__ == "__main__":
    main()
