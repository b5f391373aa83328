"""deliver: turn an entry, an upstream response or an error into the client's response.

Owns: response headers the proxy adds (Age, X-Cache, Cache-Status per RFC 9211, X-Request-Id,
Retry-After) and the JSON error body. Must not: decide anything about caching.
"""

from __future__ import annotations

import math
from typing import Final

from proxy.core.cachecontrol import DELTA_MAX
from proxy.core.errors import MethodNotAllowed, ProxyError, RangeNotSatisfiable, error_body
from proxy.core.model import Entry, Headers
from proxy.core.ranges import UNSATISFIABLE, Part, if_range_holds, requested
from proxy.core.record import Record
from proxy.exchange import Response

CACHE_NAME: Final = "resilient-proxy"
JSON: Final = "application/json"
# Never copied from a stored or upstream response onto ours: we set them, or the listener does;
# and the vendor's `Server` (its software and versions are nobody's business on our port).
OURS: Final = frozenset(
    {
        "content-length",
        "age",
        "x-cache",
        "cache-status",
        "x-request-id",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "server",
    }
)
NOT_ON_304: Final = frozenset({"content-type", "content-encoding", "content-language"})
# What `served_headers` does with a stored field, by its lower-case name (absent: kept as is).
# Never 0: `_KINDS.get(name) or _kind(name)`.
_DROP: Final = 1
_NOT_ON_304: Final = 2
_RANGES: Final = 3
_KEEP: Final = 4
_SERVED: Final = {name: _DROP for name in OURS} | {name: _NOT_ON_304 for name in NOT_ON_304}
_SERVED["accept-ranges"] = _RANGES
# The same by the name as stored, whatever its case: one dict probe per field, no lower(). A
# module-level memo (as responsewriter's status lines) of a pure function of the name; a vendor
# sends a few dozen names, and past `_MAX_KINDS` a name is worked out each time.
_KINDS: Final[dict[str, int]] = {}
_MAX_KINDS: Final = 1024


def _kind(name: str) -> int:
    kind = _SERVED.get(name.lower(), _KEEP)
    if len(_KINDS) < _MAX_KINDS:
        _KINDS[name] = kind
    return kind


_HIT: Final = f"{CACHE_NAME}; hit"


class Txn(Record):
    """What one transaction did: filled along the request path, read by logs and metrics."""

    __slots__ = (
        "breaker",
        "bytes",
        "client",
        "guard",
        "method",
        "path",
        "request_id",
        "retries",
        "route",
        "stale_reason",
        "start",
        "status",
        "upstream",
        "upstream_ms",
        "upstream_status",
        "x_cache",
    )

    def __init__(
        self,
        request_id: str,
        start: float,
        method: str,
        path: str,
        client: str,
        route: str | None = None,
        upstream: str | None = None,
        status: int = 0,
        x_cache: str = "BYPASS",
        upstream_status: int | None = None,
        upstream_ms: float | None = None,
        retries: int = 0,
        stale_reason: str | None = None,
        guard: str | None = None,
        breaker: str | None = None,
        bytes: int = 0,
    ) -> None:
        self.request_id = request_id
        self.start = start
        self.method = method
        self.path = path
        self.client = client
        self.route = route
        self.upstream = upstream
        self.status = status
        self.x_cache = x_cache
        self.upstream_status = upstream_status
        self.upstream_ms = upstream_ms
        self.retries = retries
        self.stale_reason = stale_reason
        self.guard = guard
        self.breaker = breaker
        self.bytes = bytes


# What a GET asked of a stored 200 (RFC 9110 14.2): its Range, and If-Range when it sent one.
Asked = tuple[str, str | None]


def cache_status(
    *,
    hit: bool,
    ttl: float | None = None,
    fwd: str | None = None,
    fwd_status: int | None = None,
    stored: bool = False,
    collapsed: bool = False,
    detail: str | None = None,
) -> str:
    # RFC 9211 2: parameters in this order, one string grown in place (no list, no join)
    text = _HIT if hit else CACHE_NAME
    if fwd:
        text += f"; fwd={fwd}"
    if fwd_status is not None:
        text += f"; fwd-status={fwd_status}"
    if ttl is not None:
        text += f"; ttl={math.floor(ttl)}"
    if stored:
        text += "; stored"
    if collapsed:
        text += "; collapsed"
    if detail:
        text += f'; detail="{_quote(detail)}"'
    return text


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')[:200]


def _base_headers(headers: Headers, txn: Txn, x_cache: str, status_value: str) -> list[tuple[str, str]]:
    kinds = _KINDS
    out = [field for field in headers if (kinds.get(field[0]) or _kind(field[0])) != _DROP]
    out += (("X-Cache", x_cache), ("Cache-Status", status_value), ("X-Request-Id", txn.request_id))
    txn.x_cache = x_cache
    return out


