"""The answers of the request path, one per outcome: hit, stale copy, the vendor's answer,
fallback, error (Varnish's vcl_deliver, vcl_synth and vcl_backend_error).

Owns: which labels each answer carries (`X-Cache`, `Cache-Status` per RFC 9211), carrying out
`core.decide.on_failure`, and counting every degraded answer (stale, fallback) in metrics and on
its route.
Must not: fetch, store or read the clock (`now` is given), or decide what to serve (`core.decide`).
"""

from __future__ import annotations

import math

from proxy.core import conditional, decide
from proxy.core.config.model import Fallback
from proxy.core.decide import Failure
from proxy.core.errors import CircuitOpen, DataRejected, ProxyError, UpstreamStatus
from proxy.core.model import Entry
from proxy.deliver import (
    CACHE_NAME,
    Asked,
    Txn,
    cache_status,
    entry_response,
    error_response,
    passed_response,
)
from proxy.exchange import Request, Response
from proxy.outcome import Outcome
from proxy.relay import stream_response
from proxy.runtime import RouteState
from proxy.telemetry import Telemetry


class Answers:
    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry

    def hit(self, request: Request, entry: Entry, now: float, txn: Txn, detail: str | None) -> Response:
        txn.x_cache = "HIT"
        not_modified = entry.status == 200 and conditional.not_modified(
            entry, request.first("if-none-match"), request.first("if-modified-since")
        )
        # RFC 9111 4.2.2 freshness is a guess: said so in `detail`, since Warning 113 is gone
        value = cache_status(hit=True, ttl=entry.fresh_until - now, detail=detail)
        return entry_response(
            entry,
            now,
            txn,
            x_cache="HIT",
            status_value=value,
            not_modified=not_modified,
            asked=asked(request),
        )

    def stale(
        self,
        request: Request,
        rs: RouteState,
        entry: Entry,
        now: float,
        txn: Txn,
        reason: str,
        *,
        fwd: str | None,
        fwd_status: int | None = None,
        x_cache: str = "STALE",
    ) -> Response:
        rs.stale += 1
        txn.stale_reason = reason
        self.telemetry.stale.inc((rs.config.name, reason.split(":")[0]))
        value = cache_status(
            hit=fwd is None, fwd=fwd, fwd_status=fwd_status, ttl=entry.fresh_until - now, detail=reason
        )
        return entry_response(entry, now, txn, x_cache=x_cache, status_value=value, asked=asked(request))

    def fetched(
        self,
        request: Request,
        rs: RouteState,
        entry: Entry | None,
        outcome: Outcome,
        now: float,
        txn: Txn,
        *,
        collapsed: bool,
        passed: bool,
    ) -> Response:
        """The answer to a request that went to the vendor (or waited for one that did):
        `passed` for writes and uncached routes, `collapsed` for a coalesced waiter."""
        txn.upstream_status = outcome.upstream_status
        if not collapsed:  # a waiter did not call the upstream: its latency is the leader's
            txn.upstream_ms = outcome.upstream_ms
            txn.retries = outcome.retries
        stored = outcome.entry
        if outcome.error is not None:
            write = passed and request.method not in ("GET", "HEAD")
            status = outcome.upstream_status
            response = self.failure(
                request, rs, entry, outcome.error, now, txn, status, passed=passed, write=write
            )
        elif stored is not None:
            response = self._stored(request, outcome, stored, now, txn, collapsed)
        else:
            response = self._relayed(request, rs, outcome, txn, passed=passed)
        if not collapsed:  # the leader's exchange only (a Response starts with none)
            response.interim = outcome.interim
        return response

    def _stored(
        self, request: Request, outcome: Outcome, entry: Entry, now: float, txn: Txn, collapsed: bool
    ) -> Response:
        revalidated = outcome.revalidated
        # one format for the usual stored miss (as `cache_status` would write it); else that
        detail = outcome.detail or ("heuristic" if entry.heuristic else None)
        fwd_status = outcome.upstream_status
        ttl = entry.fresh_until - now
        if revalidated or collapsed or detail or fwd_status is None or not outcome.stored:
            value = cache_status(
                hit=False,
                fwd="stale" if revalidated else "miss",
                fwd_status=fwd_status,
                ttl=ttl,
                stored=outcome.stored,
                collapsed=collapsed,
                detail=detail,
            )
        else:
            value = f"{CACHE_NAME}; fwd=miss; fwd-status={fwd_status}; ttl={math.floor(ttl)}; stored"
        if outcome.leader_headers is not None and not collapsed:  # fields the copy withholds
            entry = entry.with_headers(outcome.leader_headers)
        label = "REVALIDATED" if revalidated else "MISS"  # nginx's word for a 304
        return entry_response(
            entry,
            now,
            txn,
            x_cache=label,
            status_value=value,
            asked=asked(request) if request.method == "GET" else None,
        )

    def _relayed(
        self, request: Request, rs: RouteState, outcome: Outcome, txn: Txn, *, passed: bool
    ) -> Response:
        """The vendor's answer as it is: not stored (a pass, or not storable), streamed if large."""
        fetched = outcome.fetched
        assert fetched is not None
        if passed:
            fwd = "bypass" if rs.config.cache is None else "method"
            # cache_status(hit=False, fwd=fwd, fwd_status=fetched.status), in one format
            x_cache, value = "BYPASS", f"{CACHE_NAME}; fwd={fwd}; fwd-status={fetched.status}"
        else:
            txn.x_cache = "MISS"
            x_cache = "MISS"
            value = cache_status(hit=False, fwd="miss", fwd_status=fetched.status, detail=outcome.detail)
        if not fetched.complete:
            return stream_response(request, fetched, txn, x_cache=x_cache, status_value=value)
        return passed_response(
            fetched.status, fetched.headers, fetched.body, txn, x_cache=x_cache, status_value=value
        )

    def failure(
        self,
        request: Request,
        rs: RouteState,
        entry: Entry | None,
        err: ProxyError,
        now: float,
        txn: Txn,
        upstream_status: int | None,
        *,
        passed: bool = False,
        write: bool = False,
    ) -> Response:
        """A failed fetch: a usable copy, else the route's fallback, else our JSON error. A pass
        (a write, a read of an uncached route) has no copy; a write never gets the fallback (a
        synthetic answer could fake a booking), a read of an uncached route does."""
        fallback = rs.config.fallback
        if passed and (write or fallback is None):
            return error_response(err, txn)
        guard = err.message if isinstance(err, DataRejected) else None
        if guard is not None:
            txn.guard = guard
        circuit_open = isinstance(err, CircuitOpen)
        answer, reason = decide.on_failure(
            entry, now, circuit_open=circuit_open, guard=guard, has_fallback=fallback is not None
        )
        if answer is Failure.COPY:
            assert entry is not None and reason is not None
            return self.stale(request, rs, entry, now, txn, reason, fwd="stale", fwd_status=upstream_status)
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
        self.telemetry.fallbacks.inc((rs.config.name, reason))
        value = cache_status(hit=False, fwd="miss", fwd_status=upstream_status, detail=f"fallback: {reason}")
        headers: list[tuple[str, str]] = [("Content-Type", fallback.content_type)]
        if fallback.status in (429, 503):
            wait = decide.retry_after(err.retry_after, rs.upstream.breaker.retry_after(now))
            headers.append(("Retry-After", str(wait)))
        return passed_response(
            fallback.status, tuple(headers), fallback.body, txn, x_cache="FALLBACK", status_value=value
        )


def asked(request: Request) -> Asked | None:
    """The part of a stored 200 a GET asks for (RFC 9110 14.2): never a HEAD's (14.2: ignored)."""
    if request.method != "GET":
        return None
    wanted = request.first("range")
    return None if wanted is None else (wanted, request.headers.get("If-Range"))
