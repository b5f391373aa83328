"""The memory tier: LRU by bytes, kept until `keep_until`, never over its bound."""

from __future__ import annotations

import gc
import random
import sys
import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.core.keys import group_of
from proxy.core.model import Entry
from proxy.store.codec import encode
from proxy.store.memory import HEAD, KINDS_KEPT, MemoryStore, codec_bytes, compress, pack, unpack


def entry(body_len: int = 100, keep_until: float = 1000.0) -> Entry:
    return Entry(
        status=200,
        headers=(("Content-Type", "text/plain"),),
        body=b"x" * body_len,
        stored_at=0.0,
        initial_age=0.0,
        fresh_until=10.0,
        stale_until=20.0,
        error_until=30.0,
        keep_until=keep_until,
    )


SIZE = entry().size()  # every entry below is this size unless it says otherwise


def test_put_get_and_byte_accounting() -> None:
    store = MemoryStore(max_bytes=10 * SIZE)
    assert store.put("a", entry(), now=0.0)
    assert store.get("a", now=1.0) == entry()
    assert (len(store), store.bytes) == (1, SIZE)
    assert store.get("missing", now=1.0) is None


def test_replacing_a_key_does_not_double_count() -> None:
    store = MemoryStore(max_bytes=10 * SIZE)
    store.put("a", entry(), now=0.0)
    bigger = entry(body_len=300)
    store.put("a", bigger, now=0.0)
    assert (len(store), store.bytes) == (1, bigger.size())
    assert store.get("a", now=0.0) == bigger


@pytest.mark.parametrize(
    ("ops", "left", "evictions"),
    [
        # capacity is three entries; the oldest goes first
        (["put a", "put b", "put c", "put d"], ["b", "c", "d"], 1),
        # a read makes an entry the most recently used
        (["put a", "put b", "put c", "get a", "put d"], ["c", "a", "d"], 1),
        (["put a", "put b", "put c", "get a", "get b", "put d", "put e"], ["b", "d", "e"], 2),
        # re-putting a key refreshes its position too
        (["put a", "put b", "put c", "put a", "put d"], ["c", "a", "d"], 1),
        # a miss changes nothing
        (["put a", "put b", "put c", "get z", "put d"], ["b", "c", "d"], 1),
    ],
)
def test_lru_order(ops: list[str], left: list[str], evictions: int) -> None:
    store = MemoryStore(max_bytes=3 * SIZE)
    for op in ops:
        verb, key = op.split()
        if verb == "put":
            assert store.put(key, entry(), now=0.0)
        else:
            store.get(key, now=0.0)
    assert [k for k, _ in store.items()] == left
    assert store.evictions == evictions
    assert store.bytes == 3 * SIZE


def test_one_big_entry_evicts_several_small_ones() -> None:
    store = MemoryStore(max_bytes=4 * SIZE)
    for key in "abcd":
        store.put(key, entry(), now=0.0)
    big = entry(body_len=2 * SIZE + 50)  # needs the room of three small entries
    assert store.put("big", big, now=0.0)
    assert [k for k, _ in store.items()] == ["d", "big"]
    assert store.evictions == 3 and store.bytes <= store.max_bytes


def test_entry_larger_than_the_store_is_refused_without_evicting() -> None:
    store = MemoryStore(max_bytes=3 * SIZE)
    store.put("a", entry(), now=0.0)
    assert not store.put("huge", entry(body_len=3 * SIZE), now=0.0)
    assert [k for k, _ in store.items()] == ["a"] and store.evictions == 0


@pytest.mark.parametrize(
    ("keep_until", "now", "stored"),
    [
        (100.0, 0.0, True),
        (100.0, 99.9, True),
        (100.0, 100.0, False),  # already past use: not worth the bytes
        (100.0, 200.0, False),
    ],
)
def test_put_refuses_what_is_already_past_keep_until(keep_until: float, now: float, stored: bool) -> None:
    store = MemoryStore(max_bytes=10 * SIZE)
    assert store.put("a", entry(keep_until=keep_until), now=now) is stored
    assert len(store) == int(stored)


def test_get_drops_entries_past_keep_until() -> None:
    store = MemoryStore(max_bytes=10 * SIZE)
    store.put("a", entry(keep_until=100.0), now=0.0)
    assert store.get("a", now=99.0) is not None
    assert store.get("a", now=100.0) is None
    assert (len(store), store.bytes) == (0, 0)


