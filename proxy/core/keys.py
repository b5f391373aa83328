"""Cache keys: only what the route keys on, nothing a client can smuggle in.

Owns: the primary key (route, path, normalised query, keyed headers) and the variant key a
`Vary` response adds (RFC 9111 section 4.1). Must not: read anything the route does not name:
an unkeyed input that changes the response is how caches get poisoned.

GET and HEAD share a key: a HEAD is answered from the stored GET (RFC 9110 9.3.2).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Final
from urllib.parse import quote, unquote_plus

from proxy.core.config.model import CacheKey

SEP: Final = "\x1f"  # between key parts; cannot appear in a valid request target or header value
VARY_SEP: Final = "\x1e"
# Left as they are in a forwarded query (RFC 3986 3.4); `;`, `&`, `=`, `+` and `%` are encoded, so
# no server can split one keyed value into parameters the key never saw (`q=shoes;q=evil`).
QUERY_SAFE: Final = "!$'()*,:@/?"


def normal_query(query: str, policy: CacheKey) -> str:
    """The query part of the key, and on cached routes exactly the query the vendor gets: all
    parameters sorted, none, or only the named ones. Bytes that are not UTF-8 stay themselves
    (`%ff` and `%fe` are two keys, not one replacement character)."""
    if not query or policy.query == "none":
        return ""
    params = []
    for part in query.split("&"):
        if part:
            name, eq, value = part.partition("=")  # a bare `flag` stays bare: not `flag=`
            params.append((_unquote(name), eq, _unquote(value)))
    if isinstance(policy.query, tuple):
        wanted = policy.query
        params = [p for p in params if p[0] in wanted]
    params.sort(key=lambda p: p[0])  # stable: repeated names keep their order
    return "&".join(_quote(name) + eq + _quote(value) for name, eq, value in params)


def _unquote(text: str) -> str:
    return unquote_plus(text, errors="surrogateescape")


def _quote(text: str) -> str:
    return quote(text, safe=QUERY_SAFE, errors="surrogateescape")


def normal_header(value: str | None) -> str:
    if value is None:
        return ""
    return " ".join(value.split())


def primary_key(
    route: str, path: str, normal_q: str, policy: CacheKey, get_header: Callable[[str], str | None]
) -> str:
    """`normal_q` is `normal_query`'s: computed once, it is also the query the vendor gets."""
    key = route + SEP + path
    if normal_q:
        key += "?" + normal_q
    for name in policy.headers:
        key += SEP + name + "=" + normal_header(get_header(name))
    return key


def variant_key(primary: str, vary: tuple[str, ...], get_header: Callable[[str], str | None]) -> str:
    if not vary:
        return primary
    return primary + VARY_SEP + VARY_SEP.join(normal_vary(n, get_header(n)) for n in vary)


def sent_values(headers: Iterable[tuple[str, str]], vary: tuple[str, ...]) -> tuple[str, ...]:
    """What a stored variant is keyed on: the values of `vary` (lower-case names) in the request
    we sent, every field line combined as the lookup combines them (RFC 9110 5.3)."""
    sent: dict[str, list[str]] = {}
    for k, v in headers:
        sent.setdefault(k.lower(), []).append(v)
    return tuple(normal_vary(n, ", ".join(sent[n]) if n in sent else None) for n in vary)


# Request headers whose value is a list of (element;param=value) items: compared as sets.
LIST_HEADERS: Final = frozenset({"accept", "accept-charset", "accept-encoding", "accept-language"})


def normal_vary(name: str, value: str | None) -> str:
    """A request header's value as the Vary secondary key compares it (RFC 9111 4.1): two
    values that normalise alike are the same variant; used on store and on lookup alike.

    Every header: whitespace runs collapse, and whitespace around commas goes (RFC 9110 5.6.1:
    optional in a list). List headers (`LIST_HEADERS`) also lose case, the whitespace around
    `;` and `=`, empty elements and `q=1` (the default), and their elements are sorted: by q,
    highest first, then by text. Order among equal q "cannot be relied upon" (RFC 9110 12.5.4).
    """
    if value is None:
        return ""
    if name.lower() not in LIST_HEADERS:
        return ",".join(normal_header(part) for part in value.split(","))
    weighed = [_element(part) for part in value.split(",") if part.strip()]
    weighed.sort(key=lambda e: (-e[0], e[1]))
    return ",".join(text for _, text in weighed)


def _element(part: str) -> tuple[float, str]:
    """(q, normal text) of one list element such as ` EN-gb ; Q=0.50 `."""
    token, *params = (p.strip() for p in part.split(";"))
    q = 1.0
    kept = [" ".join(token.lower().split())]
    for param in params:
        key, _, raw = (p.strip() for p in param.partition("="))
        key = key.lower()
        if key == "q" and _QVALUE.fullmatch(raw):
            q = float(raw)  # RFC 9110 12.4.2: 0 to 1, at most three decimals
            continue
        if key:
            kept.append(f"{key}={raw}" if raw else key)
    if q != 1.0:
        kept.append(f"q={q:g}")
    return q, ";".join(kept)


_QVALUE: Final = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")


def route_prefix(route: str, path_prefix: str = "") -> str:
    """Key prefix for purging a route, or one path (or path prefix) within it."""
    return route + SEP + path_prefix


def group_of(key: str) -> str:
    """The URL a key belongs to (route + path), whatever its query, keyed headers or variant:
    what a write to that URL invalidates (RFC 9111 4.4)."""
    if key.count(SEP) == 1 and "?" not in key and VARY_SEP not in key:
        return key  # route + path alone, as most keys are: three scans in C, no slicing
    end = len(key)
    for mark in ("?", VARY_SEP):
        at = key.find(mark)
        if at != -1:
            end = min(end, at)
    second = key.find(SEP, key.find(SEP) + 1)
    if second != -1:
        end = min(end, second)
    return key[:end]


def group_boundaries(group: str) -> tuple[str, ...]:
    """Prefixes that select exactly the keys of `group` (besides the bare key itself), for
    stores that can only delete by prefix: `/a/1` must not take `/a/10` with it."""
    return (group + "?", group + SEP, group + VARY_SEP)


def request_of(key: str) -> tuple[str, dict[str, str]]:
    """The request path+query and keyed request headers a key was built from: what
    POST /quarantine/{id}/promote takes to store an entry under the same key."""
    primary = key.split(VARY_SEP, 1)[0]
    parts = primary.split(SEP)
    path = parts[1] if len(parts) > 1 else ""
    headers = dict(p.partition("=")[::2] for p in parts[2:])
    return path, headers
