"""The entry codec: every entry round-trips; no input makes decode raise anything but CodecError."""

from __future__ import annotations

import math
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.core.model import Entry
from proxy.store.codec import REUSE_BODY, VERSION, CodecError, decode, encode, packer

# Header names and values as the transport hands them over (latin-1 decoded bytes) plus any
# other text a test may build; lone surrogates cannot be encoded as UTF-8 and never occur.
text = st.text(st.characters(codec="utf-8"), max_size=40)
times = st.floats(allow_nan=False, width=64)
entries = st.builds(
    Entry,
    status=st.integers(100, 599),
    headers=st.lists(st.tuples(text, text), max_size=6).map(tuple),
    body=st.binary(max_size=2048),
    stored_at=times,
    initial_age=times,
    fresh_until=times,
    stale_until=times,
    error_until=times,
    keep_until=times,
    lkg_until=times,
    etag=st.none() | text,
    last_modified=st.none() | text,
    vary=st.lists(text, max_size=3).map(tuple),
    vary_values=st.lists(text, max_size=3).map(tuple),
    url=text,
)

EXAMPLE = Entry(
    200,
    (("Content-Type", "application/json"), ("ETag", '"v1"')),
    b'{"price": 9.5}',
    1_700_000_000.0,
    2.0,
    1_700_000_030.0,
    1_700_000_060.0,
    1_700_003_600.0,
    1_700_604_800.0,
    1_700_604_800.0,
    '"v1"',
    None,
    ("accept-language",),
    ("en",),
    "/prices/A1",
)


@given(entries)
@settings(deadline=None)  # timing is not the property; the suite shares a busy machine
def test_every_entry_round_trips(entry: Entry) -> None:
    assert decode(encode(entry)) == entry


@given(entries)
@settings(deadline=None)
def test_encoding_is_deterministic(entry: Entry) -> None:
    assert encode(entry) == encode(decode(encode(entry)))


@given(entries, st.booleans(), st.integers(0, 300_000))
@settings(deadline=None)
def test_the_bytes_are_the_documented_msgpack_array(entry: Entry, heuristic: bool, body_len: int) -> None:
    """What the shared tier and snapshots hold: one msgpack array of plain lists, whatever the
    packer's buffer (bodies past its first guess included), so other versions read it."""
    entry = entry.replaced(heuristic=heuristic)
    if body_len > 2048:
        entry = entry.replaced(body=b"b" * body_len)
    plain = [
        VERSION,
        entry.status,
        [list(pair) for pair in entry.headers],
        entry.body,
        entry.stored_at,
        entry.initial_age,
        entry.fresh_until,
        entry.stale_until,
        entry.error_until,
        entry.keep_until,
        entry.lkg_until,
        entry.etag,
        entry.last_modified,
        list(entry.vary),
        list(entry.vary_values),
        entry.url,
        *([True] if heuristic else []),
    ]
    assert encode(entry) == msgpack.packb(plain, use_bin_type=True)


# One packer for the whole run, as a memory store keeps one: what it packed before never shows.
REUSED = packer()


@given(entries, st.sampled_from([0, REUSE_BODY, REUSE_BODY + 1, 300_000]))
@settings(deadline=None)
def test_a_reused_packer_gives_the_same_bytes(entry: Entry, body_len: int) -> None:
    """The memory tier's own packer (`codec.packer`) packs every entry, small or past
    `REUSE_BODY`, exactly as a fresh one does, one entry after another."""
    if body_len:
        entry = entry.replaced(body=b"b" * body_len)
    assert encode(entry, REUSED) == encode(entry)
    assert decode(encode(entry, REUSED)) == entry


def test_example_round_trips_field_by_field() -> None:
    got = decode(encode(EXAMPLE))
    assert got == EXAMPLE
    assert isinstance(got.headers, tuple) and all(isinstance(p, tuple) for p in got.headers)
    assert isinstance(got.vary, tuple) and isinstance(got.stored_at, float)


def test_non_finite_deadlines_survive() -> None:
    forever = Entry(200, (), b"", 0.0, 0.0, math.inf, math.inf, math.inf, math.inf)
    assert decode(encode(forever)).keep_until == math.inf


# -- garbage in, CodecError out ------------------------------------------------------------------


def _decodes_or_codec_error(data: bytes) -> None:
    try:
        got = decode(data)
    except CodecError:
        return
    assert isinstance(got, Entry)


@given(st.binary(max_size=512))
@settings(max_examples=500, deadline=None)
def test_random_bytes_never_raise_anything_else(data: bytes) -> None:
    _decodes_or_codec_error(data)


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | text
    | st.binary(max_size=16),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)


@given(entries, st.sets(st.integers(1, 15), min_size=1, max_size=4), st.data())
@settings(max_examples=300, deadline=None)
def test_well_formed_msgpack_with_wrong_fields_never_raises_anything_else(
    entry: Entry, wrong: set[int], data: st.DataObject
) -> None:
    # Version and length right, one to four fields replaced by any msgpack value: only the
    # field checks stand between this and an Entry.
    fields: list[Any] = msgpack.unpackb(encode(entry), raw=False)
    for index in wrong:
        fields[index] = data.draw(msgpack_values)
    _decodes_or_codec_error(msgpack.packb(fields, use_bin_type=True))


@given(entries, st.data())
@settings(deadline=None)
def test_damaged_encodings_never_raise_anything_else(entry: Entry, data: st.DataObject) -> None:
    raw = bytearray(encode(entry))
    cut = data.draw(st.integers(0, len(raw) - 1))
    _decodes_or_codec_error(bytes(raw[:cut]))  # truncated
    flip = data.draw(st.integers(0, len(raw) - 1))
    raw[flip] ^= data.draw(st.integers(1, 255))
    _decodes_or_codec_error(bytes(raw))  # one byte changed
    _decodes_or_codec_error(encode(entry) + b"\x00")  # trailing bytes


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "empty"),
        (b"\xc1", "reserved msgpack byte"),
        (msgpack.packb({"status": 200}), "a map, not a list"),
        (msgpack.packb([]), "empty list"),
        (msgpack.packb([VERSION + 1, *([0] * 15)]), "a future version"),
        (msgpack.packb([VERSION, 200]), "too short"),
        (msgpack.packb([VERSION, "200", [], b"", *([0.0] * 7), None, None, [], [], ""]), "status as text"),
        (msgpack.packb([VERSION, 200, [], "body", *([0.0] * 7), None, None, [], [], ""]), "body as text"),
        (msgpack.packb([VERSION, 200, 5, b"", *([0.0] * 7), None, None, [], [], ""]), "headers not a list"),
        (
            msgpack.packb([VERSION, 200, [["a"]], b"", *([0.0] * 7), None, None, [], [], ""]),
            "header pair of one",
        ),
        (
            msgpack.packb([VERSION, 200, [], b"", "soon", *([0.0] * 6), None, None, [], [], ""]),
            "time as a word",
        ),
        (msgpack.packb([VERSION, 200, [], b"", *([0.0] * 7), 7, None, [], [], ""]), "etag as a number"),
        (msgpack.packb([VERSION, 200, [], b"", *([0.0] * 7), None, None, 3, [], ""]), "vary not a list"),
        (encode(EXAMPLE)[:-1], "cut by one byte"),
        (encode(EXAMPLE) + b"\x90", "trailing data"),
    ],
)
def test_known_garbage_is_a_codec_error(data: bytes, why: str) -> None:
    with pytest.raises(CodecError):
        decode(data)
