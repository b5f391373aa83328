"""Redaction of query strings, headers, free text and config trees."""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.core.redact import (
    DEFAULT_SECRET_PARAMS,
    REDACTED,
    is_secret_header,
    redact_config,
    redact_headers,
    redact_path_and_query,
    redact_query,
    redact_url,
    redact_webhook,
    scrub,
)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", ""),
        ("a=1&b=2", "a=1&b=2"),
        ("token=abc", "token=REDACTED"),
        ("sku=1&api_key=xyz&page=2", "sku=1&api_key=REDACTED&page=2"),
        ("TOKEN=abc&Key=k", "TOKEN=REDACTED&Key=REDACTED"),  # case-insensitive
        ("api%5Fkey=xyz", "api%5Fkey=REDACTED"),  # percent-encoded name
        ("sig=a=b=c", "sig=REDACTED"),  # '=' inside the value
        ("token", "token"),  # a bare name has no value to hide
        ("sig=", "sig=REDACTED"),
        ("a=1&&token=x&", "a=1&&token=REDACTED&"),  # empty parts kept
        ("=&==&%zz=1", "=&==&%zz=1"),  # garbage tolerated, unchanged
        ("tokens=1&my_token=2", "tokens=REDACTED&my_token=REDACTED"),  # by name pattern, issue 15
        ("a=1;session=s;b=2", "a=1;session=REDACTED;b=2"),  # ';' separates too
        ("token[]=a&token[]=b", "token[]=REDACTED&token[]=REDACTED"),
        ("user[password]=p&user[name]=n", "user[password]=REDACTED&user[name]=n"),
        ("client_secret=s&X-Amz-Signature=g", "client_secret=REDACTED&X-Amz-Signature=REDACTED"),
        ("jwt=j&code=c&postcode=AB1", "jwt=REDACTED&code=REDACTED&postcode=AB1"),
        ("q=caf%C3%A9&password=p%20w", "q=caf%C3%A9&password=REDACTED"),  # rest kept as bytes
        ("a+b=1&access_token=t", "a+b=1&access_token=REDACTED"),
    ],
)
def test_redact_query(query: str, expected: str) -> None:
    assert redact_query(query) == expected


def test_redact_query_custom_names() -> None:
    assert redact_query("ref=1&page=2", names=("REF",)) == "ref=REDACTED&page=2"


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/api/prices/1", "/api/prices/1"),
        ("/api/prices/1?", "/api/prices/1?"),
        ("/p?key=k&x=1", "/p?key=REDACTED&x=1"),
        ("/p?x=1&auth=a#frag", "/p?x=1&auth=REDACTED#frag"),
        ("/p?x=a?b&secret=s", "/p?x=a?b&secret=REDACTED"),  # only the first '?' splits
        ("/token=path/segment", "/token=path/segment"),  # path itself untouched
    ],
)
def test_redact_path_and_query(target: str, expected: str) -> None:
    assert redact_path_and_query(target) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://:pw@127.0.0.1:6379/0", "redis://:REDACTED@127.0.0.1:6379/0"),
        ("https://user:pw@h/x?token=t", "https://user:REDACTED@h/x?token=REDACTED"),
        ("http://user@h/", "http://user@h/"),
        ("http://h:8080/v2", "http://h:8080/v2"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("Authorization", True),
        ("proxy-authorization", True),
        ("Cookie", True),
        ("Set-Cookie", True),
        ("X-Api-Key", True),
        ("x_api_key", True),
        ("Api-Key", True),
        ("X-Auth-Token", True),
        ("X-Amz-Security-Token", True),
        ("X-Client-Secret", True),
        ("Content-Type", False),
        ("X-Request-Id", False),
        ("Accept-Language", False),
        ("X-API-Version", False),
    ],
)
def test_is_secret_header(name: str, secret: bool) -> None:
    assert is_secret_header(name) is secret


def test_redact_headers_keeps_order_and_scrubs_known_values() -> None:
    headers = [
        ("Host", "api.example"),
        ("Authorization", "Bearer s3cr3t-token"),
        ("X-Debug", "forwarded s3cr3t-token here"),
        ("Cookie", "a=b"),
        ("Accept", "application/json"),
    ]
    assert redact_headers(headers, extra_secret_values=["s3cr3t-token"]) == [
        ("Host", "api.example"),
        ("Authorization", REDACTED),
        ("X-Debug", f"forwarded {REDACTED} here"),
        ("Cookie", REDACTED),
        ("Accept", "application/json"),
    ]


@pytest.mark.parametrize(
    ("text", "secrets", "expected"),
    [
        ("upstream said: bad key abcd1234", ["abcd1234"], "upstream said: bad key REDACTED"),
        ("abc appears", ["abc"], "abc appears"),  # shorter than 4: ignored
        ("x LONGSECRET y", ["LONG", "LONGSECRET"], "x REDACTED y"),  # longest first
        ("GET /p?k=a%2Fb%3Dc", ["a/b=c"], "GET /p?k=REDACTED"),  # URL-encoded form too
        ("nothing here", [], "nothing here"),
        ("twice: tok1 tok1", ["tok1"], "twice: REDACTED REDACTED"),
    ],
)
def test_scrub(text: str, secrets: list[str], expected: str) -> None:
    assert scrub(text, secrets) == expected


