"""Parse Cache-Control (RFC 9111 section 5.2) and targeted fields such as CDN-Cache-Control
(RFC 9213) into one value, and pick which of them governs a response (`effective`).

Owns: both grammars: Cache-Control tolerant of real-world junk; targeted fields strict, as
Structured Field Dictionaries (RFC 9213 2.1), where any error means the field is ignored.
Must not: decide freshness (that is `freshness`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from proxy.core.structured import parse_dictionary

_UNSET: Final = -1


@dataclass(frozen=True, slots=True)
class CacheControl:
    max_age: int = _UNSET  # -1 when absent; 0 when present but invalid (RFC 9111 4.2.1: treat as stale)
    s_maxage: int = _UNSET
    no_store: bool = False
    no_cache: bool = False
    private: bool = False
    public: bool = False
    must_revalidate: bool = False
    proxy_revalidate: bool = False
    stale_while_revalidate: int = _UNSET
    stale_if_error: int = _UNSET
    only_if_cached: bool = False
    present: bool = False
    # Qualified `no-cache="a, b"` / `private="a, b"`: lower-case field names the stored copy
    # must go without (RFC 9111 5.2.2.4, 5.2.2.7); the unqualified forms set the flags instead.
    no_cache_fields: tuple[str, ...] = ()
    private_fields: tuple[str, ...] = ()
    # The lower-case name of the targeted field these came from (RFC 9213), "" for
    # Cache-Control: a targeted field overrides Cache-Control *and* Expires (RFC 9213 2.2).
    targeted: str = ""

    @property
    def withheld(self) -> frozenset[str]:
        """Field names never stored, nor sent to anyone but the client that fetched them."""
        if not self.no_cache_fields and not self.private_fields:
            return _NO_FIELDS  # nearly always: asked once per response field
        return frozenset(self.no_cache_fields) | frozenset(self.private_fields)

    @property
    def forbids_stale(self) -> bool:
        """RFC 9111 4.2.4: these directives prohibit serving a stale response.

        `s-maxage` implies proxy-revalidate for a shared cache (section 5.2.2.10).
        """
        return self.must_revalidate or self.proxy_revalidate or self.no_cache or self.s_maxage >= 0


EMPTY: Final = CacheControl()
_NO_FIELDS: Final[frozenset[str]] = frozenset()

_FLAGS: Final = {
    "no-store": "no_store",
    "no-cache": "no_cache",
    "private": "private",
    "public": "public",
    "must-revalidate": "must_revalidate",
    "proxy-revalidate": "proxy_revalidate",
    "only-if-cached": "only_if_cached",
}
_QUALIFIED: Final = {"no-cache": "no_cache_fields", "private": "private_fields"}
_SECONDS: Final = {
    "max-age": "max_age",
    "s-maxage": "s_maxage",
    "stale-while-revalidate": "stale_while_revalidate",
    "stale-if-error": "stale_if_error",
}


def parse(values: str | list[str] | None) -> CacheControl:
    """Parse one header value or several field lines; unknown directives are ignored."""
    if not values:
        return EMPTY
    text = values if isinstance(values, str) else ",".join(values)
    if len(text) <= MEMO_LENGTH:  # a vendor sends the same few values on every response
        return _parse_memo(text)
    return _parse(text)


MEMO_LENGTH: Final = 256  # longer values are parsed every time: the memo stays small whatever is sent


# The one module-level state in the core, on purpose: a bounded memo of a pure function (the same
# few Cache-Control values arrive on every answer). Invisible to callers, so shared by every app.
@lru_cache(maxsize=512)
def _parse_memo(text: str) -> CacheControl:
    return _parse(text)  # a CacheControl is immutable: one value may be shared by every caller


def _parse(text: str) -> CacheControl:
    found: dict[str, object] = {"present": True}
    qualified: dict[str, tuple[str, ...]] = {}
    for directive in _split(text):
        name, _, raw = directive.partition("=")
        name = name.strip().lower()
        fields = _field_names(raw) if name in _QUALIFIED and raw.strip() else ()
        if fields:  # the response may be stored without these fields (RFC 9111 5.2.2.4, 5.2.2.7)
            qualified[_QUALIFIED[name]] = qualified.get(_QUALIFIED[name], ()) + fields
        elif name in _FLAGS:
            # The unqualified form, and a qualified one naming nothing (`no-cache=""`): the
            # stricter reading, never less safe. It wins over any qualified form beside it.
            found[_FLAGS[name]] = True
        elif name in _SECONDS and _SECONDS[name] not in found:  # first occurrence wins
            found[_SECONDS[name]] = _seconds(raw)
    return CacheControl(**found, **qualified)  # type: ignore[arg-type]


DELTA_MAX: Final = 2**31  # delta-seconds overflow becomes 2^31 (RFC 9111 1.2.2)


def delta_seconds(text: str) -> int | None:
    """A vendor's delta-seconds, bounded: None unless all ASCII digits (RFC 5234 B.1).

    More than ten digits is already past 2^31; checking the length first also keeps `int()`
    clear of Python's limit on digits, so no header can raise in a request.
    """
    if not (text.isascii() and text.isdigit()):
        return None
    return DELTA_MAX if len(text) > 10 else min(int(text), DELTA_MAX)


def _field_names(raw: str) -> tuple[str, ...]:
    """The field names of a qualified directive: a quoted list, or one bare token."""
    names = (n.strip().lower() for n in raw.strip().strip('"').split(","))
    return tuple(
        n for n in names if n and n.isascii() and all(c.isalnum() or c in "-_!#$%&'*+.^`|~" for c in n)
    )


def _seconds(raw: str) -> int:
    value = delta_seconds(raw.strip().strip('"'))
    return 0 if value is None else value  # invalid freshness means stale (RFC 9111 4.2.1)


def _split(text: str) -> list[str]:
    if '"' not in text:  # no quoted string: no comma to protect
        return [p.strip() for p in text.split(",") if p.strip()]
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


# -- targeted fields (RFC 9213) ------------------------------------------------------------------

DEFAULT_TARGETS: Final = ("resilient-proxy-cache-control", "cdn-cache-control")
_TARGETED_FLAGS: Final = {**_FLAGS, "no-cache": "no_cache", "private": "private"}
_TARGETED_FLAGS.pop("only-if-cached")  # a request directive, meaningless in a response


def parse_targeted(values: list[str], name: str) -> CacheControl | None:
    """A targeted field's directives, or None when it is empty or invalid (RFC 9213 2.1: ignored).

    The directives mean what they mean in Cache-Control; a value of the wrong type for a known
    directive (`max-age="60"`, `max-age=1.5`, `no-store=3`) makes the whole field invalid.
    """
    members = parse_dictionary(",".join(values)) if values else None
    if not members:
        return None
    found: dict[str, object] = {"present": True, "targeted": name}
    for key, value in members.items():
        if key in _SECONDS:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                return None
            found[_SECONDS[key]] = min(value, DELTA_MAX)
        elif key in _QUALIFIED and isinstance(value, str):  # a String: the qualified form
            fields = _field_names(value)
            found[_QUALIFIED[key]] = fields
            if not fields:
                found[_TARGETED_FLAGS[key]] = True
        elif key in _TARGETED_FLAGS:
            if not isinstance(value, bool):
                return None
            found[_TARGETED_FLAGS[key]] = value
    return CacheControl(**found)  # type: ignore[arg-type]


def effective(headers: Iterable[tuple[str, str]], targets: tuple[str, ...] = ()) -> CacheControl:
    """The directives that govern a response for this cache: the first targeted field in
    `targets` (lower-case names) with a valid, non-empty value, else Cache-Control (RFC 9213 2.2)."""
    lines: dict[str, list[str]] = {}
    for key, value in headers:
        low = key.lower()
        if low == "cache-control" or low in targets:
            lines.setdefault(low, []).append(value)
    return governing(lines, targets)


def governing(lines: dict[str, list[str]], targets: tuple[str, ...] = ()) -> CacheControl:
    """`effective` over field lines already grouped by lower-case name (`fields.Fields.lines`)."""
    for name in targets:
        found = lines.get(name)
        targeted = parse_targeted(found, name) if found else None
        if targeted is not None:
            return targeted
    return parse(lines.get("cache-control"))
