"""The memory tier (L1): a bounded LRU of entries, by bytes.

Owns: which entries stay in this process and for how long they are kept (`keep_until`).
Must not: decide whether an entry is fresh or usable; read the clock (callers pass `now`).

Plain `OrderedDict` rather than aiocache's memory cache: that one has no size bound and arms one
timer per key. Entries are held as objects (no encode on the hot path); `codec` is used where
bytes cross a boundary (shared tier, snapshot).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator

from proxy.model import Entry


class MemoryStore:
    __slots__ = ("_bytes", "_group_of", "_groups", "_items", "evictions", "max_bytes")

    def __init__(self, max_bytes: int, group_of: Callable[[str], str] | None = None) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, tuple[Entry, int]] = OrderedDict()
        self._bytes = 0
        self.evictions = 0
        # Optional secondary index (e.g. route + path -> keys of every query and variant), so
        # invalidating one URL after a write does not scan the whole store.
        self._group_of = group_of
        self._groups: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self._items)

    @property
    def bytes(self) -> int:
        return self._bytes

    def get(self, key: str, now: float) -> Entry | None:
        item = self._items.get(key)
        if item is None:
            return None
        entry = item[0]
        if entry.keep_until <= now:
            self._drop(key)
            return None
        self._items.move_to_end(key)
        return entry

    def put(self, key: str, entry: Entry, now: float) -> bool:
        """Store `entry`; False when it can never fit or is already past use."""
        size = entry.size()
        if size > self.max_bytes or entry.keep_until <= now:
            return False
        if key in self._items:
            self._drop(key)
        self._items[key] = (entry, size)
        self._bytes += size
        if self._group_of is not None:
            self._groups.setdefault(self._group_of(key), set()).add(key)
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
        if not keys:
            return 0
        doomed = list(keys)
        for key in doomed:
            self._drop(key)
        return len(doomed)

    def items(self) -> Iterator[tuple[str, Entry]]:
        """Snapshot view, oldest first; safe to mutate the store while iterating the result."""
        return iter([(key, item[0]) for key, item in self._items.items()])

    def clear(self) -> None:
        self._items.clear()
        self._groups.clear()
        self._bytes = 0

    def _drop(self, key: str) -> None:
        _, size = self._items.pop(key)
        self._bytes -= size
        if self._group_of is not None:
            group = self._group_of(key)
            keys = self._groups.get(group)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._groups[group]
