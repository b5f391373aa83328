"""Every file in config/ is part of the suite: `check` passes, the app is built and served on
free ports, a route answers, and every admin endpoint answers (with the token where one is set).

config/docker.yaml needs Redis: a real one from tests/redis_server.py (skipped without a binary).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from proxy.admin import build_admin_app
from proxy.app import build_app
from proxy.config import load_config
from tests.origin import Origin
from tests.public import PublicTestServer
from tests.redis_server import RedisServer, find_server_binary

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted(ROOT.glob("config/*.yaml"))
TOKEN = "adm1n-t0ken-shipped"
VENDOR_TOKEN = "vend0r-t0ken-shipped"
PRICE = {"sku": "ABC-1", "price": 9.5, "currency": "GBP"}
Client = TestClient[Any, Any]


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str | None]:
    if find_server_binary() is None:
        yield None
        return
    with RedisServer() as server:
        yield server.url


def shipped_env(origin_url: str, tmp: Path, redis_url: str | None) -> dict[str, str]:
    env = {
        "PRICING_URL": origin_url + "/v2",
        "BOOKINGS_URL": origin_url,
        "DEMO_VENDOR_URL": origin_url,
        "PRICING_TOKEN": VENDOR_TOKEN,
        "PROXY_ADMIN_TOKEN": TOKEN,
        "PROXY_SNAPSHOT": str(tmp / "lkg.msgpack"),
        "PROXY_LISTEN": "127.0.0.1:0",
        "DEMO_LISTEN": "127.0.0.1:0",
        "DEMO_ADMIN": "127.0.0.1:0",
    }
    if redis_url is not None:
        env["REDIS_URL"] = redis_url
    return env


def sample_path(config_path: Path) -> str:
    config = load_config(str(config_path), shipped_env("http://127.0.0.1:1", Path("/tmp"), None))
    for route in config.routes:
        if route.sample:
            return route.sample
    raise AssertionError(f"{config_path.name} has no route with a sample")


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_check_passes(path: Path, tmp_path: Path) -> None:
    env = {**os.environ, **shipped_env("http://127.0.0.1:9", tmp_path, "redis://127.0.0.1:1/0")}
    done = subprocess.run(
        [sys.executable, "-m", "proxy", "check", "--config", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "prices" in done.stdout


@pytest.fixture
async def served(
    request: pytest.FixtureRequest,
    aiohttp_client: Callable[..., Awaitable[Client]],
    aiohttp_server: Callable[..., Awaitable[TestServer]],
    redis_url: str | None,
    tmp_path: Path,
) -> AsyncIterator[tuple[Path, Origin, Client, Client, bool]]:
    path: Path = request.param
    origin = Origin()
    server = await aiohttp_server(origin.app())
    origin.url = str(server.make_url("")).rstrip("/")
    config = load_config(str(path), shipped_env(origin.url, tmp_path, redis_url))
    if config.cache.backend == "redis" and redis_url is None:
        pytest.skip("no redis-server binary")
    public_app: web.Application = build_app(config)
    public = await aiohttp_client(PublicTestServer(public_app))
    public_server = public.server
    assert isinstance(public_server, TestServer)
    admin = await aiohttp_client(build_admin_app(public_server.app))
    yield path, origin, public, admin, bool(config.admin.token)


@pytest.mark.parametrize("served", CONFIGS, ids=[p.name for p in CONFIGS], indirect=True)
async def test_serves_and_every_admin_endpoint_answers(
    served: tuple[Path, Origin, Client, Client, bool],
) -> None:
    path, origin, public, admin, has_token = served
    sample = sample_path(path)
    upstream_path = "/v2/prices/ABC-1"
    origin.json(upstream_path, PRICE, headers={"Cache-Control": "max-age=30"})
    resp = await public.get(sample)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["price"] == 9.5
    assert origin.count(upstream_path) == 1

    auth = {"Authorization": f"Bearer {TOKEN}"} if has_token else {}
    for endpoint in ("/health", "/ready", "/status", "/config", "/quarantine"):
        got = await admin.get(endpoint, headers=auth)
        assert got.status == 200, (endpoint, await got.text())
        json.loads(await got.text())
    html = await admin.get("/status", headers={"Accept": "text/html", **auth})
    assert html.status == 200 and "<html" in (await html.text()).lower()
    metrics = await admin.get("/metrics", headers=auth)
    metrics_text = await metrics.text()
    assert metrics.status == 200 and "rproxy_requests_total" in metrics_text
    assert "process_resident_memory_bytes" in metrics_text and "process_open_fds" in metrics_text

    config_doc = await (await admin.get("/config", headers=auth)).json()
    text = json.dumps(config_doc)
    assert VENDOR_TOKEN not in text and TOKEN not in text
    assert "routes" in config_doc and "upstreams" in config_doc

    purge = await admin.post("/purge", json={"route": "prices", "key": sample}, headers=auth)
    assert purge.status == 200, await purge.text()
    assert (await purge.json())["purged"] >= 1
    reload = await admin.post("/reload", headers=auth)
    assert reload.status in (200, 400), await reload.text()  # the env of this test is not the process's
    up = (await (await admin.get("/status", headers=auth)).json())["upstreams"][0]["name"]
    for action in ("open", "close", "reset"):
        got = await admin.post(f"/breakers/{up}/{action}", headers=auth)
        assert got.status == 200, (action, await got.text())
    if has_token:
        refused = await admin.post("/purge", json={"route": "prices", "prefix": "/"})
        assert refused.status == 401