def test_delete_and_delete_prefix() -> None:
    store = MemoryStore(max_bytes=10 * SIZE)
    for key in ("r\x1f/a", "r\x1f/a?x=1", "r\x1f/ab", "s\x1f/a"):
        store.put(key, entry(), now=0.0)
    assert store.delete("r\x1f/a") and not store.delete("r\x1f/a")
    assert store.delete_prefix("r\x1f/a") == 2
    assert [k for k, _ in store.items()] == ["s\x1f/a"]
    assert store.bytes == SIZE


def test_items_is_a_snapshot() -> None:
    store = MemoryStore(max_bytes=10 * SIZE)
    for key in "abc":
        store.put(key, entry(), now=0.0)
    for key, _ in store.items():
        store.delete(key)  # mutating while iterating is safe
    assert len(store) == 0


def test_clear() -> None:
    store = MemoryStore(max_bytes=10 * SIZE)
    store.put("a", entry(), now=0.0)
    store.clear()
    assert (len(store), store.bytes, store.get("a", now=0.0)) == (0, 0, None)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["put", "get", "delete"]),
            st.sampled_from("abcdefgh"),
            st.integers(min_value=0, max_value=900),
        ),
        max_size=60,
    ),
    st.integers(min_value=200, max_value=3000),
)
def test_bound_and_accounting_hold_for_any_sequence(ops: list[tuple[str, str, int]], max_bytes: int) -> None:
    store = MemoryStore(max_bytes=max_bytes)
    model: list[str] = []  # keys, least recently used first
    for verb, key, body_len in ops:
        if verb == "put":
            e = entry(body_len=body_len)
            if store.put(key, e, now=0.0):
                model = [k for k in model if k != key] + [key]
            else:
                assert e.size() > max_bytes
        elif verb == "get":
            if store.get(key, now=0.0) is not None:
                model = [k for k in model if k != key] + [key]
        else:
            store.delete(key)
            model = [k for k in model if k != key]
        present = [k for k, _ in store.items()]
        evicted = [k for k in model if k not in present]
        assert evicted == model[: len(evicted)]  # evictions take the least recently used first
        model = model[len(evicted) :]
        assert present == model
        assert store.bytes == sum(e.size() for _, e in store.items())
        assert store.bytes <= max_bytes


# -- the stored form (issue 12: memory per entry) -----------------------------------------------


def full_entry(body: bytes, keep_until: float = 1000.0, content_type: str = "application/json") -> Entry:
    return Entry(
        status=200,
        headers=(("Content-Type", content_type), ("Date", "Fri, 04 Dec 2026 05:00:00 GMT")),
        body=body,
        stored_at=1.5,
        initial_age=2.0,
        fresh_until=10.0,
        stale_until=20.0,
        error_until=30.0,
        keep_until=keep_until,
        lkg_until=40.0,
        etag='"v1"',
        last_modified="Thu, 03 Dec 2026 05:00:00 GMT",
        vary=("accept-language",),
        vary_values=("de",),
        url="/items/1?x=1",
        heuristic=True,
    )


JSON_BODY = b'{"items":[' + b",".join(b'{"id":%d,"currency":"EUR"}' % i for i in range(60)) + b"]}"
RANDOM_BODY = random.Random(12).randbytes(1024)


@pytest.mark.parametrize(
    ("body", "content_type", "compressed"),
    [
        (JSON_BODY, "application/json", True),  # JSON shrinks several-fold
        (JSON_BODY, "image/svg+xml", True),  # text, whatever its top-level type
        (RANDOM_BODY, "application/json", False),  # incompressible: held as it is, not grown
        (b"{}", "application/json", False),  # too small to bother
        (JSON_BODY, "image/png", False),  # arrives compressed: not tried (the body here is a stand-in)
        (JSON_BODY, "Application/GZIP", False),
    ],
)
def test_stored_form_round_trips_and_compresses_only_when_it_pays(
    body: bytes, content_type: str, compressed: bool
) -> None:
    e = full_entry(body, content_type=content_type)
    stored = pack(e, e.size())
    codec = encode(e)
    assert codec_bytes(stored) == codec  # the snapshot and Redis keep getting the shared format
    assert unpack(stored) == e
    if compressed:
        assert len(stored) < len(codec) // 2
    else:
        assert len(stored) == len(codec) + HEAD.size
    kinds: dict[str | None, bool] = {}  # a store's memo by content type: asked, then remembered
    assert pack(e, e.size(), kinds=kinds) == pack(e, e.size(), kinds=kinds) == stored


def test_a_stores_memo_of_content_types_stays_bounded() -> None:
    kinds: dict[str | None, bool] = {}
    for i in range(KINDS_KEPT * 3):
        e = full_entry(JSON_BODY, content_type=f"application/x-{i}+json")
        assert len(pack(e, e.size(), kinds=kinds)) < len(encode(e)) // 2
        assert 0 < len(kinds) <= KINDS_KEPT


