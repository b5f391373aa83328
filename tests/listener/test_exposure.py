"""What the public port never says: the software we or the vendor run (`Server`), or where the
vendor lives (its host and port in an error message)."""

from __future__ import annotations

import json
import socket

from tests.conftest import MakeProxy, Origin, Reply, make_config


async def test_no_server_header_ours_or_the_vendors(make_proxy: MakeProxy, origin: Origin) -> None:
    origin.always("/prices/A1", Reply(200, {"sku": "A1"}, {"Cache-Control": "max-age=30"}))
    proxy = await make_proxy()
    for _ in range(2):  # the miss, then the hit
        answer = await proxy.get("/api/prices/A1")
        assert answer.status == 200 and "Server" not in answer.headers
    missing = await proxy.get("/nowhere")
    assert missing.status == 404 and "Server" not in missing.headers


async def test_an_unreachable_vendor_is_not_named_to_the_client(make_proxy: MakeProxy) -> None:
    with socket.socket() as holder:  # a port nobody listens on
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
    proxy = await make_proxy(config=make_config(f"http://127.0.0.1:{port}"))
    answer = await proxy.get("/api/prices/A1")
    body = await answer.read()
    assert answer.status in (502, 503, 504) and answer.headers["Content-Type"] == "application/json"
    assert str(port) not in body.decode() and "127.0.0.1" not in body.decode()
    assert json.loads(body)["error"]
