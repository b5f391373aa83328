"""fetch: one upstream call for a cache key, its checks, and what gets stored.

Owns: the exchange with the vendor for the request path, reads and writes alike, as one
`Outcome`: for a cached read, conditional revalidation (RFC 9111 4.3), sanity guards on the body
and the store discipline (never over a good entry with a worse one, `core.replacement`); for a
pass (writes, uncached routes), the vendor's answer as it is, sent once unless idempotent.
Must not: build client responses (that is `answers`), or decide what a failure answers.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any, Final

from proxy.cache import Cache
from proxy.clock import Clock
from proxy.core import freshness, replacement
from proxy.core.cachecontrol import CacheControl, governing
from proxy.core.config.model import RouteCache
from proxy.core.errors import DataRejected, ProxyError, UpstreamStatus
from proxy.core.fields import Fields
from proxy.core.guards import Verdict, Violation
from proxy.core.headers import HOP_BY_HOP, among
from proxy.core.keys import VARY_SEP, sent_values
from proxy.core.model import Entry
from proxy.core.redirects import rewrite_headers
from proxy.datacheck import DataCheck
from proxy.fetched import Fetched
from proxy.outcome import Outcome
from proxy.runtime import Live, RouteState
from proxy.telemetry import Telemetry
from proxy.transport import Outbound

log = logging.getLogger("proxy.fetch")
_DROP_ON_STORE: Final = frozenset({"content-length", "age", "set-cookie"})
# With the hop-by-hop names, once: `Fields.without` then adds only the Connection-named ones.
_STORE_DROP: Final = HOP_BY_HOP | _DROP_ON_STORE
_DROP_FOR_LEADER: Final = HOP_BY_HOP | {"content-length", "age"}


class Fetcher:
    def __init__(
        self, clock: Clock, live: Live, cache: Cache, telemetry: Telemetry, datacheck: DataCheck
    ) -> None:
        self.clock, self.live, self.cache, self.telemetry = clock, live, cache, telemetry
        self.datacheck = datacheck

    async def pass_(self, rs: RouteState, out: Outbound) -> Outcome:
        """A write or an uncached read: one exchange, the vendor's answer as it is (a 5xx
        becomes our `upstream_status` error unless the route passes vendor errors on)."""
        try:
            fetched = await rs.upstream.request(out, rs.config.max_object_size, has_copy=False)
        except ProxyError as err:
            self._transport_fault(rs, err)
            return Outcome(error=err)
        self._own_locations(rs, fetched)
        outcome = _measured(Outcome(fetched=fetched), fetched)
        if fetched.status >= 500 and rs.config.upstream_errors == "replace":
            fetched.release()
            outcome.fetched, outcome.error = (
                None,
                UpstreamStatus(f"upstream answered {fetched.status}", fetched.status),
            )
        return outcome

    def _own_locations(self, rs: RouteState, fetched: Fetched) -> None:
        """Vendor URLs in Location headers become proxy paths before anyone sees or stores them."""
        lows = fetched.lows()  # the parser's: most answers have neither field, and cost no scan
        if not among("location", lows) and not among("content-location", lows):
            return
        routes = itertools.chain((rs.config,), (r.config for r in self.live.runtime.routes if r is not rs))
        fetched.headers = rewrite_headers(fetched.headers, rs.upstream.config, routes)
        fetched.lows_of = (fetched.headers, lows)  # values rewritten, names as they were

    async def fetch(self, rs: RouteState, key: str, entry: Entry | None, out: Outbound) -> Outcome:
        """One upstream request per key for the whole fleet when a shared tier is up: take the
        lease, or wait for the instance that holds it; then fetch, store in both tiers, release.
        Never raises for upstream or shared-tier trouble."""
        assert rs.config.cache is not None
        newer_than = entry.stored_at if entry is not None else None
        scope = self.cache.one_fetch(
            key, _lease_ms(rs), rs.config.cache.lock_timeout, newer_than=newer_than, clock=self.clock
        )
        if scope is None:  # no fleet to coordinate with
            return await self.fetch_here(rs, key, entry, out)
        async with scope as lease:
            if lease.filled is not None:
                return Outcome(entry=lease.filled, detail="filled by another instance", key=key)
            outcome = await self.fetch_here(rs, key, entry, out)
            if outcome.stored and outcome.entry is not None and outcome.key is not None:
                await lease.publish(outcome.key, outcome.entry, self.clock.now())
        if lease.degraded:
            outcome.detail = f"{outcome.detail}; shared-tier-down" if outcome.detail else "shared-tier-down"
        return outcome

    async def fetch_here(self, rs: RouteState, key: str, entry: Entry | None, out: Outbound) -> Outcome:
        """Fetch for `key`, validate, store in this instance; never raises for upstream trouble."""
        has_copy = entry is not None and freshness.usable_on_error(entry, self.clock.now()) is not None
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
                if f.unreadable is not None:
                    return False
                checked.append(self.datacheck.check(rs, entry, f))
                return checked[-1][0].ok or checked[-1][0].relative_only

        try:
            fetched = await rs.upstream.request(
                out, rs.config.max_object_size, has_copy=has_copy, judge=judge, identity=True
            )
        except ProxyError as err:
            self._transport_fault(rs, err)
            return Outcome(error=err)
        self._own_locations(rs, fetched)
        outcome = self._outcome(
            rs,
            key,
            entry,
            fetched,
            out,
            conditional=bool(conditional),
            checked=checked[-1] if checked else None,
        )
        _measured(outcome, fetched)
        again = vary_refetch(outcome, out)
        if again is not None:
            return await self.fetch_here(rs, key, None, again)
        return outcome

    def _outcome(
        self,
        rs: RouteState,
        key: str,
        entry: Entry | None,
        fetched: Fetched,
        out: Outbound,
        *,
        conditional: bool,
        checked: tuple[Verdict, Any] | None,
    ) -> Outcome:
        policy = rs.config.cache
        assert policy is not None
        # Read once for every question below; the pass also keeps the lines the entry stores.
        fields = Fields(fetched.headers, policy.targeted_fields, _store_drop(policy), fetched.lows())
        refused = replacement.refusal(
            replacement.Answer(fetched.status, fetched.complete, fields.first("etag")),
            guarded=bool(rs.config.guards),
            oversize_passes=rs.config.guards_oversize == "pass",
            etag_sent=entry.etag if conditional and entry is not None else None,
            conditional=conditional and entry is not None,
        )
        if refused == replacement.TOO_LARGE:
            return self._rejected(rs, fetched, "max_object_size", f"over {rs.config.max_object_size} bytes")
        if refused is not None:
            return self._refused(rs, fetched, refused)
        unreadable = fetched.unreadable
        if unreadable is not None and rs.config.guards:
            return self._rejected(rs, fetched, "encoding", unreadable)
        if unreadable is not None:
            return self._refused(rs, fetched, unreadable)
        if fetched.status == 304 and conditional and entry is not None:
            return self._revalidated(rs, key, entry, fetched, fields, out)
        if fetched.status >= 500 or fetched.status == 429:
            fetched.release()
            answer = (fetched.headers, fetched.body) if fetched.complete else None
            failure = UpstreamStatus(f"upstream answered {fetched.status}", fetched.status, answer=answer)
            self._transport_fault(rs, failure)
            return Outcome(error=failure)
        if not fetched.complete:
            return self._unchecked(rs, fetched)
        rejected = self.datacheck.verdict(rs, key, entry, fetched, checked)  # None without guards
        if rejected is not None:
            return Outcome(error=rejected, detail=rejected.message)
        return self._store(rs, key, entry, fetched, fields, out)

    def _unchecked(self, rs: RouteState, fetched: Fetched) -> Outcome:
        """Too large to store; on a guarded route (`guards_oversize: pass`) also unchecked:
        passed on, but marked, logged and counted, never silently."""
        if not rs.config.guards or not 200 <= fetched.status < 300:
            return Outcome(fetched=fetched, detail="too large to store")
        self.telemetry.guard_unchecked.inc((rs.config.name,))
        log.warning(
            "route %s: answer over max_object_size (%d bytes) passed unchecked (guards_oversize: pass)",
            rs.config.name,
            rs.config.max_object_size,
        )
        return Outcome(fetched=fetched, detail="too large to check")

    def _refused(self, rs: RouteState, fetched: Fetched, why: str) -> Outcome:
        """An answer that may not stand in for the copy: a failure, served like a vendor fault."""
        fetched.release()
        failure = UpstreamStatus(f"upstream answered {why}", fetched.status)
        self._transport_fault(rs, failure)
        return Outcome(error=failure, detail=why)

    def _rejected(self, rs: RouteState, fetched: Fetched, rule: str, value: str) -> Outcome:
        """A body the guards cannot check is a guard rejection like any other: counted, quarantined."""
        fetched.release()
        verdict = Verdict(False, (Violation(rule, "$", value[:80]),), False)
        self.datacheck.reject(rs, fetched, verdict, self.clock.now())
        return Outcome(error=DataRejected(verdict.detail(), [v.label() for v in verdict.violations]))

    # -- store ---------------------------------------------------------------------------------

    def _store(
        self, rs: RouteState, key: str, entry: Entry | None, fetched: Fetched, fields: Fields, out: Outbound
    ) -> Outcome:
        policy = rs.config.cache
        assert policy is not None
        cc = governing(fields.lines, policy.targeted_fields)  # RFC 9213: CDN-Cache-Control first
        why = freshness.storable(
            status=fetched.status, headers=fields, cc=cc, policy=policy, authorized=out.credentials
        )
        if why is None and self.live.runtime.by_name.get(rs.config.name) is not rs:
            why = "config reloaded"  # fetched under the old config: its route may have been purged
        if why is not None:
            return Outcome(fetched=fetched, detail=f"not stored: {why}")
        now = self.clock.now()
        if entry is not None and replacement.keeps_copy(
            stored_status=entry.status,
            new_status=fetched.status,
            copy_usable=freshness.usable_on_error(entry, now) is not None,
        ):
            return Outcome(fetched=fetched, detail="not stored: good copy kept")
        new = _entry(rs, fetched, fields, cc, out, lkg=bool(rs.config.guards))
        vary = new.vary
        primary = key.split(VARY_SEP, 1)[0]
        full_key = primary if not vary else VARY_SEP.join((primary, *new.vary_values))
        self.cache.remember_vary(primary, vary)
        self.cache.put(full_key, new, now)
        if 200 <= new.status < 300:
            rs.last_good_at = now
        withheld = cc.withheld
        own = fields.without(_DROP_FOR_LEADER) if withheld and not withheld.isdisjoint(fields.lows) else None
        return Outcome(entry=new, stored=True, key=full_key, leader_headers=own)

    def _revalidated(
        self, rs: RouteState, key: str, entry: Entry, fetched: Fetched, fields: Fields, out: Outbound
    ) -> Outcome:
        """`entry` refreshed by a 304 (RFC 9111 4.3.4); `fields`: the 304's lines, read once."""
        policy = rs.config.cache
        assert policy is not None
        targets = policy.targeted_fields
        # One pass over the merged lines answers Cache-Control, the deadlines and the validators.
        merged = freshness.merge_304(entry.headers, fields.without(_STORE_DROP))
        read = Fields(merged, targets)
        cc = governing(read.lines, targets)
        if cc.withheld:
            merged = freshness.without_withheld(merged, cc)
            read = Fields(merged, targets)
        why = freshness.storable(
            status=entry.status, headers=read, cc=cc, policy=policy, authorized=out.credentials
        )
        if why is not None:  # the copy as updated may not be stored (no-store, private, Vary: *)
            copy = Fetched(entry.status, merged, entry.body, fetched.request_time, fetched.response_time)
            return Outcome(fetched=copy, detail=f"not stored: {why}")
        d = freshness.deadlines(
            headers=read,
            cc=cc,
            policy=policy,
            request_time=fetched.request_time,
            response_time=fetched.response_time,
            lkg=bool(rs.config.guards),
            status=entry.status,
        )
        validators = (read.first("etag"), read.first("last-modified"))
        new = freshness.refreshed(entry, merged, d, fetched.response_time, validators=validators)
        now = self.clock.now()
        self.cache.put(key, new, now)
        rs.last_good_at = now
        return Outcome(entry=new, stored=True, revalidated=True, key=key)

    def _transport_fault(self, rs: RouteState, err: ProxyError) -> None:
        self.telemetry.transport_faults.inc((rs.upstream.name, err.code))


