"""Moving bytes between the client and the upstream: which request headers may reach a vendor,
reading a bounded request body, and relaying a body too large to store.

Owns: the client side of the exchange. Must not: decide caching or talk to the breaker.
"""

from __future__ import annotations

import logging

from aiohttp import web

from proxy.deliver import Txn, streaming_headers
from proxy.errors import BadRequest, ClientGone, PayloadTooLarge
from proxy.headers import CACHE_OWNED, TRANSPORT_OWNED, UNKEYED_DANGEROUS, end_to_end
from proxy.settings import UpstreamConfig
from proxy.transport import Fetched

log = logging.getLogger("proxy.relay")
DECODABLE = "gzip, deflate"


def forward_headers(
    request: web.Request, upstream: UpstreamConfig, *, cacheable: bool
) -> list[tuple[str, str]]:
    """Client headers that may reach the vendor, then the upstream's configured ones."""
    drop = TRANSPORT_OWNED | UNKEYED_DANGEROUS | (CACHE_OWNED if cacheable else frozenset())
    configured = {k.lower() for k, _ in upstream.headers}
    out = [(k, v) for k, v in end_to_end(request.headers.items(), drop) if k.lower() not in configured]
    if not cacheable and request.remote:
        prior = request.headers.get("X-Forwarded-For")
        out = [(k, v) for k, v in out if k.lower() != "x-forwarded-for"]
        out.append(("X-Forwarded-For", f"{prior}, {request.remote}" if prior else request.remote))
    if (
        cacheable and "accept-encoding" not in configured
    ):  # only codings the proxy decodes: it stores and checks identity (see fetch)
        out = [(k, v) for k, v in out if k.lower() != "accept-encoding"]
        out.append(("Accept-Encoding", DECODABLE))
    out.extend(upstream.headers)
    return out


async def read_body(request: web.Request, limit: int) -> bytes | None:
    if not request.body_exists:
        return None
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"request body over {limit} bytes")
    body = bytearray()
    try:
        while len(body) <= limit and not request.content.at_eof():
            more = await request.content.read(limit + 1 - len(body))
            if not more:
                break
            body += more
    except web.RequestPayloadError as exc:  # a broken chunked body, a body shorter than promised
        raise BadRequest(f"unreadable request body: {exc}") from exc
    except (RuntimeError, ConnectionResetError) as exc:  # aiohttp: "Connection closed."
        raise ClientGone("the client went away while sending its body") from exc
    if len(body) > limit:
        raise PayloadTooLarge(f"request body over {limit} bytes")
    return bytes(body)


async def stream_response(
    request: web.Request, fetched: Fetched, txn: Txn, *, x_cache: str, status_value: str
) -> web.StreamResponse:
    """Relay a body too large to store: first chunk, then the rest as it arrives."""
    resp = web.StreamResponse(
        status=fetched.status,
        headers=streaming_headers(fetched.headers, txn, x_cache=x_cache, status_value=status_value),
    )
    txn.status = fetched.status
    stream = fetched.stream
    try:
        await resp.prepare(request)
        await resp.write(fetched.body)
        txn.bytes = len(fetched.body)
        if stream is not None:
            async for chunk in stream:
                await resp.write(chunk)
                txn.bytes += len(chunk)
        await resp.write_eof()
    except Exception as exc:  # the client sees a cut connection: the status line is gone already
        log.warning("streaming %s broke after %d bytes: %s", txn.path[:120], txn.bytes, exc)
        if request.transport is not None:
            request.transport.close()
    finally:
        fetched.release()
    return resp
