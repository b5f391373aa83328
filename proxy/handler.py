"""The request path, one method per state, as Varnish's builtin.vcl names them.

recv    match a route; refuse what no route allows (400/404/405/413); pass what is not cached
hash    the cache key, from only what the route keys on
lookup  L1 memory, then the shared tier
decide  fresh -> hit | stale within SWR -> stale + background refresh | else fetch (coalesced;
        with `stale_if_slow`, a copy usable on error answers once the budget passes)
fetch   in `fetch.py`: upstream call, guards, store
error   a usable copy (stale-if-error, last-known-good) marked stale; else fallback or JSON error
deliver in `deliver.py`

Must not: parse config, talk to vendors (that is `upstream` and `transport`), or read the clock other
than through `state.clock`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import uuid
from collections.abc import Callable

from proxy.core import decide, freshness
from proxy.core.config.model import Fallback
from proxy.core.decide import Action, Failure, Vendor
from proxy.core.errors import (
    BadRequest,
    CircuitOpen,
    DataRejected,
    HeadersTooLarge,
    MethodNotAllowed,
    NoRoute,
    NotCached,
    ProxyError,
    UpstreamStatus,
    UriTooLong,
)
from proxy.core.headers import field_value
from proxy.core.keys import VARY_SEP, normal_query, primary_key, variant_key
from proxy.core.model import Entry
from proxy.core.routing import Target, unsafe_target
from proxy.deliver import Txn, cache_status, entry_response, error_response, passed_response
from proxy.exchange import Request, Response
from proxy.fasthit import FastHits, Limits
from proxy.fetch import Fetcher, Outcome
from proxy.relay import forward_headers, has_credentials, offered, read_body, stream_response
from proxy.runtime import RouteState
from proxy.state import ProxyState
from proxy.transport import Outbound

log = logging.getLogger("proxy.handler")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
CACHEABLE = frozenset({"GET", "HEAD"})
# Our own limits sit below aiohttp's parser limits (8190 bytes a line, 128 headers), which answer
# a bare 400: these answer the precise status, 414 or 431 (RFC 9110 15.5.15, RFC 6585 5), as JSON.
MAX_URL = 4096
MAX_HEADERS = 100
MAX_HEADER_BYTES = 16384
SAFE = frozenset({"GET", "HEAD", "OPTIONS"})  # RFC 9110 9.2.1 (TRACE is never proxied)


class Handler:
    def __init__(self, state: ProxyState) -> None:
        self.state = state
        self.fetcher = Fetcher(state)
        # Request ids: a random per-process prefix and a counter; unique, and cheaper than uuid4
        # on the hot path.
        self._id_prefix = uuid.uuid4().hex[:12]
        self._ids = itertools.count(1)
        self.hits = FastHits(
            state,
            self.request_id,
            (self._id_prefix, self._ids),
            Limits(MAX_URL, MAX_HEADERS, MAX_HEADER_BYTES),
        )

    def fast(self, request: Request, date: Callable[[], bytes]) -> bytes | None:
        """A fresh hit's whole answer, written by the listener at once; None: call `handle`."""
        return self.hits.answer(request, date)

    def request_id(self, request: Request) -> str:
        """The client's X-Request-Id when it is sane, else ours."""
        known, incoming = request.hint("x-request-id")
        if not known:  # sent more than once: the first, as before
            incoming = request.headers.get("X-Request-Id")
        if incoming and _REQUEST_ID.match(incoming):
            return incoming
        return f"{self._id_prefix}{next(self._ids):08x}"

    def now(self) -> float:
        """Wall-clock seconds for the listener's `Date` header."""
        return self.state.clock.now()

    async def handle(self, request: Request) -> Response:
        state = self.state
        rid = self.request_id(request)
        txn = Txn(
            rid,
            state.clock.now(),
            request.method,
            request.raw_path,
            (request.remote or "") if state.telemetry.access.enabled else "",
        )
        try:
            response = await self.recv(request, txn)
        except ProxyError as err:
            response = error_response(err, txn)
        except (asyncio.CancelledError, ConnectionResetError):
            txn.status = 499  # client went away (nginx's convention)
            state.telemetry.transaction(txn, state.clock.now())
            raise
        except Exception:
            log.exception("request %s failed inside the proxy", rid)
            response = error_response(ProxyError("internal error in the proxy"), txn)
            response.status = 500
            txn.status = 500
        if request.method == "CONNECT":
            response.close = True  # never leave a would-be tunnel open
        if response.stream is None:
            state.telemetry.transaction(txn, state.clock.now())
        else:  # logged once the last byte is out (or the relay broke)
            response.done = lambda: state.telemetry.transaction(txn, state.clock.now())
        return response

    # -- recv ----------------------------------------------------------------------------------

    async def recv(self, request: Request, txn: Txn) -> Response:
        raw = request.raw_path
        if request.method in ("CONNECT", "TRACE"):
            raise MethodNotAllowed(f"{request.method} is never proxied", ())
        if len(raw) > MAX_URL:
            raise UriTooLong(f"request target over {MAX_URL} bytes")
        raw_headers = request.raw_headers
        if len(raw_headers) > MAX_HEADERS or sum(len(k) + len(v) for k, v in raw_headers) > MAX_HEADER_BYTES:
            raise HeadersTooLarge(f"at most {MAX_HEADERS} headers and {MAX_HEADER_BYTES} bytes of them")
        why = unsafe_target(raw)
        if why is not None:
            raise BadRequest(why)
        path, _, query = raw.partition("?")
        found = self.state.runtime.match(path, request.method)
        if isinstance(found, frozenset):
            if not found:
                raise NoRoute(f"no route for {path}")
            named = self.state.runtime.route_at(path)  # a 405 names the route whose path matched
            if named is not None:
                txn.route, txn.upstream = named.config.name, named.config.upstream
            raise MethodNotAllowed(f"{request.method} is not allowed here", tuple(sorted(found)))
        rs, match = found
        route = rs.config
        txn.route, txn.upstream = route.name, route.upstream
        rs.requests += 1
        if self.state.telemetry.access.enabled:
            txn.breaker = rs.upstream.state(txn.start).value
        if route.cache is not None and request.method in CACHEABLE:
            if request.method == "GET":  # answered from the stored 200 (RFC 9110 14.2), never sent
                txn.range, txn.if_range = request.headers.get("Range"), request.headers.get("If-Range")
            # The vendor gets exactly the query the key holds: nothing unkeyed rides along.
            keyed_query = normal_query(query, route.cache.key)
            target = Target(route.rewrite, path, keyed_query, match)  # built only if asked
            return await self.lookup(request, rs, path, keyed_query, target, txn)
        return await self.pass_(request, rs, path, Target(route.rewrite, path, query, match), txn)

    # -- pass: writes and uncached routes, sent once unless idempotent -------------------------

    async def pass_(self, request: Request, rs: RouteState, path: str, target: Target, txn: Txn) -> Response:
        route = rs.config
        body = await read_body(request, route.max_body or self.state.runtime.config.server.max_body)
        out = Outbound(
            request.method,
            target.value(),
            forward_headers(request, rs.upstream.config, cacheable=False),
            body=body,
            timeout=route.timeout,
            idempotency_key="Idempotency-Key" in request.headers,
        )
        fetched = await self.fetcher.call(rs, out, txn)
        if fetched.status >= 500 and route.upstream_errors == "replace":
            fetched.release()
            raise UpstreamStatus(f"upstream answered {fetched.status}", fetched.status)
        if request.method not in SAFE and fetched.status < 400:  # unknown methods too (RFC 9111 4.4)
            self.fetcher.invalidator.invalidate(request, path, fetched.headers)
        fwd = "bypass" if route.cache is None else "method"
        status_value = cache_status(hit=False, fwd=fwd, fwd_status=fetched.status)
        if not fetched.complete:
            return stream_response(request, fetched, txn, x_cache="BYPASS", status_value=status_value)
        response = passed_response(
            fetched.status, fetched.headers, fetched.body, txn, x_cache="BYPASS", status_value=status_value
        )
        response.interim = fetched.interim
        return response

    # -- hash + lookup + decide ----------------------------------------------------------------

    async def lookup(
        self, request: Request, rs: RouteState, path: str, query: str, target: Target, txn: Txn
    ) -> Response:
        state = self.state
        policy = rs.config.cache
        assert policy is not None

        def sent(name: str) -> str | None:  # the value the vendor would get, and only that
            return field_value(request.headers, name)

        key = primary_key(rs.config.name, path, query, policy.key, sent)
        vary = state.cache.vary_of(key)
        vkey = variant_key(key, vary, sent) if vary else key
        now = state.clock.now()
        entry = await state.cache.lookup(vkey, now)
        vendor = Vendor(rs.upstream.available(now), rs.upstream.track.healthy is False)
        only_if_cached = "only-if-cached" in request.headers.get("Cache-Control", "")
        plan = decide.on_lookup(entry, now, vendor, only_if_cached=only_if_cached)
        if plan.action is Action.HIT:
            assert entry is not None
            rs.hits += 1
            return self._hit(request, entry, now, txn, plan.reason)
        if plan.action is Action.STALE:
            assert entry is not None
            updating = self._refresh(request, rs, vkey, entry, target)
            label = plan.x_cache if updating else "STALE"  # UPDATING: nginx's word, while it refreshes
            return self._stale(rs, entry, now, txn, plan.reason or "stale", fwd=None, x_cache=label)
        if plan.action is Action.NOT_CACHED:
            raise NotCached("not in cache and only-if-cached was asked")
        return await self.fetch(request, rs, vkey, entry, target, txn)

    def _hit(self, request: Request, entry: Entry, now: float, txn: Txn, detail: str | None) -> Response:
        txn.x_cache = "HIT"
        not_modified = entry.status == 200 and freshness.not_modified(
            entry, request.headers.get("If-None-Match"), request.headers.get("If-Modified-Since")
        )
        return entry_response(
            entry,
            now,
            txn,
            x_cache="HIT",
            # RFC 9111 4.2.2 freshness is a guess: said so, since Warning 113 is gone
            status_value=cache_status(hit=True, ttl=entry.fresh_until - now, detail=detail),
            not_modified=not_modified,
        )

    def _stale(
        self,
        rs: RouteState,
        entry: Entry,
        now: float,
        txn: Txn,
        reason: str,
        fwd: str | None,
        fwd_status: int | None = None,
        x_cache: str = "STALE",
    ) -> Response:
        rs.stale += 1
        txn.stale_reason = reason
        self.state.telemetry.stale.inc((rs.config.name, reason.split(":")[0]))
        value = cache_status(
            hit=fwd is None, fwd=fwd, fwd_status=fwd_status, ttl=entry.fresh_until - now, detail=reason
        )
        return entry_response(entry, now, txn, x_cache=x_cache, status_value=value)

    # -- fetch (coalesced) ---------------------------------------------------------------------

    async def fetch(
        self, request: Request, rs: RouteState, vkey: str, entry: Entry | None, target: Target, txn: Txn
    ) -> Response:
        out = self._outbound(request, rs, target, vkey)
        state = self.state
        assert rs.config.cache is not None
        now = state.clock.now()
        future, leader = state.flights.start(vkey, lambda: self.fetcher.fetch(rs, vkey, entry, out), now)
        slow = rs.config.cache.stale_if_slow  # the copy answers once this passes (issue 16)
        budget = decide.slow_budget(entry, now, stale_if_slow=slow, started=state.flights.started_at(vkey))
        outcome: Outcome | None = None
        try:
            got = await self._wait(future, None if leader else rs.config.cache.lock_timeout, budget)
            if isinstance(got, _Slow):
                assert entry is not None
                return self._served_while_slow(rs, vkey, entry, future, txn, owned=leader)
            outcome = got
        except TimeoutError:
            log.warning("coalesced wait for %s timed out; fetching alone", vkey[:120])
        except asyncio.CancelledError:
            if future.cancelled():  # the task set was full: fetch inline
                outcome = None
            else:
                raise
        if outcome is not None and not leader and not outcome.shareable_for(request):
            outcome = None  # Vary mismatch or uncacheable: waiters are released, not served
        if outcome is None:
            outcome = await self.fetcher.fetch(rs, vkey, entry, out)
            leader = True
        response = await self._after_fetch(request, rs, entry, outcome, txn, collapsed=not leader)
        response.interim = outcome.interim if leader else ()  # the leader's exchange only
        return response

    async def _wait(
        self, future: asyncio.Future[Outcome], lock_timeout: float | None, budget: float | None
    ) -> Outcome | _Slow:
        """The flight's outcome, or `_SLOW` once `budget` seconds pass without it; TimeoutError
        after `lock_timeout`. Never cancels the flight: other waiters and the store need it."""
        if budget is None:
            shielded = asyncio.shield(future)
            return await (shielded if lock_timeout is None else asyncio.wait_for(shielded, lock_timeout))
        timer = asyncio.ensure_future(self.state.clock.sleep(budget))
        try:
            done, _ = await asyncio.wait(
                (future, timer), timeout=lock_timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            timer.cancel()
        if future in done:  # an answer that arrives with the deadline still wins
            return future.result()
        if timer in done:
            return _SLOW
        raise TimeoutError

    def _served_while_slow(
        self,
        rs: RouteState,
        vkey: str,
        entry: Entry,
        future: asyncio.Future[Outcome],
        txn: Txn,
        *,
        owned: bool,
    ) -> Response:
        """The vendor is slower than the route's `stale_if_slow`: answer with the copy and let the
        flight finish in the background, as a refresh (its result stored if it passes the guards,
        its failure counted and backed off). The first waiter to give up attaches that once."""
        state = self.state
        if state.flights.mark(vkey, future, "slow"):
            assert rs.config.cache is not None
            log.info(
                "route %s: no answer from %s within stale_if_slow %gs for %s; "
                "answered with the copy, the fetch goes on in the background",
                rs.config.name,
                rs.upstream.name,
                rs.config.cache.stale_if_slow,
                vkey[:120],
            )
        if state.flights.mark(vkey, future, "refresh"):  # unless it is a refresh already
            future.add_done_callback(lambda f: self.fetcher.refreshed(rs, vkey, f))
        if owned:  # nobody else may read a body this request was going to stream
            future.add_done_callback(_release_unused)
        return self._stale(rs, entry, state.clock.now(), txn, "stale-if-slow", fwd="stale")

    async def _after_fetch(
        self,
        request: Request,
        rs: RouteState,
        entry: Entry | None,
        outcome: Outcome,
        txn: Txn,
        *,
        collapsed: bool,
    ) -> Response:
        now = self.state.clock.now()
        txn.upstream_status = outcome.upstream_status
        if not collapsed:  # a waiter did not call the upstream: its latency is the leader's
            txn.upstream_ms = outcome.upstream_ms
            txn.retries = outcome.retries
        if outcome.error is not None:
            return self.error(rs, entry, outcome.error, txn, outcome.upstream_status)
        txn.x_cache = "MISS"
        if outcome.entry is not None:
            fwd = "stale" if outcome.revalidated else "miss"
            label = "REVALIDATED" if outcome.revalidated else "MISS"  # nginx's word for a 304
            value = cache_status(
                hit=False,
                fwd=fwd,
                fwd_status=outcome.upstream_status,
                ttl=outcome.entry.fresh_until - now,
                stored=outcome.stored,
                collapsed=collapsed,
                detail=outcome.detail or ("heuristic" if outcome.entry.heuristic else None),
            )
            served = outcome.entry
            if outcome.leader_headers is not None and not collapsed:  # fields the copy withholds
                served = served.with_headers(outcome.leader_headers)
            return entry_response(served, now, txn, x_cache=label, status_value=value)
        fetched = outcome.fetched
        assert fetched is not None
        value = cache_status(hit=False, fwd="miss", fwd_status=fetched.status, detail=outcome.detail)
        if not fetched.complete:
            return stream_response(request, fetched, txn, x_cache="MISS", status_value=value)
        return passed_response(
            fetched.status, fetched.headers, fetched.body, txn, x_cache="MISS", status_value=value
        )

    # -- error ---------------------------------------------------------------------------------

    def error(
        self, rs: RouteState, entry: Entry | None, err: ProxyError, txn: Txn, upstream_status: int | None
    ) -> Response:
        now = self.state.clock.now()
        guard = err.message if isinstance(err, DataRejected) else None
        if guard is not None:
            txn.guard = guard
        fallback = rs.config.fallback
        answer, reason = decide.on_failure(
            entry,
            now,
            circuit_open=isinstance(err, CircuitOpen),
            guard=guard,
            has_fallback=fallback is not None,
        )
        if answer is Failure.COPY:
            assert entry is not None and reason is not None
            return self._stale(rs, entry, now, txn, reason, fwd="stale", fwd_status=upstream_status)
        if answer is Failure.FALLBACK:
            assert fallback is not None
            return self._fallback(rs, fallback, err, txn, upstream_status, now)
        if isinstance(err, UpstreamStatus) and err.answer is not None and rs.config.upstream_errors == "pass":
            # The vendor's own answer says more than ours would (its body, its Retry-After).
            value = cache_status(hit=False, fwd="miss", fwd_status=err.upstream_status, detail=err.reason)
            headers, body = err.answer
            return passed_response(
                err.upstream_status, headers, body, txn, x_cache="MISS", status_value=value
            )
        txn.x_cache = "MISS"
        return error_response(err, txn, detail=err.reason)

    def _fallback(
        self,
        rs: RouteState,
        fallback: Fallback,
        err: ProxyError,
        txn: Txn,
        upstream_status: int | None,
        now: float,
    ) -> Response:
        """The route's synthetic answer: nothing was cached, so it is not stale; marked FALLBACK
        and counted in rproxy_fallbacks_total. A 503/429 says when to retry (RFC 9110 10.2.3)."""
        reason = err.reason
        rs.fallbacks += 1
        txn.stale_reason = f"fallback: {reason}"
        self.state.telemetry.fallbacks.inc((rs.config.name, reason))
        value = cache_status(hit=False, fwd="miss", fwd_status=upstream_status, detail=f"fallback: {reason}")
        headers: list[tuple[str, str]] = [("Content-Type", fallback.content_type)]
        if fallback.status in (429, 503):
            headers.append(
                (
                    "Retry-After",
                    str(decide.retry_after(err.retry_after, rs.upstream.breaker.retry_after(now))),
                )
            )
        return passed_response(
            fallback.status, tuple(headers), fallback.body, txn, x_cache="FALLBACK", status_value=value
        )

    # -- background refresh --------------------------------------------------------------------

    def _refresh(self, request: Request, rs: RouteState, vkey: str, entry: Entry, target: Target) -> bool:
        """Start a background refresh of `vkey`; True when one is running (this or an earlier)."""
        state = self.state
        now = state.clock.now()
        if vkey in state.flights:
            return True
        if not state.refresh_allowed(vkey, now):
            return False
        if rs.upstream.track.healthy is False:
            return False  # an unhealthy vendor is left to its health check, not probed per key
        out = self._outbound(request, rs, target, vkey)
        future, _ = state.flights.start(vkey, lambda: self.fetcher.fetch(rs, vkey, entry, out), now)
        state.flights.mark(vkey, future, "refresh")  # its bookkeeping is attached here, once
        future.add_done_callback(lambda f: self.fetcher.refreshed(rs, vkey, f))
        future.add_done_callback(_release_unused)
        return True

    def _outbound(self, request: Request, rs: RouteState, target: Target, vkey: str) -> Outbound:
        # HEAD is fetched as GET so the answer can be stored and serve both (RFC 9110 9.3.2).
        assert rs.config.cache is not None
        vary = self.state.cache.vary_of(vkey.split(VARY_SEP, 1)[0]) or ()
        keyed = (*rs.config.cache.key.headers, *vary)
        return Outbound(
            "GET",
            target.value(),
            forward_headers(request, rs.upstream.config, cacheable=True, keyed=keyed),
            offered=offered(request),
            timeout=rs.config.timeout,
            credentials=has_credentials(request),
        )


class _Slow:
    """The flight outlived the route's `stale_if_slow`: a sentinel, never an outcome."""


_SLOW = _Slow()


def _release_unused(future: asyncio.Future[Outcome]) -> None:
    """A background flight's answer that is not stored has no reader: free its connection."""
    if future.cancelled() or future.exception() is not None:
        return
    fetched = future.result().fetched
    if fetched is not None:
        fetched.release()
