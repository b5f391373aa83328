"""Content codings the guards must read through (RFC 9110 8.4), decoded within bounds.

Owns: turning a gzip or deflate body into the bytes the guards check, never holding more than
the route's object limit of inflated bytes, and refusing a ratio no honest JSON has (a 510 KB
gzip of zeros that inflates to 512 MB is refused after one bounded allocation).
Also: whether a client accepts a coding (RFC 9110 12.5.3), and `Inflater`, which turns a coded
body too large to store into identity chunk by chunk for a client that did not ask for it.
Must not: do I/O, read the clock, or decide anything about guards and caching.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Final

MAX_RATIO: Final = 100  # inflated : compressed; JSON compresses about 5-20:1, bombs 1,000:1
RATIO_FREE: Final = 1 << 20  # below 1 MB inflated no ratio check: small bodies compress as they like


class DecodeError(Exception):
    """The body cannot be read as the document it claims to be; the message says why."""


class TooLarge(DecodeError):
    """An honest ratio, but more than the route's object limit once inflated: too large to
    store or check, like an identity body of that size (it may still stream)."""


PIECE: Final = 64 * 1024  # the most `Inflater` hands out at once: a slow client paces the inflating


def _wbits(coding: str | None) -> int | None:
    """zlib's window bits for `coding`; None for identity; DecodeError for what we cannot read."""
    name = (coding or "identity").strip().lower()
    if name in ("", "identity"):
        return None
    if name in ("gzip", "x-gzip"):
        return 16 + zlib.MAX_WBITS
    if name == "deflate":  # the zlib format (RFC 9110 8.4.1.2)
        return zlib.MAX_WBITS
    # br, zstd, a list of codings: nothing the guards can read
    raise DecodeError(f"content coding {name[:40]!r} cannot be checked")


def accepts(accept_encoding: str | None, coding: str) -> bool:
    """Whether the client asked for `coding` (RFC 9110 12.5.3). No header at all counts as no:
    the RFC allows any coding then, but clients that send none (scripts, curl) rarely decode."""
    if not accept_encoding:
        return False
    wanted = coding.strip().lower()
    star: bool | None = None
    for item in accept_encoding.split(","):
        name, _, params = item.partition(";")
        name = name.strip().lower()
        q = params.strip().lower()
        ok = not (q.startswith("q=") and q[2:].strip().rstrip("0").rstrip(".") in ("0", ""))
        if name == wanted:
            return ok  # named: its own q, whatever `*` says
        if name == "*":
            star = ok
    return bool(star)


def decode(body: bytes, coding: str | None, limit: int) -> bytes:
    """The identity bytes of `body` under `coding` (the Content-Encoding value), at most `limit`."""
    wbits = _wbits(coding)
    if wbits is None:
        return body
    name = (coding or "").strip().lower()
    bound = min(limit, max(RATIO_FREE, len(body) * MAX_RATIO))
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, bound + 1)  # max_length: never allocates past the bound
    except zlib.error as exc:
        raise DecodeError(f"corrupt {name} body: {exc}") from exc
    if len(out) > bound:
        kind = TooLarge if bound == limit else DecodeError
        raise kind(f"{name} body inflates past {bound} bytes ({len(body)} compressed)")
    if not inflater.eof or inflater.unused_data:
        raise DecodeError(f"truncated or trailing bytes in the {name} body")
    return out


class Inflater:
    """A coded body to identity, one received chunk at a time, in pieces of at most PIECE bytes
    (the caller writes each before asking for the next, so a bomb inflates only as fast as the
    client reads). `close()` raises DecodeError when the stream ended early or carried junk."""

    def __init__(self, coding: str) -> None:
        wbits = _wbits(coding)
        if wbits is None:
            raise DecodeError("identity needs no inflating")
        self._z = zlib.decompressobj(wbits)

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        data = chunk
        while data:
            try:
                piece = self._z.decompress(data, PIECE)
            except zlib.error as exc:
                raise DecodeError(f"corrupt body: {exc}") from exc
            if piece:
                yield piece
            data = self._z.unconsumed_tail
            if self._z.eof and (data or self._z.unused_data):
                raise DecodeError("trailing bytes after the coded body")

    def close(self) -> None:
        if not self._z.eof:
            raise DecodeError("the coded body ended early")
