"""The transport seam (issue 13): `build_app(transports=...)` reaches vendors through any
`Exchange`; the whole request path above it (cache, breaker, guards) is unchanged."""

from __future__ import annotations

from proxy.clock import Clock, FakeClock
from proxy.core.config.model import UpstreamConfig
from proxy.core.errors import UpstreamConnectError
from proxy.fetched import Fetched
from proxy.transport import Exchange, Outbound
from tests.conftest import MakeProxy, make_config

ROUTES = """
routes:
  - name: prices
    match: /api/prices/{sku}
    upstream: vendor
    rewrite: /prices/{sku}
    cache: {ttl: 60s, stale_if_error: 1h}
    guards:
      - {path: $.price, gt: 0}
"""


class Scripted(Exchange):
    """An in-process vendor behind the seam: answers from a list, records what it was sent."""

    def __init__(self, config: UpstreamConfig, clock: Clock, answers: list[bytes | None]) -> None:
        self.config, self.clock, self.answers = config, clock, answers
        self.sent: list[Outbound] = []
        self.protocol_errors: dict[str, int] = {}
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    async def send(self, out: Outbound, limit: int) -> Fetched:
        self.sent.append(out)
        body = self.answers.pop(0)
        if body is None:
            raise UpstreamConnectError("vendor unreachable")
        now = self.clock.now()
        headers = (("Content-Type", "application/json"), ("Content-Length", str(len(body))))
        return Fetched(200, headers, body, now, now)

    async def close(self) -> None:
        self._closed = True


async def test_requests_reach_the_injected_exchange(make_proxy: MakeProxy, clock: FakeClock) -> None:
    made: list[Scripted] = []

    def transports(config: UpstreamConfig, clock: Clock) -> Scripted:
        made.append(Scripted(config, clock, [b'{"price": 5}', b'{"price": 0}', None]))
        return made[-1]

    proxy = await make_proxy(config=make_config("http://vendor.invalid", ROUTES), transports=transports)
    client = proxy.client
    assert [m.config.name for m in made] == ["vendor"]
    first = await client.get("/api/prices/A1")
    assert first.headers["X-Cache"] == "MISS" and await first.json() == {"price": 5}
    assert (made[0].sent[0].method, made[0].sent[0].path_qs) == ("GET", "/prices/A1")
    assert (await client.get("/api/prices/A1")).headers["X-Cache"] == "HIT"
    clock.advance(61)
    refused = await client.get("/api/prices/A1")  # the guards still judge what the seam returns
    assert refused.headers["X-Cache"] == "STALE" and await refused.json() == {"price": 5}
    clock.advance(1)
    down = await client.get("/api/prices/A1")  # and its errors are ours: stale-if-error answers
    assert down.headers["X-Cache"] == "STALE" and "stale-if-error" in down.headers["Cache-Status"]
    assert len(made[0].sent) == 3
    await client.close()
    assert made[0].closed and proxy.state.runtime.transports is transports
