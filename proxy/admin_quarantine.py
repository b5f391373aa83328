"""The admin API's quarantine: list and show rejected payloads, and promote one to the cache.

Owns: `GET /quarantine`, `GET /quarantine/{id}`, `POST /quarantine/{id}/promote` (the entry
fetch would have stored had the guards passed). Must not: show a secret (headers redacted).
"""

from __future__ import annotations

from aiohttp import web

from proxy.admin_api import AdminError, json_response, part, read_json, request_path, route_named
from proxy.core import freshness
from proxy.core.cachecontrol import effective
from proxy.core.headers import end_to_end
from proxy.core.keys import VARY_SEP, normal_query, normal_vary, primary_key
from proxy.core.model import Entry
from proxy.core.routing import match_path, rewrite_path
from proxy.parts import CACHE, CLOCK, LIVE, QUARANTINE, TELEMETRY
from proxy.quarantine import QuarantineItem
from proxy.runtime import RouteState
from proxy.status import item_json, summary_json

_DROP_ON_STORE = frozenset({"content-length", "age", "set-cookie"})  # as fetch stores entries


async def quarantine_list(request: web.Request) -> web.Response:
    items = part(request, QUARANTINE).list(request.query.get("route"))
    secrets = part(request, TELEMETRY).secret_values
    return json_response({"items": [summary_json(s, secrets) for s in items]})


async def quarantine_show(request: web.Request) -> web.Response:
    item = part(request, QUARANTINE).get(request.match_info["id"])
    if item is None:
        raise AdminError(404, "unknown_item", "no such quarantined item (it may have been evicted)")
    return json_response(item_json(item, part(request, TELEMETRY).secret_values))


async def quarantine_promote(request: web.Request) -> web.Response:
    """Accept a rejected payload as good: store it as the route's entry for `key`."""
    quarantine, cache = part(request, QUARANTINE), part(request, CACHE)
    body = await read_json(request)  # a bad body is a 400 before anything is looked up
    item = quarantine.get(request.match_info["id"])
    if item is None:
        raise AdminError(404, "unknown_item", "no such quarantined item (it may have been evicted)")
    if item.truncated:
        raise AdminError(409, "truncated", "the quarantined body was truncated; it cannot be promoted")
    rs = route_named(part(request, LIVE).runtime, item.route)
    if rs.config.cache is None:
        raise AdminError(409, "not_cached", f"route {item.route} does not cache any more")
    headers = body.get("headers", {})
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise AdminError(400, "bad_request", "headers must map names to strings")
    path, query = request_path(rs, body.get("key"))
    now = part(request, CLOCK).now()
    entry, why = promoted_entry(rs, item, path, query, {k.lower(): v for k, v in headers.items()}, now)
    if entry is None:
        raise AdminError(409, "not_storable", f"the payload may not be stored: {why}")
    lookup = {k.lower(): v for k, v in headers.items()}.get
    keyed_query = normal_query(query, rs.config.cache.key)
    primary = primary_key(rs.config.name, path, keyed_query, rs.config.cache.key, lookup)
    full = primary if not entry.vary else primary + VARY_SEP + VARY_SEP.join(entry.vary_values)
    cache.remember_vary(primary, entry.vary)
    cache.put_everywhere(full, entry, now)
    quarantine.take(item.id)
    rs.hysteresis_for(full).reset()
    rs.last_good_at = now
    part(request, TELEMETRY).event(
        "quarantine_promoted", now, level="info", route=rs.config.name, item=item.id
    )
    return json_response(
        {
            "promoted": item.id,
            "route": rs.config.name,
            "key": body["key"],
            "fresh_until": entry.fresh_until,
            "lkg_until": entry.lkg_until,
        }
    )


def promoted_entry(
    rs: RouteState, item: QuarantineItem, path: str, query: str, request_headers: dict[str, str], now: float
) -> tuple[Entry | None, str]:
    """The entry fetch would have stored had the guards passed, with `now` as response time."""
    policy = rs.config.cache
    assert policy is not None
    cc = effective(item.headers, policy.targeted_fields)
    why = freshness.storable(status=item.status, headers=item.headers, cc=cc, policy=policy, authorized=False)
    if why is not None:
        return None, why
    d = freshness.deadlines(
        headers=item.headers,
        cc=cc,
        policy=policy,
        request_time=now,
        response_time=now,
        lkg=bool(rs.config.guards),
        status=item.status,
    )
    headers = end_to_end(freshness.without_withheld(item.headers, cc), _DROP_ON_STORE)
    vary = freshness.vary_names(item.headers) or ()
    found = match_path(rs.config.match, path.split("/")[1:])
    assert found is not None
    target = rewrite_path(rs.config.rewrite, path, found) + (f"?{query}" if query else "")
    values = tuple(normal_vary(n, request_headers.get(n)) for n in vary)
    return freshness.stored(
        item.status, headers, item.body, d, now, vary=vary, vary_values=values, url=target
    ), ""
