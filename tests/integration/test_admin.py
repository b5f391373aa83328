"""The admin API against a real proxy: a scripted origin, `build_app` with a FakeClock, and
`build_admin_app(public_app)` driven over HTTP with aiohttp_client."""

from __future__ import annotations

import dataclasses
import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from proxy.admin import AdminConfigError, build_admin_app
from proxy.app import build_app
from proxy.clock import FakeClock
from proxy.core.config.model import AdminConfig, Listen
from proxy.core.model import Entry
from proxy.quarantine import Quarantine
from tests.conftest import DEFAULT_ROUTES, MakeProxy, Proxy, make_config
from tests.origin import Origin, Reply
from tests.routes import PRICES

TOKEN = "adm1n-t0ken-xyz"
VENDOR_SECRET = "vendor-s3cret-987"
JSON_TYPE = {"Content-Type": "application/json"}
PRICE = {"sku": "A1", "price": 9.5, "currency": "GBP"}
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WITH_TOKEN = f"admin: {{token: {TOKEN}}}\n" + DEFAULT_ROUTES
VENDOR_HEADERS = f"headers: {{Authorization: 'Bearer {VENDOR_SECRET}', X-API-Version: '2024-06-01'}}"
GUARDED = f"""
admin: {{token: {TOKEN}}}
routes:
{PRICES}    cache: {{ttl: 30s, stale_if_error: 1h}}
    guards:
      - {{path: $.price, gt: 0}}
"""

AdminClient = TestClient[Any, Any]
Client = Callable[..., Awaitable[AdminClient]]
MakeAdmin = Callable[..., Awaitable[tuple[Proxy, AdminClient]]]


@pytest.fixture
def make_admin(make_proxy: MakeProxy, aiohttp_client: Client) -> MakeAdmin:
    """The proxy under test plus a client for its admin app (same state)."""

    async def factory(
        body: str = WITH_TOKEN, upstream_extra: str = "", **kw: Any
    ) -> tuple[Proxy, AdminClient]:
        proxy = await make_proxy(body, upstream_extra, **kw)
        server = proxy.client.server
        assert isinstance(server, TestServer)
        admin = await aiohttp_client(build_admin_app(server.app))
        return proxy, admin

    return factory


def cached(
    origin: Origin,
    path: str = "/prices/A1",
    doc: Any = PRICE,
    max_age: int = 60,
    headers: dict[str, str] | None = None,
) -> None:
    extra = {**JSON_TYPE, "Cache-Control": f"max-age={max_age}", **(headers or {})}
    origin.always(path, Reply(200, doc, extra))


# -- read-only endpoints -------------------------------------------------------------------------


async def test_health_ready_and_metrics(make_admin: MakeAdmin) -> None:
    proxy, admin = await make_admin()
    health = await admin.get("/health")
    assert health.status == 200 and (await health.json())["status"] == "ok"
    assert (await admin.get("/ready")).status == 200
    metrics = await admin.get("/metrics")
    assert metrics.status == 200
    assert metrics.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert 'rproxy_build_info{version="0.1.0"} 1' in await metrics.text()
    proxy.state.ready = False
    not_ready = await admin.get("/ready")
    assert not_ready.status == 503
    assert (await not_ready.json())["error"] == "not_ready"


async def test_collectors_are_installed_once_per_state(make_admin: MakeAdmin) -> None:
    proxy, admin = await make_admin()
    server = proxy.client.server
    assert isinstance(server, TestServer)
    build_admin_app(server.app)  # a second admin app on the same state
    text = await (await admin.get("/metrics")).text()
    assert text.count("# TYPE rproxy_cache_entries gauge") == 1


