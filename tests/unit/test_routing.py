"""Route patterns, rewrites and request-target safety: tables of what may reach a route."""

from __future__ import annotations

import pytest

from proxy.core.routing import Match, check_rewrite, compile_match, match_path, rewrite_path, unsafe_target


@pytest.mark.parametrize(
    ("text", "parts", "prefix"),
    [
        ("/", (), False),
        ("/*", (), True),
        ("/api/prices/{sku}", ("api", "prices", "{sku}"), False),
        ("/api/catalogue/*", ("api", "catalogue"), True),
        ("/api/{shop}/items/*", ("api", "{shop}", "items"), True),
        ("/a/{x}/{y}", ("a", "{x}", "{y}"), False),
    ],
)
def test_compile_match(text: str, parts: tuple[str, ...], prefix: bool) -> None:
    pattern = compile_match(text)
    assert (pattern.parts, pattern.prefix) == (parts, prefix)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "must start with /"),
        ("api/prices", "must start with /"),
        ("/api//prices", "empty path segment"),
        ("/api/prices/", "empty path segment"),
        ("/api/{sku}x", "whole segment"),
        ("/api/x{sku}", "whole segment"),
        ("/api/{}", "whole segment"),
        ("/api/{1sku}", "whole segment"),
        ("/api/{sku", "whole segment"),
        ("/api/{a}/{a}", "appears twice"),
        ("/api/*/x", "only allowed as the last segment"),
        ("/api/x*", "only allowed as the last segment"),
    ],
)
def test_compile_match_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compile_match(text)


@pytest.mark.parametrize(
    ("pattern", "path", "params", "rest"),
    [
        ("/api/prices/{sku}", "/api/prices/A1", {"sku": "A1"}, ""),
        ("/api/prices/{sku}", "/api/prices/A%2D1", {"sku": "A%2D1"}, ""),  # raw, never decoded
        ("/api/prices/{sku}", "/api/prices", None, ""),
        ("/api/prices/{sku}", "/api/prices/", None, ""),  # an empty parameter never matches
        ("/api/prices/{sku}", "/api/prices/A1/x", None, ""),
        ("/api/prices/{sku}", "/api/Prices/A1", None, ""),  # case-sensitive, as paths are
        ("/api/catalogue/*", "/api/catalogue", {}, ""),
        ("/api/catalogue/*", "/api/catalogue/", {}, "/"),
        ("/api/catalogue/*", "/api/catalogue/shoes/42", {}, "/shoes/42"),
        ("/api/catalogue/*", "/api/catalog/shoes", None, ""),
        ("/api/catalogue/*", "/api", None, ""),
        ("/api/{shop}/items/*", "/api/uk/items/1", {"shop": "uk"}, "/1"),
        ("/*", "/anything/at/all", {}, "/anything/at/all"),
        ("/", "/", {}, ""),
        ("/", "/x", None, ""),
    ],
)
def test_match_path(pattern: str, path: str, params: dict[str, str] | None, rest: str) -> None:
    found = match_path(compile_match(pattern), path.split("/")[1:] if path != "/" else [])
    if params is None:
        assert found is None
    else:
        assert found == Match(params=params, rest=rest)


@pytest.mark.parametrize(
    ("rewrite", "path", "match", "expected"),
    [
        (None, "/api/prices/A1", Match({"sku": "A1"}, ""), "/api/prices/A1"),
        ("/prices/{sku}", "/api/prices/A1", Match({"sku": "A1"}, ""), "/prices/A1"),
        ("/v2/{sku}/price/{sku}", "/x", Match({"sku": "A%2D1"}, ""), "/v2/A%2D1/price/A%2D1"),
        ("/catalogue/*", "/api/catalogue/shoes/42", Match({}, "/shoes/42"), "/catalogue/shoes/42"),
        ("/catalogue/*", "/api/catalogue", Match({}, ""), "/catalogue/"),
        ("/{shop}/items/*", "/api/uk/items/1", Match({"shop": "uk"}, "/1"), "/uk/items/1"),
        # a parameter value is substituted once: braces inside it are not expanded again
        ("/p/{a}/{b}", "/x", Match({"a": "{b}", "b": "2"}, ""), "/p/{b}/2"),
    ],
)
def test_rewrite_path(rewrite: str | None, path: str, match: Match, expected: str) -> None:
    assert rewrite_path(rewrite, path, match) == expected


