"""A tiny, pure JSONPath subset used by the guards and the config.

Owns: parsing path text (``$``, ``$.a.b``, ``$.a.*``, ``$.items[0]``, ``$.items[-1]``,
``$.items[*].price``, ``$['weird key']``) into a compiled :class:`Path`, and resolving it
against a parsed JSON document.

Must not: do I/O, import anything outside the standard library, or raise while resolving:
``Path.find`` and ``Path.resolve`` accept any JSON value (and anything else) and return
matches. Filters, slices, unions and recursive descent (``..``) are deliberately not
supported; ``compile_path`` rejects them with a ValueError that says where.

Syntax follows RFC 9535 (JSONPath) for the parts we support.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Final

# Step kinds. Small ints keep the hot loop in Path.resolve cheap.
KEY: Final = 0  # .name or ['name']: an object member
INDEX: Final = 1  # [3] or [-1]: an array element (negative counts from the end)
WILD: Final = 2  # [*] or .*: every element of an array or every member value of an object

Step = tuple[int, str | int]

# Characters that end a dotted name; anything else is part of it (so `$.a-b` and `$.1` work).
_NAME_STOP: Final = frozenset(".[]'\" \t\r\n")


@dataclass(frozen=True, slots=True)
class Path:
    """A compiled path. ``text`` is the source, kept for labels and error messages."""

    text: str
    steps: tuple[Step, ...]

    @property
    def singular(self) -> bool:
        """True when the path can match at most one value (no wildcard step)."""
        return all(kind != WILD for kind, _ in self.steps)

    def find(self, doc: Any) -> list[Any]:
        """Every value the path matches in ``doc``; an empty list when nothing matches."""
        return self.resolve(doc)[0]

    def resolve(self, doc: Any) -> tuple[list[Any], bool]:
        """Matches plus whether some branch was missing.

        A name or index step that finds nothing marks the result as missing, and so does a
        wildcard applied to a scalar. A wildcard over an empty array or object is not
        missing: it just yields no matches (so `$.items[*].price` over `[]` is vacuous).
        """
        current: list[Any] = [doc]
        missing = False
        for kind, arg in self.steps:
            if kind == KEY:
                try:  # fast path, in C: every node is an object holding the key
                    nxt = list(map(itemgetter(arg), current))
                except (KeyError, TypeError, IndexError):  # some node lacks it or is no object
                    nxt = [n[arg] for n in current if isinstance(n, dict) and arg in n]
            elif kind == INDEX:
                assert isinstance(arg, int)
                nxt = [n[arg] for n in current if isinstance(n, list) and -len(n) <= arg < len(n)]
            else:
                nxt = []
                for n in current:
                    if isinstance(n, list):
                        nxt.extend(n)
                    elif isinstance(n, dict):
                        nxt.extend(n.values())
                    else:
                        missing = True
                current = nxt
                continue
            if len(nxt) != len(current):
                missing = True
            current = nxt
            if not current:
                break
        return current, missing

    def __str__(self) -> str:
        return self.text


def compile_path(text: str) -> Path:
    """Parse ``text`` into a :class:`Path`; raise ValueError naming the offset on bad syntax."""
    if not isinstance(text, str):
        raise ValueError(f"a JSONPath must be a string, got {type(text).__name__}")
    src = text
    if not src.startswith("$"):
        raise ValueError(f"bad JSONPath {text!r}: must start with '$'")
    steps: list[Step] = []
    i, end = 1, len(src)
    while i < end:
        ch = src[i]
        if ch == ".":
            i, step = _dotted(src, i + 1, text)
        elif ch == "[":
            i, step = _bracket(src, i + 1, text)
        else:
            raise _error(text, i, "expected '.' or '['")
        steps.append(step)
    return Path(src, tuple(steps))


def _dotted(src: str, i: int, text: str) -> tuple[int, Step]:
    """Parse what follows a '.': a name or '*'. Returns the next offset and the step."""
    if i < len(src) and src[i] == ".":
        raise _error(text, i, "recursive descent '..' is not supported")
    if i < len(src) and src[i] == "*":
        return i + 1, (WILD, "*")
    start = i
    while i < len(src) and src[i] not in _NAME_STOP:
        i += 1
    if i == start:
        raise _error(text, start, "expected a name after '.'")
    return i, (KEY, src[start:i])


def _bracket(src: str, i: int, text: str) -> tuple[int, Step]:
    """Parse what follows a '[': '*', an integer or a quoted name, then ']'."""
    if i >= len(src):
        raise _error(text, i, "unclosed '['")
    ch = src[i]
    step: Step
    if ch == "*":
        step, i = (WILD, "*"), i + 1
    elif ch in "'\"":
        i, name = _quoted(src, i, text)
        step = (KEY, name)
    else:
        start = i
        if i < len(src) and src[i] == "-":
            i += 1
        while i < len(src) and src[i].isascii() and src[i].isdigit():
            i += 1
        digits = src[start:i]
        if digits in ("", "-"):
            raise _error(text, start, "expected '*', an integer or a quoted name inside []")
        step = (INDEX, int(digits))
    if i >= len(src) or src[i] != "]":
        raise _error(text, i, "expected ']'")
    return i + 1, step


def _quoted(src: str, i: int, text: str) -> tuple[int, str]:
    """Parse a quoted name starting at the quote; backslash escapes the next character."""
    quote, i = src[i], i + 1
    out: list[str] = []
    while i < len(src):
        ch = src[i]
        if ch == "\\" and i + 1 < len(src):
            out.append(src[i + 1])
            i += 2
        elif ch == quote:
            return i + 1, "".join(out)
        else:
            out.append(ch)
            i += 1
    raise _error(text, i, "unterminated quoted name")


def _error(text: str, offset: int, why: str) -> ValueError:
    return ValueError(f"bad JSONPath {text!r} at offset {offset}: {why}")
