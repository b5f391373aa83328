"""Byte ranges served from a stored complete response (RFC 9110 14).

Owns: reading a `Range` request header against a representation of known length, `If-Range`
(14.5), and what to answer: the whole representation (200), one part (206 with
`Content-Range`), or 416 (with `Content-Range: bytes */length`).
Must not: do I/O, or decide whether the response may be served at all (that is `decide`).

Decisions (RFC 9110 14.2 lets a server ignore Range): only the `bytes` unit; one range, or
several that merge into one (overlapping or adjacent); several disjoint ranges are answered
with the whole representation (200) rather than multipart/byteranges, as nginx does for
cached responses without `max_ranges`; a syntax error is ignored (200), as 14.2 says.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

MAX_PARTS: Final = 16  # more parts than this in one header is ignored (a slow-range attack)


@dataclass(frozen=True, slots=True)
class Part:
    start: int
    end: int  # inclusive (RFC 9110 14.1.1)

    def content_range(self, length: int) -> str:
        return f"bytes {self.start}-{self.end}/{length}"


UNSATISFIABLE: Final = Part(-1, -1)


def requested(header: str | None, length: int) -> Part | None:
    """The one part to send (`UNSATISFIABLE` for 416), or None for the whole representation."""
    if header is None:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or not spec.strip():
        return None
    items = spec.split(",")
    if len(items) > MAX_PARTS:
        return None
    parts: list[Part] = []
    for item in items:
        part = _part(item.strip(), length)
        if part is None:
            return None  # invalid syntax: the whole header is ignored (RFC 9110 14.2)
        if part is not UNSATISFIABLE:
            parts.append(part)
    if not parts:
        return UNSATISFIABLE  # none of the ranges overlaps the representation (15.5.17)
    return _merged(parts)


def _part(item: str, length: int) -> Part | None:
    first, dash, last = item.partition("-")
    if not dash or not _digits(first, allow_empty=True) or not _digits(last, allow_empty=True):
        return None
    if not first:  # suffix-range: the last N bytes (14.1.1)
        if not last:
            return None
        n = int(last)
        return Part(max(0, length - n), length - 1) if n > 0 and length > 0 else UNSATISFIABLE
    start = int(first)
    end = length - 1 if not last else min(int(last), length - 1)
    if last and int(last) < start:
        return None  # last-pos before first-pos: invalid (14.1.1)
    return Part(start, end) if start < length else UNSATISFIABLE


def _digits(text: str, *, allow_empty: bool) -> bool:
    return (allow_empty and text == "") or (text.isascii() and text.isdigit() and len(text) <= 18)


def _merged(parts: list[Part]) -> Part | None:
    ordered = sorted(parts, key=lambda p: p.start)
    start, end = ordered[0].start, ordered[0].end
    for part in ordered[1:]:
        if part.start > end + 1:
            return None  # disjoint: the whole representation instead of multipart
        end = max(end, part.end)
    return Part(start, end)


def if_range_holds(if_range: str | None, etag: str | None, last_modified: str | None) -> bool:
    """Whether `If-Range` lets the range apply (RFC 9110 14.5): a strong ETag compared strongly,
    or the exact Last-Modified date; no If-Range at all always holds."""
    if if_range is None:
        return True
    value = if_range.strip()
    if value.startswith(('"', "W/")):
        return etag is not None and not value.startswith("W/") and value == etag.strip()
    return last_modified is not None and value == last_modified.strip()
