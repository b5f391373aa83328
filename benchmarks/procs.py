"""Process plumbing for the suite: free ports, waiting for a listener, owned subprocesses, RSS.

Owns the lifecycle of every child process the suite starts: each one is registered with a
`ProcessGroup` and stopped (SIGTERM, then SIGKILL after a grace period) when the group closes.
It must not leave a process behind, and it only ever talks to 127.0.0.1.
`free_port` is the project's one free-port helper: tests import it from here (tests may import
benchmarks; benchmarks never import tests).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


async def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """Wait, without blocking the event loop, until `port` accepts connections; raise
    StartError if `proc` exits first or nothing listens within `timeout`."""
    import asyncio

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StartError(f"process exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection(HOST, port)
            writer.close()
            await writer.wait_closed()
            return
        await asyncio.sleep(0.05)
    raise StartError(f"nothing listening on {port} after {timeout}s")


class StartError(RuntimeError):
    """A child process did not come up; the message carries the tail of its output."""


@dataclass
class Child:
    """One owned subprocess and the file its stdout/stderr go to."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output_tail(self, limit: int = 2000) -> str:
        self.log_file.flush()
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return ""
        return data[-limit:].decode("utf-8", "replace")

    def wait_port(self, port: int, timeout: float = 15.0) -> None:
        """Block until `port` accepts connections; raise StartError if the child dies first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise StartError(f"{self.name} exited with {self.proc.returncode}: {self.output_tail()}")
            if port_open(port):
                return
            time.sleep(0.05)
        raise StartError(f"{self.name} did not listen on {port} in {timeout}s: {self.output_tail()}")

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the child's process group (workers included), SIGKILL if it lingers."""
        if self.alive():
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.proc.wait(timeout=grace)
        # Workers forked by the child share its process group; make sure none outlive it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.log_file.close()

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)


# Scratch files (logs, nginx's proxy_cache files) in memory when the machine has a tmpfs: nginx
# writes a cache file per miss, and on a disk its cost grew run after run (63 -> 580 us per
# miss in one session) with the journal and discards of the runs before.
SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


@dataclass
class ProcessGroup:
    """Every child of one suite run; `close()` stops them in reverse start order."""

    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="rproxy-bench-", dir=SCRATCH)))
    children: list[Child] = field(default_factory=list)

    def start(
        self, name: str, argv: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> Child:
        log_path = self.workdir / f"{name}.log"
        log_file = log_path.open("wb")
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), full_env.get("PYTHONPATH", "")) if p
        )
        if env:
            full_env.update(env)
        proc = subprocess.Popen(
            list(argv),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # A user's --config may hold paths relative to where they run us. `python -m` puts
            # its directory first on the import path: another checkout's build runs from its own.
            cwd=cwd or os.getcwd(),
            env=full_env,
            start_new_session=True,  # own process group, so stop() reaches forked workers
        )
        child = Child(name=name, proc=proc, log_path=log_path, log_file=log_file)
        self.children.append(child)
        return child

    def start_python(
        self, name: str, module: str, args: Sequence[str], *, env: dict[str, str] | None = None
    ) -> Child:
        return self.start(name, [sys.executable, "-m", module, *args], env=env)

    def stop(self, child: Child) -> None:
        child.stop()
        if child in self.children:
            self.children.remove(child)

    def close(self) -> None:
        while self.children:
            self.children.pop().stop()
        if not os.environ.get("BENCH_KEEP_WORKDIR"):
            shutil.rmtree(self.workdir, ignore_errors=True)


@contextlib.contextmanager
def process_group() -> Iterator[ProcessGroup]:
    group = ProcessGroup()
    try:
        yield group
    finally:
        group.close()


def _children_of(pid: int) -> list[int]:
    kids: list[int] = []
    task_dir = Path(f"/proc/{pid}/task")
    try:
        tasks = list(task_dir.iterdir())
    except OSError:
        return kids
    for task in tasks:
        try:
            text = (task / "children").read_text()
        except OSError:
            continue
        kids.extend(int(tok) for tok in text.split())
    return kids


def _tree(pid: int) -> list[int]:
    """A process and its live descendants (proxy and nginx workers count too)."""
    out: list[int] = []
    stack = [pid]
    while stack:
        current = stack.pop()
        if current in out:
            continue
        out.append(current)
        stack.extend(_children_of(current))
    return out


def rss_bytes(pid: int) -> int:
    """VmRSS of one process from /proc (0 when unavailable)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


def tree_rss_bytes(pid: int) -> int:
    """VmRSS of a process plus all its descendants."""
    return sum(rss_bytes(p) for p in _tree(pid))


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process from /proc/PID/stat (0.0 when it is gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    # The command name may hold spaces and parentheses: fields start after the last ")".
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (proc(5) 14, 15)


def tree_cpu_seconds(pid: int) -> float:
    """CPU of a server and its live workers: what one request costs the machine, not the client."""
    return sum(cpu_seconds(p) for p in _tree(pid))
