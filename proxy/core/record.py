"""Records: the per-request values (entries, outcomes, transactions), as plain classes.

Owns: `Record`, equality and a readable repr from a class's `__slots__`, and `Frozen`, the same
hashable. Must not: hold behaviour of any one record, do I/O, or read the clock.

Why not `@dataclass`: compiled (setup.py), a dataclass is a native class whose `__init__` is
still the one `dataclasses` generates, an interpreted function; a frozen one sets each field
through `object.__setattr__`. Made per request, that was ~48k of a miss's ~300k instructions
(callgrind, stop 23), the `Entry` alone ~22k. A hand-written `__init__` compiles like the rest.

The contract of a record class: `__slots__` names every field (sorted, as ruff keeps them),
`__init__` takes each by that name and sets it (tests/unit/test_records.py checks every record).
Immutable fields are annotated `Final` in `__init__`: mypy refuses an assignment anywhere else,
and the compiled class refuses it at run time (AttributeError); pure Python relies on mypy.
Configuration stays in frozen dataclasses: it is parsed once, not per request.
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

R = TypeVar("R", bound="Record")


class Record:
    """Equal when of the same class with equal fields; mutable ones are unhashable, as a
    dataclass with `eq=True` would be."""

    __slots__: ClassVar[tuple[str, ...]] = ()

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self.__slots__)

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({inner})"

    def fields(self) -> tuple[object, ...]:
        """The values of every field, in `__slots__` order."""
        return tuple(getattr(self, name) for name in self.__slots__)

    def replaced(self: R, **changes: Any) -> R:
        """A copy with `changes`, as `dataclasses.replace` makes one: off the hot path (a
        record's own `with_*` method is the cheap copy), and its types are checked at run time
        only when compiled."""
        unknown = changes.keys() - set(self.__slots__)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field {sorted(unknown)[0]!r}")
        make: Any = type(self)
        copy: R = make(**{name: changes.get(name, getattr(self, name)) for name in self.__slots__})
        return copy


class Frozen(Record):
    """A record whose fields are all `Final`: hashable by its fields."""

    __slots__ = ()

    def __hash__(self) -> int:
        return hash(self.fields())
