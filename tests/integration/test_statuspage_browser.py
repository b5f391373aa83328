"""The status page in a real headless Chromium.

First against the REAL admin listener (`build_admin_app` in front of a proxy and a scripted
origin): the page shows the upstream, and its breaker opening after POST /breakers/{name}/open
and after a real outage. Then, for rendering details (missing fields, error banner, escaping),
against a stand-in server whose JSON each test controls.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from proxy.admin import build_admin_app
from tests.browser import PHONE, chromium_path, dump_dom, screenshot
from tests.conftest import DEFAULT_ROUTES, Proxy
from tests.origin import Origin, Reply

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(chromium_path() is None, reason="no chromium/chrome binary on PATH (set $CHROMIUM)"),
]

STATUS_HTML = Path(__file__).resolve().parents[2] / "proxy" / "static" / "status.html"

SAMPLE: dict[str, Any] = {
    "service": "resilient-proxy",
    "version": "0.1.0",
    "now": 1764400000.0,
    "started_at": 1764390000.0,
    "upstreams": [
        {
            "name": "pricing",
            "url": "http://127.0.0.1:9001/v2",
            "owner": "Pricing vendor <x@y>",
            "docs": "https://pricing.example/docs",
            "breaker": {"state": "closed", "retry_after": 0, "calls": 12, "failure_rate": 0.0},
            "health": "healthy",
            "last_success": 1764399990.0,
            "last_failure": None,
            "last_error": None,
            "error_rate": 0.0,
            "data_fault_rate": 0.0,
        }
    ],
    "routes": [
        {
            "name": "prices",
            "match": "/api/prices/{sku}",
            "upstream": "pricing",
            "requests": 100,
            "hits": 80,
            "stale": 3,
            "hit_ratio": 0.8,
            "lkg_age": 12.5,
            "guard_rejections": 0,
        }
    ],
    "cache": {"entries": 10, "bytes": 10240, "max_bytes": 268435456, "evictions": 0},
}


# -- the real admin listener ---------------------------------------------------------------------

TOKEN = "browser-admin-token"
OWNER = "Vendor desk <desk@vendor.example>"
UPSTREAM = f"""
owner: "{OWNER}"
docs: https://vendor.example/docs
circuit_breaker: {{failure_rate: 50%, minimum_calls: 3, window: 30s, open_for: 60s}}
"""


@dataclass
class RealAdmin:
    proxy: Proxy
    url: str  # the admin listener's /status


@pytest.fixture
async def real_admin(
    make_proxy: Callable[..., Awaitable[Proxy]],
    aiohttp_server: Callable[[web.Application], Awaitable[TestServer]],
) -> RealAdmin:
    proxy = await make_proxy(f"admin: {{token: {TOKEN}}}\n" + DEFAULT_ROUTES, UPSTREAM)
    public = proxy.client.server
    assert isinstance(public, TestServer)
    server = await aiohttp_server(build_admin_app(public.app))
    return RealAdmin(proxy, str(server.make_url("/status")))


async def test_real_admin_shows_the_upstream_and_a_breaker_forced_open(
    real_admin: RealAdmin, origin: Origin
) -> None:
    origin.json("/prices/A1", {"sku": "A1", "price": 9.5})
    assert (await real_admin.proxy.get("/api/prices/A1")).status == 200
    dom = await load(real_admin.url)
    ((_, text),) = dom.find("data-upstream", "vendor")
    assert OWNER in text and "https://vendor.example/docs" in text
    assert [t for _, t in dom.find("data-breaker")] == ["closed"]
    assert dom.find("data-route", "prices")

    async with aiohttp.ClientSession() as session:
        opened = await session.post(
            real_admin.url.replace("/status", "/breakers/vendor/open"),
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert opened.status == 200
    dom = await load(real_admin.url)
    assert [t for _, t in dom.find("data-breaker")] == ["open"]


async def test_real_admin_shows_a_breaker_opened_by_an_outage(real_admin: RealAdmin, origin: Origin) -> None:
    origin.always("/prices/A1", Reply(500, "vendor down"))
    for _ in range(3):  # minimum_calls: 3, all failing
        assert (await real_admin.proxy.get("/api/prices/A1")).status == 502
    assert (await real_admin.proxy.get("/api/prices/A1")).status == 503  # open: refused without a call
    dom = await load(real_admin.url)
    ((_, text),) = dom.find("data-upstream", "vendor")
    assert [t for _, t in dom.find("data-breaker")] == ["open"]
    assert "HTTP 500" in text  # last error
    (banner,) = dom.find("id", "error-banner")
    assert "show" not in banner[0].get("class", "")


# -- a stand-in server: rendering details ---------------------------------------------------------


@dataclass
class FakeAdmin:
    """What the fake admin listener serves; tests change it between page loads."""

    status: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(SAMPLE))
    fail_with: int | None = None
    ok_before_failing: int = 0  # JSON fetches answered normally before fail_with applies
    json_fetches: int = 0
    url: str = ""


FAKE_ADMIN = web.AppKey("fake_admin", FakeAdmin)


async def _status(request: web.Request) -> web.StreamResponse:
    admin: FakeAdmin = request.app[FAKE_ADMIN]
    if "application/json" in request.headers.get("Accept", ""):
        admin.json_fetches += 1
        if admin.fail_with is not None and admin.json_fetches > admin.ok_before_failing:
            return web.json_response({"error": "boom"}, status=admin.fail_with)
        return web.json_response(admin.status)
    return web.FileResponse(STATUS_HTML, headers={"Content-Type": "text/html; charset=utf-8"})


@pytest.fixture
async def admin(aiohttp_server: Callable[[web.Application], Awaitable[TestServer]]) -> FakeAdmin:
    state = FakeAdmin()
    app = web.Application()
    app[FAKE_ADMIN] = state
    app.router.add_get("/status", _status)
    server = await aiohttp_server(app)
    state.url = str(server.make_url("/status"))
    return state


class Dom(HTMLParser):
    """Just enough of a DOM: each element's attributes and its text content."""

    VOID = frozenset({"meta", "link", "br", "img", "input", "hr", "wbr", "source"})

    def __init__(self, html: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str], list[str]]] = []
        self._open: list[int] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}, []))
        if tag not in self.VOID:
            self._open.append(len(self.elements) - 1)

    def handle_endtag(self, tag: str) -> None:
        if self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for i in self._open:
            self.elements[i][2].append(data)

    def find(self, attr: str, value: str | None = None) -> list[tuple[dict[str, str], str]]:
        return [
            (attrs, "".join(text))
            for _, attrs, text in self.elements
            if attr in attrs and (value is None or attrs[attr] == value)
        ]


