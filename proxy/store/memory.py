"""The memory tier (L1): a bounded LRU of entries, by bytes.

Owns: which entries stay in this process and for how long they are kept (`keep_until`), and the
compact form they are held in. Must not: decide whether an entry is fresh or usable; read the
clock (callers pass `now`).

Entries are held encoded, one `bytes` object per key and nothing else: a 13-byte head
(`keep_until`, the accounted size, a flag) then the shared `codec` bytes, LZ4-compressed when
that saves at least an eighth (memcached clients' `min_compress_len` idea; already-compressed
media types are kept as they are). Why LZ4 and not deflate, measured (issue 11: every miss packs
its entry): on generated API JSON (UUIDs, prices, dates) of 0.8 / 3 / 25 KB, raw deflate at level
1 shrinks 1.9x / 2.6x / 3.2x in 11 / 23 / 113 us and inflates in 4.6 / 7 / 31 us; LZ4 shrinks
1.4x / 1.9x / 2.3x in 1.8 / 3 / 20 us and decompresses in 0.5 / 1.2 / 7.6 us. The memory
benchmark's padded 1 KB items shrink alike (1239 codec bytes: 261 deflated, 284 LZ4): RSS 1.10x
payload with deflate, 1.15x with LZ4, 2.08x without compression (goal <= 1.5x). `max_bytes`
bounds the uncompressed size anyway, so the weaker ratio costs resident memory only, never
more entries than configured. Packing lazily (when an entry leaves the hot LRU below) was
weighed and left: on a miss-heavy load every entry leaves it, so it moves the cost, never
saves it (weighed again for issue 11's miss: a run of fewer misses than `hot_entries` would
show the ~47,000 instructions of `pack` gone, a steady state would not). The store keeps one
msgpack packer and reuses its buffer. The form is this process's own: the snapshot and the
shared tier get `codec_bytes`.
A small LRU of decoded entries sits in front for the keys read most, so hot hits skip
decompressing and decoding; a key joins it when it is read, not when it is stored (measured,
issue 11: seeding it on every store put ~2% of a miss's profile samples in `put`, most of it
freeing an entry 1,024 stores later from memory gone cold). Why, measured (issue 12): a 1 KB
entry as Python objects costs about 2 KB more than its bytes, and every one of those objects is
tracked by the cyclic garbage collector, whose full passes over 100,000 cached entries stalled
every request for ~100 ms; a `(blob, keep_until, size)` tuple per key cost another 120 bytes.
A decoded `Entry` exists only for hot keys, so anything cached on one (a prepared response
head, say) costs at most `hot_entries` copies, never one per stored key.
`max_bytes` bounds the entries' accounted size (`Entry.size()`, uncompressed): what a user
configures is how much content is kept; resident memory is that or less. Plain `OrderedDict`
rather than aiocache's memory cache: that one has no size bound and arms one timer per key.
"""

from __future__ import annotations

import builtins
import struct
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Final

import lz4.block
import msgpack

from proxy.core.model import Entry
from proxy.store.codec import decode, encode, packer

HOT_ENTRIES: Final = 1024  # decoded entries kept beside the blobs: the hot keys skip decoding
HEAD: Final = struct.Struct("<dIB")  # keep_until, accounted size, flags: read without decoding
# Bound once: compiled, a method of a `Struct` or a module's function is otherwise looked up by
# name on every call (a store and a lookup each).
_PACK_HEAD: Final = HEAD.pack
_READ_HEAD: Final = HEAD.unpack_from
_LZ4: Final = lz4.block.compress
COMPRESSED: Final = 1  # flag: the codec bytes after the head are an LZ4 block (its size first)
MAX_SIZE: Final = 2**32 - 1  # the head's size field; no single entry held in memory comes near it
MIN_COMPRESS: Final = 256  # codec bytes below this are kept as they are: too little to win
KINDS_KEPT: Final = 64  # content types remembered by a store's `_known_compressed` memo


