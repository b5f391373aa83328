"""Redaction of secrets before anything reaches a log line, a status page or GET /config.

Owns: which query parameters, header names and config keys count as secret, and how their values
are replaced (always by the literal "REDACTED", so the shape of the data stays readable).

Must not: do I/O, read the clock, raise on odd input (it runs on whatever a client sent), or
decode and re-encode what it does not redact (the rest of a query string is kept byte for byte).
Pure: standard library only.

Why: OWASP Logging Cheat Sheet, "data to exclude": access tokens, passwords, session ids, keys.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final
from urllib.parse import quote, unquote_plus

REDACTED: Final = "REDACTED"

# Query parameters are secret BY NAME PATTERN (OWASP: tokens, keys, passwords, session ids):
# a name containing one of these parts (`access_token`, `api_key`, `client_secret`,
# `x-amz-signature`), or equal to one of the exact names below. Names are compared decoded, lower
# case, without a `[]` suffix (`token[]=`) and with `a[b]` read as `b`.
SECRET_PARAM_PARTS: tuple[str, ...] = (
    "token",
    "secret",
    "key",
    "password",
    "passwd",
    "signature",
    "session",
    "credential",
)
SECRET_PARAM_NAMES: tuple[str, ...] = ("jwt", "code", "sig", "auth", "pwd", "pass", "sid")
# Kept for callers that add names: the patterns above always apply on top of these.
DEFAULT_SECRET_PARAMS: tuple[str, ...] = (
    "token",
    "key",
    "apikey",
    "api_key",
    "signature",
    "sig",
    "password",
    "secret",
    "access_token",
    "auth",
    "session",
    "jwt",
    "code",
)

# Secret values shorter than this are ignored: replacing "a" or "on" everywhere would wreck the
# text and reveal nothing useful about the secret anyway.
MIN_SECRET_LEN: Final = 4

_SECRET_HEADERS: Final = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})

# Substrings of a normalised header name (lower case, '_' -> '-') that mark a credential:
# X-Api-Key, Api-Key, X-Auth-Token, X-Amz-Security-Token, X-Client-Secret, X-Session-Id...
_SECRET_HEADER_PARTS: Final = (
    "api-key",
    "apikey",
    "token",
    "secret",
    "password",
    "passwd",
    "signature",
    "session",
    "credential",
    "key",
    "x-auth",
)

# Substrings of a normalised config key (lower case, '-' and '_' removed).
_SECRET_CONFIG_PARTS: Final = (
    "token",
    "password",
    "passwd",
    "secret",
    "authorization",
    "cookie",
    "apikey",
    "credential",
    "privatekey",
)

# scheme://user:password@host -> the password part; e.g. redis://:pw@127.0.0.1:6379/0
_URL_USERINFO: Final = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^/@:\s]*:)(?P<pw>[^/@\s]*)@")


def _param_names(names: Iterable[str]) -> frozenset[str]:
    return frozenset(n.lower() for n in names)


def is_secret_param(name: str, extra: frozenset[str] = frozenset()) -> bool:
    """A query parameter whose value is a credential, by name pattern (see SECRET_PARAM_PARTS)."""
    # Match on the decoded name so "api%5Fkey" or "Token" cannot slip through.
    norm = unquote_plus(name).strip().lower()
    if norm in extra:
        return True
    if norm.endswith("[]"):
        norm = norm[:-2]
    inner = norm.rsplit("[", 1)[-1].rstrip("]") if norm.endswith("]") else norm
    return any(
        n in extra or n in SECRET_PARAM_NAMES or any(p in n for p in SECRET_PARAM_PARTS)
        for n in {norm, inner}
    )


_QUERY_SEPARATORS: Final = re.compile(r"([&;])")


def _redact_query(query: str, secret: frozenset[str]) -> str:
    # `;` separates parameters too (HTML 4 B.2.2, still accepted by many servers).
    parts = _QUERY_SEPARATORS.split(query)
    for i in range(0, len(parts), 2):
        name, eq, _value = parts[i].partition("=")
        if eq and is_secret_param(name, secret):
            parts[i] = f"{name}={REDACTED}"
    return "".join(parts)


def redact_query(query: str, names: Iterable[str] = DEFAULT_SECRET_PARAMS) -> str:
    """Replace the values of secret parameters; keep order, other params and garbage as is."""
    if not query:
        return query
    return _redact_query(query, _param_names(names))


def redact_path_and_query(path_qs: str, names: Iterable[str] = DEFAULT_SECRET_PARAMS) -> str:
    """Redact the query part of a request target ("/a/b?x=1"); a fragment, if any, is kept."""
    path, q, rest = path_qs.partition("?")
    if not q:
        return path_qs
    query, h, fragment = rest.partition("#")
    return f"{path}?{redact_query(query, names)}{h}{fragment}"


def is_secret_header(name: str) -> bool:
    """True for header names that carry credentials (Authorization, Cookie, X-Api-Key...)."""
    norm = name.strip().lower().replace("_", "-")
    return norm in _SECRET_HEADERS or any(p in norm for p in _SECRET_HEADER_PARTS)


def _usable_secrets(secret_values: Iterable[str]) -> list[str]:
    # Longest first, so a secret that contains another is replaced whole.
    found: set[str] = set()
    for value in secret_values:
        if isinstance(value, str) and len(value) >= MIN_SECRET_LEN:
            found.add(value)
            encoded = quote(value, safe="")
            if encoded != value:
                found.add(encoded)  # as it would appear inside a URL
    return sorted(found, key=len, reverse=True)


def scrub(text: str, secret_values: Iterable[str]) -> str:
    """Replace every configured secret value (length >= 4) found anywhere in free text."""
    for secret in _usable_secrets(secret_values):
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def redact_headers(
    headers: Iterable[tuple[str, str]], extra_secret_values: Iterable[str] = ()
) -> list[tuple[str, str]]:
    """Secret header values become "REDACTED"; known secrets are scrubbed from the others."""
    secrets = _usable_secrets(extra_secret_values)
    out: list[tuple[str, str]] = []
    for name, value in headers:
        if is_secret_header(name):
            out.append((name, REDACTED))
        elif secrets:
            out.append((name, _scrub_with(value, secrets)))
        else:
            out.append((name, value))
    return out


def _scrub_with(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def is_secret_key(key: object) -> bool:
    """True for config keys named like token/password/secret/authorization/api-key
    (`client_secret`, `private_key`); a key's value is redacted only when it is text."""
    norm = str(key).lower().replace("-", "").replace("_", "")
    return any(p in norm for p in _SECRET_CONFIG_PARTS)


