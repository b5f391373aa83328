"""`inventory`: generated from the config, Markdown and JSON, never showing a credential."""

from __future__ import annotations

import json
import string
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.config import parse_config
from proxy.core.config.model import Config
from proxy.inventory import duration, inventory, render_inventory, to_markdown

CONFIG = """
admin: {{token: {admin}}}
upstreams:
  pricing:
    url: https://user:{password}@pricing.example/v2
    owner: "Pricing desk <desk@pricing.example>"
    docs: https://pricing.example/docs
    headers: {{Authorization: "Bearer {token}", X-Api-Key: "{key}", X-API-Version: "2024-06-01"}}
    version_header: X-API-Version
    timeout: {{connect: 1s, total: 5s}}
    retries: {{attempts: 2, backoff: 100ms, max_backoff: 2s}}
    rate_limit: {{per_second: 50, burst: 100}}
    circuit_breaker: {{failure_rate: 50%, minimum_calls: 10, window: 30s, slow_call: 2s, open_for: 15s}}
    health_check: {{path: /health, interval: 10s}}
  bookings:
    url: http://127.0.0.1:9002
routes:
  - name: prices
    match: /api/prices/{{sku}}
    methods: [GET, HEAD]
    upstream: pricing
    rewrite: /prices/{{sku}}
    sample: /api/prices/A1
    cache: {{ttl: 30s, stale_while_revalidate: 5m, stale_if_error: 24h}}
    guards:
      - {{path: $.price, gt: 0}}
      - {{path: $.currency, one_of: [GBP, EUR]}}
      - {{required: [$.sku, $.price]}}
    fallback: {{status: 503, json: {{error: prices unavailable}}}}
  - name: catalogue
    match: /api/catalogue/*
    methods: [GET]
    upstream: pricing
    cache: {{ttl: 1m}}
    guards:
      - {{path: "$.items[*].price", gt: 0}}
      - {{path: $.items, max_shrink: 50%}}
  - name: bookings
    match: /api/bookings
    methods: [POST]
    upstream: bookings
    cache: off
"""
SECRETS = {
    "admin": "adm1n-t0ken",
    "password": "url-passw0rd",
    "token": "bearer-s3cret",
    "key": "api-k3y-value",
}


def load(**secrets: str) -> Config:
    return parse_config(CONFIG.format(**{**SECRETS, **secrets}), "inventory.yaml", {})


def as_json() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(render_inventory(load(), "json"))
    return doc


@pytest.mark.parametrize("fmt", ["md", "json"])
def test_no_credential_appears(fmt: str) -> None:
    text = render_inventory(load(), fmt)
    for value in SECRETS.values():
        assert value not in text
    assert "Authorization" in text and "X-Api-Key" in text  # names are shown


@pytest.mark.parametrize(
    ("upstream", "method", "headers"),
    [
        ("pricing", "Authorization header", ["Authorization", "X-Api-Key"]),
        ("bookings", "none configured", []),
    ],
)
def test_auth_method_is_header_names(upstream: str, method: str, headers: list[str]) -> None:
    up = next(u for u in as_json()["upstreams"] if u["name"] == upstream)
    assert up["auth"] == {"method": method, "headers": headers}


def test_owner_docs_version_and_url() -> None:
    pricing = as_json()["upstreams"][0]
    assert pricing["owner"] == "Pricing desk <desk@pricing.example>"
    assert pricing["docs"] == "https://pricing.example/docs"
    assert pricing["version"] == {"header": "X-API-Version", "value": "2024-06-01"}
    assert pricing["url"] == "https://user:REDACTED@pricing.example/v2"
    assert pricing["headers_sent"] == ["Authorization", "X-Api-Key", "X-API-Version"]


def test_endpoints_and_guarded_fields() -> None:
    pricing, bookings = as_json()["upstreams"]
    assert [e["route"] for e in pricing["endpoints"]] == ["prices", "catalogue"]
    prices, catalogue = pricing["endpoints"]
    assert (prices["match"], prices["upstream_path"], prices["sample"]) == (
        "/api/prices/{sku}",
        "/v2/prices/{sku}",  # the upstream URL's base path is part of what the vendor sees
        "/api/prices/A1",
    )
    assert prices["guarded_fields"] == ["$.currency", "$.price", "$.sku"]
    assert prices["guards"][0] == "$.price gt 0"
    assert catalogue["upstream_path"] == "/v2/api/catalogue/*"
    assert pricing["guarded_fields"] == ["$.currency", "$.items", "$.items[*].price", "$.price", "$.sku"]
    assert bookings["guarded_fields"] == []


@pytest.mark.parametrize(
    ("upstream", "route", "expected"),
    [
        (
            "pricing",
            "prices",
            [
                "fresh for 30s",
                "served stale while refreshing for 5m",
                "served stale on upstream errors for 24h",
                "last good copy (up to 7d old)",
                'fallback 503 {"error": "prices unavailable"}',
            ],
        ),
        ("pricing", "catalogue", ["fresh for 1m", "with no usable copy: a JSON error"]),
        (
            "bookings",
            "bookings",
            ["never cached, never served stale", "only when the request carries an Idempotency-Key"],
        ),
    ],
)
def test_when_it_breaks_per_route(upstream: str, route: str, expected: list[str]) -> None:
    up = next(u for u in as_json()["upstreams"] if u["name"] == upstream)
    text = next(e for e in up["endpoints"] if e["route"] == route)["when_it_breaks"]
    for part in expected:
        assert part in text


def test_upstream_failure_policy() -> None:
    failure = as_json()["upstreams"][0]["failure"]
    assert failure["breaker"].startswith("opens at 50% failures over at least 10 calls in 30s")
    assert "calls over 2s count as failures" in failure["breaker"]
    assert failure["timeouts"] == "connect 1s, total 5s"
    assert failure["retries"].startswith("up to 2 retries of safe methods")
    assert failure["rate_limit"] == "50/s, burst 100"
    assert failure["health_check"].startswith("GET /v2/health every 10s")
    assert "Idempotency-Key" in failure["writes"]


def test_markdown_reads_well() -> None:
    md = render_inventory(load(), "md")
    assert md.startswith("# Integration inventory")
    assert "## pricing" in md and "## bookings" in md
    assert "- **Authentication:** Authorization header (`Authorization`, `X-Api-Key`)" in md
    assert "- **API version:** `X-API-Version` = `2024-06-01`" in md
    assert "| prices | GET, HEAD | `/api/prices/{sku}` | `/v2/prices/{sku}` |" in md
    assert "- **Circuit breaker:** opens at 50%" in md


def test_unknown_format() -> None:
    with pytest.raises(ValueError, match="md or json"):
        render_inventory(load(), "yaml")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.25, "250ms"),
        (1, "1s"),
        (30, "30s"),
        (90, "90s"),
        (300, "5m"),
        (3600, "1h"),
        (86400, "24h"),
        (172800, "2d"),
        (604800, "7d"),
        (1.5, "1.5s"),
    ],
)
def test_duration(seconds: float, text: str) -> None:
    assert duration(seconds) == text


# A marker prefix so a generated secret cannot be a substring of ordinary inventory text.
_SECRET = st.text(string.ascii_letters + string.digits + "-_.~", min_size=4, max_size=40).map("Zq9".__add__)


@settings(max_examples=60, deadline=None)
@given(token=_SECRET, key=_SECRET)
def test_credentials_are_never_collected(token: str, key: str) -> None:
    # The document itself, before the final scrub: values must be left out by construction.
    doc = inventory(load(token=token, key=key))
    text = json.dumps(doc) + to_markdown(doc)
    assert token not in text and key not in text
