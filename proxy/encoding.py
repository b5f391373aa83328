"""Content codings the guards must read through (RFC 9110 8.4), decoded within bounds.

Owns: turning a gzip or deflate body into the bytes the guards check, never holding more than
the route's object limit of inflated bytes, and refusing a ratio no honest JSON has (a 510 KB
gzip of zeros that inflates to 512 MB is refused after one bounded allocation).
Must not: do I/O, read the clock, or decide anything about guards and caching.
"""

from __future__ import annotations

import zlib

MAX_RATIO = 100  # inflated : compressed; JSON compresses about 5-20:1, bombs 1,000:1
RATIO_FREE = 1 << 20  # below 1 MB inflated no ratio check: small bodies compress as they like


class DecodeError(Exception):
    """The body cannot be read as the document it claims to be; the message says why."""


def decode(body: bytes, coding: str | None, limit: int) -> bytes:
    """The identity bytes of `body` under `coding` (the Content-Encoding value), at most `limit`."""
    name = (coding or "identity").strip().lower()
    if name in ("", "identity"):
        return body
    if name in ("gzip", "x-gzip"):
        wbits = 16 + zlib.MAX_WBITS
    elif name == "deflate":  # the zlib format (RFC 9110 8.4.1.2)
        wbits = zlib.MAX_WBITS
    else:  # br, zstd, a list of codings: nothing the guards can read
        raise DecodeError(f"content coding {name[:40]!r} cannot be checked")
    bound = min(limit, max(RATIO_FREE, len(body) * MAX_RATIO))
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, bound + 1)  # max_length: never allocates past the bound
    except zlib.error as exc:
        raise DecodeError(f"corrupt {name} body: {exc}") from exc
    if len(out) > bound:
        raise DecodeError(f"{name} body inflates past {bound} bytes ({len(body)} compressed)")
    if not inflater.eof or inflater.unused_data:
        raise DecodeError(f"truncated or trailing bytes in the {name} body")
    return out
