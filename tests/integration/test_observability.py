"""What ops see: access-log lines parsed field by field (with secrets planted in headers, query and
path), and /metrics parsed with prometheus_client's own text parser."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from proxy.admin import build_admin_app
from proxy.app import build_app
from proxy.clock import FakeClock
from proxy.config import parse_config
from tests.origin import Origin, Reply
from tests.parts import Parts
from tests.public import PublicTestServer

ADMIN_TOKEN = "adm1n-obs-token"
VENDOR_TOKEN = "vendor-bearer-1357"
VENDOR_KEY = "vendor-apikey-8642"
CLIENT_SECRET = "client-bearer-9999"
COOKIE_SECRET = "cookie-sess-7777"
QUERY_SECRETS = {"token": "q-token-1111", "apikey": "q-apikey-2222", "session_id": "q-session-3333"}
ALL_SECRETS = (ADMIN_TOKEN, VENDOR_TOKEN, VENDOR_KEY, CLIENT_SECRET, COOKIE_SECRET, *QUERY_SECRETS.values())
JSON_TYPE = {"Content-Type": "application/json"}
PRICE = {"sku": "A1", "price": 9.5, "currency": "GBP"}
CONFIG = """
server: {{listen: 127.0.0.1:0}}
admin: {{token: {admin}}}
log: {{access: {access}, redact_params: [session_id]}}
upstreams:
  vendor:
    url: {url}
    retries: {{attempts: 0}}
    headers: {{Authorization: "Bearer {vendor_token}", X-Api-Key: "{vendor_key}"}}
routes:
  - name: prices
    match: /api/prices/{{sku}}
    methods: [GET, HEAD]
    upstream: vendor
    rewrite: /prices/{{sku}}
    cache: {{ttl: 30s, stale_if_error: 1h}}
    guards:
      - {{path: $.price, gt: 0}}
  - name: book
    match: /api/book
    methods: [POST]
    upstream: vendor
    cache: off
