"""The admin listener: health, readiness, metrics, status, config, purge, reload, breakers, quarantine.

Owns: the admin HTTP API (DESIGN.md section 3, issue 5) on its own `web.Application`, served
on `admin.listen` and never on the public port; its authentication (mutating calls need
`Authorization: Bearer <admin.token>`, compared in constant time) and its error shape (every
error is JSON: `{"error": code, "message": ...}`).
Must not: serve proxied traffic, show a secret (GET /config and quarantine headers are
redacted), or run the public app's lifecycle (serve.py and the public app own startup/cleanup).

When no token is configured the listener is on loopback (config validation and `build_admin_app`
both insist) and mutating calls are allowed: on a loopback-only port, anyone who can reach it
can already signal the process.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Middleware

from proxy.admin_api import PUBLIC_APP, AdminError, json_response, part, read_json, request_path, route_named
from proxy.admin_quarantine import quarantine_list, quarantine_promote, quarantine_show
from proxy.collectors import register_collectors
from proxy.core.config.view import effective_config
from proxy.core.keys import normal_query, route_prefix
from proxy.core.model import Entry
from proxy.health import HEALTH
from proxy.metrics import CONTENT_TYPE
from proxy.parts import CACHE, CLOCK, LIFECYCLE, LIVE, QUARANTINE, RELOADER, TELEMETRY
from proxy.runtime import RouteState
from proxy.status import build_status

log = logging.getLogger("proxy.admin")
STATUS_PAGE = Path(__file__).resolve().with_name("static") / "status.html"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Reads that need the token too: the effective config names every vendor, URL and limit.
PRIVATE_READS = frozenset({"/config"})
# The page is self-contained: inline script and style, fetches only /status on this origin.
PAGE_HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; "
    "style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class AdminConfigError(ValueError):
    """The admin listener would be reachable off loopback without a token."""


def build_admin_app(public: web.Application) -> web.Application:
    """The admin application for the proxy whose public app is `public` (reads its parts)."""
    admin_cfg = public[LIVE].runtime.config.admin
    if not admin_cfg.listen.is_loopback() and not admin_cfg.token:
        raise AdminConfigError(
            f"admin listener {admin_cfg.listen} is off loopback and admin.token is "
            "empty: refusing to expose purge, reload and breaker control"
        )
    register_collectors(public)
    app = web.Application(middlewares=[_errors, _auth(admin_cfg.token)], client_max_size=64 * 1024)
    app[PUBLIC_APP] = public
    r = app.router
    r.add_get("/health", health)
    r.add_get("/ready", ready)
    r.add_get("/metrics", metrics)
    r.add_get("/status", status)
    r.add_get("/config", config)
    r.add_post("/purge", purge)
    r.add_post("/reload", reload)
    r.add_post("/breakers/{upstream}/{action}", breaker)
    r.add_get("/quarantine", quarantine_list)
    r.add_get("/quarantine/{id}", quarantine_show)
    r.add_post("/quarantine/{id}/promote", quarantine_promote)
    return app


# -- middlewares --------------------------------------------------------------------------------


def token_ok(header: str | None, token: str) -> bool:
    """`Authorization: Bearer <token>`, compared in constant time (no early exit on a mismatch)."""
    scheme, _, given = (header or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        given = ""
    return hmac.compare_digest(
        given.strip().encode("utf-8", "surrogateescape"), token.encode("utf-8", "surrogateescape")
    )


def _auth(token: str) -> Middleware:
    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        if (
            token
            and (request.method not in READ_METHODS or request.path in PRIVATE_READS)
            and not token_ok(request.headers.get("Authorization"), token)
        ):
            raise AdminError(401, "unauthorized", "this call needs Authorization: Bearer <admin.token>")
        return await handler(request)

    return auth


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except AdminError as err:
        headers = {"WWW-Authenticate": 'Bearer realm="resilient-proxy admin"'} if err.status == 401 else {}
        return json_response({"error": err.code, "message": err.message, **err.extra}, err.status, headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = re.sub(r"[^a-z0-9]+", "_", (exc.reason or "error").lower()).strip("_")
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else {}
        return json_response(
            {"error": code, "message": f"{request.method} {request.path}: {exc.reason}"}, exc.status, headers
        )
    except Exception:
        log.exception("admin %s %s failed", request.method, request.path)
        return json_response(
            {"error": "internal_error", "message": "the admin call failed; see the log"}, 500
        )


# -- read-only endpoints ------------------------------------------------------------------------


async def health(request: web.Request) -> web.Response:
    uptime = part(request, CLOCK).now() - part(request, LIFECYCLE).started_at
    return json_response({"status": "ok", "uptime": round(uptime, 3)})


async def ready(request: web.Request) -> web.Response:
    if part(request, LIFECYCLE).ready:
        return json_response({"ready": True})
    return json_response(
        {"ready": False, "error": "not_ready", "message": "starting up or shutting down"}, 503
    )


async def metrics(request: web.Request) -> web.Response:
    text = part(request, TELEMETRY).registry.render()
    return web.Response(
        body=text.encode("utf-8"), headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"}
    )


def wants_html(accept: str) -> bool:
    """A browser (text/html) rather than the page's own fetch or curl (JSON)."""
    return "text/html" in accept and "application/json" not in accept


