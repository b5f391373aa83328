"""fetch: one upstream call for a cache key, its checks, and what gets stored.

Owns: building the outbound request (which client headers may reach a vendor), conditional
revalidation (RFC 9111 4.3), sanity guards on the body, the store discipline (never over a good
entry with a worse one), invalidation after writes (RFC 9111 4.4), and background refresh
bookkeeping. Must not: build client responses (that is `deliver`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import zlib
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from proxy import freshness
from proxy.cachecontrol import parse as parse_cc
from proxy.deliver import Txn, streaming_headers
from proxy.errors import DataRejected, PayloadTooLarge, ProxyError, UpstreamStatus
from proxy.guards import Verdict, check_body
from proxy.headers import CACHE_OWNED, TRANSPORT_OWNED, UNKEYED_DANGEROUS, end_to_end
from proxy.keys import group_boundaries, route_prefix
from proxy.model import Entry, Headers
from proxy.routing import compile_match, match_path, rewrite_path
from proxy.runtime import RouteState
from proxy.settings import UpstreamConfig
from proxy.state import ProxyState
from proxy.transport import Fetched, Outbound

log = logging.getLogger("proxy.fetch")
_DROP_ON_STORE = frozenset({"content-length", "age", "set-cookie"})


@dataclass(slots=True)
class Outcome:
    entry: Entry | None = None  # stored or revalidated: shareable with coalesced waiters
    fetched: Fetched | None = None  # not storable: for the request that fetched it only
    error: ProxyError | None = None
    stored: bool = False
    revalidated: bool = False
    detail: str | None = None
    upstream_status: int | None = None
    upstream_ms: float | None = None
    retries: int = 0
    key: str | None = None  # where `entry` was stored (the variant key, once Vary is known)

    def shareable_for(self, request: web.Request) -> bool:
        if self.error is not None:
            return True  # the waiter handles the failure with its own copy
        entry = self.entry
        if entry is None:
            return False
        return all(_normal(request.headers.get(name)) == value
                   for name, value in zip(entry.vary, entry.vary_values, strict=True))


class Fetcher:
    def __init__(self, state: ProxyState) -> None:
        self.state = state

    async def call(self, rs: RouteState, out: Outbound, txn: Txn, *, has_copy: bool = False) -> Fetched:
        try:
            fetched = await rs.upstream.request(out, rs.config.max_object_size, has_copy=has_copy)
        except ProxyError as err:
            self._transport_fault(rs, err)
            raise
        txn.upstream_status = fetched.status
        txn.upstream_ms = fetched.elapsed * 1000.0
        txn.retries = fetched.attempts - 1
        return fetched

    async def fetch(self, rs: RouteState, key: str, entry: Entry | None, out: Outbound) -> Outcome:
        """One upstream request per key for the whole fleet when a shared tier is up: take the
        lease, or wait for the instance that holds it; then fetch, store in both tiers, release.
        Never raises for upstream or shared-tier trouble."""
        shared = self.state.shared
        if shared is None:
            return await self.fetch_here(rs, key, entry, out)
        now = self.state.clock.now()
        if not shared.up(now):
            outcome = await self.fetch_here(rs, key, entry, out)
            outcome.detail = f"{outcome.detail}; shared-tier-down" if outcome.detail else "shared-tier-down"
            return outcome
        assert rs.config.cache is not None
        got = await shared.lease_or_wait(key, _lease_ms(rs), rs.config.cache.lock_timeout,
                                         newer_than=entry.stored_at if entry is not None else None)
        if isinstance(got, Entry):  # another instance fetched it
            self.state.store.put(key, got, self.state.clock.now())
            return Outcome(entry=got, detail="filled by another instance", key=key)
        try:
            outcome = await self.fetch_here(rs, key, entry, out)
            if outcome.stored and outcome.entry is not None and outcome.key is not None:
                # Awaited before the release: a waiter woken by the release must find it.
                await shared.set(outcome.key, outcome.entry, self.state.clock.now())
        finally:
            if got is not None:
                await shared.release(got)
        return outcome

    async def fetch_here(self, rs: RouteState, key: str, entry: Entry | None, out: Outbound) -> Outcome:
        """Fetch for `key`, validate, store in this instance; never raises for upstream trouble."""
        now = self.state.clock.now()
        has_copy = entry is not None and freshness.usable_on_error(entry, now) is not None
        conditional = entry is not None and (entry.etag or entry.last_modified) and entry.status == 200
        if conditional and entry is not None:
            out = _with_validators(out, entry)
        checked: list[tuple[Verdict, Any]] = []
        judge = None
        if rs.config.guards and rs.config.guards_trip_breaker:
            def judge(f: Fetched) -> bool:
                """Guard rejections count as breaker failures; confirmable changes do not."""
                if not 200 <= f.status < 300:
                    return True
                checked.append(self._check(rs, entry, f))
                return checked[-1][0].ok or checked[-1][0].relative_only
        try:
            fetched = await rs.upstream.request(out, rs.config.max_object_size, has_copy=has_copy,
                                                judge=judge)
        except ProxyError as err:
            self._transport_fault(rs, err)
            return Outcome(error=err)
        meta = {"upstream_status": fetched.status, "upstream_ms": fetched.elapsed * 1000.0,
                "retries": fetched.attempts - 1}
        if fetched.status == 304 and conditional and entry is not None:
            return Outcome(entry=self._revalidated(rs, key, entry, fetched), stored=True,
                           revalidated=True, key=key, **meta)  # type: ignore[arg-type]
        if fetched.status >= 500 or fetched.status == 429:
            fetched.release()
            failure = UpstreamStatus(f"upstream answered {fetched.status}", fetched.status)
            self._transport_fault(rs, failure)
            return Outcome(error=failure, **meta)  # type: ignore[arg-type]
        if not fetched.complete:
            return Outcome(fetched=fetched, detail="too large to store", **meta)  # type: ignore[arg-type]
        rejected = self._guard(rs, key, entry, fetched, checked[-1] if checked else None)
        if rejected is not None:
            return Outcome(error=rejected, detail=rejected.message, **meta)  # type: ignore[arg-type]
        return self._store(rs, key, entry, fetched, out, meta)

    # -- guards --------------------------------------------------------------------------------

    def _check(self, rs: RouteState, entry: Entry | None, fetched: Fetched) -> tuple[Verdict, Any]:
        rules = rs.config.guards
        body = _decoded(fetched)
        # Parsing the last good copy costs as much as parsing the new one: only relative rules need it.
        last_good = _last_good(entry) if any(rule.relative for rule in rules) else None
        return check_body(rules, body if body is not None else b"\x00", last_good=last_good,
                          max_bytes=rs.config.max_object_size)

    def _guard(self, rs: RouteState, key: str, entry: Entry | None, fetched: Fetched,
               checked: tuple[Verdict, Any] | None) -> DataRejected | None:
        if not rs.config.guards or not 200 <= fetched.status < 300:
            return None
        verdict, doc = checked or self._check(rs, entry, fetched)
        hysteresis = rs.hysteresis_for(key)
        now = self.state.clock.now()
        if verdict.ok:
            hysteresis.reset()
            self._drift(rs, doc, now)
            return None
        if verdict.relative_only and hysteresis.observe(verdict, doc):
            self.state.telemetry.event("guard_change_confirmed", now, level="info", route=rs.config.name,
                                       rules=[v.label() for v in verdict.violations])
            self._drift(rs, doc, now)
            return None
        self._reject(rs, fetched, verdict, now)
        return DataRejected(verdict.detail(), [v.label() for v in verdict.violations])

    def _reject(self, rs: RouteState, fetched: Fetched, verdict: Verdict, now: float) -> None:
        state, route = self.state, rs.config.name
        rs.guard_rejections += 1
        rs.upstream.track.data_faults += 1
        state.quarantine.add(route, fetched.body, verdict, now, fetched.status, fetched.headers)
        for violation in verdict.violations:
            state.telemetry.guard_rejections.inc((route, violation.rule))
        state.telemetry.data_faults.inc((rs.upstream.name,))
        state.telemetry.event("guard_rejected", now, route=route, upstream=rs.upstream.name,
                              violations=[{"rule": v.rule, "path": v.path, "value": v.value}
                                          for v in verdict.violations])

    def _drift(self, rs: RouteState, doc: Any, now: float) -> None:
        if doc is None:
            return
        change = rs.drift.observe(doc)
        if change is not None:
            self.state.telemetry.drift.inc((rs.config.name,))
            self.state.telemetry.event("contract_drift", now, route=rs.config.name,
                                       upstream=rs.upstream.name, change=change.summary())

    # -- store ---------------------------------------------------------------------------------

    def _store(self, rs: RouteState, key: str, entry: Entry | None, fetched: Fetched, out: Outbound,
               meta: dict[str, Any]) -> Outcome:
        policy = rs.config.cache
        assert policy is not None
        cc = parse_cc([v for k, v in fetched.headers if k.lower() == "cache-control"])
        why = freshness.storable(status=fetched.status, headers=fetched.headers, cc=cc, policy=policy,
                                 authorized=out.credentials)
        if why is not None:
            return Outcome(fetched=fetched, detail=f"not stored: {why}", **meta)
        now = self.state.clock.now()
        if entry is not None and entry.status < 400 <= fetched.status and \
                freshness.usable_on_error(entry, now) is not None:
            # An error never replaces a good copy while that copy may still be served.
            return Outcome(fetched=fetched, detail="not stored: good copy kept", **meta)
        new = _entry(rs, fetched, cc, out, lkg=bool(rs.config.guards))
        vary = new.vary
        primary = key.split("\x1e", 1)[0]
        full_key = primary if not vary else primary + "\x1e" + "\x1e".join(new.vary_values)
        self.state.remember_vary(primary, vary)
        self.state.store_entry(full_key, new, now)
        if 200 <= new.status < 300:
            rs.last_good_at = now
        return Outcome(entry=new, stored=True, key=full_key, **meta)

    def _revalidated(self, rs: RouteState, key: str, entry: Entry, fetched: Fetched) -> Entry:
        policy = rs.config.cache
        assert policy is not None
        merged = freshness.merge_304(entry.headers, end_to_end(fetched.headers, _DROP_ON_STORE))
        cc = parse_cc([v for k, v in merged if k.lower() == "cache-control"])
        d = freshness.deadlines(headers=merged, cc=cc, policy=policy, request_time=fetched.request_time,
                                response_time=fetched.response_time, lkg=bool(rs.config.guards))
        new = freshness.refreshed(entry, merged, d, fetched.response_time)
        now = self.state.clock.now()
        self.state.store_entry(key, new, now)
        rs.last_good_at = now
        return new

    async def from_shared(self, key: str, now: float) -> Entry | None:
        assert self.state.shared is not None
        entry = await self.state.shared.get(key)
        if entry is not None:
            self.state.store.put(key, entry, now)
        return entry

    # -- after the fact ------------------------------------------------------------------------

    def refreshed(self, rs: RouteState, key: str, future: asyncio.Future[Outcome]) -> None:
        """Bookkeeping for a background refresh; its failure is counted and backed off."""
        now = self.state.clock.now()
        if future.cancelled():
            return
        exc = future.exception()
        outcome = future.result() if exc is None else None
        if exc is not None or not isinstance(outcome, Outcome):
            log.error("background refresh of %s crashed", key[:120], exc_info=exc)
            self.state.telemetry.refreshes.inc((rs.config.name, "crashed"))
            self.state.refresh_failed(key, now)
            return
        if outcome.error is not None:
            delay = self.state.refresh_failed(key, now)
            self.state.telemetry.refreshes.inc((rs.config.name, "failed"))
            log.info("background refresh of %s failed (%s); next try in %.0fs", key[:120],
                     outcome.error.code, delay)
        else:
            self.state.refresh_succeeded(key)
            self.state.telemetry.refreshes.inc((rs.config.name, "ok"))

    def invalidate(self, request: web.Request, path: str, headers: Headers, upstream: UpstreamConfig) -> int:
        """RFC 9111 4.4: a successful write invalidates its URI and same-origin Location.

        A Location may name a proxy path or, as vendors write it, the vendor's own path: the
        latter is mapped back through each route's rewrite to the proxy path it is cached under.
        """
        paths = {path}
        vendor = urlsplit(upstream.url)
        for name in ("location", "content-location"):
            value = freshness.header(headers, name)
            if not value:
                continue
            parts = urlsplit(value)
            if parts.path and (not parts.netloc or parts.netloc == request.host):
                paths.add(parts.path)
            if parts.path and (not parts.netloc or parts.netloc == vendor.netloc):
                paths.update(self._proxy_paths(parts.path, upstream, vendor.path.rstrip("/")))
        dropped = 0
        for rs in self.state.runtime.routes:
            if rs.config.cache is None:
                continue
            for p in paths:
                if match_path(rs.config.match, p.split("/")[1:]) is not None:
                    group = route_prefix(rs.config.name, p)
                    dropped += self.state.store.delete_group(group)
                    if self.state.shared is not None:
                        self.state.tasks.spawn(self._forget_shared(group), name="l2-invalidate")
        return dropped

    async def _forget_shared(self, group: str) -> None:
        """Drop a URL's entries from the shared tier and every instance's memory tier."""
        shared = self.state.shared
        assert shared is not None
        await shared.delete(group)
        await shared.publish_purge(group, False)
        for boundary in group_boundaries(group):
            await shared.delete_prefix(boundary)
            await shared.publish_purge(boundary, True)

    def _proxy_paths(self, vendor_path: str, upstream: UpstreamConfig, base: str) -> set[str]:
        if base and not vendor_path.startswith(base + "/"):
            return set()
        rel = vendor_path[len(base):]
        found = set()
        for rs in self.state.runtime.routes:
            if rs.config.cache is None or rs.config.upstream != upstream.name:
                continue
            template = rs.config.rewrite or rs.config.match.text
            try:
                m = match_path(compile_match(template), rel.split("/")[1:])
            except ValueError:
                continue
            if m is not None:
                found.add(rewrite_path(rs.config.match.text, rel, m))
        return found

    def _transport_fault(self, rs: RouteState, err: ProxyError) -> None:
        self.state.telemetry.transport_faults.inc((rs.upstream.name, err.code))


def _entry(rs: RouteState, fetched: Fetched, cc: Any, out: Outbound, *, lkg: bool) -> Entry:
    policy = rs.config.cache
    assert policy is not None
    headers = end_to_end(fetched.headers, _DROP_ON_STORE if not policy.store_set_cookie
                         else frozenset({"content-length", "age"}))
    d = freshness.deadlines(headers=fetched.headers, cc=cc, policy=policy, request_time=fetched.request_time,
                            response_time=fetched.response_time, lkg=lkg)
    vary = freshness.vary_names(fetched.headers) or ()
    sent = {k.lower(): v for k, v in out.headers}
    return Entry(
        status=fetched.status, headers=headers, body=fetched.body, stored_at=fetched.response_time,
        initial_age=d.initial_age, fresh_until=d.fresh_until, stale_until=d.stale_until,
        error_until=d.error_until, keep_until=d.keep_until, lkg_until=d.lkg_until,
        etag=freshness.header(headers, "etag"), last_modified=freshness.header(headers, "last-modified"),
        vary=vary, vary_values=tuple(_normal(sent.get(n)) for n in vary), url=out.path_qs,
    )


def _lease_ms(rs: RouteState) -> int:
    """How long a fleet-wide lease may be held: the longest the fetch can take, plus a margin;
    a holder that dies frees the key when it runs out."""
    timeouts = rs.config.timeout or rs.upstream.config.timeout
    retries = rs.upstream.config.retries
    longest = timeouts.total * (retries.attempts + 1) + retries.max_backoff * retries.attempts
    return int((longest + 1.0) * 1000)


def _with_validators(out: Outbound, entry: Entry) -> Outbound:
    headers = list(out.headers)
    if entry.etag:
        headers.append(("If-None-Match", entry.etag))
    if entry.last_modified:
        headers.append(("If-Modified-Since", entry.last_modified))
    return replace(out, headers=headers)


def _decoded(fetched: Fetched) -> bytes | None:
    encoding = (freshness.header(fetched.headers, "content-encoding") or "identity").lower()
    if encoding in ("identity", ""):
        return fetched.body
    try:
        if encoding in ("gzip", "x-gzip"):
            return zlib.decompress(fetched.body, 16 + zlib.MAX_WBITS)
        if encoding == "deflate":
            return zlib.decompress(fetched.body)
    except zlib.error:
        return None
    return None  # an encoding we cannot check is treated as unreadable


def _last_good(entry: Entry | None) -> Any | None:
    if entry is None or not 200 <= entry.status < 300:
        return None
    try:
        return json.loads(entry.body)
    except ValueError:
        return None


def _normal(value: str | None) -> str:
    return " ".join(value.split()) if value else ""


def forward_headers(
    request: web.Request, upstream: UpstreamConfig, *, cacheable: bool
) -> list[tuple[str, str]]:
    """Client headers that may reach the vendor, then the upstream's configured ones."""
    drop = TRANSPORT_OWNED | UNKEYED_DANGEROUS | (CACHE_OWNED if cacheable else frozenset())
    configured = {k.lower() for k, _ in upstream.headers}
    out = [(k, v) for k, v in end_to_end(request.headers.items(), drop) if k.lower() not in configured]
    if not cacheable and request.remote:
        prior = request.headers.get("X-Forwarded-For")
        out = [(k, v) for k, v in out if k.lower() != "x-forwarded-for"]
        out.append(("X-Forwarded-For", f"{prior}, {request.remote}" if prior else request.remote))
    out.extend(upstream.headers)
    return out


