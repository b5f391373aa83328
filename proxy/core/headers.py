"""Header hygiene shared by both directions of the proxy.

Owns: which headers are hop-by-hop (RFC 9110 section 7.6.1) and which request headers never
reach an upstream because they could change a shared response without being keyed.
Must not: do I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final, Protocol

from proxy.core.model import Headers

HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Unkeyed inputs known to poison shared caches (Kettle, "Practical Web Cache Poisoning").
UNKEYED_DANGEROUS: Final = frozenset(
    {
        "x-forwarded-host",
        "x-forwarded-server",
        "x-forwarded-scheme",
        "x-forwarded-proto",
        "x-original-url",
        "x-rewrite-url",
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
        "forwarded",
    }
)
# Conditionals and ranges on a cacheable fetch are the cache's to send, not the client's.
CACHE_OWNED: Final = frozenset(
    {
        "if-none-match",
        "if-modified-since",
        "if-match",
        "if-unmodified-since",
        "if-range",
        "range",
    }
)
# Set by the transport or recomputed by us.
TRANSPORT_OWNED: Final = frozenset({"host", "content-length", "expect"})


def among(name: str, names: tuple[str, ...]) -> bool:
    """`name in names` for lower-case field names. Compiled, `in` on a tuple that is not a
    literal is a generic call that compares as objects (~600 instructions over a vendor's seven
    names, three times a miss); this compares as strings (mypyc makes `any` over a generator
    expression a loop)."""
    return any(each == name for each in names)


def connection_tokens(headers: Iterable[tuple[str, str]]) -> frozenset[str]:
    names: set[str] = set()
    for key, value in headers:
        if key.lower() == "connection":
            names.update(t.strip().lower() for t in value.split(",") if t.strip())
    return frozenset(names)


def end_to_end(headers: Iterable[tuple[str, str]], drop: frozenset[str] = frozenset()) -> Headers:
    """Headers with hop-by-hop ones removed, including every name listed in Connection."""
    pairs = list(headers)
    named = connection_tokens(pairs)
    return tuple(
        (k, v)
        for k, v in pairs
        if (low := k.lower()) not in HOP_BY_HOP and low not in named and low not in drop
    )


class FieldLines(Protocol):
    """The one method of a request's header multimap that `field_value` needs."""

    def getall(self, key: str, default: list[str], /) -> list[str]: ...


def field_value(headers: FieldLines, name: str) -> str | None:
    """The one value of `name` the cache keys on and the vendor gets: repeated field lines
    joined with ", " (RFC 9110 5.3), None when absent or named in Connection (hop-by-hop: never
    sent, so never keyed)."""
    values = headers.getall(name, [])
    if not values:
        return None
    connection = headers.getall("connection", [])
    if connection and name.lower() in connection_tokens(("connection", v) for v in connection):
        return None
    return values[0] if len(values) == 1 else ", ".join(values)


def sender(headers: FieldLines, configured: Headers) -> Callable[[str], str | None]:
    """`sent_value` for one request, as keys and Vary lookups take it; made only when a key or
    a variant needs a header (most routes key none): a closure per request costs two objects."""
    return lambda name: sent_value(headers, name, configured)


def sent_value(headers: FieldLines, name: str, configured: Headers) -> str | None:
    """The value of `name` the vendor gets: the upstream's configured header, which replaces the
    client's (`relay.forward_headers`), else the client's (`field_value`). Keys and Vary lookups
    read this, since a stored variant records what was sent (RFC 9111 4.1)."""
    if configured:
        low = name.lower()
        mine = [v for k, v in configured if k.lower() == low]
        if mine:
            return ", ".join(mine)
    return field_value(headers, name)
