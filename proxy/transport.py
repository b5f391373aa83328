"""aiohttp client I/O toward one upstream: pooling, timeouts, TLS, and error mapping.

Owns: the one-method seam `Transport.send`, and the only place aiohttp client exceptions are
caught and turned into the project's error tree (as httpx's transports do).
Must not: retry, open breakers or decide caching (that is `upstream` and `handler`).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field

import aiohttp
from yarl import URL

from proxy.clock import Clock
from proxy.errors import UpstreamConnectError, UpstreamError, UpstreamTimeout
from proxy.headers import end_to_end
from proxy.model import Headers
from proxy.settings import Timeouts, UpstreamConfig
from proxy.strictclient import strict_connector


@dataclass(slots=True)
class Outbound:
    method: str
    path_qs: str  # already rewritten, percent-encoded, starting with "/"
    headers: list[tuple[str, str]]
    body: bytes | None = None
    timeout: Timeouts | None = None
    idempotency_key: bool = False
    credentials: bool = False  # the client sent Authorization or Cookie (RFC 9111 3.5)


@dataclass(slots=True)
class Fetched:
    status: int
    headers: Headers
    body: bytes
    request_time: float
    response_time: float
    complete: bool = True  # False: body is only the first chunk; `stream` holds the rest
    stream: aiohttp.ClientResponse | None = field(default=None, repr=False)
    attempts: int = 1

    @property
    def elapsed(self) -> float:
        return self.response_time - self.request_time

    def release(self) -> None:
        if self.stream is not None:
            self.stream.release()
            self.stream = None


class Transport:
    """One pooled aiohttp session per upstream."""

    def __init__(self, config: UpstreamConfig, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self._prefix = config.url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = strict_connector(
                limit=self.config.max_connections, ssl=self._ssl(), enable_cleanup_closed=True
            )
            # auto_decompress off: bodies are stored and served exactly as the vendor sent them.
            self._session = aiohttp.ClientSession(
                connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent",)
            )
        return self._session

    def _ssl(self) -> ssl.SSLContext | bool:
        if not self.config.verify_tls:
            return False
        return ssl.create_default_context(cafile=self.config.ca_file) if self.config.ca_file else True

    def url_for(self, path_qs: str) -> URL:
        # encoded=True: the path was checked raw and must reach the vendor byte for byte.
        return URL(self._prefix + path_qs, encoded=True)

    async def send(self, out: Outbound, limit: int) -> Fetched:
        """One request; the body is read whole up to `limit` bytes, else left streaming."""
        timeouts = out.timeout or self.config.timeout
        timeout = aiohttp.ClientTimeout(
            total=timeouts.total, sock_connect=timeouts.connect, connect=timeouts.connect
        )
        request_time = self.clock.now()
        try:
            resp = await self._open().request(
                out.method,
                self.url_for(out.path_qs),
                headers=out.headers,
                data=out.body,
                timeout=timeout,
                allow_redirects=False,
            )
        except TimeoutError as exc:
            raise UpstreamTimeout(f"no response within {timeouts.total:g}s") from exc
        except (aiohttp.ClientConnectorError, aiohttp.ClientSSLError) as exc:
            raise UpstreamConnectError(f"cannot connect: {_why(exc)}") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"bad response: {_why(exc)}") from exc
        try:
            return await self._read(resp, limit, request_time)
        except BaseException:
            resp.release()
            raise

    async def _read(self, resp: aiohttp.ClientResponse, limit: int, request_time: float) -> Fetched:
        headers = end_to_end((k.decode("latin-1"), v.decode("latin-1")) for k, v in resp.raw_headers)
        if not 200 <= resp.status <= 599:  # 1xx other than 100, or a status that is no status
            raise UpstreamError(f"unusable status {resp.status} from the upstream")
        if resp.version is None or resp.version.major != 1:
            raise UpstreamError(f"{resp.version} is not HTTP/1.x")
        if resp.status in (204, 304) and resp.headers.get("Content-Length", "0").strip() != "0":
            # These never have content (RFC 9112 6.3): announced bytes would be read as the next
            # response on this connection. Refuse the answer and drop the connection.
            resp.close()
            raise UpstreamError(f"a {resp.status} answer that announces content")
        try:
            buffer = bytearray(await resp.content.read(limit + 1)) if limit >= 0 else bytearray()
            # read() may return less than asked before EOF: keep reading up to the limit.
            while len(buffer) <= limit and not resp.content.at_eof():
                more = await resp.content.read(limit + 1 - len(buffer))
                if not more:
                    break
                buffer += more
            chunk = bytes(buffer)
        except TimeoutError as exc:
            raise UpstreamTimeout("timed out reading the body") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"broken body: {_why(exc)}") from exc
        now = self.clock.now()
        if len(chunk) > limit:
            return Fetched(resp.status, headers, chunk, request_time, now, complete=False, stream=resp)
        resp.release()
        return Fetched(resp.status, headers, chunk, request_time, now)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _why(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:200]