def _measured(outcome: Outcome, fetched: Fetched) -> Outcome:
    """What the access log and Cache-Status say about the exchange, carried to every waiter."""
    outcome.upstream_status, outcome.interim = fetched.status, fetched.interim
    outcome.upstream_ms = fetched.elapsed * 1000.0
    outcome.retries = fetched.attempts - 1
    return outcome


def _entry(
    rs: RouteState, fetched: Fetched, fields: Fields, cc: CacheControl, out: Outbound, *, lkg: bool
) -> Entry:
    policy = rs.config.cache
    assert policy is not None
    # End-to-end fields less Content-Length, Age (and Set-Cookie unless the route stores it) and
    # what a qualified no-cache/private withholds (RFC 9111 5.2.2.4, 5.2.2.7), in one pass.
    drop = _store_drop(policy)
    withheld = cc.withheld
    dropped = fields.dropped(drop | withheld if withheld else drop)
    headers = fields.kept(dropped)
    d = freshness.deadlines(
        headers=fields,
        cc=cc,
        policy=policy,
        request_time=fetched.request_time,
        response_time=fetched.response_time,
        lkg=lkg,
        status=fetched.status,
    )
    # Stored bodies are identity, right for every client (RFC 9110 12.5.3): no variant per coding.
    names = freshness.vary_names(fields) if "vary" in fields.lines else None
    vary = tuple(n for n in names if n != "accept-encoding") if names else ()
    values = sent_values(out.headers, vary) if vary else ()
    # The stored headers' validators, from `fields`: a name left out of them is none.
    etag = None if "etag" in dropped else fields.first("etag")
    modified = None if "last-modified" in dropped else fields.first("last-modified")
    return freshness.stored(
        fetched.status,
        headers,
        fetched.body,
        d,
        fetched.response_time,
        vary=vary,
        vary_values=values,
        url=out.path_qs,
        validators=(etag, modified),
    )


def _store_drop(policy: RouteCache) -> frozenset[str]:
    """The names never stored but what a qualified no-cache/private withholds (see `_entry`)."""
    return _STORE_DROP if not policy.store_set_cookie else _DROP_FOR_LEADER


def vary_refetch(outcome: Outcome, out: Outbound) -> Outbound | None:
    """The request to send again when the vendor Varies on headers this client sent and we held
    back (a cached fetch forwards only keyed and known Vary headers: anything else could change a
    shared answer unkeyed). The answer just stored is right for clients without them (keyed as
    sent, RFC 9111 4.1); one more request with them gets this client its own variant. Once per
    URL: afterwards the Vary names are known and forwarded from the first request."""
    if outcome.entry is None or not outcome.stored or out.offered is None or not outcome.entry.vary:
        return None
    sent = {k.lower() for k, _ in out.headers}
    extra = [(n, v) for n in outcome.entry.vary if n not in sent and (v := out.offered(n)) is not None]
    if not extra:
        return None
    return out.with_headers([*out.headers, *extra], offered=False)


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
    return out.with_headers(headers)
