"""Last-known-good on disk: the memory tier's good entries survive a restart.

Owns: the snapshot file format, writing it atomically off the event loop (periodically and at
shutdown), and loading it into the memory tier at start (`Snapshotter`, kept on the app under
`SNAPSHOT`). Must not: decide what a loaded entry may be used for (entries keep their absolute
deadlines; `freshness` decides), encode entries itself (that is `codec`), or ever stop the proxy
from starting: a missing, truncated or corrupt file is logged and what could be read is used.

File format, version 1 (all integers big-endian):

    file    = header record* end
    header  = MAGIC (8 bytes) | u16 version | u16 reserved (0)
    record  = u32 length | u32 crc32(body) | body
    body    = u32 key length | key (UTF-8) | codec.encode(entry)
    end     = u32 0xFFFFFFFF | u32 number of records

The magic is PNG-style (a high byte, then CR LF and ^Z), so a file mangled by a text-mode copy
is refused at once (PNG spec, section 12.12). A file without the end marker was cut short; a
record whose checksum fails stops the read (its length cannot be trusted either); a record
that checks out but does not decode (another codec version) is skipped.

Writes follow the usual durable-rename recipe: temp file in the same directory, fsync, rename
over the old file, fsync the directory (as SQLite and LMDB do; see also
https://lwn.net/Articles/457667/). A crash at any point leaves the previous snapshot whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
import threading
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from aiohttp import web

from proxy.cache import Cache
from proxy.clock import Clock
from proxy.core.keys import SEP, VARY_SEP
from proxy.core.model import Entry
from proxy.runtime import Live
from proxy.store.codec import CodecError, decode, encode
from proxy.store.memory import unpack
from proxy.telemetry import Telemetry

log = logging.getLogger("proxy.store.snapshot")

MAGIC = b"\x89RPLKG\r\n"
FORMAT_VERSION = 1
END = 0xFFFFFFFF
_HEADER = struct.Struct(">8sHH")
_RECORD = struct.Struct(">II")
_KEY_LEN = struct.Struct(">I")
_BUFFER = 1 << 20

Record = tuple[str, Entry]


@dataclass(frozen=True, slots=True)
class LoadResult:
    """What a read found. `problem` is None only for a complete, clean file."""

    records: tuple[Record, ...]
    problem: str | None = None
    skipped: int = 0  # records that checked out but did not decode
    missing: bool = False


@dataclass(frozen=True, slots=True)
class WriteResult:
    entries: int
    bytes: int
    skipped: int = 0  # entries the codec could not encode


# -- the format (no file system here: any binary stream) ---------------------------------------


def good_entries(items: Iterable[Record], now: float) -> list[Record]:
    """The entries worth keeping across a restart: 2xx and not yet past `keep_until`."""
    return [(k, e) for k, e in items if 200 <= e.status < 300 and e.keep_until > now]


def dump(records: Iterable[Record], out: BinaryIO) -> WriteResult:
    """Write a whole snapshot to `out`; an entry the codec refuses is skipped, not fatal."""
    out.write(_HEADER.pack(MAGIC, FORMAT_VERSION, 0))
    count = skipped = 0
    size = _HEADER.size
    for key, entry in records:
        try:
            raw_key = key.encode("utf-8")
            body = _KEY_LEN.pack(len(raw_key)) + raw_key + encode(entry)
        except (ValueError, TypeError, OverflowError):  # UnicodeError is a ValueError
            skipped += 1
            continue
        out.write(_RECORD.pack(len(body), zlib.crc32(body)))
        out.write(body)
        count += 1
        size += _RECORD.size + len(body)
    out.write(_RECORD.pack(END, count & 0xFFFFFFFF))
    return WriteResult(count, size + _RECORD.size, skipped)


def parse(stream: BinaryIO, size: int) -> LoadResult:
    """Read a snapshot of `size` bytes from `stream`; never raises on any content."""
    head = stream.read(_HEADER.size)
    if len(head) < _HEADER.size:
        return LoadResult((), "truncated: no complete header")
    magic, version, reserved = _HEADER.unpack(head)
    if magic != MAGIC:
        return LoadResult((), "not a snapshot file (bad magic)")
    if version != FORMAT_VERSION or reserved != 0:
        return LoadResult((), f"snapshot format {version} (flags {reserved}) is not readable here")
    records: list[Record] = []
    skipped, pos = 0, _HEADER.size
    while True:
        raw = stream.read(_RECORD.size)
        pos += len(raw)
        if len(raw) < _RECORD.size:
            return LoadResult(tuple(records), "truncated: the end marker is missing", skipped)
        length, crc = _RECORD.unpack(raw)
        if length == END:
            return LoadResult(tuple(records), _end_problem(stream, crc, len(records) + skipped), skipped)
        if length > size - pos:
            return LoadResult(
                tuple(records), f"truncated inside record {len(records) + skipped + 1}", skipped
            )
        body = stream.read(length)
        pos += len(body)
        if len(body) < length:
            return LoadResult(tuple(records), "truncated while reading", skipped)
        if zlib.crc32(body) != crc:
            return LoadResult(
                tuple(records), f"corrupt: checksum mismatch in record {len(records) + skipped + 1}", skipped
            )
        record = _decode_record(body)
        if record is None:
            skipped += 1
        else:
            records.append(record)


def _end_problem(stream: BinaryIO, count: int, seen: int) -> str | None:
    if count != seen & 0xFFFFFFFF:
        return f"corrupt: the end marker counts {count} records, found {seen}"
    if stream.read(1):
        return "corrupt: bytes after the end marker"
    return None


def _decode_record(body: bytes) -> Record | None:
    if len(body) < _KEY_LEN.size:
        return None
    (key_len,) = _KEY_LEN.unpack_from(body)
    end = _KEY_LEN.size + key_len
    if end > len(body):
        return None
    try:
        return body[_KEY_LEN.size : end].decode("utf-8"), decode(body[end:])
    except (UnicodeDecodeError, CodecError):
        return None


# -- files (blocking: call from a worker thread) -------------------------------------------------


def write_snapshot(path: str, records: Iterable[Record]) -> WriteResult:
    """Atomically replace `path` with a snapshot of `records`; creates the parent directory."""
    target = os.path.abspath(path)
    directory, base = os.path.split(target)
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{base}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        # 0o600: the file holds vendor responses, which may be private to this deployment.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb", buffering=_BUFFER) as out:
            result = dump(records, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)
    return result


def read_snapshot(path: str) -> LoadResult:
    """Read `path`; a missing or unreadable file is a LoadResult with a problem, not an error."""
    try:
        with open(path, "rb", buffering=_BUFFER) as stream:
            return parse(stream, os.fstat(stream.fileno()).st_size)
    except FileNotFoundError:
        return LoadResult((), "no snapshot file yet", missing=True)
    except OSError as exc:
        return LoadResult((), f"unreadable: {exc.strerror or exc}")


def sweep_temp_files(path: str) -> int:
    """Remove temp files left by writers that died mid-write (kill -9, power loss)."""
    directory, base = os.path.split(os.path.abspath(path))
    prefix, removed = f".{base}.", 0
    try:
        names = os.listdir(directory)
    except OSError:
        return 0
    for name in names:
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        pid_text = name[len(prefix) :].split(".", 1)[0]
        if pid_text.isdigit() and int(pid_text) != os.getpid() and not _alive(int(pid_text)):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(directory, name))
                removed += 1
    return removed


def _prepare(path: str) -> None:
    """Create the directory now so a bad path shows at start, and clear dead writers' files."""
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    except OSError as exc:
        log.warning("snapshot %s: cannot create its directory (%s); writes will fail", path, exc)
        return
    sweep_temp_files(path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, it is someone else's
        return True
    return True


def _fsync_directory(directory: str) -> None:
    """Make the rename itself durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# -- the shell: hooks for app startup and cleanup ------------------------------------------------


class Snapshotter:
    """Loads the snapshot at start, writes it every `cache.snapshot_interval` and at close.

    The path and interval are read from the live config on every write, so a reload that
    moves the file is honoured. Writes never overlap: a thread lock serialises them and a write
    whose data is older than one already on disk is dropped.
    """

    def __init__(self, clock: Clock, live: Live, cache: Cache, telemetry: Telemetry) -> None:
        self.clock, self.live, self.cache, self.telemetry = clock, live, cache, telemetry
        self._lock = threading.Lock()
        self._seq = 0
        self._written_seq = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.loaded = 0
        self.writes = 0
        self.failures = 0
        self.last_result: WriteResult | None = None
        self.last_written_at: float | None = None
        self.last_error: str | None = None

    @property
    def path(self) -> str | None:
        return self.live.runtime.config.cache.snapshot

    async def load(self) -> int:
        """Put the snapshot's usable entries in the memory tier; returns how many."""
        path = self.path
        if path is None:
            return 0
        await asyncio.to_thread(_prepare, path)
        result = await asyncio.to_thread(read_snapshot, path)
        self.loaded = self._install(result.records)
        if result.problem is not None:
            self._report_problem(path, result)
        elif result.skipped:
            log.warning(
                "snapshot %s: %d entries in a format this version cannot read were skipped",
                path,
                result.skipped,
            )
        log.info("snapshot %s: %d of %d entries loaded", path, self.loaded, len(result.records))
        return self.loaded

    def _install(self, records: Sequence[Record]) -> int:
        now = self.clock.now()
        routes = self.live.runtime.by_name
        loaded = 0
        for key, entry in good_entries(records, now):
            rs = routes.get(key.split(SEP, 1)[0])
            if rs is None or rs.config.cache is None:
                continue  # the route is gone or no longer cached: its entries are too
            if not self.cache.memory.put(key, entry, now):
                continue
            loaded += 1
            if entry.vary:  # the lookup needs the primary key's Vary names to find the variant
                self.cache.remember_vary(key.split(VARY_SEP, 1)[0], entry.vary)
            if rs.last_good_at is None or rs.last_good_at < entry.stored_at:
                rs.last_good_at = entry.stored_at
        return loaded

    def _report_problem(self, path: str, result: LoadResult) -> None:
        kept = len(result.records)
        if result.missing:
            log.warning("snapshot %s: %s; starting with an empty cache", path, result.problem)
            return
        log.warning(
            "snapshot %s: %s; starting with the %d entries read before it", path, result.problem, kept
        )
        self.telemetry.event(
            "snapshot_damaged", self.clock.now(), path=path, problem=result.problem, entries_read=kept
        )

    def start(self) -> None:
        """Start the periodic writer (needs a running loop); a no-op without a path."""
        if self._task is None and self.path is not None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="snapshot-writer")

    async def _run(self) -> None:
        while not self._stop.is_set():
            interval = self.live.runtime.config.cache.snapshot_interval
            with contextlib.suppress(TimeoutError):
                # interval <= 0 disables periodic writes: only the one at shutdown remains.
                await asyncio.wait_for(self._stop.wait(), interval if interval > 0 else None)
            if not self._stop.is_set():
                await self.write()

    async def write(self) -> WriteResult | None:
        """Write the memory tier's good entries now; None when disabled, superseded or failed
        (failures are logged, counted and alerted, never raised)."""
        path = self.path
        if path is None:
            return None
        now = self.clock.now()
        items = self.cache.memory.raw_items()  # a copy of the blobs; decoded in the writer thread
        self._seq += 1
        try:
            result = await asyncio.to_thread(self._write_in_thread, path, items, now, self._seq)
        except Exception as exc:  # disk full, read-only, a file where the directory should be
            self.failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.error("snapshot %s: write failed: %s", path, self.last_error)
            self.telemetry.event(
                "snapshot_write_failed", self.clock.now(), level="error", path=path, error=self.last_error
            )
            return None
        if result is not None:
            self.writes += 1
            self.last_result = result
            self.last_written_at = now
            self.last_error = None
            log.debug("snapshot %s: %d entries, %d bytes", path, result.entries, result.bytes)
        return result

    def _write_in_thread(
        self, path: str, blobs: list[tuple[str, bytes]], now: float, seq: int
    ) -> WriteResult | None:
        with self._lock:
            if seq < self._written_seq:
                return None  # a newer copy of the store is on disk already
            items = [(key, unpack(blob)) for key, blob in blobs]
            result = write_snapshot(path, good_entries(items, now))
            self._written_seq = seq
            return result

    async def close(self) -> None:
        """Stop the periodic writer (letting a write in progress finish), then write once more."""
        self._stop.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.write()


SNAPSHOT = web.AppKey("snapshot", Snapshotter)