@pytest.mark.parametrize("size", [256, 511, 512, 1_000, 4_096, 20_000, 40_000, 200_000])
def test_compressed_codec_bytes_read_back_whole_and_shrink_json(size: int) -> None:
    rng = random.Random(size)
    items = (b'{"id":%d,"price":%d},' % (rng.randrange(10**6), rng.randrange(999)) for _ in range(size))
    data = b"".join(items)[:size]
    stored = HEAD.pack(0.0, size, 1) + compress(data)  # what `pack` stores when it pays
    assert codec_bytes(stored) == data
    assert len(stored) - HEAD.size < len(data) * 0.8  # JSON shrinks at every size


def test_entries_read_back_from_the_stored_form_are_equal() -> None:
    store = MemoryStore(max_bytes=10**6, hot_entries=0)  # nothing decoded kept: every get unpacks
    entries = {"json": full_entry(JSON_BODY), "random": full_entry(RANDOM_BODY, keep_until=50.0)}
    for key, e in entries.items():
        assert store.put(key, e, now=0.0)
    assert store.get("json", now=1.0) == entries["json"]
    assert store.get("random", now=1.0) == entries["random"]
    assert store.get("random", now=50.0) is None  # keep_until read from the head
    assert (len(store), store.bytes) == (1, entries["json"].size())


def test_an_entry_is_kept_decoded_once_it_is_read_not_when_it_is_stored() -> None:
    store = MemoryStore(max_bytes=10**6)
    stored = full_entry(JSON_BODY)
    assert store.put("k", stored, now=0.0)
    first = store.get("k", now=1.0)
    assert first == stored and first is not stored  # decoded: the stored object was not kept
    assert store.get("k", now=1.0) is first  # read once: kept decoded for the next read
    assert store.put("k", full_entry(RANDOM_BODY), now=2.0)
    assert store.get("k", now=3.0) == full_entry(RANDOM_BODY)  # a new copy replaces the decoded one


def test_an_entry_costs_its_stored_bytes_plus_a_small_constant() -> None:
    """The whole per-key cost: stored form, key, LRU slot. Grouped keys that are their own group
    add nothing; a decoded entry is kept for hot keys only."""
    n = 2000
    store = MemoryStore(max_bytes=10**9, group_of=group_of, hot_entries=0)
    entries = [full_entry(RANDOM_BODY[i % 256 :] + RANDOM_BODY[: i % 256]) for i in range(n)]
    keys = [f"items\x1f/api/items/{i}" for i in range(n)]
    stored_bytes = sum(sys.getsizeof(pack(e, e.size())) for e in entries)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for key, e in zip(keys, entries, strict=True):
            store.put(key, e, now=0.0)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # ~70 bytes: the OrderedDict's slot and link (the key strings exist before the puts)
    assert (held - stored_bytes) / n < 120


def test_delete_group_finds_keys_that_are_their_own_group_without_an_index_slot() -> None:
    store = MemoryStore(max_bytes=10 * SIZE, group_of=group_of)
    keys = ["r\x1f/a", "r\x1f/a?x=1", "r\x1f/a\x1ede", "r\x1f/ab", "s\x1f/a"]
    for key in keys:
        store.put(key, entry(), now=0.0)
    assert store.delete_group("r\x1f/a") == 3
    assert [k for k, _ in store.items()] == ["r\x1f/ab", "s\x1f/a"]
    assert store.delete_group("r\x1f/a") == 0
    store.put("r\x1f/a?y=2", entry(), now=0.0)  # a group whose bare key is not stored
    assert store.delete_group("r\x1f/a") == 1
    assert store.delete_group("r\x1f/ab") == 1 and store.delete_group("nope") == 0
    assert len(store) == 1


def test_a_blob_stays_the_same_object_until_the_entry_changes() -> None:
    """What the fast-hit path derives from an entry is valid while `blob` is the same object."""
    store = MemoryStore(max_bytes=10**6)
    store.put("a", entry(keep_until=1000.0), now=0.0)
    first = store.blob("a", now=1.0)
    assert first is not None and store.blob("a", now=2.0) is first
    assert store.get("a", now=3.0) == entry(keep_until=1000.0) and store.blob("a", now=3.0) is first
    store.put("a", entry(body_len=50, keep_until=1000.0), now=4.0)  # a refresh: a new stored form
    second = store.blob("a", now=5.0)
    assert second is not None and second is not first
    assert store.blob("a", now=1000.0) is None and len(store) == 0  # past keep_until: dropped
    assert store.blob("missing", now=0.0) is None