def redact_url(url: str, names: Iterable[str] = DEFAULT_SECRET_PARAMS) -> str:
    """Hide a password in the userinfo and secret query parameters of a URL."""
    url = _URL_USERINFO.sub(lambda m: f"{m['head']}{REDACTED}@" if m["pw"] else m[0], url)
    return redact_path_and_query(url, names)


_URL_HEAD: Final = re.compile(r"^(?P<origin>[a-zA-Z][a-zA-Z0-9+.-]*://)(?:[^/@?#]*@)?(?P<host>[^/?#]*)")


def redact_webhook(url: str) -> str:
    """A webhook URL keeps only scheme and host: Slack, Discord and Teams put the credential in
    the path (`/services/T0/B0/XXXX`), and userinfo or query may carry one too."""
    m = _URL_HEAD.match(url)
    if m is None:
        return REDACTED if url else url
    rest = url[m.end() :]
    return f"{m['origin']}{m['host']}" + (f"/{REDACTED}" if rest.strip("/") else rest)


def redact_config(obj: Any, secret_values: Iterable[str] = ()) -> Any:
    """A JSON-ready copy of `obj` with secrets replaced, for GET /config.

    Values under secret-looking keys become "REDACTED" (an empty or null value stays, so ops can
    see that a token is unset); any string containing a known secret value becomes "REDACTED";
    URLs lose userinfo passwords and secret query parameters. Dataclasses are walked as dicts,
    tuples and sets become lists.
    """
    return _walk(obj, _usable_secrets(secret_values), _param_names(DEFAULT_SECRET_PARAMS))


def _walk(obj: Any, secrets: list[str], params: frozenset[str]) -> Any:
    if isinstance(obj, str):
        if any(s in obj for s in secrets):
            return REDACTED
        return redact_url(obj, params) if "://" in obj else obj
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        out: dict[Any, Any] = {}
        for key, value in obj.items():
            if is_secret_key(key) and isinstance(value, str) and value.strip():
                out[key] = REDACTED
            else:
                out[key] = _walk(value, secrets, params)
        return out
    if isinstance(obj, list | tuple | set | frozenset):
        return [_walk(item, secrets, params) for item in obj]
    return obj
