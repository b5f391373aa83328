"""The request path, one method per state, read top to bottom as Varnish's builtin.vcl names them.

recv     match a route; refuse what no route allows (400/404/405/414/431); a read of a cached
         route goes on to hash, everything else (writes, uncached routes) is a pass
hash     the cache key, from only what the route keys on (and the Vary of what is stored)
lookup   the cache front (`cache.Cache`: memory, then the shared tier)
decide   `core.decide.on_lookup`: hit | stale copy + background refresh | fetch | only-if-cached
fetch    one vendor exchange per key, coalesced (`waitinglist`), or a pass (`fetch.Fetcher`)
deliver  `answers`: the hit, the copy, the vendor's answer, or a failure's copy/fallback/error

Reads and writes share fetch and deliver: a write is a pass, sent once unless idempotent, never
stored, and invalidates what it changed (RFC 9111 4.4). Fresh hits the listener answers from
prepared bytes (`fasthit`) never reach here; they follow the same rules.
Must not: parse config, talk to vendors (`upstream`, `transport`), read the clock other than
through the injected `Clock`, or build answers (`answers`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final

from proxy.answers import Answers
from proxy.cache import Cache
from proxy.clock import Clock
from proxy.core import decide
from proxy.core.decide import Action, Vendor
from proxy.core.errors import (
    BadRequest,
    HeadersTooLarge,
    MethodNotAllowed,
    NoRoute,
    NotCached,
    ProxyError,
    UriTooLong,
)
from proxy.core.headers import sender
from proxy.core.keys import VARY_SEP, normal_query, primary_key, variant_key
from proxy.core.model import Entry
from proxy.core.routing import Match, Target, unsafe_target
from proxy.deliver import Txn, error_response
from proxy.exchange import Endpoint, Request, Response
from proxy.fasthit import FastHits
from proxy.fetch import Fetcher
from proxy.flight import Flights, Tasks
from proxy.invalidate import Invalidator
from proxy.outcome import Outcome
from proxy.refresh import Refresher, release_unused
from proxy.relay import forward_headers, has_credentials, offered, read_body
from proxy.requestid import RequestIds
from proxy.runtime import Live, RouteState
from proxy.telemetry import Telemetry
from proxy.transport import Outbound
from proxy.waitinglist import Slow, wait

log = logging.getLogger("proxy.driver")
CACHEABLE: Final = frozenset({"GET", "HEAD"})
SAFE: Final = frozenset({"GET", "HEAD", "OPTIONS"})  # RFC 9110 9.2.1 (TRACE is never proxied)
# The precise status past our limits, 414 or 431 (RFC 9110 15.5.15, RFC 6585 5), as JSON.
MAX_URL: Final = 4096
MAX_HEADERS: Final = 100
MAX_HEADER_BYTES: Final = 16384


class Driver(Endpoint):
    def __init__(
        self,
        clock: Clock,
        live: Live,
        cache: Cache,
        telemetry: Telemetry,
        flights: Flights[Outcome],
        tasks: Tasks,
        fetcher: Fetcher,
        refresher: Refresher,
        invalidator: Invalidator,
        ids: RequestIds,
        hits: FastHits,
    ) -> None:
        self.clock, self.live, self.cache, self.telemetry = clock, live, cache, telemetry
        self.flights, self.tasks, self.fetcher, self.refresher = flights, tasks, fetcher, refresher
        self.invalidator, self.ids, self.hits = invalidator, ids, hits
        self.answers = Answers(telemetry)

    def fast(self, request: Request, date: Callable[[], bytes]) -> bytes | None:
        """A fresh hit's whole answer, written by the listener at once; None: call `handle`."""
        return self.hits.answer(request, date)

    def now(self) -> float:
        """Wall-clock seconds for the listener's `Date` header."""
        return self.clock.now()

    async def handle(self, request: Request) -> Response:
        """The answer to one request, and its transaction logged once the answer is out."""
        clock, telemetry = self.clock, self.telemetry
        txn = Txn(
            self.ids.of(request),
            clock.now(),
            request.method,
            request.raw_path,
            (request.remote or "") if telemetry.access.enabled else "",
        )
        try:
            response = await self.recv(request, txn)
        except ProxyError as err:
            response = error_response(err, txn)
        except (asyncio.CancelledError, ConnectionResetError):
            txn.status = 499  # client went away (nginx's convention)
            telemetry.transaction(txn, clock.now())
            raise
        except Exception:
            log.exception("request %s failed inside the proxy", txn.request_id)
            response = error_response(ProxyError("internal error in the proxy"), txn)
            response.status = txn.status = 500
        if request.method == "CONNECT":
            response.close = True  # never leave a would-be tunnel open
        if response.stream is None:
            telemetry.transaction(txn, clock.now())
        else:  # logged once the last byte is out (or the relay broke)
            response.done = lambda: telemetry.transaction(txn, clock.now())
        return response

    # -- recv ----------------------------------------------------------------------------------

    async def recv(self, request: Request, txn: Txn) -> Response:
        runtime = self.live.runtime  # one read: a reload during this request does not mix configs
        planned = self.hits.planned(request, runtime)
        if planned is not None:  # the fast path matched and keyed this target (no fresh hit)
            _admit_head(request)
            rs, path, query = planned.rs, planned.path, planned.query
            target = self._admitted(rs, txn, path, query, planned.match)
            return await self.lookup(request, rs, path, query, target, txn, planned.key)
        _admit(request)
        path, _, query = request.raw_path.partition("?")
        found = runtime.match(path, request.method)
        if isinstance(found, frozenset):
            named = runtime.route_at(path) if found else None  # a 405 names the route whose path matched
            if named is not None:
                txn.route, txn.upstream = named.config.name, named.config.upstream
            if not found:
                raise NoRoute(f"no route for {path}")
            raise MethodNotAllowed(f"{request.method} is not allowed here", tuple(sorted(found)))
        rs, match = found
        route = rs.config
        if route.cache is None or request.method not in CACHEABLE:
            return await self.pass_(request, rs, path, self._admitted(rs, txn, path, query, match), txn)
        keyed_query = normal_query(query, route.cache.key)  # the vendor gets exactly what is keyed
        target = self._admitted(rs, txn, path, keyed_query, match)
        return await self.lookup(request, rs, path, keyed_query, target, txn, None)

    def _admitted(self, rs: RouteState, txn: Txn, path: str, query: str, match: Match) -> Target:
        """The request counted on its route; its vendor target, worked out only if the vendor
        is asked. On a cached route `query` is what the route keys (and all the vendor gets)."""
        txn.route, txn.upstream = rs.config.name, rs.config.upstream
        rs.requests += 1
        if self.telemetry.access.enabled:
            txn.breaker = rs.upstream.state(txn.start)._value_  # `.value` is a Python call on 3.11
        return Target(rs.config.rewrite, path, query, match)

    # -- hash + lookup + decide ----------------------------------------------------------------

    async def lookup(
        self,
        request: Request,
        rs: RouteState,
        path: str,
        query: str,
        target: Target,
        txn: Txn,
        key: str | None,
    ) -> Response:
        """`key`: the primary key when the plan knew it already (the route keys no header)."""
        policy = rs.config.cache
        assert policy is not None

        configured = rs.upstream.config.headers  # what the vendor would get, and only that
        if key is None:
            key = primary_key(rs.config.name, path, query, policy.key, sender(request.headers, configured))
        vary = self.cache.vary_of(key)
        vkey = variant_key(key, vary, sender(request.headers, configured)) if vary else key
        now = txn.start  # the request's own time (Varnish's t_req): nothing was awaited since
        entry = await self.cache.lookup(vkey, now)
        vendor = Vendor(rs.upstream.available(now), rs.upstream.track.healthy is False)
        # every Cache-Control line counts (RFC 9110 5.3), as noted while parsing
        only_if_cached = "only-if-cached" in (request.field("cache-control") or "")
        plan = decide.on_lookup(entry, now, vendor, only_if_cached=only_if_cached)
        if plan.action is Action.HIT:
            assert entry is not None
            rs.hits += 1
            return self.answers.hit(request, entry, now, txn, plan.reason)
        if plan.action is Action.STALE:
            assert entry is not None
            updating = self.refresher.start(
                rs, vkey, entry, lambda: self._outbound(request, rs, target, vkey)
            )
            label = plan.x_cache if updating else "STALE"  # UPDATING: nginx's word, while it refreshes
            reason = plan.reason or "stale"
            return self.answers.stale(request, rs, entry, now, txn, reason, fwd=None, x_cache=label)
        if plan.action is Action.NOT_CACHED:
            raise NotCached("not in cache and only-if-cached was asked")
        return await self.fetch(request, rs, vkey, entry, target, txn)

    # -- fetch: one exchange per key, coalesced; or a pass -------------------------------------

    async def fetch(
        self, request: Request, rs: RouteState, vkey: str, entry: Entry | None, target: Target, txn: Txn
    ) -> Response:
        policy = rs.config.cache
        assert policy is not None
        out = self._outbound(request, rs, target, vkey)
        now = self.clock.now()
        future = self.flights.join(vkey)
        leader = future is None
        started = now if leader else self.flights.started_at(vkey)
        budget = decide.slow_budget(entry, now, stale_if_slow=policy.stale_if_slow, started=started)
        if future is None:
            if budget is None:  # this request waits to the end: it leads the flight itself
                return self.deliver(request, rs, entry, await self._lead(rs, vkey, entry, out, now), txn)
            future, _ = self.flights.start(vkey, lambda: self.fetcher.fetch(rs, vkey, entry, out), now)
        outcome: Outcome | None = None
        try:
            got = await wait(future, self.clock, None if leader else policy.lock_timeout, budget)
            if isinstance(got, Slow):  # the copy answers; the fetch goes on as a refresh (issue 16)
                self.refresher.adopt(rs, vkey, future, owned=leader)
                return self._while_slow(request, rs, entry, txn)
            outcome = got
        except TimeoutError:
            log.warning("coalesced wait for %s timed out; fetching alone", vkey[:120])
        except asyncio.CancelledError:
            if not future.cancelled():  # cancelled flight: the task set was full, fetch inline
                raise
        if (
            outcome is not None
            and not leader
            and not outcome.shareable_for(request, rs.upstream.config.headers)
        ):
            outcome = None  # Vary mismatch or uncacheable: waiters are released, not served
        if outcome is None:  # what the flight learnt (a Vary) shapes this request's own
            alone = await self._fetch_alone(rs, vkey, entry, self._outbound(request, rs, target, vkey), txn)
            if isinstance(alone, Slow):
                return self._while_slow(request, rs, entry, txn)
            outcome, leader = alone, True
        return self.deliver(request, rs, entry, outcome, txn, collapsed=not leader)

    async def _lead(
        self, rs: RouteState, vkey: str, entry: Entry | None, out: Outbound, now: float
    ) -> Outcome:
        """The key's fetch, run in this request (no task: nothing here stops waiting before it
        ends); requests for the same key meanwhile join it (`Flights.join`)."""
        if not self.flights.lead(vkey, now):  # as many flights as allowed: fetch uncoalesced
            return await self.fetcher.fetch(rs, vkey, entry, out)
        try:
            outcome = await self.fetcher.fetch(rs, vkey, entry, out)
        except BaseException as exc:
            self.flights.end(vkey, None, exc)
            raise
        self.flights.end(vkey, outcome, None)
        return outcome

    def _while_slow(self, request: Request, rs: RouteState, entry: Entry | None, txn: Txn) -> Response:
        assert entry is not None  # a budget exists only with a copy usable on error
        return self.answers.stale(request, rs, entry, self.clock.now(), txn, "stale-if-slow", fwd="stale")

    async def _fetch_alone(
        self, rs: RouteState, vkey: str, entry: Entry | None, out: Outbound, txn: Txn
    ) -> Outcome | Slow:
        """A fetch outside the key's flight (after `lock_timeout`, a Vary mismatch, or a full
        task set), with the same `stale_if_slow` budget, measured from this request's arrival:
        past it the copy answers and the fetch goes on in the background, as a refresh."""
        policy = rs.config.cache
        assert policy is not None
        now = self.clock.now()
        budget = decide.slow_budget(entry, now, stale_if_slow=policy.stale_if_slow, started=txn.start)
        task = None if budget is None else self.tasks.spawn(self.fetcher.fetch(rs, vkey, entry, out), "fetch")
        if task is None:
            return await self.fetcher.fetch(rs, vkey, entry, out)
        try:
            got = await wait(task, self.clock, None, budget)
        except BaseException:  # the client went away: the fetch ends on its own, unread
            task.add_done_callback(release_unused)
            raise
        if isinstance(got, Slow):
            self.refresher.adopt_alone(rs, vkey, task)
        return got

    async def pass_(self, request: Request, rs: RouteState, path: str, target: Target, txn: Txn) -> Response:
        route = rs.config
        out = Outbound(
            request.method,
            target.value(),
            forward_headers(request, rs.upstream.config, cacheable=False),
            body=await read_body(request, route.max_body or self.live.runtime.config.server.max_body),
            timeout=route.timeout,
            idempotency_key=request.has("idempotency-key"),
        )
        outcome = await self.fetcher.pass_(rs, out)
        fetched = outcome.fetched
        if fetched is not None and request.method not in SAFE and fetched.status < 400:
            self.invalidator.invalidate(request, path, fetched.headers)  # unknown methods too
        return self.deliver(request, rs, None, outcome, txn, passed=True)

    # -- deliver -------------------------------------------------------------------------------

    def deliver(
        self,
        request: Request,
        rs: RouteState,
        entry: Entry | None,
        outcome: Outcome,
        txn: Txn,
        *,
        collapsed: bool = False,
        passed: bool = False,
    ) -> Response:
        now = self.clock.now()
        return self.answers.fetched(request, rs, entry, outcome, now, txn, collapsed=collapsed, passed=passed)

    def _outbound(self, request: Request, rs: RouteState, target: Target, vkey: str) -> Outbound:
        # HEAD is fetched as GET so the answer can be stored and serve both (RFC 9110 9.3.2).
        assert rs.config.cache is not None
        vary = self.cache.vary_of(vkey.split(VARY_SEP, 1)[0]) or ()
        keyed = (*rs.config.cache.key.headers, *vary)
        return Outbound(
            "GET",
            target.value(),
            forward_headers(request, rs.upstream.config, cacheable=True, keyed=keyed),
            offered=offered(request),
            timeout=rs.config.timeout,
            credentials=has_credentials(request),
        )


def _admit(request: Request) -> None:
    """What no route may receive: tunnels and traces, oversized heads, unsafe targets."""
    if request.method in ("CONNECT", "TRACE"):
        raise MethodNotAllowed(f"{request.method} is never proxied", ())
    if len(request.raw_path) > MAX_URL:
        raise UriTooLong(f"request target over {MAX_URL} bytes")
    _admit_head(request)
    why = unsafe_target(request.raw_path)
    if why is not None:
        raise BadRequest(why)


def _admit_head(request: Request) -> None:
    """The header limits (a planned target passed the method and target checks already)."""
    raw_headers = request.raw_headers
    size = request.head_size  # noted while parsing: an upper bound of the header bytes
    if not 0 < size <= MAX_HEADER_BYTES:
        size = sum(len(k) + len(v) for k, v in raw_headers)
    if len(raw_headers) > MAX_HEADERS or size > MAX_HEADER_BYTES:
        raise HeadersTooLarge(f"at most {MAX_HEADERS} headers and {MAX_HEADER_BYTES} bytes of them")
