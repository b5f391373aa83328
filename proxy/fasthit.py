"""Fresh hits answered in one write, from bytes prepared once per stored entry.

Owns: the plan of a raw request target (route, path, keyed query, and the key itself when the
route keys no header), memoised per (method, target) once its key is found stored, in a bounded
map that belongs to one runtime (a reload starts afresh); the wire head of a stored entry
(status line and stored headers, for 200 and for a 304) prepared the first time the entry is
served, kept per key in a bounded map in memory only (never in msgpack or Redis) and checked
against the entry's stored form on every hit, so a refreshed entry gets new bytes; the bytes of
a fresh hit: that head, then the few per-request headers (`X-Cache`, `Cache-Status`,
`X-Request-Id`, `Age`, `Content-Length`, `Date` when the entry has none), then the body, in one
`write`. All but the request id change at most once a second (`ttl`, `Age`, `Date`), so they
are kept per entry until the instant one would change (`Wire.heat`). Hits are counted as
`metrics.Tally` increments, one per (route, method, status), folded into
`rproxy_requests_total` and the duration histogram (as 0 s) when those are read; with the
access log on, its line too (`Telemetry.log_only`).

Must not: answer anything but a fresh hit from the memory tier on HTTP/1.1 keep-alive GET or
HEAD without a body or `Range`: every other request (misses, stale, the shared tier, errors,
refusals) returns None and takes the full path (`driver.Driver.handle`) with the same parsed
request. Its bytes are the ones `deliver.entry_response` and the listener would write, counted
and logged as `Telemetry.transaction` would.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from proxy.cache import Cache
from proxy.clock import Clock
from proxy.core import conditional
from proxy.core.cachecontrol import DELTA_MAX
from proxy.core.headers import sender
from proxy.core.keys import normal_query, primary_key, variant_key
from proxy.core.model import Entry
from proxy.core.routing import Match, unsafe_target
from proxy.deliver import CACHE_NAME, Txn, served_headers
from proxy.exchange import Request
from proxy.metrics import Tally
from proxy.requestid import RequestIds
from proxy.responsewriter import status_and_fields
from proxy.runtime import Live, RouteState, Runtime
from proxy.telemetry import Telemetry

MAX_PLANS: Final = 16_384  # memoised targets per runtime, oldest out first (a few hundred bytes each)
MAX_WIRES: Final = 16_384  # prepared entry heads (a few hundred bytes each); past it the oldest goes
_CACHEABLE: Final = frozenset({"GET", "HEAD"})


class Plan:
    """What a raw target means on this runtime, computed once; and its metric labels. A request
    that is not a fresh hit carries its plan to the full path (`planned`), which reads the route,
    path parameters, keyed query and key from it instead of working them out again."""

    __slots__ = ("key", "match", "path", "query", "rs", "tallies")

    def __init__(self, rs: RouteState, path: str, query: str, match: Match, key: str | None) -> None:
        self.rs, self.path, self.query, self.match, self.key = rs, path, query, match, key
        self.tallies: dict[int, Tally] = {}  # by status: shared with every plan of the route


class Wire:
    """A fresh hit's bytes and facts, derived once from an entry and valid while the memory
    tier holds the same stored form (`blob`): the status line and stored headers (`ok`, and
    `not_modified` for a 304), the body, and what the per-request headers need. Flat on purpose:
    no decoded entry is kept alive (its headers are many small objects the garbage collector
    would visit), so hits over many keys skip decoding without the cost of a decoded cache."""

    __slots__ = (
        "blob",
        "body",
        "etag",
        "fresh_until",
        "has_date",
        "heuristic",
        "hot_from",
        "hot_mid",
        "hot_tail",
        "hot_until",
        "initial_age",
        "last_modified",
        "length",
        "not_modified",
        "ok",
        "status",
        "stored_at",
    )

    def __init__(self, entry: Entry, blob: bytes) -> None:
        self.blob, self.body, self.status = blob, entry.body, entry.status
        self.fresh_until, self.stored_at, self.initial_age = (
            entry.fresh_until,
            entry.stored_at,
            entry.initial_age,
        )
        self.heuristic, self.etag, self.last_modified = entry.heuristic, entry.etag, entry.last_modified
        served = served_headers(entry, not_modified=False)
        self.ok, self.has_date = status_and_fields("1.1", entry.status, served)
        self.not_modified, _ = status_and_fields("1.1", 304, served_headers(entry, not_modified=True))
        status = entry.status
        bare = status in (204, 304) or status < 200
        self.length = b"" if bare else b"Content-Length: %d\r\n" % len(entry.body)
        # The bytes around the request id after `ok`, valid while `hot_from <= now < hot_until`:
        # `ttl`, `Age` and `Date` change at most once a second, so most hits only join them.
        self.hot_from = self.hot_until = 0.0
        self.hot_mid = self.hot_tail = b""

    def heat(self, now: float, date: Callable[[], bytes]) -> None:
        """Prepare `hot_mid` and `hot_tail` for `now` (after `stored_at`, before `fresh_until`)."""
        ttl = int(self.fresh_until - now)
        raw_age = self.initial_age + now - self.stored_at
        # RFC 9111 5.1 and 1.2.2: delta-seconds rounded down, never past 2^31; ttl > 0 (fresh)
        age = int(min(raw_age, DELTA_MAX))
        self.hot_mid = b"%b%d%b" % (_STATUS_HIT, ttl, _GUESSED if self.heuristic else _REQUEST_ID)
        until = math.nextafter(self.fresh_until - ttl, math.inf)  # ttl drops past this instant
        if raw_age < DELTA_MAX:
            until = min(until, self.stored_at - self.initial_age + age + 1)  # age grows
        if self.has_date:
            self.hot_tail = b"\r\nAge: %d\r\n%b\r\n" % (age, self.length)
        else:
            self.hot_tail = b"\r\nAge: %d\r\n%b%b\r\n" % (age, self.length, date())
            until = min(until, math.floor(now) + 1)  # `Date` changes with the second
        self.hot_from, self.hot_until = now, until


_STATUS_HIT: Final = f"X-Cache: HIT\r\nCache-Status: {CACHE_NAME}; hit; ttl=".encode("latin-1")
_REQUEST_ID: Final = b"\r\nX-Request-Id: "
_GUESSED: Final = b'; detail="heuristic"' + _REQUEST_ID  # RFC 9111 4.2.2, as decide says


_NO_PLAN: Final = object()


@dataclass(frozen=True, slots=True)
class Limits:
    """The full path's request limits: past any of them the full path answers 414 or 431."""

    max_url: int
    max_headers: int
    max_header_bytes: int