"""

AnyClient = TestClient[Any, Any]


class Rig:
    def __init__(self, public: AnyClient, admin: AnyClient, state: Parts, log: Path) -> None:
        self.public, self.admin, self.state, self.log = public, admin, state, log

    async def lines(self) -> list[dict[str, Any]]:
        await self.state.telemetry.access.close()  # flushes the writer thread
        text = self.log.read_text()
        for secret in ALL_SECRETS:
            assert secret not in text, secret
        return [json.loads(line) for line in text.splitlines()]

    async def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        answer = await self.admin.get("/metrics")
        assert answer.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        text = await answer.text()
        for secret in ALL_SECRETS:
            assert secret not in text, secret
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }


@pytest.fixture
async def rig(
    origin: Origin, clock: FakeClock, tmp_path: Path, aiohttp_client: Callable[..., Awaitable[AnyClient]]
) -> Rig:
    log = tmp_path / "access.log"
    text = CONFIG.format(
        admin=ADMIN_TOKEN, access=log, url=origin.url, vendor_token=VENDOR_TOKEN, vendor_key=VENDOR_KEY
    )
    app: web.Application = build_app(parse_config(text, "obs.yaml", {}), clock=clock)
    public = await aiohttp_client(PublicTestServer(app))
    admin = await aiohttp_client(build_admin_app(app))
    return Rig(public, admin, Parts(app), log)


SECRET_QUERY = (
    f"token={QUERY_SECRETS['token']}&apikey={QUERY_SECRETS['apikey']}"
    f"&session_id={QUERY_SECRETS['session_id']}&note={VENDOR_KEY}&page=2"
)
REDACTED_QUERY = "token=REDACTED&apikey=REDACTED&session_id=REDACTED&note=REDACTED&page=2"
CLIENT_HEADERS = {"Authorization": f"Bearer {CLIENT_SECRET}", "Cookie": f"sid={COOKIE_SECRET}"}


def pick(line: dict[str, Any], *keys: str) -> tuple[Any, ...]:
    return tuple(line[k] for k in keys)


def iso(now: float) -> str:
    return dt.datetime.fromtimestamp(now, dt.UTC).isoformat(timespec="milliseconds")


async def test_access_log_lines_field_by_field(rig: Rig, origin: Origin, clock: FakeClock) -> None:
    origin.always("/prices/A1", Reply(200, PRICE, {**JSON_TYPE, "Cache-Control": "max-age=10, public"}))
    origin.always("/api/book", Reply(201, {"ok": True}, JSON_TYPE))
    target = f"/api/prices/A1?{SECRET_QUERY}"
    miss = await rig.public.get(target, headers={**CLIENT_HEADERS, "X-Request-Id": "req-miss"})
    body = await miss.read()
    clock.advance(5)
    hit = await rig.public.get(target, headers={"X-Request-Id": "req-hit"})
    clock.advance(60)
    origin.always("/prices/A1", Reply(500, "vendor down"))
    stale = await rig.public.get(target, headers={"X-Request-Id": "req-stale"})
    nowhere = await rig.public.get(f"/nope?{SECRET_QUERY}", headers={"X-Request-Id": "req-404"})
    booked = await rig.public.post("/api/book", json={"who": "me"}, headers=CLIENT_HEADERS)
    assert [r.status for r in (miss, hit, stale, nowhere, booked)] == [200, 200, 200, 404, 201]

    lines = await rig.lines()
    assert len(lines) == 5
    expected_keys = {
        "time",
        "request_id",
        "client",
        "method",
        "path",
        "route",
        "upstream",
        "status",
        "x_cache",
        "upstream_status",
        "upstream_ms",
        "total_ms",
        "bytes",
        "retries",
        "breaker",
        "guard",
        "stale_reason",
    }
    assert all(set(line) == expected_keys for line in lines)
    first, second, third, fourth, fifth = lines
    assert first["time"] == iso(clock.now() - 65)
    assert (first["request_id"], first["client"], first["method"]) == ("req-miss", "127.0.0.1", "GET")
    assert first["path"] == f"/api/prices/A1?{REDACTED_QUERY}"
    assert pick(first, "route", "upstream", "status", "x_cache") == ("prices", "vendor", 200, "MISS")
    assert first["upstream_status"] == 200 and first["upstream_ms"] >= 0 and first["retries"] == 0
    assert first["total_ms"] == 0.0  # the FakeClock did not move during the request
    assert first["bytes"] == len(body) and first["guard"] is None and first["stale_reason"] is None
    assert (second["request_id"], second["x_cache"], second["upstream_status"], second["upstream_ms"]) == (
        "req-hit",
        "HIT",
        None,
        None,
    )
    assert second["time"] == iso(clock.now() - 60)
    assert pick(third, "x_cache", "upstream_status", "stale_reason") == ("STALE", 500, "stale-if-error")
    assert (fourth["route"], fourth["upstream"], fourth["status"]) == (None, None, 404)
    assert fourth["path"] == f"/nope?{REDACTED_QUERY}"
    assert pick(fifth, "method", "route", "status", "x_cache") == ("POST", "book", 201, "BYPASS")
    assert len({line["request_id"] for line in lines}) == 5


async def test_guard_rejection_is_logged_with_the_rule(rig: Rig, origin: Origin) -> None:
    origin.always("/prices/A1", Reply(200, {**PRICE, "price": -1}, JSON_TYPE))
    answer = await rig.public.get("/api/prices/A1")
    assert answer.status == 502
    (line,) = await rig.lines()
    assert line["guard"] == "guard: gt at $.price" and line["status"] == 502


async def test_breaker_state_is_logged(rig: Rig) -> None:
    await rig.admin.post("/breakers/vendor/open", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert (await rig.public.get("/api/prices/A1")).status == 503
    (line,) = await rig.lines()
    assert line["breaker"] == "open"


async def test_breaker_state_is_logged_on_a_miss_and_on_a_fresh_hit(rig: Rig, origin: Origin) -> None:
    """The state's name as the breaker reports it, on the driver's path and the fast hit's."""
    origin.always("/prices/A1", Reply(200, PRICE, {**JSON_TYPE, "Cache-Control": "max-age=60"}))
    assert (await rig.public.get("/api/prices/A1")).status == 200
    await rig.admin.post("/breakers/vendor/open", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    hit = await rig.public.get("/api/prices/A1")  # fresh: served whatever the breaker says
    assert hit.status == 200 and hit.headers["X-Cache"] == "HIT"
    first, second = await rig.lines()
    assert (first["x_cache"], first["breaker"]) == ("MISS", "closed")
    assert (second["x_cache"], second["breaker"]) == ("HIT", "open")


async def test_metrics_parse_and_count(rig: Rig, origin: Origin, clock: FakeClock) -> None:
    origin.always("/prices/A1", Reply(200, PRICE, {**JSON_TYPE, "Cache-Control": "max-age=10"}))
    origin.always("/prices/SLOW", Reply(200, {**PRICE, "sku": "SLOW"}, JSON_TYPE, delay=0.2))
    origin.always("/prices/BAD", Reply(200, {**PRICE, "price": 0}, JSON_TYPE))
    await rig.public.get(f"/api/prices/A1?{SECRET_QUERY}")  # no credentials: the answer is shared
    clock.advance(4)
    await rig.public.get(f"/api/prices/A1?{SECRET_QUERY}")
    await asyncio.gather(*(rig.public.get("/api/prices/SLOW") for _ in range(5)))
    await rig.public.get("/api/prices/BAD")
    clock.advance(60)
    origin.always("/prices/A1", Reply(503, "down"))
    await rig.public.get(f"/api/prices/A1?{SECRET_QUERY}")
    await rig.public.get("/nope")

    m = await rig.metrics()

    def req(route: str, status: str, x_cache: str) -> float:
        key = (("method", "GET"), ("route", route), ("status", status), ("x_cache", x_cache))
        return m.get(("rproxy_requests_total", key), 0.0)

    assert [req("prices", "200", x) for x in ("MISS", "HIT", "STALE")] == [6, 1, 1]
    assert req("prices", "502", "MISS") == 1 and req("-", "404", "BYPASS") == 1
    assert m[("rproxy_stale_served_total", (("reason", "stale-if-error"), ("route", "prices")))] == 1
    assert m[("rproxy_guard_rejections_total", (("route", "prices"), ("rule", "gt")))] == 1
    assert m[("rproxy_data_faults_total", (("upstream", "vendor"),))] == 1
    # Observed per transaction that waited on the vendor (coalesced waiters too): 4 calls, 8 answers.
    count = m[("rproxy_upstream_duration_seconds_count", (("upstream", "vendor"),))]
    assert count >= 4
    assert m[("rproxy_upstream_duration_seconds_bucket", (("le", "+Inf"), ("upstream", "vendor")))] == count
    assert m[("rproxy_coalesced_waiters_total", ())] == 4
    assert m[("rproxy_cache_entries", ())] == 2
    assert m[("rproxy_cache_bytes", ())] == rig.state.store.bytes > 0
    assert m[("rproxy_cache_max_bytes", ())] == 256 * 1024 * 1024
    assert m[("rproxy_cache_evictions_total", ())] == 0
    assert m[("rproxy_breaker_state", (("upstream", "vendor"),))] == 0
    assert m[("rproxy_upstream_healthy", (("upstream", "vendor"),))] == -1
    assert m[("rproxy_lkg_age_seconds", (("route", "prices"),))] == 60  # last good: the SLOW fetch
    assert m[("rproxy_transport_faults_total", (("error", "upstream_status"), ("upstream", "vendor")))] == 1
    assert m[("rproxy_quarantine_items", ())] == 1
    assert m[("rproxy_retry_budget_available", (("upstream", "vendor"),))] == 3
    assert m[("rproxy_access_log_lost_total", (("reason", "queue_full"),))] == 0
    assert m[("rproxy_alerts_total", (("outcome", "dropped"),))] == 0
    assert m[("rproxy_background_task_failures_total", ())] == 0
    assert m[("rproxy_ready", ())] == 1
    assert ("rproxy_lkg_age_seconds", (("route", "book"),)) not in m  # never had a good answer


async def test_breaker_metric_follows_admin_and_outage(rig: Rig, origin: Origin) -> None:
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    await rig.admin.post("/breakers/vendor/open", headers=auth)
    m = await rig.metrics()
    assert m[("rproxy_breaker_state", (("upstream", "vendor"),))] == 2
    assert m[("rproxy_breaker_transitions_total", (("to", "open"), ("upstream", "vendor")))] == 1
    assert m[("rproxy_events_total", (("event", "breaker_open"),))] == 1
    await rig.admin.post("/breakers/vendor/close", headers=auth)
    assert (await rig.metrics())[("rproxy_breaker_state", (("upstream", "vendor"),))] == 0


async def test_collectors_follow_a_reload(rig: Rig, origin: Origin) -> None:
    text = (
        CONFIG.format(
            admin=ADMIN_TOKEN, access="off", url=origin.url, vendor_token=VENDOR_TOKEN, vendor_key=VENDOR_KEY
        )
        .replace("  vendor:", "  other:")
        .replace("upstream: vendor", "upstream: other")
    )
    assert rig.state.reloader.apply(parse_config(text, "obs.yaml", {}), retire_after=0.0).errors == []
    m = await rig.metrics()
    assert ("rproxy_breaker_state", (("upstream", "other"),)) in m
    assert ("rproxy_breaker_state", (("upstream", "vendor"),)) not in m