# Media types that arrive compressed: compressing them again costs time per store for nothing.
COMPRESSED_TYPES: Final = ("image/", "audio/", "video/", "font/woff", "application/zip", "application/gzip")


def pack(
    entry: Entry, size: int, reuse: msgpack.Packer | None = None, kinds: dict[str | None, bool] | None = None
) -> bytes:
    """The stored form of `entry`: head, then its codec bytes (compressed when that pays);
    `reuse`: the store's own packer (`codec.packer`), spared a new buffer per entry; `kinds`:
    the store's memo of `_compressed` by content type."""
    data = encode(entry, reuse)
    flags = 0
    if len(data) >= MIN_COMPRESS and not _known_compressed(entry.header("content-type"), kinds):
        squeezed = compress(data)
        if len(squeezed) <= len(data) - len(data) // 8:
            data, flags = squeezed, COMPRESSED
    return _PACK_HEAD(entry.keep_until, size, flags) + data


def compress(data: bytes) -> bytes:
    """An LZ4 block at the default (fast) setting, its uncompressed size in front."""
    squeezed: bytes = _LZ4(data)
    return squeezed


def _known_compressed(content_type: str | None, kinds: dict[str | None, bool] | None) -> bool:
    """`_compressed`, remembered in `kinds` (a vendor sends a handful of types: spared a
    lower-cased copy per store; compiled, a dict is a direct call where `lru_cache` was a call
    by name and a hashed tuple)."""
    if kinds is None:
        return _compressed(content_type)
    known = kinds.get(content_type)
    if known is None:
        if len(kinds) >= KINDS_KEPT:
            kinds.clear()
        known = kinds[content_type] = _compressed(content_type)
    return known


def _compressed(content_type: str | None) -> bool:
    low = (content_type or "").lower()
    return low.startswith(COMPRESSED_TYPES) and "svg" not in low


def codec_bytes(stored: bytes) -> bytes:
    """The shared `codec` bytes inside a stored form (what the snapshot and Redis hold)."""
    if stored[HEAD.size - 1] & COMPRESSED:
        data: bytes = lz4.block.decompress(memoryview(stored)[HEAD.size :])
        return data
    return stored[HEAD.size :]


def unpack(stored: bytes) -> Entry:
    return decode(codec_bytes(stored))