async def read_body(request: web.Request, limit: int) -> bytes | None:
    if not request.body_exists:
        return None
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"request body over {limit} bytes")
    body = await request.content.read(limit + 1)
    while len(body) <= limit and not request.content.at_eof():
        more = await request.content.read(limit + 1 - len(body))
        if not more:
            break
        body += more
    if len(body) > limit:
        raise PayloadTooLarge(f"request body over {limit} bytes")
    return body


async def stream_response(request: web.Request, fetched: Fetched, txn: Txn, *, x_cache: str,
                          status_value: str) -> web.StreamResponse:
    """Relay a body too large to store: first chunk, then the rest as it arrives."""
    resp = web.StreamResponse(status=fetched.status,
                              headers=streaming_headers(fetched.headers, txn, x_cache=x_cache,
                                                        status_value=status_value))
    txn.status = fetched.status
    stream = fetched.stream
    try:
        await resp.prepare(request)
        await resp.write(fetched.body)
        txn.bytes = len(fetched.body)
        if stream is not None:
            async for chunk in stream.content.iter_chunked(65536):
                await resp.write(chunk)
                txn.bytes += len(chunk)
        await resp.write_eof()
    except Exception as exc:  # the client sees a cut connection: the status line is gone already
        log.warning("streaming %s broke after %d bytes: %s", txn.path[:120], txn.bytes, exc)
        if request.transport is not None:
            request.transport.close()
    finally:
        fetched.release()
    return resp
