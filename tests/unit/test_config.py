"""Config loading: every error names `file:line: key: message`, all at once; units; env substitution."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from proxy.config import ConfigError, load_config, parse_config
from proxy.core.config.model import Config
from proxy.core.config.reader import Reader
from proxy.yamlsrc import load

GOOD = """\
upstreams:
  vendor:
    url: http://127.0.0.1:9001/v2
routes:
  - name: prices
    match: /api/prices/{sku}
    methods: [GET, HEAD]
    upstream: vendor
    cache: {ttl: 30s}
"""


def parse(text: str, env: dict[str, str] | None = None) -> Config:
    return parse_config(textwrap.dedent(text), "proxy.yaml", env or {})


def problems(text: str, env: dict[str, str] | None = None) -> list[tuple[int, str, str]]:
    with pytest.raises(ConfigError) as caught:
        parse(text, env)
    return [(i.line, i.key, i.message) for i in caught.value.issues]


def test_good_config_parses() -> None:
    config = parse(GOOD)
    route = config.routes[0]
    assert route.name == "prices" and route.upstream == "vendor"
    assert route.methods == frozenset({"GET", "HEAD"})
    assert route.cache is not None and route.cache.ttl == 30.0
    assert config.upstream("vendor").url == "http://127.0.0.1:9001/v2"


def test_example_config_loads() -> None:
    config = load_config(str(Path(__file__).parents[2] / "config" / "example.yaml"), env={})
    assert {r.name for r in config.routes} >= {"prices", "catalogue", "bookings"}


# Each row: YAML text, then the one problem expected as (line, key, part of the message).
ERRORS = [
    (
        "unknown top-level key",
        """\
        upstreams: {vendor: {url: http://x}}
        routes: [{name: r, match: /a, upstream: vendor}]
        chache: {max_bytes: 1MB}
        """,
        (3, "chache", "unknown key"),
    ),
    (
        "unknown route key",
        """\
        upstreams: {vendor: {url: http://x}}
        routes:
          - name: r
            match: /a
            upstream: vendor
            ttl: 30s
        """,
        (6, "routes[0].ttl", "unknown key"),
    ),
    (
        "unknown cache key",
        """\
        upstreams: {vendor: {url: http://x}}
        routes:
          - name: r
            match: /a
            upstream: vendor
            cache:
              ttl: 30s
              stale_while_revalidte: 5m
        """,
        (8, "routes[0].cache.stale_while_revalidte", "unknown key"),
    ),
    (
        "unknown upstream key",
        """\
        upstreams:
          vendor:
            url: http://x
            timeouts: {connect: 1s}
        routes: [{name: r, match: /a, upstream: vendor}]
        """,
        (4, "upstreams.vendor.timeouts", "unknown key"),
    ),
    (
        "wrong type: integer",
        """\
        upstreams:
          vendor:
            url: http://x
            max_connections: lots
        routes: [{name: r, match: /a, upstream: vendor}]
        """,
        (4, "upstreams.vendor.max_connections", "expected an integer"),
    ),
    (
        "wrong type: boolean",
        """\
        upstreams:
          vendor:
            url: http://x
            tls: {verify: "yes please"}
        routes: [{name: r, match: /a, upstream: vendor}]
        """,
        (4, "upstreams.vendor.tls.verify", "expected true or false"),
    ),
    (
        "wrong type: mapping",
        """\
        upstreams: {vendor: {url: http://x}}
        routes:
          - name: r
            match: /a
            upstream: vendor
            cache:
              ttl: 30s
              key: all
        """,
        (8, "routes[0].cache.key", "expected a mapping"),
    ),
    (
        "wrong type: list",
        """\
        upstreams: {vendor: {url: http://x}}
        routes:
          - name: r
            match: /a
            upstream: vendor
            methods: GET
        """,
        (6, "routes[0].methods", "expected a list"),
    ),
    (
        "wrong type: routes",
        """\
        upstreams: {vendor: {url: http://x}}
        routes: {name: r}
        """,
        (2, "routes", "expected a list"),
    ),
    (
        "negative duration",
        """\
        upstreams: {vendor: {url: http://x}}
        routes:
          - name: r
            match: /a
            upstream: vendor
            cache:
              ttl: -5s
        """,
        (7, "routes[0].cache.ttl", "cannot be negative"),
    ),
    (
        "negative duration as a number",
        """\
        upstreams:
          vendor:
            url: http://x
            timeout: {connect: -1, total: 5s}
        routes: [{name: r, match: /a, upstream: vendor}]
        """,
        (4, "upstreams.vendor.timeout.connect", "cannot be negative"),
    ),
    (
        "bad duration unit",
        """\
        upstreams: {vendor: {url: http://x}}
        routes:
          - name: r
            match: /a
            upstream: vendor
            cache:
              stale_if_error: 1 fortnight
        """,
        (7, "routes[0].cache.stale_if_error", "expected a duration"),
    ),
    (
        "unknown upstream",
        """\
        upstreams: {vendor: {url: http://x}}
        routes:
          - name: r
            match: /a
            upstream: vender
        """,
        (5, "routes[0].upstream", "unknown upstream 'vender'"),
    ),
    (
        "duplicate route names",
        """\
        upstreams: {vendor: {url: http://x}}
        routes:
          - name: r
            match: /a
            upstream: vendor
          - name: r
            match: /b
            upstream: vendor
        """,
        (6, "routes[1].name", "duplicate route name 'r'"),
    ),
    (
        "caching a POST-only route",
        """\
        upstreams: {vendor: {url: http://x}}
        routes:
          - name: bookings
            match: /api/bookings
            methods: [POST]
            upstream: vendor
            cache: {ttl: 30s}
        """,
        (7, "routes[0].cache", "caching needs GET or HEAD"),
    ),
    (
        "missing env var with no default",
        """\
        upstreams:
          vendor:
            url: http://x
            headers:
              Authorization: "Bearer ${VENDOR_TOKEN}"
        routes: [{name: r, match: /a, upstream: vendor}]
        """,
        (5, "upstreams.vendor.headers.Authorization", "VENDOR_TOKEN is not set"),
    ),
    (
        "bad match pattern",
        """\
        upstreams: {vendor: {url: http://x}}
        routes:
          - name: r
            match: /a/{id}x
            upstream: vendor
        """,
        (4, "routes[0].match", "whole segment"),
    ),
    (
        "rewrite names an unknown parameter",
        """\
        upstreams: {vendor: {url: http://x}}
        routes:
          - name: r
            match: /a/{id}
            rewrite: /b/{sku}
            upstream: vendor
        """,
        (5, "routes[0].rewrite", "{sku}"),
    ),
    (
        "not a method name",
        """\
        upstreams: {vendor: {url: http://x}}
        routes:
          - name: r
            match: /a
            methods: [GET, "FE TCH"]
            upstream: vendor
        """,
        (5, "routes[0].methods[1]", "'FE TCH' is not a method name"),
    ),
    (
        "a method never proxied",
        """\
        upstreams: {vendor: {url: http://x}}
        routes:
          - name: r
            match: /a
            methods: [GET, TRACE]
            upstream: vendor
        """,
        (5, "routes[0].methods[1]", "TRACE is never proxied"),
    ),
    (
        "upstream URL without a scheme",
        """\
        upstreams:
          vendor:
            url: 127.0.0.1:9001
        routes: [{name: r, match: /a, upstream: vendor}]
        """,
        (3, "upstreams.vendor.url", "http:// or https://"),
    ),
    (
        "bad size",
        """\
        cache:
          max_bytes: lots
        upstreams: {vendor: {url: http://x}}
        routes: [{name: r, match: /a, upstream: vendor}]
        """,
        (2, "cache.max_bytes", "expected a size"),
    ),
    (
        "bad percent",
        """\
        upstreams:
          vendor:
            url: http://x
            circuit_breaker:
              failure_rate: 150%
        routes: [{name: r, match: /a, upstream: vendor}]
        """,
        (5, "upstreams.vendor.circuit_breaker.failure_rate", "percentage"),
    ),
    (
        "listen without a port",
        """\
        server:
          listen: localhost
        upstreams: {vendor: {url: http://x}}
        routes: [{name: r, match: /a, upstream: vendor}]
        """,
        (2, "server.listen", "host:port"),
    ),
    (
        "listen with a non-ASCII digit port",
        """\
        server:
          listen: "127.0.0.1:\u00b2"
        upstreams: {vendor: {url: http://x}}
        routes: [{name: r, match: /a, upstream: vendor}]
        """,
        (2, "server.listen", "host:port"),
    ),
    (
        "admin off loopback without a token",
        """\
        admin:
          listen: 0.0.0.0:9901
        upstreams: {vendor: {url: http://x}}
        routes: [{name: r, match: /a, upstream: vendor}]
        """,
        (2, "admin.listen", "needs admin.token"),
    ),
    (
        "no routes",
        """\
        upstreams: {vendor: {url: http://x}}
        routes: []
        """,
        (2, "routes", "at least one route"),
    ),
    (
        "no upstreams",
        """\
        routes: [{name: r, match: /a, upstream: vendor}]
        """,
        (1, "upstreams", "at least one upstream"),
    ),
    (
        "top level is not a mapping",
        """\
        - just
        - a list
        """,
        (1, "(top level)", "expected a mapping"),
    ),
    (
        "YAML syntax error",
        """\
        upstreams: {vendor: {url: http://x}}
        routes:
          - name: r
            match: [unclosed
        """,
        (5, "(syntax)", ""),
    ),
    (
        "duplicate key",
        """\
        upstreams: {vendor: {url: http://x}}
        routes:
          - name: r
            match: /a
            upstream: vendor
            cache: {ttl: 30s}
            cache: off
        """,
        (7, "routes[0].cache", "duplicate key"),
    ),
    (
        "non-finite duration",
        """\
        upstreams: {vendor: {url: http://x}}
        routes:
          - name: r
            match: /a
            upstream: vendor
            cache:
              ttl: .nan
        """,
        (7, "routes[0].cache.ttl", "expected a duration"),
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"), [(t, e) for _, t, e in ERRORS], ids=[name for name, _, _ in ERRORS]
)
def test_error_names_line_and_key(text: str, expected: tuple[int, str, str]) -> None:
    found = problems(text)
    line, key, fragment = expected
    matching = [p for p in found if p[0] == line and p[1] == key and fragment in p[2]]
    assert matching, found


def test_error_text_is_file_line_key_message() -> None:
    with pytest.raises(ConfigError) as caught:
        parse("upstreams: {vendor: {url: http://x}}\nroutes: [{name: r, match: /a, upstream: nope}]\n")
    assert str(caught.value).startswith("proxy.yaml:2: routes[0].upstream: unknown upstream 'nope'")


def test_all_errors_are_reported_at_once_in_line_order() -> None:
    found = problems("""\
        upstreams:
          vendor:
            url: ftp://x
            max_connections: 0
        routes:
          - name: r
            match: /a
            upstream: nope
            cache: {ttl: -1s, colour: red}
          - name: r
            match: /b
            upstream: vendor
        """)
    assert [(line, key) for line, key, _ in found] == [
        (3, "upstreams.vendor.url"),
        (4, "upstreams.vendor.max_connections"),
        (8, "routes[0].upstream"),
        (9, "routes[0].cache.colour"),
        (9, "routes[0].cache.ttl"),
        (10, "routes[1].name"),
    ]


def test_missing_file() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config("/nonexistent/proxy.yaml")
    assert caught.value.issues[0].key == "(file)"


# -- environment substitution ---------------------------------------------------------------

ENV_CONFIG = """\
server:
  listen: ${LISTEN:-127.0.0.1:8080}
admin:
  token: ${ADMIN_TOKEN:-}
upstreams:
  vendor:
    url: ${VENDOR_URL:-http://127.0.0.1:9001}
    max_connections: ${MAX_CONN:-7}
    headers:
      Authorization: "Bearer ${VENDOR_TOKEN:-demo}"
      X-Count: "${MAX_CONN:-7}"
routes: [{name: r, match: /a, upstream: vendor}]
"""


def test_env_defaults_apply() -> None:
    config = parse(ENV_CONFIG)
    up = config.upstream("vendor")
    assert str(config.server.listen) == "127.0.0.1:8080"
    assert config.admin.token == ""
    assert up.url == "http://127.0.0.1:9001"
    assert up.max_connections == 7  # a plain scalar is re-typed after substitution
    assert dict(up.headers) == {"Authorization": "Bearer demo", "X-Count": "7"}  # quoted stays text


def test_env_values_win_over_defaults() -> None:
    env = {
        "LISTEN": "127.0.0.1:9999",
        "ADMIN_TOKEN": "s3cret-token",
        "VENDOR_URL": "https://v.example",
        "MAX_CONN": "42",
        "VENDOR_TOKEN": "abc",
    }
    config = parse(ENV_CONFIG, env)
    up = config.upstream("vendor")
    assert config.server.listen.port == 9999 and config.admin.token == "s3cret-token"
    assert (up.url, up.max_connections) == ("https://v.example", 42)
    assert dict(up.headers)["Authorization"] == "Bearer abc"


def test_env_value_in_a_plain_scalar_is_retyped_as_int() -> None:
    assert parse(ENV_CONFIG, {"MAX_CONN": "12"}).upstream("vendor").max_connections == 12
    with pytest.raises(ConfigError, match="max_connections: expected an integer"):
        parse(ENV_CONFIG, {"MAX_CONN": "many"})


def test_env_value_cannot_inject_yaml() -> None:
    """A value is one scalar: `: `, `#`, braces or newlines in it never become structure."""
    token = "a: b\n  routes: [] # {x}"
    assert parse(ENV_CONFIG, {"ADMIN_TOKEN": token}).admin.token == token


@pytest.mark.parametrize("token", ["0755", "1_000", "12:34", "0x1F", "2024-06-01", "1e3", "+1"])
def test_env_value_is_never_silently_reinterpreted(token: str) -> None:
    """YAML 1.1 would read these as octal, sexagesimal, hex or dates: a secret must arrive as typed."""
    assert parse(ENV_CONFIG, {"ADMIN_TOKEN": token}).admin.token == token


def test_missing_env_var_is_reported_once_per_place() -> None:
    found = problems("""\
        admin:
          token: ${A}
        upstreams:
          vendor:
            url: http://${HOST}:${PORT:-80}
        routes: [{name: r, match: /a, upstream: vendor}]
        """)
    assert [(line, key) for line, key, m in found if "is not set" in m] == [
        (2, "admin.token"),
        (5, "upstreams.vendor.url"),
    ]


# -- units -----------------------------------------------------------------------------------


def reader() -> Reader:
    return Reader(load("{}", "units.yaml", {}))


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("250ms", 0.25),
        ("30s", 30.0),
        ("5m", 300.0),
        ("24h", 86400.0),
        ("7d", 604800.0),
        ("1.5s", 1.5),
        (" 10 s ", 10.0),
        ("0", 0.0),
        (12, 12.0),
        (0.5, 0.5),
        (None, 99.0),
    ],
)
def test_durations(value: Any, seconds: float) -> None:
    r = reader()
    assert r.duration(("d",), value, 99.0) == seconds
    assert not r.issues


@pytest.mark.parametrize(
    "value", ["-1s", -3, "5 minutes", "1h30m", "ms", True, "", float("inf"), float("nan"), [1]]
)
def test_bad_durations(value: Any) -> None:
    r = reader()
    assert r.duration(("d",), value, 99.0) == 99.0
    assert [i.key for i in r.issues] == ["d"]


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ("256MB", 256 * 1024**2),
        ("8m", 8 * 1024**2),
        ("64KB", 64 * 1024),
        ("64kib", 64 * 1024),
        ("1GB", 1024**3),
        ("100b", 100),
        ("100", 100),
        (4096, 4096),
        ("1.5KB", 1536),
        (None, 7),
    ],
)
def test_sizes(value: Any, size: int) -> None:
    r = reader()
    assert r.size(("s",), value, 7) == size
    assert not r.issues


@pytest.mark.parametrize("value", ["-1MB", -5, "lots", "1TB", "MB", True, 1.5])
def test_bad_sizes(value: Any) -> None:
    r = reader()
    assert r.size(("s",), value, 7) == 7
    assert [i.key for i in r.issues] == ["s"]


@pytest.mark.parametrize(
    ("value", "fraction"),
    [
        ("50%", 0.5),
        ("0%", 0.0),
        ("100%", 1.0),
        (25, 0.25),
        ("12.5%", 0.125),
        (None, 0.3),
    ],
)
def test_percents(value: Any, fraction: float) -> None:
    r = reader()
    assert r.percent(("p",), value, 0.3) == fraction
    assert not r.issues


@pytest.mark.parametrize("value", ["150%", "-1%", "half", True, "nan%", ""])
def test_bad_percents(value: Any) -> None:
    r = reader()
    assert r.percent(("p",), value, 0.3) == 0.3
    assert [i.key for i in r.issues] == ["p"]


def test_route_cache_key_settings() -> None:
    config = parse("""\
        upstreams: {vendor: {url: http://x}}
        routes:
          - name: r
            match: /a
            upstream: vendor
            cache:
              key: {query: [sku, page], headers: [Accept-Language]}
          - name: s
            match: /b
            upstream: vendor
            cache: {key: {query: none}}
        """)
    first, second = (r.cache for r in config.routes)
    assert first is not None and second is not None
    assert first.key.query == ("page", "sku") and first.key.headers == ("accept-language",)
    assert second.key.query == "none"


@pytest.mark.parametrize("cache", ["off", "false", "null"])
def test_cache_off(cache: str) -> None:
    config = parse(
        f"upstreams: {{vendor: {{url: http://x}}}}\n"
        f"routes: [{{name: r, match: /a, upstream: vendor, cache: {cache}}}]\n"
    )
    assert config.routes[0].cache is None


# -- issue 15: required variables and empty credentials ------------------------------------------

REQUIRED_TOKEN = """\
    upstreams:
      vendor:
        url: http://x
        headers:
          Authorization: "Bearer ${VENDOR_TOKEN:?set it from the vault}"
    routes: [{name: r, match: /a, upstream: vendor}]
    """


@pytest.mark.parametrize("env", [{}, {"VENDOR_TOKEN": ""}])
def test_required_variable_unset_or_empty_is_an_error_naming_key_and_line(env: dict[str, str]) -> None:
    found = problems(REQUIRED_TOKEN, env)
    assert found == [
        (
            5,
            "upstreams.vendor.headers.Authorization",
            f"environment variable VENDOR_TOKEN is {'empty' if env else 'not set'}: set it from the vault",
        )
    ]


def test_required_variable_set_is_used() -> None:
    config = parse(REQUIRED_TOKEN, {"VENDOR_TOKEN": "t-123456"})
    assert config.upstreams[0].headers == (("Authorization", "Bearer t-123456"),)


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("Authorization", "Bearer ${VENDOR_TOKEN:-}"),
        ("Authorization", "${VENDOR_TOKEN:-}"),
        ("Proxy-Authorization", "Basic ${VENDOR_TOKEN:-}"),
        ("X-API-Key", "${VENDOR_TOKEN:-}"),
        ("X-Auth-Token", "  "),
    ],
)
def test_credential_header_that_expands_to_nothing_is_an_error(header: str, value: str) -> None:
    text = f"""\
    upstreams:
      vendor:
        url: http://x
        headers:
          {header}: "{value}"
          X-API-Version: ""
    routes: [{{name: r, match: /a, upstream: vendor}}]
    """
    found = problems(text, {})
    assert [(line, key) for line, key, _ in found] == [(5, f"upstreams.vendor.headers.{header}")]
    assert "credential" in found[0][2] and "empty" in found[0][2]


def test_send_timeout_parses_and_defaults_to_nginx_s() -> None:
    assert parse(GOOD).server.limits.send_timeout == 60.0
    config = parse("server:\n  limits: {send_timeout: 15s}\n" + GOOD)
    assert config.server.limits.send_timeout == 15.0


@pytest.mark.parametrize("name", ["header_timeout", "body_timeout", "send_timeout"])
@pytest.mark.parametrize(
    ("value", "fragment"), [("-1s", "cannot be negative"), ("0s", "longer than 0s"), ("soon", "like 250ms")]
)
def test_a_bad_listener_deadline_names_its_own_key_and_line(name: str, value: str, fragment: str) -> None:
    (found,) = problems(f"server:\n  limits:\n    {name}: {value}\n" + GOOD)
    assert found[:2] == (3, f"server.limits.{name}") and fragment in found[2]