async def test_status_json_and_page(make_admin: MakeAdmin, origin: Origin, clock: FakeClock) -> None:
    cached(origin)
    proxy, admin = await make_admin(
        WITH_TOKEN, "owner: Vendor desk <desk@example.com>\ndocs: https://docs.example"
    )
    await proxy.get("/api/prices/A1")
    clock.advance(5)
    await proxy.get("/api/prices/A1")
    doc = await (await admin.get("/status", headers={"Accept": "application/json"})).json()
    (up,) = doc["upstreams"]
    assert (up["name"], up["owner"], up["docs"]) == (
        "vendor",
        "Vendor desk <desk@example.com>",
        "https://docs.example",
    )
    assert up["breaker"]["state"] == "closed" and up["health"] == "unknown"
    assert up["last_success"] == clock.now() - 5 and up["error_rate"] == 0.0
    prices = next(r for r in doc["routes"] if r["name"] == "prices")
    assert (prices["requests"], prices["hits"], prices["hit_ratio"], prices["lkg_age"]) == (2, 1, 0.5, 5.0)
    assert doc["cache"]["entries"] == 1 and doc["now"] == clock.now()
    page = await admin.get("/status", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert "data-upstream" in await page.text()


async def test_config_is_redacted(make_admin: MakeAdmin) -> None:
    _, admin = await make_admin(WITH_TOKEN, VENDOR_HEADERS)
    assert (await admin.get("/config")).status == 401  # the token is set: /config needs it
    answer = await admin.get("/config", headers=AUTH)
    text = await answer.text()
    assert answer.status == 200
    assert VENDOR_SECRET not in text and TOKEN not in text
    doc = await answer.json()
    assert doc["admin"]["token"] == "REDACTED"
    assert doc["upstreams"]["vendor"]["headers"]["Authorization"] == "REDACTED"
    assert doc["upstreams"]["vendor"]["headers"]["X-API-Version"] == "2024-06-01"
    assert [r["match"] for r in doc["routes"]] == ["/api/prices/{sku}", "/api/prices/{sku}"]


SECRETIVE = f"""
admin: {{token: {TOKEN}}}
alerts: {{webhook: "https://hooks.slack.com/services/T01/B02/hooksecretXYZ?client_secret=cs-123456"}}
cache: {{redis: {{url: "redis://app:redispass99@127.0.0.1:6379/0"}}}}
routes:
{PRICES}    cache:
      ttl: 30s
      store_set_cookie: true
      key: {{query: all, headers: [Accept-Language]}}
    fallback: {{status: 503, json: {{error: down, client_secret: cs-fallback-77}}}}
"""
SECRET_HEADERS = (
    "headers: {Authorization: 'Bearer vendor-s3cret-987', X-API-Key: 'xk-456789', "
    "Cookie: 'sid=cookie-val-1', X-API-Version: '2024-06-01'}"
)


async def test_config_uses_the_file_key_names_and_redacts_by_rule(make_admin: MakeAdmin) -> None:
    _, admin = await make_admin(SECRETIVE, SECRET_HEADERS)
    answer = await admin.get("/config", headers=AUTH)
    assert answer.status == 200, await answer.text()
    text = await answer.text()
    secrets = ("hooksecretXYZ", "cs-123456", "redispass99", VENDOR_SECRET, "xk-456789", "cookie-val-1")
    for secret in (*secrets, "cs-fallback-77"):
        assert secret not in text, secret
    doc = await answer.json()
    assert "per_address" not in text and "verify_tls" not in text
    assert doc["server"]["limits"]["per_client"] == 1024
    assert doc["server"]["limits"]["send_timeout"] == 60.0
    up = doc["upstreams"]["vendor"]
    assert up["tls"] == {"verify": True, "ca_file": None}
    assert up["headers"] == {
        "Authorization": "REDACTED",
        "X-API-Key": "REDACTED",
        "Cookie": "REDACTED",
        "X-API-Version": "2024-06-01",
    }
    assert doc["alerts"]["webhook"] == "https://hooks.slack.com/REDACTED"
    assert doc["cache"]["redis"]["url"] == "redis://app:REDACTED@127.0.0.1:6379/0"
    prices = doc["routes"][0]["cache"]
    assert prices["store_set_cookie"] is True
    assert prices["key"] == {"query": "all", "headers": ["accept-language"]}
    assert doc["upstreams"]["vendor"]["circuit_breaker"]["failure_rate"] == "50%"
    assert doc["routes"][0]["fallback"]["json"] == {"error": "down", "client_secret": "REDACTED"}


async def test_admin_paths_do_not_exist_on_the_public_listener(make_admin: MakeAdmin) -> None:
    proxy, _ = await make_admin()
    for path in ("/metrics", "/status", "/config", "/health", "/ready"):
        answer = await proxy.get(path)
        assert answer.status == 404, path
        assert (await answer.json())["error"] == "no_route"
    assert (await proxy.request("POST", "/reload", headers=AUTH)).status == 404


async def test_errors_are_json(make_admin: MakeAdmin) -> None:
    _, admin = await make_admin()
    missing = await admin.get("/nope")
    assert missing.status == 404 and (await missing.json())["error"] == "not_found"
    wrong = await admin.get("/purge")
    assert wrong.status == 405 and (await wrong.json())["error"] == "method_not_allowed"
    garbage = await admin.post("/purge", data=b"{not json", headers={**AUTH, **JSON_TYPE})
    assert garbage.status == 400 and (await garbage.json())["error"] == "bad_json"


# -- auth ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("authorization", "status"),
    [
        (None, 401),
        ("", 401),
        (f"Bearer {TOKEN}x", 401),
        (f"Bearer {TOKEN[:-1]}", 401),
        (f"Basic {TOKEN}", 401),
        (TOKEN, 401),
        ("Bearer ünïcødé", 401),
        (f"Bearer {TOKEN}", 200),
        (f"bearer {TOKEN}", 200),
    ],
)
async def test_mutating_calls_need_the_token(
    make_admin: MakeAdmin, authorization: str | None, status: int
) -> None:
    _, admin = await make_admin()
    headers = {} if authorization is None else {"Authorization": authorization}
    answer = await admin.post("/purge", json={"route": "prices", "prefix": "/"}, headers=headers)
    assert answer.status == status
    if status == 401:
        assert (await answer.json())["error"] == "unauthorized"
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")


