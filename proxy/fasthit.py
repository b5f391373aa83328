"""Fresh hits answered in one write, from bytes prepared once per stored entry.

Owns: the plan of a raw request target (route, path, keyed query, and the key itself when the
route keys no header), memoised per (method, target) in a bounded map that belongs to one
runtime (a reload starts afresh); the wire head of a stored entry (status line and stored
headers, for 200 and for a 304) prepared the first time the entry is served, held beside the
entry (never in msgpack or Redis) and dropped with it; and the bytes of a fresh hit: that head,
then the few per-request headers (`X-Cache`, `Cache-Status`, `X-Request-Id`, `Age`,
`Content-Length`, `Date` when the entry has none), then the body, in one `write`.

Must not: answer anything but a fresh hit from the memory tier on HTTP/1.1 keep-alive GET or
HEAD without a body or `Range`: every other request (misses, stale, the shared tier, errors,
refusals) returns None and takes the full path (`handler.Handler.handle`) with the same parsed
request. Its bytes are the ones `deliver.entry_response` and the listener would write, counted
and logged the same (`Telemetry.transaction`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING

from proxy import freshness
from proxy.deliver import CACHE_NAME, NOT_ON_304, OURS, Txn, age_value
from proxy.exchange import Request
from proxy.freshness import Decision
from proxy.headers import field_value
from proxy.keys import normal_query, primary_key, variant_key
from proxy.model import Entry
from proxy.routing import unsafe_target
from proxy.runtime import RouteState, Runtime

if TYPE_CHECKING:
    from proxy.state import ProxyState

MAX_PLANS = 10_000  # memoised targets per runtime; past it the memo starts again
MAX_WIRES = 4_096  # prepared entry heads; past it they are prepared again as served
_CACHEABLE = frozenset({"GET", "HEAD"})


class Plan:
    """What a raw target means on this runtime, computed once."""

    __slots__ = ("key", "path", "query", "rs")

    def __init__(self, rs: RouteState, path: str, query: str, key: str | None) -> None:
        self.rs, self.path, self.query, self.key = rs, path, query, key


class Wire:
    """An entry's head on the wire: `ok` for its own status, `not_modified` for a 304."""

    __slots__ = ("entry", "has_date", "not_modified", "ok")

    def __init__(self, entry: Entry) -> None:
        self.entry = entry
        kept = [(k, v) for k, v in entry.headers if k.lower() not in OURS and "\n" not in v and "\r" not in v]
        self.has_date = any(k.lower() == "date" for k, _ in kept)
        self.ok = _head(entry.status, kept)
        self.not_modified = _head(304, [(k, v) for k, v in kept if k.lower() not in NOT_ON_304])


