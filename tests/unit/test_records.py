"""Every record (`proxy.core.record`) keeps its contract: `__slots__` names every field,
`__init__` takes each by that name and sets it, equality and hash follow the fields, and the
copies (`replaced`, `with_*`) carry every field they do not change."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.core import model
from proxy.core.config.model import Timeouts
from proxy.core.decide import Action, Plan, Vendor
from proxy.core.errors import UpstreamTimeout
from proxy.core.freshness import Deadlines
from proxy.core.model import Entry
from proxy.core.record import Frozen, Record
from proxy.core.replacement import Answer
from proxy.core.routing import Match
from proxy.deliver import Txn
from proxy.fetched import Fetched
from proxy.outcome import Outcome
from proxy.transport import Outbound

ENTRY: dict[str, Any] = {
    "status": 203,
    "headers": (("X-A", "1"),),
    "body": b"body",
    "stored_at": 1.0,
    "initial_age": 2.0,
    "fresh_until": 3.0,
    "stale_until": 4.0,
    "error_until": 5.0,
    "keep_until": 6.0,
    "lkg_until": 7.0,
    "etag": '"e"',
    "last_modified": "Tue, 01 Dec 2026 00:00:00 GMT",
    "vary": ("accept",),
    "vary_values": ("text/plain",),
    "url": "http://vendor/a",
    "heuristic": True,
}
FETCHED: dict[str, Any] = {
    "status": 206,
    "headers": (("X-B", "2"),),
    "body": b"b",
    "request_time": 1.0,
    "response_time": 2.0,
    "complete": False,
    "stream": None,
    "attempts": 3,
    "interim": [(103, (("Link", "</a>"),))],
    "unreadable": "bad gzip",
    "lows_of": ((("X-B", "2"),), ("x-b",)),
}
# One sample per record: every field given a value unlike its default.
SAMPLES: dict[type[Record], dict[str, Any]] = {
    Entry: ENTRY,
    Deadlines: {
        "initial_age": 1.0,
        "fresh_until": 2.0,
        "stale_until": 3.0,
        "error_until": 4.0,
        "keep_until": 5.0,
        "lkg_until": 6.0,
        "heuristic": True,
    },
    Answer: {"status": 304, "complete": False, "etag": '"v"'},
    Vendor: {"available": False, "unhealthy": True},
    Plan: {"action": Action.HIT, "reason": "heuristic", "x_cache": "HIT", "refresh": True},
    Match: {"params": {"sku": "A1"}, "rest": "/x"},
    Outcome: {
        "entry": Entry(**ENTRY),
        "fetched": Fetched(**FETCHED),
        "error": UpstreamTimeout("slow"),
        "stored": True,
        "revalidated": True,
        "detail": "d",
        "upstream_status": 502,
        "upstream_ms": 1.5,
        "retries": 2,
        "key": "k",
        "leader_headers": (("Set-Cookie", "a=b"),),
        "interim": [(100, ())],
    },
    Outbound: {
        "method": "POST",
        "path_qs": "/a?b=1",
        "headers": [("x-a", "1")],
        "body": b"{}",
        "timeout": Timeouts(connect=1.0, total=2.0),
        "idempotency_key": True,
        "credentials": True,
        "offered": str.upper,
    },
    Fetched: FETCHED,
    Txn: {
        "request_id": "r1",
        "start": 1.0,
        "method": "GET",
        "path": "/a",
        "client": "127.0.0.1",
        "route": "items",
        "upstream": "origin",
        "status": 200,
        "x_cache": "HIT",
        "upstream_status": 200,
        "upstream_ms": 2.5,
        "retries": 1,
        "stale_reason": "r",
        "guard": "g",
        "breaker": "open",
        "bytes": 10,
    },
}
RECORDS = sorted(SAMPLES, key=lambda cls: cls.__name__)


@pytest.mark.parametrize("cls", RECORDS, ids=lambda cls: cls.__name__)
def test_init_sets_every_field_it_names(cls: type[Record]) -> None:
    sample = SAMPLES[cls]
    assert set(cls.__slots__) == set(sample), "the sample names every field"
    made = cls(**sample)
    assert made.fields() == tuple(sample[name] for name in cls.__slots__)
    assert made == cls(**sample)
    assert made.replaced() == made and made.replaced() is not made
    assert repr(made).startswith(f"{cls.__name__}(")


@pytest.mark.parametrize("cls", RECORDS, ids=lambda cls: cls.__name__)
def test_a_record_differs_by_any_field(cls: type[Record]) -> None:
    made = cls(**SAMPLES[cls])
    for name in cls.__slots__:
        if getattr(made, name) is None:
            continue  # Fetched.stream: a live body stream is not made here
        other = made.replaced(**{name: _other(getattr(made, name))})
        assert other != made, name
        assert [n for n in cls.__slots__ if getattr(other, n) != getattr(made, n)] == [name]


@pytest.mark.parametrize("cls", RECORDS, ids=lambda cls: cls.__name__)
def test_only_frozen_records_hash(cls: type[Record]) -> None:
    made = cls(**SAMPLES[cls])
    if issubclass(cls, Frozen):
        assert hash(made) == hash(cls(**SAMPLES[cls]))
    else:
        with pytest.raises(TypeError):
            hash(made)


def test_a_final_field_is_refused_a_change_when_compiled() -> None:
    """mypy refuses the assignment in either build; the compiled class refuses it at run time."""
    if not model.__file__ or not model.__file__.endswith(".so"):
        pytest.skip("pure Python build: `Final` is enforced by mypy only")
    entry = Entry(**ENTRY)
    with pytest.raises(AttributeError):
        entry.status = 500  # type: ignore[misc]
    assert entry.status == 203


def test_replaced_refuses_a_field_the_record_has_not() -> None:
    with pytest.raises(TypeError, match="Entry has no field 'colour'"):
        Entry(**ENTRY).replaced(colour="red")


def test_the_cheap_copies_carry_every_field_they_do_not_change() -> None:
    out = Outbound(**SAMPLES[Outbound])
    timeout = Timeouts(connect=0.5, total=0.5)
    _changed_only(out, out.with_timeout(timeout), {"timeout": timeout})
    headers = [("x-b", "2")]
    _changed_only(out, out.with_headers(headers), {"headers": headers})
    _changed_only(out, out.with_headers(headers, offered=False), {"headers": headers, "offered": None})
    entry = Entry(**ENTRY)
    fields = (("X-C", "3"),)
    _changed_only(entry, entry.with_headers(fields), {"headers": fields})


def _changed_only(before: Record, after: Record, changed: dict[str, object]) -> None:
    for name in type(before).__slots__:
        want = changed[name] if name in changed else getattr(before, name)
        assert getattr(after, name) == want, name


def _other(value: object) -> object:
    """A value of the same type as `value`, unequal to it."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, bytes):
        return value + b"x"
    if isinstance(value, tuple | list):  # the same shape: compiled records check it
        return type(value)([_other(item) for item in value])
    if isinstance(value, dict):
        return {}
    if isinstance(value, Action):
        return Action.FETCH
    if isinstance(value, Timeouts):
        return Timeouts(connect=9.0, total=9.0)
    if isinstance(value, Record):
        return value.replaced(**{value.__slots__[0]: _other(value.fields()[0])})
    if isinstance(value, Exception):
        return type(value)("another")  # exceptions are equal only to themselves
    assert callable(value), value
    return str.lower