def entry_response(
    entry: Entry,
    now: float,
    txn: Txn,
    *,
    x_cache: str,
    status_value: str,
    not_modified: bool = False,
    asked: Asked | None = None,
) -> Response:
    """A stored entry as this client gets it; `asked`: its Range and If-Range on a GET."""
    headers = served_headers(entry, not_modified=not_modified)
    # RFC 9111 5.1: delta-seconds, rounded down; never past 2^31 (1.2.2), whatever was stored.
    age = entry.age(now)
    headers += (
        ("X-Cache", x_cache),
        ("Cache-Status", status_value),
        ("X-Request-Id", txn.request_id),
        ("Age", str(int(DELTA_MAX if age > DELTA_MAX else age))),  # min(age, DELTA_MAX)
    )
    txn.x_cache = x_cache
    if not_modified:
        txn.status = 304
        return Response(304, headers)
    status = entry.status
    if asked is not None and status == 200:
        part = _part(entry, asked)
        if part is not None:
            return _partial(entry, part, headers, txn, asked[0])
    body = entry.body
    txn.status = status
    txn.bytes = len(body)
    return Response(status, headers, body)


def served_headers(entry: Entry, *, not_modified: bool) -> list[tuple[str, str]]:
    """The stored headers a copy is served with, before the per-request ones: ours dropped, a
    304's content fields dropped (RFC 9110 15.4.5), `Accept-Ranges` on a 200 (14.3). The full
    path and the fast hit's prepared heads are both made from it."""
    kept: list[tuple[str, str]] = []
    ranges = False
    kinds = _KINDS
    for field in entry.headers:  # one pass, one dict probe per field: on every miss and refresh
        kind = kinds.get(field[0]) or _kind(field[0])
        if kind != _KEEP:
            if kind == _DROP or (not_modified and kind == _NOT_ON_304):
                continue
            if kind == _RANGES:
                ranges = True
        kept.append(field)
    if not not_modified and not ranges and entry.status == 200:
        kept.append(("Accept-Ranges", "bytes"))
    return kept


def _part(entry: Entry, asked: Asked | None) -> Part | None:
    """The part of a stored 200 this request asked for (RFC 9110 14.2), if any."""
    if asked is None or not if_range_holds(asked[1], entry.etag, entry.last_modified):
        return None
    return requested(asked[0], len(entry.body))


def _partial(entry: Entry, part: Part, headers: list[tuple[str, str]], txn: Txn, range_: str) -> Response:
    length = len(entry.body)
    if part is UNSATISFIABLE:  # 416 says how long the representation is (RFC 9110 15.5.17)
        err = RangeNotSatisfiable(f"no range of {range_!r} within {length} bytes")
        body = error_body(err, route=txn.route, upstream=txn.upstream, request_id=txn.request_id)
        kept = [(k, v) for k, v in headers if k.lower() not in ("content-type", "content-range")]
        kept += [("Content-Range", f"bytes */{length}"), ("Content-Type", JSON)]
        txn.status, txn.bytes = 416, len(body)
        return Response(416, kept, body)
    headers.append(("Content-Range", part.content_range(length)))  # RFC 9110 14.4
    body = entry.body[part.start : part.end + 1]
    txn.status, txn.bytes = 206, len(body)
    return Response(206, headers, body)


def passed_response(
    status: int, headers: Headers, body: bytes, txn: Txn, *, x_cache: str, status_value: str
) -> Response:
    out = _base_headers(headers, txn, x_cache, status_value)
    txn.status = status
    txn.bytes = len(body)
    return Response(status, out, body)


def streaming_headers(
    headers: Headers, txn: Txn, *, x_cache: str, status_value: str
) -> list[tuple[str, str]]:
    return _base_headers(headers, txn, x_cache, status_value)


def error_response(err: ProxyError, txn: Txn, *, detail: str | None = None) -> Response:
    body = error_body(err, route=txn.route, upstream=txn.upstream, request_id=txn.request_id)
    headers = [
        ("Content-Type", JSON),
        ("X-Request-Id", txn.request_id),
        ("X-Cache", txn.x_cache),
        ("Cache-Status", cache_status(hit=False, fwd=_fwd_for(txn), detail=detail or err.code)),
    ]
    if isinstance(err, MethodNotAllowed):
        headers.append(("Allow", ", ".join(err.allow)))
    if err.retry_after is not None:
        headers.append(("Retry-After", str(max(1, math.ceil(err.retry_after)))))
    txn.status = err.status
    txn.bytes = len(body)
    return Response(err.status, headers, body)


def _fwd_for(txn: Txn) -> str:
    return "miss" if txn.x_cache == "MISS" else "bypass" if txn.route is None else "request"