async def load(url: str) -> Dom:
    # Chromium blocks; run it off the loop so the server in this same loop can answer it.
    return Dom(await asyncio.to_thread(dump_dom, url, 3000))


async def test_breaker_state_follows_the_json(admin: FakeAdmin) -> None:
    dom = await load(admin.url)
    ((_, text),) = dom.find("data-upstream", "pricing")
    assert "Pricing vendor <x@y>" in text
    assert "https://pricing.example/docs" in text
    assert [t for _, t in dom.find("data-breaker")] == ["closed"]
    assert dom.find("data-breaker", "closed")
    assert "80%" in dom.find("data-route", "prices")[0][1]  # hit ratio
    assert "10 s ago" in text  # last success, relative to the server's `now`

    admin.status["upstreams"][0]["breaker"] = {"state": "open", "retry_after": 9}
    admin.status["upstreams"][0]["last_error"] = "upstream_timeout after 5s"
    dom = await load(admin.url)
    ((_, text),) = dom.find("data-upstream", "pricing")
    assert "Pricing vendor <x@y>" in text
    assert [t for _, t in dom.find("data-breaker")] == ["open"]
    assert "upstream_timeout after 5s" in text
    (banner,) = dom.find("id", "error-banner")
    assert "show" not in banner[0].get("class", "")


async def test_missing_fields_render_as_dash(admin: FakeAdmin) -> None:
    admin.status = {"upstreams": [{"name": "bare"}], "routes": [{"name": "r"}]}
    dom = await load(admin.url)
    ((_, text),) = dom.find("data-upstream", "bare")
    assert "Owner: \u2014" in text
    assert "undefined" not in text and "NaN" not in text and "null" not in text
    ((_, row),) = dom.find("data-route", "r")
    assert row.count("\u2014") >= 6


async def test_error_banner_when_status_cannot_be_fetched(admin: FakeAdmin) -> None:
    admin.fail_with = 500
    dom = await load(admin.url)
    ((attrs, text),) = dom.find("id", "error-banner")
    assert "show" in attrs["class"]
    assert "HTTP 500" in text


async def test_failure_after_data_keeps_the_data_and_says_so(admin: FakeAdmin) -> None:
    admin.fail_with, admin.ok_before_failing = 503, 1
    dom = await load(admin.url)  # polls at t=0 (ok) and t=2 s (fails) in virtual time
    assert admin.json_fetches >= 2
    ((attrs, text),) = dom.find("id", "error-banner")
    assert "show" in attrs["class"] and "HTTP 503" in text and "Showing data from" in text
    assert [t for _, t in dom.find("data-breaker")] == ["closed"]  # last good data still shown
    ((main, _),) = dom.find("id", "main")
    assert "stale" in main["class"]


async def test_third_party_text_is_not_interpreted_as_html(admin: FakeAdmin) -> None:
    evil = '<img src=x data-pwned="1">'
    admin.status["upstreams"][0]["name"] = evil
    admin.status["upstreams"][0]["owner"] = evil
    admin.status["upstreams"][0]["docs"] = "javascript:alert(1)"
    dom = await load(admin.url)
    assert dom.find("data-pwned") == []
    ((_, text),) = dom.find("data-upstream", evil)
    assert evil in text
    assert not [a for a, _ in dom.find("href") if a["href"].startswith("javascript:")]


async def test_screenshots_phone_and_desktop(admin: FakeAdmin, tmp_path: Path) -> None:
    for name, window in (("phone", PHONE), ("desktop", (1366, 900))):
        png = await asyncio.to_thread(screenshot, admin.url, tmp_path / f"{name}.png", window=window)
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