async def status(request: web.Request) -> web.StreamResponse:
    if wants_html(request.headers.get("Accept", "")):
        return web.FileResponse(STATUS_PAGE, headers=PAGE_HEADERS)
    public = request.app[PUBLIC_APP]
    return json_response(
        build_status(
            public[LIVE].runtime,
            public[CACHE],
            public[QUARANTINE],
            public[LIFECYCLE],
            public[TELEMETRY].secret_values,
            public[CLOCK].now(),
        )
    )


async def config(request: web.Request) -> web.Response:
    return json_response(effective_config(part(request, LIVE).runtime.config))


# -- purge --------------------------------------------------------------------------------------


def purge_scope(rs: RouteState, *, key: str | None, prefix: str | None) -> tuple[str, bool]:
    """(key prefix, exact): one path+query with all its header variants (exact), or every key
    under a path prefix of the route ("" or "/" is the whole route)."""
    cache = rs.config.cache
    assert cache is not None
    if key is not None:
        path, query = request_path(rs, key)
        q = normal_query(query, cache.key)
        return route_prefix(rs.config.name, path) + ("?" + q if q else ""), True
    return route_prefix(rs.config.name, "" if prefix in (None, "/") else prefix or ""), False


def soft_purged(entry: Entry, now: float) -> Entry:
    """Expired now, but still a stale-if-error / last-known-good fallback (keeps those windows)."""
    return entry.replaced(fresh_until=min(entry.fresh_until, now), stale_until=min(entry.stale_until, now))


async def purge(request: web.Request) -> web.Response:
    body = await read_json(request)
    rs = route_named(part(request, LIVE).runtime, body.get("route"))
    if rs.config.cache is None:
        raise AdminError(400, "not_cached", f"route {rs.config.name} does not cache")
    key, prefix, soft = body.get("key"), body.get("prefix"), body.get("soft", False)
    if (
        (key is None) == (prefix is None)
        or not isinstance(soft, bool)
        or (prefix is not None and not isinstance(prefix, str))
    ):
        raise AdminError(400, "bad_request", 'expected {"route", "key" | "prefix", "soft": bool}')
    now = part(request, CLOCK).now()
    base, exact = purge_scope(rs, key=key, prefix=prefix)
    soften = (lambda entry: soft_purged(entry, now)) if soft else None
    purged = part(request, CACHE).purge(base, exact=exact, soften=soften, now=now)
    log.info("purged %d entries of route %s (%s)", purged, rs.config.name, "soft" if soft else "hard")
    return json_response({"route": rs.config.name, "purged": purged, "soft": soft})


# -- reload and breakers ------------------------------------------------------------------------


async def reload(request: web.Request) -> web.Response:
    await read_json(request)  # none expected; a malformed one is still a 400, as on every POST
    result = part(request, RELOADER).from_file()
    if result.errors:
        return json_response(
            {
                "error": "invalid_config",
                "message": "reload refused; the old config keeps serving",
                "errors": result.errors,
            },
            400,
        )
    checks = request.app[PUBLIC_APP].get(HEALTH)
    if checks is not None:
        checks.start()  # idempotent: starts checks for upstreams the new config added
    return json_response(result.as_json())


async def breaker(request: web.Request) -> web.Response:
    name, action = request.match_info["upstream"], request.match_info["action"]
    body = await read_json(request)
    upstreams = part(request, LIVE).runtime.upstreams
    upstream = upstreams.get(name)
    if upstream is None:
        raise AdminError(404, "unknown_upstream", f"no upstream named {name!r}", upstreams=sorted(upstreams))
    now = part(request, CLOCK).now()
    if action == "open":
        seconds = body.get("seconds")
        if seconds is not None and (not isinstance(seconds, int | float) or seconds <= 0):
            raise AdminError(400, "bad_request", "seconds must be a positive number")
        upstream.breaker.force_open(now, until=None if seconds is None else now + float(seconds))
    elif action == "close":
        upstream.breaker.force_close(now)
    elif action == "reset":
        upstream.breaker.reset(now)
    else:
        raise AdminError(404, "unknown_action", f"expected open, close or reset, got {action!r}")
    upstream.state(now)  # reports the transition: event, alert, metric
    log.warning("breaker of %s: %s by admin", name, action)
    return json_response({"upstream": name, "action": action, "breaker": upstream.breaker.snapshot(now)})
