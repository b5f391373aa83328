"""Transaction log: one compact JSON line per request, written off the event loop.

Owns: serialising a record the caller built, a bounded queue, and the one writer thread that
drains it to stdout or a file (appending). When the writer falls behind (slow disk, a stalled
stdout pipe) lines are dropped and counted, so a logging problem never becomes a latency one.

Must not: block the event loop on disk I/O, read the clock (the caller puts `time` in the record),
decide what a record contains, or redact (callers pass already-redacted fields; see redact.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import sys
import threading
from typing import Any, Final, cast

# Lines the writer joins into one write() call: fewer syscalls under load, and with O_APPEND
# one write per batch keeps lines whole when several worker processes share a file.
_MAX_BATCH_LINES: Final = 256
# Lines gather on the event loop first and cross to the writer thread as one item: a hand-off
# per line woke the thread, and fought the loop for the GIL, on every request.
_FLUSH_LINES: Final = 128
_FLUSH_AFTER: Final = 0.05  # seconds a quiet proxy keeps a line before handing it over
_STOP: Final = object()


class AccessLog:
    """`open(dest)`, then `write(record)` from the event loop, then `await close()`."""

    def __init__(self, max_queue: int = 10_000) -> None:
        if max_queue < 1:
            raise ValueError("max_queue must be >= 1")
        self._max_queue = max_queue
        self._queue: queue.Queue[object] | None = None
        self._thread: threading.Thread | None = None
        self._fd: int | None = None
        self.dest = "off"
        self.dropped = 0  # queue full: the writer is behind
        self.rejected = 0  # the record could not be serialised as strict JSON
        self.write_errors = 0  # OSError from the file or stdout (disk full, closed pipe)
        self.written = 0  # lines handed to the OS (updated by the writer thread)
        self._pending: list[str] = []
        # One encoder for every line: json.dumps with options builds a new one per call.
        self._encode = json.JSONEncoder(separators=(",", ":"), default=str, allow_nan=False).encode
        self._timer: asyncio.TimerHandle | None = None

    @property
    def enabled(self) -> bool:
        return self._queue is not None

    def open(self, dest: str) -> None:
        """Start logging to "stdout", a file path (created, appended), or nowhere ("off").

        A file that cannot be opened raises OSError here, at startup, not later in the thread.
        """
        if self._queue is not None:
            raise RuntimeError("access log already open; close() it first")
        self.dest = dest
        if dest == "off":
            return
        if dest != "stdout":
            self._fd = os.open(dest, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        self._queue = queue.Queue(max(1, self._max_queue // _FLUSH_LINES))
        self._thread = threading.Thread(
            target=self._run, args=(self._queue, self._fd), name="access-log", daemon=True
        )
        self._thread.start()

    def write(self, record: dict[str, Any]) -> None:
        """Queue one record as a JSON line; never blocks. A no-op when the log is off."""
        q = self._queue
        if q is None:
            return
        try:
            # default=str: datetimes, enums and the like become text rather than an exception.
            line = self._encode(record)
        except (TypeError, ValueError):
            self.rejected += 1
            return
        self._pending.append(line)
        if len(self._pending) >= _FLUSH_LINES:
            self.flush()
        elif self._timer is None:
            try:
                self._timer = asyncio.get_running_loop().call_later(_FLUSH_AFTER, self.flush)
            except RuntimeError:  # no loop (a script): hand it over now
                self.flush()

    def flush(self) -> None:
        """Hand the lines gathered so far to the writer; never blocks (a full queue drops)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        q, lines = self._queue, self._pending
        if q is None or not lines:
            return
        self._pending = []
        try:
            q.put_nowait(("\n".join(lines) + "\n", len(lines)))
        except queue.Full:
            self.dropped += len(lines)

    async def close(self) -> None:
        """Flush what is queued, stop the writer and close the file. Safe to call twice."""
        self.flush()
        q, thread, fd = self._queue, self._thread, self._fd
        self._queue = self._thread = self._fd = None
        if q is None or thread is None:
            return
        # put() may wait for room while the writer drains: do that wait off the event loop.
        await asyncio.to_thread(q.put, _STOP)
        await asyncio.to_thread(thread.join)
        if fd is not None:
            os.close(fd)

    def _run(self, q: queue.Queue[object], fd: int | None) -> None:
        while True:
            item = q.get()
            batch: list[str] = []
            count = 0
            stop = item is _STOP
            while not stop:
                text, lines = cast(tuple[str, int], item)
                batch.append(text)
                count += lines
                if count >= _MAX_BATCH_LINES:
                    break
                try:
                    item = q.get_nowait()
                except queue.Empty:
                    break
                stop = item is _STOP
            if batch:
                self._emit(fd, "".join(batch), count)
            if stop:
                return

    def _emit(self, fd: int | None, text: str, lines: int) -> None:
        try:
            if fd is None:
                sys.stdout.write(text)
                sys.stdout.flush()
            else:
                data = text.encode("utf-8", "backslashreplace")
                while data:
                    n = os.write(fd, data)
                    data = data[n:]
            self.written += lines
        except (OSError, ValueError):
            # ValueError: stdout was closed under us. Keep draining so close() still returns.
            self.write_errors += 1
