"""Parse Cache-Control (RFC 9111 section 5.2) and CDN-Cache-Control (RFC 9213) into a value.

Owns: the grammar, tolerant of real-world junk. Must not: decide freshness (that is `freshness`).
"""

from __future__ import annotations

from dataclasses import dataclass

_UNSET = -1


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

    @property
    def withheld(self) -> frozenset[str]:
        """Field names never stored, nor sent to anyone but the client that fetched them."""
        return frozenset(self.no_cache_fields) | frozenset(self.private_fields)

    @property
    def forbids_stale(self) -> bool:
        """RFC 9111 4.2.4: these directives prohibit serving a stale response.

        `s-maxage` implies proxy-revalidate for a shared cache (section 5.2.2.10).
        """
        return self.must_revalidate or self.proxy_revalidate or self.no_cache or self.s_maxage >= 0


EMPTY = CacheControl()

_FLAGS = {
    "no-store": "no_store",
    "no-cache": "no_cache",
    "private": "private",
    "public": "public",
    "must-revalidate": "must_revalidate",
    "proxy-revalidate": "proxy_revalidate",
    "only-if-cached": "only_if_cached",
}
_QUALIFIED = {"no-cache": "no_cache_fields", "private": "private_fields"}
_SECONDS = {
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


DELTA_MAX = 2**31  # delta-seconds overflow becomes 2^31 (RFC 9111 1.2.2)


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
