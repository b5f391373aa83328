"""RFC 9111 and RFC 5861 decisions as pure functions of (data, now).

Owns: may a response be stored (`storable`), its deadlines (`deadlines`), what a stored entry may
be used for now (`decide`, `usable_on_error`), and how a 304 refreshes it (`refreshed`); a
client's own conditional request is `conditional`'s.
Must not: read the clock, do I/O, or know where entries live.

Decisions the RFCs leave to us, written down:
- Request Cache-Control is ignored except `only-if-cached`, as Varnish and nginx do: a shared
  cache must not let any client force traffic onto a vendor (RFC 9111 5.2.1 makes it optional).
- The route's `stale_while_revalidate` / `stale_if_error` widen the upstream's own directives
  (the larger wins), except where the response forbids stale use (`forbids_stale`) and does
  not itself grant a stale window.
- Only 2xx-4xx responses the RFC calls heuristically cacheable, or that carry explicit
  freshness, are stored; 5xx and 206 never are.
- An invalid `Expires` (strict RFC 9110 5.6.7, see `httpdate`), or two `Expires` lines, is
  already expired; an invalid `Date` is replaced by the time received.
- Freshness without explicit directives: the route's `ttl` first (the operator's guess), then
  the RFC 9111 4.2.2 heuristic from Last-Modified (`Deadlines.heuristic` says so).
- Qualified `no-cache`/`private` store the response without the named fields
  (`without_withheld`); a targeted field (RFC 9213) also overrides `Expires`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Final

from proxy.core.cachecontrol import CacheControl, delta_seconds
from proxy.core.config.model import RouteCache
from proxy.core.fields import Fields
from proxy.core.httpdate import parse as _parse_date
from proxy.core.model import Entry, Headers
from proxy.core.record import Frozen

# RFC 9110 section 15.1: heuristically cacheable status codes (206 left out: no range support).
HEURISTIC_STATUSES: Final = frozenset({200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501})
# RFC 9111 section 4.3.4: headers a 304 must not overwrite in the stored response.
_KEEP_ON_304: Final = frozenset({"content-length", "content-encoding", "transfer-encoding", "content-range"})


class Deadlines(Frozen):
    """Every deadline of one response (made on every miss: a record, see `record`)."""

    __slots__ = (
        "error_until",
        "fresh_until",
        "heuristic",
        "initial_age",
        "keep_until",
        "lkg_until",
        "stale_until",
    )

    def __init__(
        self,
        initial_age: float,
        fresh_until: float,
        stale_until: float,
        error_until: float,
        keep_until: float,
        lkg_until: float,
        heuristic: bool = False,
    ) -> None:
        self.initial_age: Final = initial_age
        self.fresh_until: Final = fresh_until
        self.stale_until: Final = stale_until
        self.error_until: Final = error_until
        self.keep_until: Final = keep_until
        self.lkg_until: Final = lkg_until
        self.heuristic: Final = heuristic  # the freshness is a guess from Last-Modified (RFC 9111 4.2.2)


def http_date(value: str | None, now: float | None = None) -> float | None:
    """`httpdate.parse`; an IMF-fixdate (what every current server sends, RFC 9110 5.6.7) is
    parsed once per distinct value: `Date` is the same string for a whole second of answers,
    and that grammar's reading does not depend on `now` (only RFC 850's two-digit years do)."""
    if value is not None and len(value) == 29 and value[3:5] == ", ":
        return _fixdate(value)
    return _parse_date(value, now)


# A bounded memo of a pure parse (one Date string serves a second of answers; an IMF-fixdate's
# reading does not depend on `now`): module-level state on purpose, invisible to callers.
@lru_cache(maxsize=256)
def _fixdate(value: str) -> float | None:
    return _parse_date(value, None)


def header(headers: Headers, name: str) -> str | None:
    """The first value of `name` (lower-case); asked several times per response, so a field
    of another length is passed over without lower-casing it."""
    size = len(name)
    for key, value in headers:
        if len(key) == size and key.lower() == name:
            return value
    return None


def read(headers: Headers | Fields) -> Fields:
    """`headers` read once (`Fields`); a caller asking several questions passes that instead."""
    return headers if isinstance(headers, Fields) else Fields(headers)


def vary_names(headers: Headers | Fields) -> tuple[str, ...] | None:
    """Lower-case names from Vary, sorted; None when the response varies on `*` (never matches)."""
    lines = read(headers).all("vary")
    if not lines:
        return ()
    names: set[str] = set()
    for value in lines:
        for item in value.split(","):
            item = item.strip().lower()
            if item == "*":
                return None
            if item:
                names.add(item)
    return tuple(sorted(names))


def storable(
    *,
    status: int,
    headers: Headers | Fields,
    cc: CacheControl,
    policy: RouteCache,
    authorized: bool,
) -> str | None:
    """Why this response to a GET may not be stored (RFC 9111 section 3), or None."""
    fields = read(headers)
    lines = fields.lines  # every name asked here is one of `fields.READ`: present or not
    if status >= 500 or status == 206 or status < 200:
        return "status"
    if cc.no_store:
        return "no-store"
    if cc.private:
        return "private"
    if authorized and not (policy.share_authorized or cc.public or cc.s_maxage >= 0 or cc.must_revalidate):
        return "authorization"  # RFC 9111 section 3.5
    if (
        not policy.store_set_cookie
        and "set-cookie" in lines
        and "set-cookie" not in cc.withheld  # `private="Set-Cookie"`: the rest is shareable
    ):
        return "set-cookie"
    if "vary" in lines and vary_names(fields) is None:
        return "vary-star"
    expires = "expires" in lines and not cc.targeted  # RFC 9213 2.2
    explicit = cc.max_age >= 0 or cc.s_maxage >= 0 or expires
    if status not in HEURISTIC_STATUSES and not explicit and not cc.public:
        return "status"
    has_validator = "etag" in lines or "last-modified" in lines
    if not explicit and not has_validator and policy.ttl <= 0 and not cc.no_cache:
        return "no-freshness"
    return None


def without_withheld(headers: Headers, cc: CacheControl) -> Headers:
    """`headers` less the fields a qualified `no-cache` or `private` names (RFC 9111 5.2.2.4,
    5.2.2.7): the stored copy never has them, so no later client is sent them."""
    withheld = cc.withheld
    if not withheld:
        return headers
    return tuple((k, v) for k, v in headers if k.lower() not in withheld)


def lifetime(
    headers: Headers | Fields,
    cc: CacheControl,
    policy: RouteCache,
    received: float | None = None,
    status: int | None = None,
) -> float:
    """Freshness lifetime, RFC 9111 section 4.2.1, with the route's ttl as the fallback, then
    (given the `status`) the heuristic of section 4.2.2.

    `received` stands in for a missing Date (RFC 9110 6.6.1: the recipient dates it on receipt).
    """
    return _lifetime(read(headers), cc, policy, received, status)[0]


def _lifetime(
    fields: Fields,
    cc: CacheControl,
    policy: RouteCache,
    received: float | None,
    status: int | None,
    date: float | None = None,
) -> tuple[float, bool]:
    """(lifetime, whether it is heuristic). `date`: the Date already parsed by the caller (or
    `received` in its place), so one answer's Date is read once."""
    if policy.force_ttl and policy.ttl > 0:
        return policy.ttl, False
    if cc.no_cache:
        return 0.0, False  # stored, but every use must be validated (RFC 9111 5.2.2.4)
    if cc.s_maxage >= 0:
        return float(cc.s_maxage), False
    if cc.max_age >= 0:
        return float(cc.max_age), False
    # A targeted field (CDN-Cache-Control) overrides Expires as well (RFC 9213 2.2).
    expires_lines = () if cc.targeted else fields.all("expires")
    if expires_lines:
        # Two field lines combine into "date, date", never an HTTP-date (RFC 9110 5.3).
        expires = http_date(", ".join(expires_lines), received)
        if date is None:
            # An invalid Date is as good as none: the recipient dates it on receipt (RFC 9110 6.6.1).
            date = http_date(fields.first("date"), received)
            date = received if date is None else date
        if expires is None or date is None:
            return 0.0, False  # invalid Expires means already expired (RFC 9111 5.3)
        return max(0.0, expires - date), False
    if policy.ttl > 0:
        return policy.ttl, False  # the operator's own guess beats ours
    guess = heuristic_lifetime(fields, cc, policy, received, status)
    return (0.0, False) if guess is None else (guess, True)