class FastHits:
    def __init__(
        self, clock: Clock, live: Live, cache: Cache, telemetry: Telemetry, ids: RequestIds, limits: Limits
    ) -> None:
        self.clock, self.live, self.telemetry = clock, live, telemetry
        self.vary, self.store = cache.vary, cache.memory  # fresh hits are answered from memory only
        self.ids = ids  # the full path's: one sequence of request ids per process
        self.limits = limits
        # Bounded maps, oldest out first: OrderedDict, whose oldest is found at once, where a
        # dict's `next(iter(...))` walks past every slot deleted before it (~10 us at 16,384).
        self._plans: OrderedDict[tuple[str, str], Plan | object] = OrderedDict()
        self._runtime: Runtime | None = None
        self._wires: OrderedDict[str, Wire] = OrderedDict()
        self._tallies: dict[tuple[str, str, str, str], Tally] = {}

    def answer(self, request: Request, date: Callable[[], bytes]) -> bytes | None:
        """The whole answer to a fresh hit, or None: take the full path."""
        if request.body is not None or request.version != "1.1" or request.method not in _CACHEABLE:
            return None
        limits = self.limits
        if len(request.raw_headers) > limits.max_headers or request.head_size > limits.max_header_bytes:
            return None
        hinted = request.hints is None or bool(request.hints)  # any conditional, id or Range
        if hinted and request.hint("range") != _ABSENT:
            return None
        memo = (request.method, request.raw_path)
        plan = self._plans.get(memo) if self.live.runtime is self._runtime else None
        known = plan is not None
        if not known:
            plan = self._plan(memo)
        if not isinstance(plan, Plan):
            return None
        request.plan = plan
        rs = plan.rs
        key = plan.key
        configured = rs.upstream.config.headers
        if key is None:
            policy = rs.config.cache
            assert policy is not None
            sent = sender(request.headers, configured)
            key = primary_key(rs.config.name, plan.path, plan.query, policy.key, sent)
        vary = self.vary.get(key)
        vkey = variant_key(key, vary, sender(request.headers, configured)) if vary else key
        now = self.clock.now()
        blob = self.store.blob(vkey, now)
        if blob is None:
            return None
        if not known:
            self._memo(memo, plan)
        wire = self._wires.get(vkey)
        if wire is None or wire.blob is not blob:
            wire = self._prepare(vkey, blob, now)
        if wire is None or now >= wire.fresh_until:  # decide.on_lookup: only HIT is ours
            return None
        inm = ims = None
        if hinted:
            inm_known, inm = request.hint("if-none-match")
            ims_known, ims = request.hint("if-modified-since")
            if not (inm_known and ims_known):
                return None  # a conditional sent twice: the full path joins the values
        not_modified = (
            (inm is not None or ims is not None)
            and wire.status == 200
            and conditional.validators_match(wire.etag, wire.last_modified, inm, ims)
        )
        rid = self.ids.of(request).encode("latin-1") if hinted else self.ids.new_bytes()
        rs.requests += 1
        rs.hits += 1
        if not_modified or now <= wire.stored_at or wire.status == 304:
            return self._hit(request, plan, wire, now, not_modified, rid.decode("latin-1"), date)
        if not wire.hot_from <= now < wire.hot_until:
            wire.heat(now, date)
        body = wire.body
        if request.method == "GET" and body:
            out = b"".join((wire.ok, wire.hot_mid, rid, wire.hot_tail, body))
        else:
            out = b"".join((wire.ok, wire.hot_mid, rid, wire.hot_tail))
        tally = plan.tallies.get(wire.status)
        if tally is None:
            tally = self._tally(plan, request.method, wire.status)
        tally.n += 1
        if self.telemetry.access.enabled:
            self._log(request, plan, rid.decode("latin-1"), wire.status, len(body), now)
        return out

    def planned(self, request: Request, runtime: Runtime) -> Plan | None:
        """The plan `answer` found for `request`, if made on `runtime` (a reload since: None)."""
        plan = request.plan
        return plan if isinstance(plan, Plan) and runtime is self._runtime else None

    def _prepare(self, vkey: str, blob: bytes, now: float) -> Wire | None:
        """The prepared answer for `vkey`, made again when the stored form (`blob`) changed."""
        entry = self.store.get(vkey, now)
        if entry is None:
            return None
        wires = self._wires
        if vkey not in wires and len(wires) >= MAX_WIRES:
            wires.popitem(last=False)  # the oldest prepared
        wire = wires[vkey] = Wire(entry, blob)
        return wire

    def _hit(
        self,
        request: Request,
        plan: Plan,
        wire: Wire,
        now: float,
        not_modified: bool,
        rid: str,
        date: Callable[[], bytes],
    ) -> bytes:
        age = wire.initial_age + now - wire.stored_at if now > wire.stored_at else wire.initial_age
        # RFC 9111 5.1 and 1.2.2: delta-seconds rounded down, never past 2^31; ttl > 0 (fresh)
        guess = '; detail="heuristic"' if wire.heuristic else ""  # RFC 9111 4.2.2, as decide says
        extra = (
            f"X-Cache: HIT\r\nCache-Status: {CACHE_NAME}; hit; ttl={int(wire.fresh_until - now)}{guess}\r\n"
            f"X-Request-Id: {rid}\r\nAge: {int(min(age, DELTA_MAX))}\r\n"
        )
        body = wire.body
        if not_modified:
            status = 304
            parts = [wire.not_modified, extra.encode("latin-1")]
        else:
            status = wire.status
            if status in (204, 304) or status < 200:
                parts = [wire.ok, extra.encode("latin-1")]
            else:
                parts = [wire.ok, f"{extra}Content-Length: {len(body)}\r\n".encode("latin-1")]
        if not wire.has_date:
            parts.append(date())
        parts.append(b"\r\n")
        if status != 304 and request.method == "GET" and body:
            parts.append(body)
        out = b"".join(parts)  # one copy of the body, one write
        self._count(request, plan, rid, status, 0 if status == 304 else len(body), now)
        return out

    def _count(self, request: Request, plan: Plan, rid: str, status: int, sent: int, now: float) -> None:
        """Metrics as `Telemetry.transaction` counts them; the access log line when it is on.
        The answer was built within one clock reading: its duration is observed as 0."""
        tally = plan.tallies.get(status)
        if tally is None:
            tally = self._tally(plan, request.method, status)
        tally.n += 1
        if self.telemetry.access.enabled:
            self._log(request, plan, rid, status, sent, now)

    def _log(self, request: Request, plan: Plan, rid: str, status: int, sent: int, now: float) -> None:
        """The access line alone (`Telemetry.log_only`): the hit is counted by its `Tally`, as
        with the log off."""
        rs = plan.rs
        txn = Txn(rid, now, request.method, request.raw_path, request.remote)
        txn.route, txn.upstream, txn.x_cache = rs.config.name, rs.config.upstream, "HIT"
        txn.status, txn.bytes = status, sent
        txn.breaker = rs.upstream.state(now)._value_  # the enum's own slot: `.value` is a call on 3.11
        self.telemetry.log_only(txn, now)

    def _tally(self, plan: Plan, method: str, status: int) -> Tally:
        """The count of fresh hits for (route, method, status), folded into the request counter
        and the duration histogram (as 0 s) whenever they are read. One per series, shared by
        the route's plans (a plan is keyed by method), so their number stays bounded."""
        route = plan.rs.config.name
        labels = (route, method, str(status), "HIT")
        tally = self._tallies.get(labels)
        if tally is None:
            tally = self._tallies[labels] = Tally()
            telemetry = self.telemetry
            telemetry.requests.attach(labels, tally)
            telemetry.duration.attach((route,), tally, 0.0)
        plan.tallies[status] = tally
        return tally

    def _plan(self, memo: tuple[str, str]) -> Plan | object:
        """A new plan for (method, target). Only a refusal (`_NO_PLAN`) is memoised here: a plan
        is memoised once its key is found stored (`_memo`), so a run of misses on new keys
        (each planned once, never asked again) does not churn the memo."""
        runtime = self.live.runtime
        if runtime is not self._runtime:
            self._plans.clear()
            self._runtime = runtime
        method, raw = memo
        plan = _make_plan(runtime, method, raw, self.limits.max_url)
        if plan is None:
            self._memo(memo, _NO_PLAN)
            return _NO_PLAN
        return plan

    def _memo(self, memo: tuple[str, str], plan: Plan | object) -> None:
        plans = self._plans
        if len(plans) >= MAX_PLANS:  # the oldest goes: a working set of keys stays
            plans.popitem(last=False)
        plans[memo] = plan


def _make_plan(runtime: Runtime, method: str, raw: str, max_url: int) -> Plan | None:
    """The same steps as `Driver.recv` and `lookup`, for a target that may be a fresh hit."""
    if len(raw) > max_url or unsafe_target(raw) is not None:
        return None
    path, _, query = raw.partition("?")
    found = runtime.scan(path, method)  # the plan is the memo
    if isinstance(found, frozenset):
        return None
    rs, match = found
    policy = rs.config.cache
    if policy is None:
        return None
    keyed_query = normal_query(query, policy.key)
    key = None if policy.key.headers else primary_key(rs.config.name, path, keyed_query, policy.key, _none)
    return Plan(rs, path, keyed_query, match, key)


def _none(name: str) -> str | None:
    return None


_ABSENT: Final = (True, None)
