"""Route patterns, request-target safety and upstream path rewriting.

Owns: what a `match` and a `rewrite` mean, and which request targets may reach a route at all.
Must not: do I/O or know about caching. Paths stay percent-encoded end to end: we compare and
forward the raw segments, so nothing is decoded into a `/` or `..` on its way upstream.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Final
from urllib.parse import unquote

from proxy.core.record import Record

_PARAM: Final = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_REWRITE_PARAM: Final = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Bound once: compiled, `pattern.match(...)` looks the method up by name on every request.
# One character class and no group: sre's repeated group cost ~3,300 instructions on a 30-byte
# path. With "//" refused beside it: one or more non-empty segments, or "/" alone.
_PLAIN_PATH: Final = re.compile(r"/[A-Za-z0-9._~!$&'()*+,;=:@/-]*").fullmatch
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]").search
_SEGMENT_OK: Final = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=:@%-]*").fullmatch  # not `$`: it lets a final LF by
_PERCENT_OK: Final = re.compile(r"%(?![0-9A-Fa-f]{2})")  # a % not followed by two hex digits: %u002e


@dataclass(frozen=True, slots=True)
class Pattern:
    text: str
    parts: tuple[str, ...]  # literal segments, or "{name}" for a parameter
    prefix: bool  # ends in /*: matches the parts, then any rest
    # `parts` split once for `match_path`: (index, literal) and (index, parameter name); a scan
    # over the routes mostly fails on a literal, tried first
    literals: tuple[tuple[int, str], ...]
    params: tuple[tuple[int, str], ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p[1:-1] for p in self.parts if _PARAM.match(p))


class Match(Record):
    """A path that matched a pattern (made per request: a record, see `record`)."""

    __slots__ = ("params", "rest")

    def __init__(self, params: dict[str, str], rest: str) -> None:
        self.params: Final = params
        self.rest: Final = rest  # for prefix patterns: the remainder after the prefix, with its leading "/"


def compile_match(text: str) -> Pattern:
    if not text.startswith("/"):
        raise ValueError("must start with /")
    prefix = text.endswith("/*")
    body = text[:-2] if prefix else text
    parts = tuple(p for p in body.split("/")[1:]) if body not in ("", "/") else ()
    if not prefix and text != "/" and "" in parts:
        raise ValueError("empty path segment")
    seen: set[str] = set()
    for part in parts:
        if "{" in part or "}" in part:
            found = _PARAM.match(part)
            if not found:
                raise ValueError(f"a parameter must be a whole segment like {{name}}, got {part!r}")
            if found.group(1) in seen:
                raise ValueError(f"parameter {found.group(1)!r} appears twice")
            seen.add(found.group(1))
        elif "*" in part:
            raise ValueError("* is only allowed as the last segment, as /prefix/*")
    literals = tuple((i, p) for i, p in enumerate(parts) if not p.startswith("{"))
    params = tuple((i, p[1:-1]) for i, p in enumerate(parts) if p.startswith("{"))
    return Pattern(text=text, parts=parts, prefix=prefix, literals=literals, params=params)


def check_rewrite(rewrite: str, pattern: Pattern) -> None:
    if not rewrite.startswith("/"):
        raise ValueError("must start with /")
    for name in _REWRITE_PARAM.findall(rewrite):
        if name not in pattern.names:
            raise ValueError(f"uses {{{name}}}, which the match pattern does not define")
    if rewrite.endswith("/*") and not pattern.prefix:
        raise ValueError("ends in /* but the match pattern is not a prefix")


def match_path(pattern: Pattern, segments: list[str]) -> Match | None:
    """`segments` is the raw path split on "/" without the leading empty string."""
    size = len(pattern.parts)
    if pattern.prefix:
        if len(segments) < size:
            return None
    elif len(segments) != size:
        return None
    for i, literal in pattern.literals:
        if segments[i] != literal:
            return None
    params: dict[str, str] = {}
    for i, name in pattern.params:
        seg = segments[i]
        if not seg:
            return None
        params[name] = seg
    rest = "/" + "/".join(segments[size:]) if pattern.prefix and len(segments) > size else ""
    return Match(params=params, rest=rest)


def rewrite_path(rewrite: str | None, raw_path: str, match: Match) -> str:
    if rewrite is None:
        return raw_path
    parts = _template(rewrite)
    if len(parts) == 1:
        out = rewrite
    else:  # literal, parameter name, literal...: a join, not a regex substitution per request
        params = match.params
        out = "".join([params[part] if i % 2 else part for i, part in enumerate(parts)])
    if out.endswith("/*"):
        out = out[:-2] + (match.rest or "/")
    return out


@lru_cache(maxsize=1024)  # one entry per route's rewrite, in practice
def _template(rewrite: str) -> tuple[str, ...]:
    """`rewrite` split around its parameters: literal, name, literal, ... (odd places: names)."""
    return tuple(_REWRITE_PARAM.split(rewrite))


def unsafe_target(raw_target: str) -> str | None:
    """Why a request target may not reach any route, or None when it is safe.

    Refuses absolute-form and authority-form targets (RFC 9112 section 3.2), dot segments in any
    encoding, encoded slashes and backslashes, and control characters: each is a known way to
    step outside a route's path prefix on some upstream.
    """
    path = raw_target.split("?", 1)[0]
    if _PLAIN_PATH(path) and "//" not in path and "/." not in path:
        return None  # the common case: nothing encoded, no empty or dot segments
    if not path.startswith("/") or path.startswith("//"):
        return "request target must be a path (origin-form)"
    for seg in path.split("/")[1:]:
        why = _unsafe_segment(seg)
        if why is not None:
            return why
    return None


def _unsafe_segment(seg: str) -> str | None:
    if not _SEGMENT_OK(seg):
        return "invalid character in path"
    if _PERCENT_OK.search(seg):  # IIS's %u002e, or a stray %: no two servers agree on it
        return "invalid percent-encoding in path"
    decoded = seg
    for _ in range(3):  # double and triple encoding: %252e%252e
        if "%" not in decoded:
            break
        if "%u" in decoded.lower():  # %25u002e: IIS's form once the outer layer is decoded
            return "invalid percent-encoding in path"
        try:  # overlong forms (%c0%ae is "." to lenient decoders) are invalid UTF-8 (RFC 3629 3)
            decoded = unquote(decoded, errors="strict")
        except UnicodeDecodeError:
            return "invalid UTF-8 in path"
    # Fullwidth and other compatibility forms become "." and "/" after NFKC on some backends.
    folded = unicodedata.normalize("NFKC", decoded)
    for form in (decoded, folded):
        # "..;x" is ".." to Tomcat and Spring (path parameters; Tsai, "Breaking Parser Logic").
        if form.split(";", 1)[0] in (".", "..") or "/" in form or "\\" in form:
            return "dot segments and encoded slashes are not allowed"
    # Encoded NUL, CR, LF and the other controls (`%0d%0a`): no path holds one, and a vendor
    # that decodes the path into a header, a log line or a file name is injected with it.
    if _CONTROL(decoded):
        return "an encoded control character in the path"
    return None


class Target:
    """The upstream path and query for this request, computed on first use: a fresh hit
    never needs it."""

    __slots__ = ("_match", "_path", "_query", "_rewrite", "_value")

    def __init__(self, rewrite: str | None, path: str, query: str, match: Match) -> None:
        self._rewrite, self._path, self._query, self._match = rewrite, path, query, match
        self._value: str | None = None

    def value(self) -> str:
        if self._value is None:
            target = rewrite_path(self._rewrite, self._path, self._match)
            self._value = f"{target}?{self._query}" if self._query else target
        return self._value