def heuristic_lifetime(
    headers: Headers | Fields,
    cc: CacheControl,
    policy: RouteCache,
    received: float | None,
    status: int | None,
) -> float | None:
    """RFC 9111 4.2.2: a fraction of the time since Last-Modified, capped; None when no
    heuristic applies (off, a status that is not heuristically cacheable, no usable dates).

    Only for a response without explicit freshness: the caller checks that first.
    """
    if status is None or policy.heuristic_fraction <= 0:
        return None
    if status not in HEURISTIC_STATUSES and not cc.public:
        return None
    fields = read(headers)
    modified = http_date(fields.first("last-modified"), received)
    date = http_date(fields.first("date"), received)
    date = received if date is None else date
    if modified is None or date is None or modified >= date:
        return None  # a Last-Modified at or after Date says nothing about how stable it is
    return min((date - modified) * policy.heuristic_fraction, policy.heuristic_max)


def initial_age(headers: Headers | Fields, request_time: float, response_time: float) -> float:
    """corrected_initial_age, RFC 9111 section 4.2.3."""
    fields = read(headers)
    date = http_date(fields.first("date"), response_time)
    return _initial_age(fields, date, request_time, response_time)


def _initial_age(fields: Fields, date: float | None, request_time: float, response_time: float) -> float:
    """`initial_age` given the response's Date, already parsed (None: absent or invalid)."""
    apparent = response_time - date if date is not None else 0.0
    ages = fields.lines.get("age")
    age = float(delta_seconds(ages[0].strip()) or 0) if ages else 0.0  # junk is ignored, overflow 2^31
    transit = response_time - request_time
    corrected = age + transit if transit > 0.0 else age
    # max(0, apparent) and corrected (>= 0), without two calls per miss.
    return corrected if corrected >= apparent else apparent