def _head(status: int, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"]
    lines.extend(f"{k}: {v}\r\n" for k, v in headers)
    text = "".join(lines)
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8")


_NO_PLAN = object()


@dataclass(frozen=True, slots=True)
class Limits:
    """The handler's request limits: past any of them the full path answers 414 or 431."""

    max_url: int
    max_headers: int
    max_header_bytes: int


class FastHits:
    def __init__(self, state: ProxyState, request_id: Callable[[Request], str], limits: Limits) -> None:
        self.state = state
        self.request_id = request_id
        self.limits = limits
        self._plans: dict[tuple[str, str], Plan | object] = {}
        self._runtime: Runtime | None = None
        self._wires: dict[str, Wire] = {}

    def answer(self, request: Request, date: Callable[[], bytes]) -> bytes | None:
        """The whole answer to a fresh hit, or None: take the full path."""
        if request.body is not None or request.version != "1.1" or request.method not in _CACHEABLE:
            return None
        headers = request.headers
        limits = self.limits
        if (
            "Range" in headers
            or len(request.raw_headers) > limits.max_headers
            or request.head_size > limits.max_header_bytes
        ):
            return None
        plan = self._plan(request.method, request.raw_path)
        if plan is None:
            return None
        state = self.state
        rs = plan.rs
        policy = rs.config.cache
        assert policy is not None

        def sent(name: str) -> str | None:
            return field_value(headers, name)

        key = plan.key or primary_key(rs.config.name, plan.path, plan.query, policy.key, sent)
        vary = state.vary.get(key)
        vkey = variant_key(key, vary, sent) if vary else key
        now = state.clock.now()
        entry = state.store.get(vkey, now)
        if entry is None or freshness.decide(entry, now) is not Decision.FRESH:
            return None
        return self._hit(request, rs, vkey, entry, now, date)

    def _hit(
        self, request: Request, rs: RouteState, vkey: str, entry: Entry, now: float, date: Callable[[], bytes]
    ) -> bytes:
        state = self.state
        headers = request.headers
        wire = self._wires.get(vkey)
        if wire is None or wire.entry is not entry:
            if len(self._wires) >= MAX_WIRES:
                self._wires.clear()
            wire = self._wires[vkey] = Wire(entry)
        rid = self.request_id(request)
        txn = Txn(
            rid,
            now,
            request.method,
            request.raw_path,
            request.remote if state.telemetry.access.enabled else "",
        )
        txn.route, txn.upstream, txn.x_cache = rs.config.name, rs.config.upstream, "HIT"
        rs.requests += 1
        rs.hits += 1
        if state.telemetry.access.enabled:
            txn.breaker = rs.upstream.state(now).value
        inm, ims = headers.get("If-None-Match"), headers.get("If-Modified-Since")
        not_modified = (
            entry.status == 200
            and (inm is not None or ims is not None)
            and freshness.not_modified(entry, inm, ims)
        )
        ttl = int(entry.fresh_until - now)  # fresh: positive, so int() is floor
        extra = (
            f"X-Cache: HIT\r\nCache-Status: {CACHE_NAME}; hit; ttl={ttl}\r\n"
            f"X-Request-Id: {rid}\r\nAge: {age_value(entry, now)}\r\n"
        )
        if not_modified:
            txn.status = 304
            out = wire.not_modified + extra.encode("latin-1")
        else:
            txn.status = entry.status
            txn.bytes = len(entry.body)
            bare = entry.status in (204, 304) or entry.status < 200
            length = "" if bare else f"Content-Length: {len(entry.body)}\r\n"
            out = wire.ok + (extra + length).encode("latin-1")
        if not wire.has_date:
            out += date()
        out += b"\r\n"
        if not not_modified and request.method == "GET" and entry.body:
            out += entry.body
        state.telemetry.transaction(txn, now)
        return out

    def _plan(self, method: str, raw: str) -> Plan | None:
        runtime = self.state.runtime
        if runtime is not self._runtime:
            self._plans.clear()
            self._runtime = runtime
        memo = (method, raw)
        plan = self._plans.get(memo)
        if plan is None:
            plan = _make_plan(runtime, method, raw, self.limits.max_url) or _NO_PLAN
            if len(self._plans) >= MAX_PLANS:
                self._plans.clear()
            self._plans[memo] = plan
        return plan if isinstance(plan, Plan) else None


def _make_plan(runtime: Runtime, method: str, raw: str, max_url: int) -> Plan | None:
    """The same steps as `Handler.recv` and `lookup`, for a target that may be a fresh hit."""
    if len(raw) > max_url or unsafe_target(raw) is not None:
        return None
    path, _, query = raw.partition("?")
    found = runtime.match(path, method)
    if isinstance(found, frozenset):
        return None
    rs, _ = found
    policy = rs.config.cache
    if policy is None:
        return None
    keyed_query = normal_query(query, policy.key)
    key = None if policy.key.headers else primary_key(rs.config.name, path, keyed_query, policy.key, _none)
    return Plan(rs, path, keyed_query, key)


def _none(name: str) -> str | None:
    return None