async def test_token_is_compared_in_constant_time(
    make_admin: MakeAdmin, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    _, admin = await make_admin()
    assert (await admin.post("/reload", headers={"Authorization": "Bearer guess"})).status == 401
    assert seen == [(b"guess", TOKEN.encode())]


async def test_reads_need_no_token_except_config(make_admin: MakeAdmin) -> None:
    _, admin = await make_admin()
    for path in ("/health", "/ready", "/metrics", "/status", "/quarantine"):
        assert (await admin.get(path)).status == 200, path
    assert (await admin.get("/config")).status == 401


async def test_without_a_token_loopback_allows_mutating_calls(make_admin: MakeAdmin) -> None:
    _, admin = await make_admin(DEFAULT_ROUTES)
    answer = await admin.post("/breakers/vendor/reset")
    assert answer.status == 200


def test_refuses_to_build_off_loopback_without_a_token(origin: Origin, clock: FakeClock) -> None:
    cfg = make_config("http://127.0.0.1:9")
    exposed = dataclasses.replace(cfg, admin=AdminConfig(listen=Listen("0.0.0.0", 9901), token=""))
    with pytest.raises(AdminConfigError, match="off loopback"):
        build_admin_app(build_app(exposed, clock=clock))
    guarded = dataclasses.replace(cfg, admin=AdminConfig(listen=Listen("0.0.0.0", 9901), token=TOKEN))
    assert build_admin_app(build_app(guarded, clock=clock)) is not None


# -- purge ---------------------------------------------------------------------------------------


async def test_purge_one_key_keeps_the_others(make_admin: MakeAdmin, origin: Origin) -> None:
    cached(origin, "/prices/A1")
    cached(origin, "/prices/B2", {**PRICE, "sku": "B2"})
    proxy, admin = await make_admin()
    for path in ("/api/prices/A1", "/api/prices/A1?b=2&a=1", "/api/prices/B2"):
        await proxy.get(path)
    answer = await admin.post(
        "/purge", json={"route": "prices", "key": "/api/prices/A1?a=1&b=2"}, headers=AUTH
    )
    assert answer.status == 200 and await answer.json() == {"route": "prices", "purged": 1, "soft": False}
    assert (await proxy.get("/api/prices/A1")).headers["X-Cache"] == "HIT"
    assert (await proxy.get("/api/prices/B2")).headers["X-Cache"] == "HIT"
    assert (await proxy.get("/api/prices/A1?b=2&a=1")).headers["X-Cache"] == "MISS"


async def test_purge_prefix_and_whole_route(make_admin: MakeAdmin, origin: Origin) -> None:
    cached(origin, "/prices/A1")
    cached(origin, "/prices/B2")
    proxy, admin = await make_admin()
    for path in ("/api/prices/A1", "/api/prices/A1?x=1", "/api/prices/B2"):
        await proxy.get(path)
    prefix = await admin.post("/purge", json={"route": "prices", "prefix": "/api/prices/A"}, headers=AUTH)
    assert (await prefix.json())["purged"] == 2
    assert (await proxy.get("/api/prices/B2")).headers["X-Cache"] == "HIT"
    whole = await admin.post("/purge", json={"route": "prices", "prefix": "/"}, headers=AUTH)
    assert (await whole.json())["purged"] == 1
    assert len(proxy.state.store) == 0


async def test_soft_purge_keeps_a_stale_fallback_hard_purge_does_not(
    make_admin: MakeAdmin, origin: Origin, clock: FakeClock
) -> None:
    cached(origin, "/prices/A1")
    cached(origin, "/prices/B2", {**PRICE, "sku": "B2"})
    proxy, admin = await make_admin()
    await proxy.get("/api/prices/A1")
    await proxy.get("/api/prices/B2")
    soft = await admin.post(
        "/purge", json={"route": "prices", "key": "/api/prices/A1", "soft": True}, headers=AUTH
    )
    hard = await admin.post("/purge", json={"route": "prices", "key": "/api/prices/B2"}, headers=AUTH)
    assert (await soft.json())["purged"] == 1 and (await hard.json())["purged"] == 1
    origin.always("/prices/A1", Reply(503, "down"))
    origin.always("/prices/B2", Reply(503, "down"))
    clock.advance(1)
    stale = await proxy.get("/api/prices/A1")
    assert stale.status == 200 and stale.headers["X-Cache"] == "STALE"
    assert 'detail="stale-if-error"' in stale.headers["Cache-Status"]
    assert await stale.json() == PRICE
    gone = await proxy.get("/api/prices/B2")
    assert gone.status == 502 and (await gone.json())["error"] == "upstream_status"
    assert origin.count("/prices/A1") == 2  # the soft-purged key did go to the vendor first


async def test_soft_purged_key_refetches_when_the_vendor_is_up(make_admin: MakeAdmin, origin: Origin) -> None:
    cached(origin)
    proxy, admin = await make_admin()
    await proxy.get("/api/prices/A1")
    await admin.post("/purge", json={"route": "prices", "key": "/api/prices/A1", "soft": True}, headers=AUTH)
    cached(origin, doc={**PRICE, "price": 11.0})
    fresh = await proxy.get("/api/prices/A1")
    assert fresh.headers["X-Cache"] == "MISS" and (await fresh.json())["price"] == 11.0


class RecordingTier:
    """A shared tier (the `SharedTier` protocol) that stores nothing and records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, float | None]] = []

    async def get(self, key: str) -> Entry | None:
        return None

    async def set(self, key: str, entry: Entry, now: float) -> None:
        self.calls.append(("set", key, entry.fresh_until))

    async def delete(self, key: str) -> None:
        self.calls.append(("delete", key, None))

    async def delete_prefix(self, prefix: str) -> int:
        self.calls.append(("delete_prefix", prefix, None))
        return 0

    async def publish_purge(self, key_or_prefix: str, prefix: bool) -> int:
        self.calls.append(("publish_prefix" if prefix else "publish", key_or_prefix, None))
        return 0

    async def close(self) -> None:
        return None

    def up(self, now: float) -> bool:
        return True

    async def lease_or_wait(
        self, key: str, ttl_ms: int, timeout: float, *, newer_than: float | None = None
    ) -> None:
        return None  # "fetch without coordination"

    async def release(self, lease: object) -> bool:
        return True

    def start_invalidation_listener(self, callback: Callable[[str, bool], None]) -> None:
        return None


async def test_purges_reach_the_shared_tier(make_admin: MakeAdmin, origin: Origin, clock: FakeClock) -> None:
    cached(origin)
    tier = RecordingTier()
    proxy, admin = await make_admin(WITH_TOKEN, shared=tier)
    await proxy.get("/api/prices/A1")
    await proxy.settle()
    tier.calls.clear()
    clock.advance(1)
    await admin.post("/purge", json={"route": "prices", "key": "/api/prices/A1", "soft": True}, headers=AUTH)
    await proxy.settle()
    key = "prices\x1f/api/prices/A1"
    assert tier.calls == [("set", key, clock.now()), ("publish", key, None)]
    tier.calls.clear()
    await admin.post("/purge", json={"route": "prices", "key": "/api/prices/A1?b=1"}, headers=AUTH)
    await proxy.settle()
    base = key + "?b=1"
    assert tier.calls == [
        ("delete", base, None),
        ("publish", base, None),
        ("delete_prefix", base + "\x1f", None),
        ("publish_prefix", base + "\x1f", None),
        ("delete_prefix", base + "\x1e", None),
        ("publish_prefix", base + "\x1e", None),
    ]
    tier.calls.clear()
    await admin.post("/purge", json={"route": "prices", "prefix": "/api/"}, headers=AUTH)
    await proxy.settle()
    whole = "prices\x1f/api/"
    assert tier.calls == [("delete_prefix", whole, None), ("publish_prefix", whole, None)]


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"route": "nope", "prefix": "/"}, 404, "unknown_route"),
        ({"route": "writes", "prefix": "/"}, 400, "not_cached"),
        ({"route": "prices"}, 400, "bad_request"),
        ({"route": "prices", "key": "/api/prices/A1", "prefix": "/"}, 400, "bad_request"),
        ({"route": "prices", "key": "/api/other/A1"}, 400, "bad_key"),
        ({"route": "prices", "key": "/api/prices/../x"}, 400, "bad_key"),
        ({"route": "prices", "prefix": "/", "soft": "yes"}, 400, "bad_request"),
    ],
)
async def test_purge_validation(make_admin: MakeAdmin, body: dict[str, Any], status: int, error: str) -> None:
    _, admin = await make_admin()
    answer = await admin.post("/purge", json=body, headers=AUTH)
    assert answer.status == status
    assert (await answer.json())["error"] == error


# -- breakers ------------------------------------------------------------------------------------


async def test_breaker_open_close_reset(make_admin: MakeAdmin, origin: Origin, clock: FakeClock) -> None:
    cached(origin)
    proxy, admin = await make_admin()
    opened = await admin.post("/breakers/vendor/open", headers=AUTH)
    assert opened.status == 200 and (await opened.json())["breaker"]["state"] == "open"
    refused = await proxy.get("/api/prices/A1")
    assert refused.status == 503 and "Retry-After" in refused.headers
    assert origin.count() == 0
    assert proxy.state.telemetry.transitions.value(("vendor", "open")) == 1
    assert 'rproxy_breaker_state{upstream="vendor"} 2' in await (await admin.get("/metrics")).text()
    clock.advance(3600)  # an admin hold does not time out by itself
    assert (await proxy.get("/api/prices/A1")).status == 503
    closed = await admin.post("/breakers/vendor/close", headers=AUTH)
    assert (await closed.json())["breaker"]["state"] == "closed"
    assert (await proxy.get("/api/prices/A1")).status == 200
    reset = await admin.post("/breakers/vendor/reset", headers=AUTH)
    assert (await reset.json())["breaker"]["calls"] == 0


async def test_breaker_open_for_some_seconds(make_admin: MakeAdmin, clock: FakeClock) -> None:
    _, admin = await make_admin()
    await admin.post("/breakers/vendor/open", json={"seconds": 30}, headers=AUTH)
    clock.advance(31)
    doc = await (await admin.get("/status")).json()
    assert doc["upstreams"][0]["breaker"]["state"] == "half_open"


@pytest.mark.parametrize(
    ("path", "status", "error"),
    [
        ("/breakers/nope/open", 404, "unknown_upstream"),
        ("/breakers/vendor/explode", 404, "unknown_action"),
    ],
)
async def test_breaker_errors(make_admin: MakeAdmin, path: str, status: int, error: str) -> None:
    _, admin = await make_admin()
    answer = await admin.post(path, headers=AUTH)
    assert answer.status == status and (await answer.json())["error"] == error


# -- quarantine ----------------------------------------------------------------------------------


async def test_quarantine_list_show_promote(make_admin: MakeAdmin, origin: Origin) -> None:
    bad = {"sku": "A1", "price": -1, "currency": "GBP"}
    cached(origin, doc=bad, headers={"X-Vendor-Token": VENDOR_SECRET})
    proxy, admin = await make_admin(GUARDED, VENDOR_HEADERS)
    assert (await proxy.get("/api/prices/A1")).status == 502
    listing = await (await admin.get("/quarantine", params={"route": "prices"})).json()
    (item,) = listing["items"]
    assert item["violations"] == ["gt at $.price"] and item["truncated"] is False
    shown = await admin.get(f"/quarantine/{item['id']}")
    detail = await shown.json()
    assert detail["body_encoding"] == "utf-8" and detail["verdict"]["violations"][0]["rule"] == "gt"
    assert VENDOR_SECRET not in await shown.text()
    assert (await admin.post(f"/quarantine/{item['id']}/promote", headers=AUTH)).status == 400  # no key
    promoted = await admin.post(
        f"/quarantine/{item['id']}/promote", json={"key": "/api/prices/A1"}, headers=AUTH
    )
    assert promoted.status == 200
    answer = await proxy.get("/api/prices/A1")
    assert answer.headers["X-Cache"] == "HIT" and await answer.json() == bad
    assert origin.count("/prices/A1") == 1
    assert (await (await admin.get("/quarantine")).json())["items"] == []
    assert (await admin.get(f"/quarantine/{item['id']}")).status == 404


async def test_truncated_quarantine_items_are_not_promoted(make_admin: MakeAdmin, origin: Origin) -> None:
    cached(origin, doc={"sku": "A1", "price": 0, "pad": "x" * 100})
    proxy, admin = await make_admin(GUARDED, quarantine=Quarantine(max_body_bytes=16))
    await proxy.get("/api/prices/A1")
    (item,) = (await (await admin.get("/quarantine")).json())["items"]
    assert item["truncated"] is True
    answer = await admin.post(
        f"/quarantine/{item['id']}/promote", json={"key": "/api/prices/A1"}, headers=AUTH
    )
    assert answer.status == 409 and (await answer.json())["error"] == "truncated"


async def test_binary_quarantine_bodies_are_base64(make_admin: MakeAdmin, origin: Origin) -> None:
    origin.always("/prices/A1", Reply(200, b"\xff\xfe\x00garbage", JSON_TYPE))
    proxy, admin = await make_admin(GUARDED)
    await proxy.get("/api/prices/A1")
    (item,) = (await (await admin.get("/quarantine")).json())["items"]
    detail = await (await admin.get(f"/quarantine/{item['id']}")).json()
    assert detail["body_encoding"] == "base64" and detail["body"] == "//4AZ2FyYmFnZQ=="


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/purge", b"[" * 30_000 + b"]" * 30_000),  # deeply nested: RecursionError in json
        ("/purge", b'{"route": ' + b"[" * 20_000 + b"]" * 20_000 + b"}"),
        ("/purge", b"\xff\xfe not utf-8"),
        ("/breakers/vendor/open", b"{" * 50_000),
        ("/breakers/vendor/open", b"[1, 2]"),
        ("/breakers/vendor/reset", b"[" * 30_000),
        ("/reload", b"not json"),
        ("/quarantine/q1/promote", b"[" * 30_000 + b"]" * 30_000),
    ],
)
async def test_any_bad_admin_body_is_a_400_with_a_json_error(
    make_admin: MakeAdmin, path: str, body: bytes
) -> None:
    _, admin = await make_admin()
    answer = await admin.post(path, data=body, headers={**AUTH, **JSON_TYPE})
    assert answer.status == 400, await answer.text()
    assert (await answer.json())["error"] == "bad_json"


KEYED_GUARDED = f"""
admin: {{token: {TOKEN}}}
routes:
{PRICES}    cache: {{ttl: 30s, stale_if_error: 1h, key: {{query: all, headers: [Accept-Language]}}}}
    guards:
      - {{path: $.price, gt: 0}}
"""


async def test_quarantine_records_path_and_key_so_promote_needs_nothing_else(
    make_admin: MakeAdmin, origin: Origin
) -> None:
    bad = {"sku": "A1", "price": -1, "currency": "GBP"}
    cached(origin, doc=bad)
    proxy, admin = await make_admin(KEYED_GUARDED)
    lang = {"Accept-Language": "fr"}
    assert (await proxy.get("/api/prices/A1?b=2&a=1", headers=lang)).status == 502
    (item,) = (await (await admin.get("/quarantine")).json())["items"]
    assert item["path"] == "/api/prices/A1?a=1&b=2"  # as the cache keys it
    assert item["cache_key"] == "prices | /api/prices/A1?a=1&b=2 | accept-language=fr"
    assert item["promote"] == {"key": "/api/prices/A1?a=1&b=2", "headers": {"accept-language": "fr"}}
    detail = await (await admin.get(f"/quarantine/{item['id']}")).json()
    assert detail["promote"] == item["promote"]
    # Promote with exactly what the listing showed: the next request with that key is a HIT.
    promoted = await admin.post(f"/quarantine/{item['id']}/promote", json=item["promote"], headers=AUTH)
    assert promoted.status == 200, await promoted.text()
    answer = await proxy.get("/api/prices/A1?a=1&b=2", headers=lang)
    assert answer.headers["X-Cache"] == "HIT" and await answer.json() == bad