def deadlines(
    *,
    headers: Headers | Fields,
    cc: CacheControl,
    policy: RouteCache,
    request_time: float,
    response_time: float,
    lkg: bool,
    status: int | None = None,
) -> Deadlines:
    """Every deadline of a response received at `response_time`; heuristic freshness only
    when its `status` is given. Date is parsed once for the age and the lifetime."""
    fields = read(headers)
    lines = fields.lines
    dates = lines.get("date")
    date = http_date(dates[0], response_time) if dates else None
    age = _initial_age(fields, date, request_time, response_time)
    received = response_time if date is None else date  # an invalid Date: dated on receipt (RFC 9110 6.6.1)
    life, heuristic = _lifetime(fields, cc, policy, response_time, status, received)
    left = life - age
    fresh_until = response_time + left if left > 0.0 else response_time
    # Conditional expressions rather than max(): a call each, up to seven per stored entry.
    forbids = cc.forbids_stale
    if policy.force_ttl:
        swr, sie = policy.stale_while_revalidate, policy.stale_if_error
    else:
        swr, sie = float(cc.stale_while_revalidate), float(cc.stale_if_error)  # -1.0: absent
        if forbids:  # RFC 9111 4.2.4, unless the origin itself grants a window
            swr, sie = (swr if swr > 0.0 else 0.0), (sie if sie > 0.0 else 0.0)
        else:  # the larger of the origin's window and the route's
            route_swr, route_sie = policy.stale_while_revalidate, policy.stale_if_error
            swr, sie = (route_swr if route_swr > swr else swr), (route_sie if route_sie > sie else sie)
    stale_until = fresh_until + swr
    error_until = fresh_until + sie
    lkg_until = 0.0
    if lkg and not (forbids and not policy.force_ttl):
        lkg_until = response_time + policy.lkg_max_age
    keep_until = stale_until if stale_until > error_until else error_until
    if lkg_until > keep_until:
        keep_until = lkg_until
    etags, modified = lines.get("etag"), lines.get("last-modified")
    if (etags and etags[0]) or (modified and modified[0]):
        # An expired entry with validators still saves a body transfer (RFC 9111 4.3.1).
        kept_for_validation = fresh_until + (policy.ttl if policy.ttl > 3600.0 else 3600.0)
        if kept_for_validation > keep_until:
            keep_until = kept_for_validation
    return Deadlines(age, fresh_until, stale_until, error_until, keep_until, lkg_until, heuristic)


def usable_on_error(entry: Entry, now: float) -> str | None:
    """Why `entry` may stand in for a failed fetch, or None (RFC 5861 section 4)."""
    if now < entry.fresh_until:
        return "fresh"
    if now < entry.error_until:
        return "stale-if-error"
    if now < entry.lkg_until:
        return "last-known-good"
    return None


def merge_304(stored: Headers, fresh: Headers) -> Headers:
    """Stored headers updated with a 304's, RFC 9111 section 4.3.4."""
    updates = [(k, v) for k, v in fresh if k.lower() not in _KEEP_ON_304]
    replaced = {k.lower() for k, _ in updates}  # every field line of a name is replaced together
    kept = [(k, v) for k, v in stored if k.lower() not in replaced]
    return (*kept, *updates)


def stored(
    status: int,
    headers: Headers,
    body: bytes,
    d: Deadlines,
    response_time: float,
    *,
    vary: tuple[str, ...] = (),
    vary_values: tuple[str, ...] = (),
    url: str = "",
    validators: tuple[str | None, str | None] | None = None,
) -> Entry:
    """The one way an entry is made from a response and its deadlines (fetch, promote).
    `validators`: the first ETag and Last-Modified of `headers`, when the caller has read them."""
    etag, modified = validators or (header(headers, "etag"), header(headers, "last-modified"))
    # Every field named: compiled, `*deadlines` made this a generic call through the type.
    return Entry(
        status,
        headers,
        body,
        response_time,
        d.initial_age,
        d.fresh_until,
        d.stale_until,
        d.error_until,
        d.keep_until,
        d.lkg_until,
        etag,
        modified,
        vary,
        vary_values,
        url,
        d.heuristic,
    )


def refreshed(
    entry: Entry,
    headers: Headers,
    d: Deadlines,
    response_time: float,
    *,
    validators: tuple[str | None, str | None] | None = None,
) -> Entry:
    """`entry` with a 304's merged `headers` and their deadlines; `validators`: the first ETag
    and Last-Modified of `headers`, when the caller has read them."""
    # The validators follow the merged headers: a 304 may carry a new ETag (RFC 9110 15.4.5).
    etag, modified = validators or (header(headers, "etag"), header(headers, "last-modified"))
    return entry.replaced(
        headers=headers,
        etag=etag,
        last_modified=modified,
        stored_at=response_time,
        initial_age=d.initial_age,
        fresh_until=d.fresh_until,
        stale_until=d.stale_until,
        error_until=d.error_until,
        keep_until=d.keep_until,
        lkg_until=d.lkg_until,
        heuristic=d.heuristic,
    )
