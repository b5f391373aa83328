"""Entry <-> bytes, one versioned msgpack format shared by every tier and the snapshot.

Owns: the wire format of a stored entry. Must not: know where the bytes go.
A version byte leads the payload so a future format can be read beside this one; anything that
does not decode cleanly raises `CodecError`, never returns a half-built entry.
"""

from __future__ import annotations

from typing import Any, Final

import msgpack

from proxy.core.model import Entry

VERSION: Final = 1
_HEAD_ROOM: Final = 1024  # bytes beyond the body an entry's encoding usually takes (headers, deadlines)


class CodecError(ValueError):
    """The bytes are not an entry this version can read."""


def packer() -> msgpack.Packer:
    """A packer `encode` may reuse: its buffer outlives the call. One owner, one thread."""
    return msgpack.Packer(use_bin_type=True, buf_size=REUSE_BODY + _HEAD_ROOM)


REUSE_BODY: Final = 64 * 1024  # a reused packer takes bodies up to this: its buffer stays this size


def encode(entry: Entry, reuse: msgpack.Packer | None = None) -> bytes:
    """The entry's bytes; with `reuse` (from `packer()`), a body up to `REUSE_BODY` is packed
    in that packer's buffer instead of a new one (same bytes either way)."""
    # Tuples pack as arrays, byte for byte what lists give: no copies of the headers.
    payload = [
        VERSION,
        entry.status,
        entry.headers,
        entry.body,
        entry.stored_at,
        entry.initial_age,
        entry.fresh_until,
        entry.stale_until,
        entry.error_until,
        entry.keep_until,
        entry.lkg_until,
        entry.etag,
        entry.last_modified,
        entry.vary,
        entry.vary_values,
        entry.url,
    ]
    if entry.heuristic:  # only then a 17th member: entries without it stay readable by older versions
        payload.append(True)
    if reuse is not None and len(entry.body) <= REUSE_BODY:
        return reuse.pack(payload)  # type: ignore[no-any-return]
    # A packer with a buffer the size of this entry: `packb` sets up a 256 KB one on every call,
    # which cost a miss more than the packing (issue 11). It grows if the guess is short.
    fresh = msgpack.Packer(use_bin_type=True, buf_size=len(entry.body) + _HEAD_ROOM)
    return fresh.pack(payload)  # type: ignore[no-any-return]


def decode(data: bytes) -> Entry:
    try:
        raw: Any = msgpack.unpackb(data, raw=False, use_list=True)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise CodecError(f"not a msgpack entry: {exc}") from exc
    if not isinstance(raw, list) or not raw or raw[0] != VERSION or len(raw) not in (16, 17):
        raise CodecError("unknown entry format or version")
    try:
        return _build(raw)
    except (TypeError, ValueError) as exc:
        raise CodecError(f"malformed entry: {exc}") from exc


def _build(raw: list[Any]) -> Entry:
    (
        _,
        status,
        headers,
        body,
        stored_at,
        initial_age,
        fresh_until,
        stale_until,
        error_until,
        keep_until,
        lkg_until,
        etag,
        last_modified,
        vary,
        vary_values,
        url,
        *more,
    ) = raw
    if not isinstance(body, bytes) or not isinstance(status, int):
        raise TypeError("status or body has the wrong type")
    pairs = tuple((str(k), str(v)) for k, v in headers)
    return Entry(
        status=status,
        headers=pairs,
        body=body,
        stored_at=float(stored_at),
        initial_age=float(initial_age),
        fresh_until=float(fresh_until),
        stale_until=float(stale_until),
        error_until=float(error_until),
        keep_until=float(keep_until),
        lkg_until=float(lkg_until),
        etag=_opt_str(etag),
        last_modified=_opt_str(last_modified),
        vary=tuple(str(v) for v in vary),
        vary_values=tuple(str(v) for v in vary_values),
        url=str(url),
        heuristic=more == [True],
    )


def _opt_str(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value
