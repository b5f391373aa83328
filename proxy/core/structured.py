"""Structured Field Dictionaries (RFC 8941 sections 3.2 and 4.2.2), as targeted cache fields use them.

Owns: turning one Dictionary field value into {key: value}, or None on any parse error (RFC 9213
2.1: a field that fails to parse is ignored as a whole). Must not: know what a key means (that
is `cachecontrol`), or be lenient: RFC 8941 parsing is strict by design.

Values come back as Python values: int (Integer), float (Decimal), str (String and Token alike:
the cache directives do not tell them apart), bytes (Byte Sequence), bool (Boolean), and a
list for an Inner List. Parameters are parsed and dropped (RFC 9213 2.1: ignored unless a
directive says otherwise).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Final

Value = int | float | str | bytes | bool | list[object]

_KEY: Final = re.compile(r"[a-z*][a-z0-9_.*-]*")
_TOKEN: Final = re.compile(r"[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*")
_NUMBER: Final = re.compile(r"-?[0-9]{1,15}(?:\.[0-9]{1,3})?")
_BYTES: Final = re.compile(r":([A-Za-z0-9+/=]*):")


class _Invalid(Exception):
    pass


def parse_dictionary(value: str) -> dict[str, Value] | None:
    """The members of a Dictionary field value (several field lines joined with ","), or None."""
    cursor = _Cursor(value.strip(" "))
    found: dict[str, Value] = {}
    try:
        while cursor.more():
            key = cursor.match(_KEY)
            if cursor.take("="):
                found[key] = _item_or_inner_list(cursor)
            else:
                _parameters(cursor)
                found[key] = True
            cursor.skip_ows()
            if not cursor.more():
                break
            cursor.expect(",")
            cursor.skip_ows()
            if not cursor.more():
                raise _Invalid  # a trailing comma
    except _Invalid:
        return None
    return found


class _Cursor:
    __slots__ = ("at", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.at = 0

    def more(self) -> bool:
        return self.at < len(self.text)

    def peek(self) -> str:
        return self.text[self.at] if self.more() else ""

    def take(self, char: str) -> bool:
        if self.peek() == char:
            self.at += 1
            return True
        return False

    def expect(self, char: str) -> None:
        if not self.take(char):
            raise _Invalid

    def skip(self, chars: str) -> None:
        while self.more() and self.text[self.at] in chars:
            self.at += 1

    def skip_ows(self) -> None:
        self.skip(" \t")

    def match(self, pattern: re.Pattern[str]) -> str:
        found = pattern.match(self.text, self.at)
        if found is None:
            raise _Invalid
        self.at = found.end()
        return found.group()


def _item_or_inner_list(cursor: _Cursor) -> Value:
    if cursor.take("("):
        items: list[object] = []
        while True:
            cursor.skip(" ")
            if cursor.take(")"):
                _parameters(cursor)
                return items
            items.append(_bare_item(cursor))
            _parameters(cursor)
            if cursor.peek() not in (" ", ")"):
                raise _Invalid
    item = _bare_item(cursor)
    _parameters(cursor)
    return item


def _parameters(cursor: _Cursor) -> None:
    while cursor.take(";"):
        cursor.skip(" ")
        cursor.match(_KEY)
        if cursor.take("="):
            _bare_item(cursor)


def _bare_item(cursor: _Cursor) -> int | float | str | bytes | bool:
    char = cursor.peek()
    if char and char in "-0123456789":
        return _number(cursor.match(_NUMBER))
    if char == '"':
        return _string(cursor)
    if char == "?":
        cursor.at += 1
        flag = cursor.peek()
        if flag not in ("0", "1"):
            raise _Invalid
        cursor.at += 1
        return flag == "1"
    if char == ":":
        try:
            return base64.b64decode(cursor.match(_BYTES)[1:-1], validate=True)
        except binascii.Error as exc:
            raise _Invalid from exc
    return cursor.match(_TOKEN)


def _number(text: str) -> int | float:
    if "." not in text:
        return int(text)
    whole = text.lstrip("-").split(".")[0]
    if len(whole) > 12:
        raise _Invalid  # a Decimal has at most 12 integer digits
    return float(text)


def _string(cursor: _Cursor) -> str:
    cursor.at += 1  # the opening quote
    out: list[str] = []
    while cursor.more():
        char = cursor.text[cursor.at]
        cursor.at += 1
        if char == "\\":
            escaped = cursor.peek()
            if escaped not in ('"', "\\"):
                raise _Invalid
            out.append(escaped)
            cursor.at += 1
        elif char == '"':
            return "".join(out)
        elif not " " <= char <= "~":
            raise _Invalid
        else:
            out.append(char)
    raise _Invalid  # unterminated
