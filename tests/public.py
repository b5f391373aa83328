"""`PublicTestServer`: aiohttp's `TestServer` serving a `build_app` application the way
`proxy.serve` does, through our own listener (`proxy.listener.PublicSite`), so a `TestClient`
talks to the real public port."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from aiohttp.test_utils import TestServer
from yarl import URL

from proxy.core.limits import ConnLimits
from proxy.publicport import Listener, PublicSite


class PublicTestServer(TestServer):
    site: PublicSite | None = None
    limits: ConnLimits | None = None

    async def start_server(self, loop: asyncio.AbstractEventLoop | None = None, **kwargs: Any) -> None:
        if self.runner:
            return
        self._loop = loop
        ssl = kwargs.pop("ssl", None)
        kwargs.pop("handler_cancellation", None)
        self.runner = await self._make_runner(handle_signals=False, **kwargs)
        await self.runner.setup()
        sock = self.socket_factory(self.host, self.port or 0, socket.AF_INET)
        self.host, self.port = sock.getsockname()[:2]
        self.site = PublicSite(self.runner, sock=sock, ssl_context=ssl, limits=self.limits)
        await self.site.start()
        self.scheme = self.scheme or ("https" if ssl else "http")
        self._root = URL(f"{self.scheme}://{self.host}:{self.port}")

    @property
    def listener(self) -> Listener:
        assert self.site is not None and self.site.guard is not None
        return self.site.guard
