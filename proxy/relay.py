"""Moving bytes between the client and the upstream: which request headers may reach a vendor,
reading a bounded request body, and relaying a body too large to store.

Owns: the client side of the exchange. Must not: decide caching or talk to the breaker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Final

from proxy.core.config.model import UpstreamConfig
from proxy.core.encoding import DecodeError, Inflater, accepts
from proxy.core.errors import ClientGone, PayloadTooLarge
from proxy.core.headers import (
    CACHE_OWNED,
    HOP_BY_HOP,
    TRANSPORT_OWNED,
    UNKEYED_DANGEROUS,
    end_to_end,
)
from proxy.deliver import Txn, streaming_headers
from proxy.exchange import Request, Response
from proxy.fetched import CODING_HEADERS, Fetched
from proxy.relaybody import relay_body

log = logging.getLogger("proxy.relay")
DECODABLE: Final = "gzip, deflate"
CREDENTIALS: Final = ("authorization", "cookie")  # forwarded; their answers are private by default
_NONE: Final[frozenset[str]] = frozenset()
# Ours to send on a cached fetch whatever a route keys: conditionals and ranges (RFC 9111 4.3),
# the coding we decode, and who the client is.
NEVER_FORWARDED: Final = (
    HOP_BY_HOP | TRANSPORT_OWNED | UNKEYED_DANGEROUS | CACHE_OWNED | {"accept-encoding", "x-forwarded-for"}
)


def forward_headers(
    request: Request, upstream: UpstreamConfig, *, cacheable: bool, keyed: Iterable[str] = ()
) -> list[tuple[str, str]]:
    """Client headers that may reach the vendor, then the upstream's configured ones.

    On a cached route the answer is shared, so the vendor gets only what the key holds: the
    keyed and Vary headers (`keyed`, one canonical value each, as the key took them), the
    upstream's `forward_headers`, and credentials (whose answers are not shared unless the
    route says so). Anything else could change a shared answer without being keyed: the
    cache-poisoning rule (Kettle, "Practical Web Cache Poisoning").
    """
    configured = {k.lower() for k, _ in upstream.headers} if upstream.headers else _NONE
    prior = None
    if cacheable:
        out = _keyed_only(request, (*CREDENTIALS, *keyed, *upstream.forward_headers), configured)
    else:
        out, prior = _end_to_end(request, configured)
    if request.remote and "x-forwarded-for" not in configured:  # ours: never the client's verbatim
        out.append(("X-Forwarded-For", f"{prior}, {request.remote}" if prior else request.remote))
    if cacheable and "accept-encoding" not in configured:
        out.append(("Accept-Encoding", DECODABLE))  # only codings we decode: we store identity
    out.extend(upstream.headers)
    return out


def has_credentials(request: Request) -> bool:
    """Requests whose answers are private unless the response or route says otherwise."""
    return request.has("authorization") or request.has("cookie")


def offered(request: Request) -> Callable[[str], str | None]:
    """The client's value of a header we held back, for a vendor that turns out to Vary on it;
    never one of ours to set (conditionals, codings, forwarding, hop-by-hop)."""

    def value(name: str) -> str | None:
        return None if name in NEVER_FORWARDED else request.field(name)

    return value


# Never passed through as the client sent them: hop-by-hop (RFC 9110 7.6.1), ours to set, and
# the unkeyed inputs that poison caches; X-Forwarded-For is ours, built from the client's.
_NOT_PASSED: Final = HOP_BY_HOP | TRANSPORT_OWNED | UNKEYED_DANGEROUS | {"x-forwarded-for"}


def _end_to_end(
    request: Request, configured: frozenset[str] | set[str]
) -> tuple[list[tuple[str, str]], str | None]:
    """The client's end-to-end headers but the upstream's configured ones (one pass, as the
    listener parsed them), and the client's first X-Forwarded-For."""
    drop = _NOT_PASSED | configured if configured else _NOT_PASSED
    out: list[tuple[str, str]] = []
    named: set[str] = set()  # names the client's Connection lists: hop-by-hop too
    prior = None
    for raw_key, raw_value in request.raw_headers:  # as parsed: no multimap for a write
        key, value = raw_key.decode("latin-1"), raw_value.decode("latin-1")
        low = key.lower()
        if low not in drop:
            out.append((key, value))
        elif low == "connection":
            named.update(t.strip().lower() for t in value.split(","))
        elif low == "x-forwarded-for" and prior is None:
            prior = value
    named -= drop
    if named:
        out = [(k, v) for k, v in out if k.lower() not in named]
    return out, prior


def _keyed_only(
    request: Request, names: Iterable[str], configured: frozenset[str] | set[str]
) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for name in names:
        if name in seen or name in configured or name in NEVER_FORWARDED:
            continue
        seen.add(name)
        value = request.field(name)
        if value is not None:
            out.append((name, value))
    return out


async def read_body(request: Request, limit: int) -> bytes | None:
    content = request.body
    if content is None:
        return None
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"request body over {limit} bytes")
    body = bytearray()
    try:
        while len(body) <= limit and not content.at_eof():
            more = await content.read(limit + 1 - len(body))
            if not more:
                break
            body += more
    except ConnectionResetError as exc:  # gone, or its framing broke (the listener answers 400)
        raise ClientGone("the client went away while sending its body") from exc
    if len(body) > limit:
        raise PayloadTooLarge(f"request body over {limit} bytes")
    return bytes(body)


def _inflater(request: Request, fetched: Fetched) -> Inflater | None:
    """We asked the vendor for gzip on the client's behalf (see `forward_headers`): a client that
    did not ask for it gets identity, inflated as it streams."""
    coding = fetched.coding()  # from the parser's lower-case names; None for identity
    if coding is None:
        return None
    if accepts(request.headers.get("Accept-Encoding"), coding.strip()):
        return None
    try:
        return Inflater(coding)
    except DecodeError:  # a coding we cannot read: relayed as the vendor sent it
        return None


def stream_response(
    request: Request, fetched: Fetched, txn: Txn, *, x_cache: str, status_value: str
) -> Response:
    """Relay a body too large to store: first chunk, then the rest as it arrives. The listener
    writes the chunks as it pulls them, waiting for the client to drain each: a slow reader
    pauses the vendor (and the inflater)."""
    inflater = _inflater(request, fetched)
    headers = fetched.headers if inflater is None else end_to_end(fetched.headers, CODING_HEADERS)
    txn.status = fetched.status
    txn.bytes = 0
    response = Response(
        fetched.status,
        streaming_headers(headers, txn, x_cache=x_cache, status_value=status_value),
        stream=relay_body(fetched, inflater, txn),
    )
    response.interim = fetched.interim  # 102/103 go first (RFC 9110 15.2)
    return response