@dataclass(frozen=True)
class _Upstream:
    url: str
    headers: dict[str, str]


def test_redact_config_walks_the_tree() -> None:
    config: dict[str, Any] = {
        "admin": {"listen": "127.0.0.1:9901", "token": "adm1n-token"},
        "cache": {"redis": {"url": "redis://:redispw@127.0.0.1:6379/0"}, "max_bytes": 1024},
        "upstreams": {
            "pricing": _Upstream(
                url="http://127.0.0.1:9001/v2?api_key=k123",
                headers={"Authorization": "Bearer p-token", "X-API-Version": "2024-06-01"},
            )
        },
        "alerts": {"webhook": "http://hooks.example/abcdefgh-secret-path"},
        "routes": ({"name": "prices", "ttl": 30, "note": "uses p-token-suffix"},),
        "unset": {"password": "", "secret": None},
    }
    out = redact_config(config, secret_values=["p-token", "abcdefgh-secret-path"])
    assert out == {
        "admin": {"listen": "127.0.0.1:9901", "token": REDACTED},
        "cache": {"redis": {"url": "redis://:REDACTED@127.0.0.1:6379/0"}, "max_bytes": 1024},
        "upstreams": {
            "pricing": {
                "url": "http://127.0.0.1:9001/v2?api_key=REDACTED",
                "headers": {"Authorization": REDACTED, "X-API-Version": "2024-06-01"},
            }
        },
        "alerts": {"webhook": REDACTED},
        "routes": [{"name": "prices", "ttl": 30, "note": REDACTED}],
        "unset": {"password": "", "secret": None},  # unset stays visible as unset
    }
    # The input is not modified.
    assert config["admin"]["token"] == "adm1n-token"


@pytest.mark.parametrize(
    "key",
    [
        "token",
        "admin_token",
        "Password",
        "client-secret",
        "Authorization",
        "cookie",
        "api-key",
        "X-Api-Key",
        "apiKey",
        "private_key",
    ],
)
def test_redact_config_secret_key_names(key: str) -> None:
    assert redact_config({key: "v", "other": "v"}) == {key: REDACTED, "other": "v"}


def test_redact_config_keeps_switches_named_like_secrets() -> None:
    # store_set_cookie is a boolean switch, not a cookie (issue 15).
    assert redact_config({"store_set_cookie": True, "token": ""}) == {"store_set_cookie": True, "token": ""}


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://hooks.slack.com/services/T0/B0/XXXX", "https://hooks.slack.com/REDACTED"),
        ("https://u:p@alerts.example/hook?client_secret=s", "https://alerts.example/REDACTED"),
        ("https://alerts.example", "https://alerts.example"),
    ],
)
def test_redact_webhook(url: str, expected: str) -> None:
    assert redact_webhook(url) == expected


# Property tests: redaction never raises, never lets a secret value through, keeps the rest.

_name = st.sampled_from(["a", "sku", "page", "q", "x y", "café"])
_value = st.text(alphabet=st.characters(exclude_characters="&#"), max_size=12)


@given(st.text(max_size=80))
def test_redaction_never_raises(text: str) -> None:
    redact_query(text)
    redact_path_and_query(text)
    redact_url(text)
    scrub(text, [text])
    redact_headers([(text, text)], [text])
    redact_config({text: [text]}, [text])


@given(
    st.lists(st.tuples(_name, _value), max_size=5),
    st.sampled_from(DEFAULT_SECRET_PARAMS),
    st.text(alphabet="abcdefXYZ0123456789-", min_size=1, max_size=20),
    st.integers(min_value=0, max_value=5),
)
def test_secret_param_value_never_survives(
    params: list[tuple[str, str]], secret_name: str, secret: str, pos: int
) -> None:
    secret = f"zz{secret}zz"  # cannot collide with the generated plain values' alphabet below
    pairs = [f"{n}={v.replace('z', '')}" for n, v in params]
    pairs.insert(min(pos, len(pairs)), f"{secret_name.upper()}={secret}")
    out = redact_query("&".join(pairs))
    assert secret not in out
    # Every other parameter is still there, in order.
    kept = [p for p in out.split("&") if not p.upper().startswith(secret_name.upper() + "=")]
    assert kept == [p for p in pairs if not p.upper().startswith(secret_name.upper() + "=")]


# Lower case only, so the secret cannot be re-formed from the upper-case "REDACTED" marker.
_secret = st.text(alphabet=string.ascii_lowercase + string.digits + "-_./+= ", min_size=4)


@given(_secret, st.text(max_size=30), st.text(max_size=30))
def test_scrub_removes_the_secret(secret: str, before: str, after: str) -> None:
    out = scrub(before + secret + after, [secret])
    assert secret not in out
    assert REDACTED in out
