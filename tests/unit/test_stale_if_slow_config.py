"""`routes[].cache.stale_if_slow`: parsed once at the edge, off by default, shown by GET /config."""

from __future__ import annotations

import pytest

from proxy.config import ConfigError, parse_config
from proxy.core.config.view import effective_config
from tests.conftest import config_text
from tests.routes import PRICES


def parse(cache: str) -> float:
    text = config_text("http://127.0.0.1:9", "routes:\n" + PRICES + f"    cache: {cache}\n")
    route_cache = parse_config(text, "t.yaml", {}).routes[0].cache
    assert route_cache is not None
    return route_cache.stale_if_slow


@pytest.mark.parametrize(
    ("cache", "seconds"),
    [
        ("{ttl: 30s}", 0.0),
        ("{ttl: 30s, stale_if_slow: 200ms}", 0.2),
        ("{ttl: 30s, stale_if_slow: 2s}", 2.0),
        ("{ttl: 30s, stale_if_slow: 0.5}", 0.5),
        ("{ttl: 30s, stale_if_slow: off}", 0.0),
        ("{ttl: 30s, stale_if_slow: 0s}", 0.0),
    ],
)
def test_values(cache: str, seconds: float) -> None:
    assert parse(cache) == seconds


@pytest.mark.parametrize(
    ("value", "message"),
    [("-1s", "cannot be negative"), ("soon", "expected a duration"), ("true", "expected a duration")],
)
def test_bad_values_name_file_line_and_key(value: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(f"{{ttl: 30s, stale_if_slow: {value}}}")
    assert "t.yaml:" in str(err.value) and "routes[0].cache.stale_if_slow" in str(err.value)
    assert message in str(err.value)


def test_config_view_shows_it() -> None:
    text = config_text("http://127.0.0.1:9", "routes:\n" + PRICES + "    cache: {stale_if_slow: 250ms}\n")
    view = effective_config(parse_config(text, "t.yaml", {}))
    assert view["routes"][0]["cache"]["stale_if_slow"] == 0.25
    text = config_text("http://127.0.0.1:9", "routes:\n" + PRICES + "    cache: {ttl: 1s}\n")
    assert effective_config(parse_config(text, "t.yaml", {}))["routes"][0]["cache"]["stale_if_slow"] == "off"
