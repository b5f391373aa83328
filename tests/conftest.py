"""Shared fixtures: a scripted origin on loopback and a proxy built by `build_app` with a FakeClock."""

from __future__ import annotations

import textwrap
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from proxy.app import build_app
from proxy.clock import FakeClock
from proxy.config import parse_config
from proxy.core.config.model import Config
from tests.origin import Origin, Reply
from tests.parts import Parts
from tests.public import PublicTestServer
from tests.routes import PRICES, WRITES

__all__ = ["Origin", "Reply"]

DEFAULT_ROUTES = (
    """
routes:
"""
    + PRICES
    + """    cache: {ttl: 30s, stale_while_revalidate: 60s, stale_if_error: 1h}
"""
    + WRITES
)


def config_text(origin_url: str, body: str = DEFAULT_ROUTES, upstream_extra: str = "") -> str:
    extra = textwrap.indent(textwrap.dedent(upstream_extra).strip(), "    ") if upstream_extra else ""
    return (
        f"server: {{listen: 127.0.0.1:0}}\nlog: {{access: off}}\n"
        f"upstreams:\n  vendor:\n    url: {origin_url}\n    retries: {{attempts: 0}}\n"
        f"{extra}\n{textwrap.dedent(body)}"
    )


def make_config(
    origin_url: str, body: str = DEFAULT_ROUTES, upstream_extra: str = "", env: dict[str, str] | None = None
) -> Config:
    return parse_config(config_text(origin_url, body, upstream_extra), "test.yaml", env or {})


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def origin(aiohttp_server: Callable[..., Awaitable[TestServer]], clock: FakeClock) -> Origin:
    o = Origin(clock)
    server = await aiohttp_server(o.app())
    o.url = str(server.make_url("")).rstrip("/")
    return o


Client = TestClient[web.Request, web.Application]


class Proxy:
    """A proxy under test: an aiohttp TestClient plus its state."""

    def __init__(self, client: TestClient[web.Request, web.Application], state: Parts) -> None:
        self.client = client
        self.state = state

    async def get(self, path: str, **kw: Any) -> Any:
        return await self.client.get(path, **kw)

    async def request(self, method: str, path: str, **kw: Any) -> Any:
        return await self.client.request(method, path, **kw)

    async def settle(self) -> None:
        """Wait for background refreshes and writes to finish (no clock involved)."""
        await self.state.tasks.drain(timeout=5.0)


MakeProxy = Callable[..., Awaitable[Proxy]]


@pytest.fixture
def make_proxy(
    aiohttp_client: Callable[..., Awaitable[Client]], clock: FakeClock, origin: Origin
) -> Callable[..., Awaitable[Proxy]]:
    async def factory(
        body: str = DEFAULT_ROUTES, upstream_extra: str = "", config: Config | None = None, **kw: Any
    ) -> Proxy:
        cfg = config or make_config(origin.url, body, upstream_extra)
        app: web.Application = build_app(cfg, clock=clock, **kw)
        client = await aiohttp_client(PublicTestServer(app))
        return Proxy(client, Parts(app))

    return factory
