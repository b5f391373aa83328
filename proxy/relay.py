"""Moving bytes between the client and the upstream: which request headers may reach a vendor,
reading a bounded request body, and relaying a body too large to store.

Owns: the client side of the exchange. Must not: decide caching or talk to the breaker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from aiohttp import web

from proxy.core.config.model import UpstreamConfig
from proxy.core.encoding import DecodeError, Inflater, accepts
from proxy.core.errors import BadRequest, ClientGone, PayloadTooLarge
from proxy.core.headers import (
    CACHE_OWNED,
    HOP_BY_HOP,
    TRANSPORT_OWNED,
    UNKEYED_DANGEROUS,
    end_to_end,
    field_value,
)
from proxy.deliver import Txn, streaming_headers
from proxy.transport import Fetched

log = logging.getLogger("proxy.relay")
DECODABLE = "gzip, deflate"
_CODING = frozenset({"content-encoding", "content-length"})
CREDENTIALS = ("authorization", "cookie")  # forwarded; their answers are private by default
# Ours to send on a cached fetch whatever a route keys: conditionals and ranges (RFC 9111 4.3),
# the coding we decode, and who the client is.
NEVER_FORWARDED = (
    HOP_BY_HOP | TRANSPORT_OWNED | UNKEYED_DANGEROUS | CACHE_OWNED | {"accept-encoding", "x-forwarded-for"}
)


def forward_headers(
    request: web.Request, upstream: UpstreamConfig, *, cacheable: bool, keyed: Iterable[str] = ()
) -> list[tuple[str, str]]:
    """Client headers that may reach the vendor, then the upstream's configured ones.

    On a cached route the answer is shared, so the vendor gets only what the key holds: the
    keyed and Vary headers (`keyed`, one canonical value each, as the key took them), the
    upstream's `forward_headers`, and credentials (whose answers are not shared unless the
    route says so). Anything else could change a shared answer without being keyed: the
    cache-poisoning rule (Kettle, "Practical Web Cache Poisoning").
    """
    configured = {k.lower() for k, _ in upstream.headers}
    if cacheable:
        out = _keyed_only(request, (*CREDENTIALS, *keyed, *upstream.forward_headers), configured)
    else:
        drop = TRANSPORT_OWNED | UNKEYED_DANGEROUS
        out = [(k, v) for k, v in end_to_end(request.headers.items(), drop) if k.lower() not in configured]
        out = [(k, v) for k, v in out if k.lower() != "x-forwarded-for"]
    prior = None if cacheable else request.headers.get("X-Forwarded-For")
    if request.remote and "x-forwarded-for" not in configured:  # ours: never the client's verbatim
        out.append(("X-Forwarded-For", f"{prior}, {request.remote}" if prior else request.remote))
    if cacheable and "accept-encoding" not in configured:
        out.append(("Accept-Encoding", DECODABLE))  # only codings we decode: we store identity
    out.extend(upstream.headers)
    return out


def has_credentials(request: web.Request) -> bool:
    """Requests whose answers are private unless the response or route says otherwise."""
    return "Authorization" in request.headers or "Cookie" in request.headers


def offered(request: web.Request) -> Callable[[str], str | None]:
    """The client's value of a header we held back, for a vendor that turns out to Vary on it;
    never one of ours to set (conditionals, codings, forwarding, hop-by-hop)."""

    def value(name: str) -> str | None:
        return None if name in NEVER_FORWARDED else field_value(request.headers, name)

    return value


def _keyed_only(request: web.Request, names: Iterable[str], configured: set[str]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for name in names:
        if name in seen or name in configured or name in NEVER_FORWARDED:
            continue
        seen.add(name)
        value = field_value(request.headers, name)
        if value is not None:
            out.append((name, value))
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


def _inflater(request: web.Request, fetched: Fetched) -> Inflater | None:
    """We asked the vendor for gzip on the client's behalf (see `forward_headers`): a client that
    did not ask for it gets identity, inflated as it streams."""
    coding = next((v for k, v in fetched.headers if k.lower() == "content-encoding"), None)
    if coding is None or coding.strip().lower() in ("", "identity"):
        return None
    if accepts(request.headers.get("Accept-Encoding"), coding.strip()):
        return None
    try:
        return Inflater(coding)
    except DecodeError:  # a coding we cannot read: relayed as the vendor sent it
        return None


async def stream_response(
    request: web.Request, fetched: Fetched, txn: Txn, *, x_cache: str, status_value: str
) -> web.StreamResponse:
    """Relay a body too large to store: first chunk, then the rest as it arrives."""
    inflater = _inflater(request, fetched)
    headers = fetched.headers if inflater is None else end_to_end(fetched.headers, _CODING)
    resp = web.StreamResponse(
        status=fetched.status,
        headers=streaming_headers(headers, txn, x_cache=x_cache, status_value=status_value),
    )
    txn.status = fetched.status
    stream = fetched.stream
    try:
        await resp.prepare(request)
        txn.bytes = 0
        await _relay(resp, fetched.body, inflater, txn)
        if stream is not None:
            async for chunk in stream:
                await _relay(resp, chunk, inflater, txn)
        if inflater is not None:
            inflater.close()
        await resp.write_eof()
    except Exception as exc:  # the client sees a cut connection: the status line is gone already
        log.warning("streaming %s broke after %d bytes: %s", txn.path[:120], txn.bytes, exc)
        if request.transport is not None:
            request.transport.close()
    finally:
        fetched.release()
    return resp


async def _relay(resp: web.StreamResponse, chunk: bytes, inflater: Inflater | None, txn: Txn) -> None:
    # Each write waits for the client to drain: a slow reader pauses the vendor (and the inflater).
    for piece in (chunk,) if inflater is None else inflater.feed(chunk):
        await resp.write(piece)
        txn.bytes += len(piece)