@pytest.mark.parametrize(
    ("rewrite", "pattern", "message"),
    [
        ("/prices/{sku}", "/api/prices/{sku}", None),
        ("/catalogue/*", "/api/catalogue/*", None),
        ("prices/{sku}", "/api/prices/{sku}", "must start with /"),
        ("/prices/{id}", "/api/prices/{sku}", "does not define"),
        ("/catalogue/*", "/api/catalogue", "not a prefix"),
    ],
)
def test_check_rewrite(rewrite: str, pattern: str, message: str | None) -> None:
    if message is None:
        check_rewrite(rewrite, compile_match(pattern))
    else:
        with pytest.raises(ValueError, match=message):
            check_rewrite(rewrite, compile_match(pattern))


SAFE_TARGETS = [
    "/",
    "/api/prices/A1",
    "/api/prices/A1?x=../../etc&y=%2f",  # the query is not a path
    "/api/prices/A%2D1",
    "/api/prices/a.b",
    "/api/prices/...",  # three dots is a name, not a dot segment
    "/api/prices/.well-known",
    "/api/catalogue//shoes",  # empty segments are kept raw; they cannot climb
    "/api/prices/%41",
    "/api/prices/~user;v=1",
    "/api/catalog/sale/50%25",  # a literal percent sign, once decoded
    "/api/prices/caf%C3%A9",  # UTF-8
]

UNSAFE_TARGETS = [
    # absolute-form and authority-form (RFC 9112 3.2.2, 3.2.3), asterisk-form
    ("http://evil.example/", "origin-form"),
    ("https://evil.example/api/prices/A1", "origin-form"),
    ("evil.example:443", "origin-form"),
    ("*", "origin-form"),
    ("", "origin-form"),
    # network-path reference: //host/... would change the authority on some clients
    ("//evil.example/api", "origin-form"),
    # dot segments, plain and encoded in any case
    ("/api/prices/../admin", "dot segments"),
    ("/api/prices/./A1", "dot segments"),
    ("/api/prices/..", "dot segments"),
    ("/api/prices/%2e%2e/admin", "dot segments"),
    ("/api/prices/%2E%2E/admin", "dot segments"),
    ("/api/prices/.%2e/admin", "dot segments"),
    ("/api/prices/%2e/A1", "dot segments"),
    # double and triple encoding
    ("/api/prices/%252e%252e/admin", "dot segments"),
    ("/api/prices/%25252e%25252e/admin", "dot segments"),
    ("/api/prices/A1%252fadmin", "dot segments"),
    # encoded slashes and backslashes
    ("/api/prices/A1%2f..%2fadmin", "dot segments"),
    ("/api/prices/A1%2Fadmin", "dot segments"),
    ("/api/prices/..%5cadmin", "dot segments"),
    ("/api/prices/%5c%5cevil", "dot segments"),
    # path parameters on a dot segment: Tomcat and Spring read "..;x" as ".."
    ("/api/prices/..;/admin", "dot segments"),
    ("/api/prices/%2e%2e;jsessionid=1/admin", "dot segments"),
    ("/api/prices/..%3b/admin", "dot segments"),
    # NUL and control characters, raw or encoded
    ("/api/prices/A1%00.json", "control character"),
    ("/api/prices/A%0d%0aX-Evil:%201", "control character"),  # CRLF injection, once decoded
    ("/api/prices/A%09B", "control character"),
    ("/api/prices/A%7f", "control character"),
    ("/api/prices/A%250d%250a", "control character"),  # double encoding
    ("/api/prices/A1\x00", "invalid character"),
    ("/api/prices/A\r\n1", "invalid character"),
    ("/api/prices/A1\n", "invalid character"),  # a regex's `$` would let a final LF through
    # raw characters that have no business in a path
    ("/api/prices\\..\\admin", "invalid character"),
    ("/api/prices/A 1", "invalid character"),
    ("/api/prices/A1#frag", "invalid character"),
    ("/api/prices/<script>", "invalid character"),
    # encodings no two servers read alike (issue 12)
    ("/api/prices/%c0%ae%c0%ae/admin", "invalid UTF-8"),  # overlong ".."
    ("/api/prices/%ff", "invalid UTF-8"),
    ("/api/prices/%u002e%u002e/admin", "percent-encoding"),  # IIS
    ("/api/prices/%25u002e%25u002e/admin", "percent-encoding"),
    ("/api/prices/%zz", "percent-encoding"),
    ("/api/prices/%ef%bc%8e%ef%bc%8e/admin", "dot segments"),  # fullwidth "..": ".." after NFKC
    ("/api/prices/A1%ef%bc%8fadmin", "dot segments"),  # fullwidth "/"
]


@pytest.mark.parametrize("target", SAFE_TARGETS)
def test_safe_targets(target: str) -> None:
    assert unsafe_target(target) is None


@pytest.mark.parametrize(("target", "why"), UNSAFE_TARGETS)
def test_unsafe_targets(target: str, why: str) -> None:
    reason = unsafe_target(target)
    assert reason is not None and why in reason