class MemoryStore:
    __slots__ = (
        "_bytes",
        "_group_of",
        "_groups",
        "_hot",
        "_hot_max",
        "_items",
        "_kinds",
        "_packer",
        "evictions",
        "max_bytes",
    )

    def __init__(
        self, max_bytes: int, group_of: Callable[[str], str] | None = None, hot_entries: int = HOT_ENTRIES
    ) -> None:
        self.max_bytes = max_bytes
        # key -> stored form (`pack`): one atomic object per key, never visited by the collector.
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._hot: OrderedDict[str, Entry] = OrderedDict()
        self._hot_max = hot_entries
        self._bytes = 0
        self.evictions = 0
        # Optional secondary index (e.g. route + path -> keys of every query and variant), so
        # invalidating one URL after a write does not scan the whole store.
        self._group_of = group_of
        # Only keys that differ from their group are indexed (a key without query, keyed
        # headers or variant is its own group: found in `_items`, no slot here). A group of one
        # such key maps to that key: a set per key would cost 200 bytes and a collector visit.
        self._groups: dict[str, str | set[str]] = {}
        self._packer = packer()  # `put` runs on the event loop only: one packer, reused
        self._kinds: dict[str | None, bool] = {}  # content type -> already compressed (`pack`)

    def __len__(self) -> int:
        return len(self._items)

    @property
    def bytes(self) -> int:
        return self._bytes

    def get(self, key: str, now: float) -> Entry | None:
        item = self.blob(key, now)
        if item is None:
            return None
        entry = self._hot.get(key)
        if entry is None:
            entry = unpack(item)
            self._remember(key, entry)
        else:
            self._hot.move_to_end(key)
        return entry

    def blob(self, key: str, now: float) -> builtins.bytes | None:
        """The stored form of a live entry, without decoding it, as recently used as `get`:
        what a caller derived from an entry stays valid while this is the same object (a
        `put` always stores a new one)."""
        item = self._items.get(key)
        if item is None:
            return None
        if _READ_HEAD(item)[0] <= now:
            self._drop(key)
            return None
        self._items.move_to_end(key)
        return item

    def put(self, key: str, entry: Entry, now: float) -> bool:
        """Store `entry`; False when it can never fit or is already past use."""
        size = entry.size()
        if size > self.max_bytes or size > MAX_SIZE or entry.keep_until <= now:
            return False
        if key in self._items:
            self._drop(key)  # from the hot entries too: `key` goes in at their young end
        # Not kept decoded: only a read (`get`) makes a key hot. A miss-heavy load would
        # otherwise free each entry `hot_entries` stores later, its objects cold by then.
        self._items[key] = pack(entry, size, self._packer, self._kinds)
        self._bytes += size
        if self._group_of is not None:
            group = self._group_of(key)
            if group != key:  # a key that is its own group takes no slot (see `_groups`)
                self._index(group, key)
        while self._bytes > self.max_bytes:
            oldest = next(iter(self._items))
            self._drop(oldest)
            self.evictions += 1
        return True

    def delete(self, key: str) -> bool:
        if key in self._items:
            self._drop(key)
            return True
        return False

    def delete_prefix(self, prefix: str) -> int:
        doomed = [key for key in self._items if key.startswith(prefix)]
        for key in doomed:
            self._drop(key)
        return len(doomed)

    def delete_group(self, group: str) -> int:
        """Delete every key in `group` (see `group_of`); needs the index."""
        keys = self._groups.get(group)
        doomed = [] if keys is None else [keys] if isinstance(keys, str) else list(keys)
        if group in self._items:
            doomed.append(group)
        for key in doomed:
            self._drop(key)
        return len(doomed)

    def key_list(self) -> list[str]:
        """A copy, oldest first."""
        return list(self._items)

    def items(self) -> Iterator[tuple[str, Entry]]:
        """Every entry, oldest first, decoded as it is reached; mutating the store meanwhile
        is safe (the iteration runs over a copy)."""
        for key, stored in list(self._items.items()):
            yield key, self._hot.get(key) or unpack(stored)

    def raw_items(self) -> list[tuple[str, builtins.bytes]]:
        """(key, stored form) of every entry, oldest first: for writers that decode off the
        event loop with `unpack` (the snapshot)."""
        return list(self._items.items())

    def clear(self) -> None:
        self._items.clear()
        self._hot.clear()
        self._groups.clear()
        self._bytes = 0

    def _remember(self, key: str, entry: Entry) -> None:
        self._hot[key] = entry
        self._hot.move_to_end(key)
        if len(self._hot) > self._hot_max:
            self._hot.popitem(last=False)

    def _drop(self, key: str) -> None:
        size = _READ_HEAD(self._items.pop(key))[1]
        self._hot.pop(key, None)
        self._bytes -= size
        if self._group_of is not None:
            self._unindex(self._group_of(key), key)

    def _index(self, group: str, key: str) -> None:
        if group == key:
            return
        found = self._groups.get(group)
        if found is None:
            self._groups[group] = key
        elif isinstance(found, str):
            if found != key:
                self._groups[group] = {found, key}
        else:
            found.add(key)

    def _unindex(self, group: str, key: str) -> None:
        if group == key:
            return
        found = self._groups.get(group)
        if found == key:
            del self._groups[group]
        elif isinstance(found, set):
            found.discard(key)
            if len(found) == 1:
                self._groups[group] = found.pop()
