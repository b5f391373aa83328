"""`doctor` against a real scripted origin: healthy, lying, refusing, down, and not TLS at all."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

from proxy.core.config.model import Config
from proxy.doctor import diagnose, run_doctor, sample_target
from tests.conftest import config_text, make_config
from tests.origin import Origin, Reply
from tests.routes import PRICES
from tests.upstream.vendor import Seen, Step, Vendor, ok, response

ROOT = Path(__file__).resolve().parents[2]
SECRET = "vendor-secret-2468"
UPSTREAM = f"""
owner: "Pricing desk <desk@pricing.example>"
docs: https://pricing.example/docs
headers: {{Authorization: "Bearer {SECRET}", X-API-Version: "2024-06-01"}}
health_check: {{path: /health}}
"""
ROUTES = (
    """
routes:
"""
    + PRICES
    + """    sample: /api/prices/A1?currency=GBP
    cache: {ttl: 30s}
    guards:
      - {path: $.price, gt: 0}
      - {required: [$.sku]}
  - name: catalogue
    match: /api/catalogue/*
    methods: [GET]
    upstream: vendor
    cache: {ttl: 30s}
  - name: bookings
    match: /api/bookings
    methods: [POST]
    upstream: vendor
    sample: /api/bookings
    cache: off
"""
)
GOOD = {"sku": "A1", "price": 9.5}
VENDOR_HEADERS = {
    "Content-Type": "application/json",
    "Cache-Control": "max-age=60",
    "ETag": '"v1"',
    "X-RateLimit-Remaining": "99",
    "RateLimit-Limit": "100",
}


def healthy(origin: Origin, doc: Any = GOOD, status: int = 200) -> None:
    origin.always("/health", Reply(200, "ok"))
    origin.always("/prices/A1", Reply(status, doc, VENDOR_HEADERS))


def config(origin: Origin, url: str | None = None) -> Config:
    return make_config(url or origin.url, ROUTES, UPSTREAM)


async def doctor(cfg: Config, capsys: pytest.CaptureFixture[str], as_json: bool) -> tuple[int, str]:
    # run_doctor owns its event loop (as the CLI does): run it off this one, which serves the origin.
    code = await asyncio.to_thread(run_doctor, cfg, as_json)
    return code, capsys.readouterr().out


def test_sample_target_is_rewritten_as_the_proxy_would() -> None:
    cfg = make_config("http://127.0.0.1:9", ROUTES, UPSTREAM)
    prices, catalogue, bookings = cfg.routes
    assert sample_target(prices) == "/prices/A1?currency=GBP"
    assert sample_target(catalogue) is None  # no sample configured
    assert sample_target(bookings) == "/api/bookings"


async def test_healthy_vendor(origin: Origin, capsys: pytest.CaptureFixture[str]) -> None:
    healthy(origin)
    code, out = await doctor(config(origin), capsys, as_json=True)
    assert code == 0
    doc = json.loads(out)
    (up,) = doc["upstreams"]
    assert doc["ok"] is True and up["connect"] == "ok" and up["problems"] == []
    health, sample = up["probes"]
    assert (health["what"], health["status"], health["verdict"]) == ("health", 200, "ok")
    assert (sample["what"], sample["target"], sample["status"]) == ("prices", "/prices/A1?currency=GBP", 200)
    assert sample["content_type"] == "application/json" and sample["guards"] == "ok"
    assert sample["caching"] == {"Cache-Control": "max-age=60", "ETag": '"v1"'}
    assert sample["rate_limit"] == {"X-RateLimit-Remaining": "99", "RateLimit-Limit": "100"}
    assert sample["auth"] == "accepted" and sample["ms"] >= 0
    assert up["owner"] == "Pricing desk <desk@pricing.example>"
    assert any("catalogue" in w and "no sample" in w for w in up["warnings"])
    seen = [s for s in origin.seen if s.path == "/prices/A1?currency=GBP"]
    assert seen[0].headers["Authorization"] == f"Bearer {SECRET}"  # configured headers are sent
    assert {s.method for s in origin.seen} == {"GET"}  # the POST route was never probed
    assert SECRET not in out


async def test_table_output(origin: Origin, capsys: pytest.CaptureFixture[str]) -> None:
    healthy(origin)
    code, out = await doctor(config(origin), capsys, as_json=False)
    assert code == 0
    assert "/api/prices/A1?currency=GBP -> /prices/A1?currency=GBP" in out
    assert "Pricing desk <desk@pricing.example>" in out and "1/1 upstreams ready" in out
    assert SECRET not in out


@pytest.mark.parametrize(
    ("doc", "status", "problem", "auth"),
    [
        ({"sku": "A1", "price": 0}, 200, "fails its guards (gt at $.price)", "accepted"),
        ({"price": 9.5}, 200, "fails its guards (required at $.sku)", "accepted"),
        ("<html>maintenance</html>", 200, "fails its guards (json at $)", "accepted"),
        ({"error": "bad key"}, 401, "answered 401 (credentials refused)", "rejected (401)"),
        ({"error": "forbidden"}, 403, "answered 403 (credentials refused)", "rejected (403)"),
        ({"error": "boom"}, 500, "answered 500 (HTTP 500)", "accepted"),
    ],
)
async def test_broken_vendor_fails_and_names_the_owner(
    origin: Origin, capsys: pytest.CaptureFixture[str], doc: Any, status: int, problem: str, auth: str
) -> None:
    healthy(origin, doc, status)
    code, out = await doctor(config(origin), capsys, as_json=False)
    assert code == 1
    assert "FAIL vendor: route prices: sample" in out and problem in out
    assert "Owner: Pricing desk <desk@pricing.example> (https://pricing.example/docs)" in out
    reports = await diagnose(config(origin))
    assert reports[0].probes[1].auth == auth and reports[0].probes[1].verdict == "fail"


async def test_unreachable_vendor(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = make_config(f"http://127.0.0.1:{port}", ROUTES, UPSTREAM)
    code, out = await doctor(cfg, capsys, as_json=True)
    assert code == 1
    up = json.loads(out)["upstreams"][0]
    assert up["connect"].startswith("failed") and up["probes"] == []
    assert "cannot connect" in up["problems"][0]


async def test_tls_failure_is_reported(origin: Origin, capsys: pytest.CaptureFixture[str]) -> None:
    healthy(origin)
    cfg = config(origin, origin.url.replace("http://", "https://"))  # the origin speaks plain HTTP
    code, out = await doctor(cfg, capsys, as_json=True)
    assert code == 1
    up = json.loads(out)["upstreams"][0]
    assert up["tls"].startswith("failed") and "TLS handshake" in up["problems"][0]


async def test_health_path_answering_5xx_is_not_ready(
    origin: Origin, capsys: pytest.CaptureFixture[str]
) -> None:
    healthy(origin)
    origin.always("/health", Reply(503, "down"))
    code, out = await doctor(config(origin), capsys, as_json=True)
    assert code == 1
    up = json.loads(out)["upstreams"][0]
    assert up["probes"][0]["verdict"] == "fail"
    assert any("/health answered 503: not ready" in p for p in up["problems"])


async def test_health_path_timing_out_is_not_ready(
    origin: Origin, capsys: pytest.CaptureFixture[str]
) -> None:
    healthy(origin)
    origin.always("/health", Reply(200, "late", delay=1.0))
    cfg = make_config(
        origin.url, ROUTES, UPSTREAM.replace("{path: /health}", "{path: /health, timeout: 200ms}")
    )
    code, out = await doctor(cfg, capsys, as_json=True)
    assert code == 1
    up = json.loads(out)["upstreams"][0]
    assert up["probes"][0]["verdict"] == "fail" and up["probes"][0]["error"].startswith("no response within")
    assert any("/health failed (no response within" in p and p.endswith("not ready") for p in up["problems"])


async def test_health_path_answering_4xx_is_a_warning(
    origin: Origin, capsys: pytest.CaptureFixture[str]
) -> None:
    healthy(origin)
    origin.always("/health", Reply(404, "no such path"))
    code, out = await doctor(config(origin), capsys, as_json=True)
    assert code == 0
    up = json.loads(out)["upstreams"][0]
    assert up["probes"][0]["verdict"] == "warn"
    assert any("/health answered 404" in w for w in up["warnings"])


BASE_PATH_ROUTES = """
routes:
  - name: rates
    match: /api/rates
    methods: [GET]
    upstream: vendor
    rewrite: /rates
    cache: {ttl: 30s}
  - name: prices
    match: /api/prices/{sku}
    methods: [GET]
    upstream: vendor
    rewrite: /prices/{sku}
    cache: {ttl: 30s}
"""


async def test_vendor_answering_500_to_everything_is_not_ready(
    origin: Origin, capsys: pytest.CaptureFixture[str]
) -> None:
    """No sample anywhere: the parameterless route is probed at its own path (issue 15)."""
    origin.fallback = Reply(500, {"error": "boom"})
    cfg = make_config(origin.url + "/v2", BASE_PATH_ROUTES, "health_check: {path: /health}")
    code, out = await doctor(cfg, capsys, as_json=False)
    assert code == 1
    assert "0/1 upstreams ready" in out
    assert "/v2/health answered 500: not ready" in out
    assert "route rates: sample /v2/rates answered 500" in out
    assert "route prices: no sample path to probe" in out
    assert {s.path for s in origin.seen} == {"/v2/health", "/v2/rates"}


async def test_probed_and_printed_paths_include_the_base_path(
    origin: Origin, capsys: pytest.CaptureFixture[str]
) -> None:
    origin.always("/v2/health", Reply(200, "ok"))
    origin.always("/v2/prices/A1", Reply(200, GOOD, VENDOR_HEADERS))
    code, out = await doctor(make_config(origin.url + "/v2", ROUTES, UPSTREAM), capsys, as_json=False)
    assert code == 0, out
    assert "/api/prices/A1?currency=GBP -> /v2/prices/A1?currency=GBP" in out
    assert "1/1 upstreams ready" in out


async def test_cli_as_a_user_runs_it(origin: Origin, tmp_path: Path) -> None:
    healthy(origin, {"sku": "A1", "price": -3})
    path = tmp_path / "proxy.yaml"
    path.write_text(config_text(origin.url, ROUTES, UPSTREAM))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "proxy",
        "doctor",
        "--config",
        str(path),
        "--json",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    async with asyncio.timeout(30):
        out, _ = await proc.communicate()
    assert proc.returncode == 1
    doc = json.loads(out)
    assert doc["ok"] is False and "gt at $.price" in doc["upstreams"][0]["probes"][1]["guards"]


async def test_a_targeted_cache_control_counts_as_caching_headers(
    origin: Origin, capsys: pytest.CaptureFixture[str]
) -> None:
    origin.always("/health", Reply(200, "ok"))
    only_cdn = {"Content-Type": "application/json", "CDN-Cache-Control": "max-age=60"}
    origin.always("/prices/A1", Reply(200, GOOD, only_cdn))
    code, out = await doctor(config(origin), capsys, as_json=True)
    sample = json.loads(out)["upstreams"][0]["probes"][1]
    assert code == 0 and sample["verdict"] == "ok"
    assert sample["caching"] == {"CDN-Cache-Control": "max-age=60"}


async def test_an_answer_the_proxy_would_refuse_fails_the_probe(capsys: pytest.CaptureFixture[str]) -> None:
    """The doctor asks with the proxy's own strict client: two Content-Lengths are a broken
    answer there (RFC 9112 6.3), not a sample that looks fine."""

    def reply(seen: Seen, n: int) -> list[Step]:
        if seen.path.endswith("/health"):
            return ok(seen, n)
        body = json.dumps(GOOD).encode()
        twice = f"Content-Length: {len(body)}"
        return [response("200 OK", twice, twice, body=body, length=False)]

    vendor = await Vendor(reply).start()
    try:
        code, out = await doctor(make_config(vendor.url, ROUTES, UPSTREAM), capsys, as_json=True)
    finally:
        await vendor.close()
    sample = json.loads(out)["upstreams"][0]["probes"][1]
    assert code == 1 and sample["verdict"] == "fail" and sample["status"] is None
    assert sample["error"]
