"""Vendor URLs in Location map back to proxy paths (nginx's `proxy_redirect default`)."""

from __future__ import annotations

import pytest

from proxy.config import parse_config
from proxy.core.redirects import rewrite_headers, rewrite_location

CONFIG = parse_config(
    """
upstreams:
  vendor: {url: "https://api.vendor.example/v2"}
  other: {url: "http://127.0.0.1:9"}
routes:
  - {name: prices, match: "/api/prices/{sku}", upstream: vendor, rewrite: "/prices/{sku}", methods: [GET]}
  - {name: catalogue, match: "/api/catalogue/*", upstream: vendor, rewrite: "/catalogue/*", methods: [GET]}
  - {name: bookings, match: "/api/bookings/{id}", upstream: vendor, rewrite: "/orders/{id}", methods: [GET]}
  - {name: plain, match: "/api/other/*", upstream: other, methods: [GET]}
""",
    "t.yaml",
    {},
)
VENDOR = CONFIG.upstream("vendor")


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("https://api.vendor.example/v2/prices/B2", "/api/prices/B2"),
        ("https://api.vendor.example/v2/orders/77?x=1#top", "/api/bookings/77?x=1#top"),
        ("/v2/prices/B2", "/api/prices/B2"),  # a vendor-side absolute path under its base
        ("https://api.vendor.example/v2/catalogue/summer/shoes", "/api/catalogue/summer/shoes"),
        ("https://api.vendor.example/v2/unknown/1", "https://api.vendor.example/v2/unknown/1"),  # no route
        (
            "https://api.vendor.example/v1/prices/B2",
            "https://api.vendor.example/v1/prices/B2",
        ),  # not our base
        ("http://api.vendor.example/v2/prices/B2", "http://api.vendor.example/v2/prices/B2"),  # other scheme
        ("https://elsewhere.example/v2/prices/B2", "https://elsewhere.example/v2/prices/B2"),  # other origin
        ("prices/B2", "prices/B2"),  # a relative reference already resolves against the proxy
        ("/prices/B2", "/prices/B2"),  # not under the vendor's /v2 base
    ],
)
def test_rewrite_location(location: str, expected: str) -> None:
    assert rewrite_location(location, VENDOR, CONFIG.routes) == expected


def test_only_location_headers_change() -> None:
    headers = (
        ("Location", "https://api.vendor.example/v2/prices/B2"),
        ("Link", "https://api.vendor.example/v2/prices/B2"),
        ("Content-Location", "/v2/prices/C3"),
    )
    assert rewrite_headers(headers, VENDOR, CONFIG.routes) == (
        ("Location", "/api/prices/B2"),
        ("Link", "https://api.vendor.example/v2/prices/B2"),
        ("Content-Location", "/api/prices/C3"),
    )
