"""Transaction log: one compact JSON line per request, written in batches.

Owns: serialising a record the caller built (or taking a line it encoded), gathering lines on
the event loop, and writing them to stdout or a file (appending), one write() per batch of up to
`_FLUSH_LINES` lines or `_FLUSH_AFTER` seconds.

Where the write happens (issue 12): a regular file is written by the loop itself, as nginx's
buffered `access_log` is: the write lands in the page cache, a copy and no wait for the disk,
while handing each batch to a thread cost more CPU than building the lines (the thread and the
loop trading the GIL). Should one such write ever take longer than `_SLOW_WRITE` (a saturated
disk the kernel throttles, a network filesystem), the writer thread takes over for good and a
warning says so. Pipes, terminals and stdout always go through the writer thread and its bounded
queue: when it falls behind (a stalled consumer) lines are dropped and counted, so a logging
problem never becomes a latency one.

Must not: wait on a slow disk or pipe from the loop, read the clock but as a stopwatch around a
write (the caller puts `time` in the record), decide what a record contains, or redact (callers
pass already-redacted fields; see redact.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import stat
import sys
import threading
import time
from typing import Any, Final, cast

# Lines the writer thread joins into one write() call: fewer syscalls under load, and with
# O_APPEND one write per batch keeps lines whole when several worker processes share a file.
_MAX_BATCH_LINES: Final = 256
# Lines gather on the event loop first, then go out as one write (a file) or cross to the writer
# thread as one item: a hand-off per line woke the thread, and fought the loop for the GIL.
_FLUSH_LINES: Final = 128
_FLUSH_AFTER: Final = 0.05  # seconds a quiet proxy keeps a line before handing it over
_SLOW_WRITE: Final = 0.02  # seconds one write to a file may take on the loop, see above
_STOP: Final = object()
log = logging.getLogger("proxy.accesslog")


class AccessLog:
    """`open(dest)`, then `write(record)` from the event loop, then `await close()`."""

    def __init__(self, max_queue: int = 10_000) -> None:
        if max_queue < 1:
            raise ValueError("max_queue must be >= 1")
        self._max_queue = max_queue
        self._queue: queue.Queue[object] | None = None
        self._writer: threading.Thread | None = None
        self._fd: int | None = None
        self._direct = False  # the loop writes the file itself (see the module docstring)
        self.dest = "off"
        self.dropped = 0  # queue full: the writer is behind
        self.rejected = 0  # the record could not be serialised as strict JSON
        self.write_errors = 0  # OSError from the file or stdout (disk full, closed pipe)
        self.written = 0  # lines handed to the OS (by the loop, or the writer thread)
        self._pending: list[str] = []
        # One encoder for every line: json.dumps with options builds a new one per call.
        self._encode = json.JSONEncoder(separators=(",", ":"), default=str, allow_nan=False).encode
        self._timer: asyncio.TimerHandle | None = None

    @property
    def enabled(self) -> bool:
        return self._queue is not None

    def open(self, dest: str) -> None:
        """Start logging to "stdout", "stderr", a file path (created, appended), or nowhere ("off").

        A file that cannot be opened raises OSError here, at startup, not later in the thread.
        """
        if self._queue is not None:
            raise RuntimeError("access log already open; close() it first")
        self.dest = dest
        if dest == "off":
            return
        if dest == "stderr":  # a copy of the descriptor: close() must not close stderr itself
            self._fd = os.dup(2)
        elif dest != "stdout":
            self._fd = os.open(dest, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        if self._fd is not None:
            self._direct = stat.S_ISREG(os.fstat(self._fd).st_mode)
        self._queue = queue.Queue(max(1, self._max_queue // _FLUSH_LINES))
        if not self._direct:
            self._start_writer(self._queue)

    @property
    def threaded(self) -> bool:
        """Whether lines go through the writer thread (stdout, a pipe, or a file found slow)."""
        return self._writer is not None

    def _start_writer(self, q: queue.Queue[object]) -> None:
        self._writer = threading.Thread(target=self._run, args=(q, self._fd), name="access-log", daemon=True)
        self._writer.start()

    def write(self, record: dict[str, Any]) -> None:
        """Queue one record as a JSON line; never blocks. A no-op when the log is off."""
        if self._queue is None:
            return
        try:
            # default=str: datetimes, enums and the like become text rather than an exception.
            line = self._encode(record)
        except (TypeError, ValueError):
            self.rejected += 1
            return
        self.write_line(line)

    def write_line(self, line: str) -> None:
        """Queue one line the caller encoded (one JSON object, no newline); never blocks."""
        if self._queue is None:
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
        if self._direct and self._fd is not None:
            self._write_here(self._fd, q, lines)
            return
        try:
            q.put_nowait(("\n".join(lines) + "\n", len(lines)))
        except queue.Full:
            self.dropped += len(lines)

    def _write_here(self, fd: int, q: queue.Queue[object], lines: list[str]) -> None:
        """One write to the file from the loop; the writer thread from now on if it was slow."""
        started = time.perf_counter()
        self._emit(fd, "\n".join(lines) + "\n", len(lines))
        took = time.perf_counter() - started
        if took > _SLOW_WRITE:
            self._direct = False
            self._start_writer(q)
            log.warning(
                "access log: a write to %s took %.0f ms; the writer thread takes over", self.dest, took * 1e3
            )

    async def close(self) -> None:
        """Flush what is queued, stop the writer and close the file. Safe to call twice."""
        self.flush()
        q, thread, fd = self._queue, self._writer, self._fd
        self._queue = self._writer = self._fd = None
        self._direct = False
        if q is None:
            return
        if thread is None:  # the loop wrote everything itself
            if fd is not None:
                os.close(fd)
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
