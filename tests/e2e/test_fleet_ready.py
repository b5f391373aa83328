"""`server.workers: 2`: ready means every worker listens (issue 12).

A real `python -m proxy run` with two workers. Worker 1 is paused (SIGSTOP) before it can bind,
so the moment between "one worker listens" and "both do" lasts as long as the test needs: /ready
must say 503 through it and 200 only once the second listener exists. Listeners are counted
from the kernel's table (/proc/net/tcp), not from anything the proxy says. Polling loops have a
deadline as a safety net; nothing waits for time to pass.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest

from tests.e2e.test_cli import Answer, Running, http, running
from tests.e2e.test_fleet import fleet_config
from tests.waiting import until_sync

DEADLINE = 30.0
T = TypeVar("T")

pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")


def until(probe: Callable[[], T | None], what: str, proc: Running) -> T:
    """Poll `probe` until it returns a value; fail with the proxy's output after DEADLINE."""
    found: list[T] = []

    def ready() -> bool:
        value = probe()
        if value is not None:
            found.append(value)
        return value is not None

    until_sync(ready, DEADLINE, lambda: f"never {what}:\n{proc.output()}", step=0.01)
    return found[0]


def listeners(port: int) -> int:
    """Sockets listening on 127.0.0.1:`port` in this network namespace (state 0A = LISTEN)."""
    local = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as table:
        return sum(1 for line in table if line.split()[1:4:2] == [local, "0A"])


def worker_pid(supervisor: int, index: int) -> int | None:
    """The pid of the supervisor's child running `_worker --index <index>`, once it exec'd."""
    try:
        children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    except OSError:
        return None
    for child in children:
        try:
            argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"_worker" in argv and argv[argv.index(b"--index") + 1] == str(index).encode():
            return int(child)
    return None


def ready(admin: int) -> Answer | None:
    try:
        return http("GET", f"http://127.0.0.1:{admin}/ready", timeout=5)
    except OSError:  # the admin listener is not up yet
        return None


@contextmanager
def paused(pid: int) -> Iterator[None]:
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def test_ready_only_once_every_worker_listens(tmp_path: Path) -> None:
    route = '{name: prices, match: "/api/prices/{sku}", upstream: vendor, cache: {ttl: 60s}}'
    config, port, admin = fleet_config(tmp_path, "http://127.0.0.1:9", route)
    with running("run", "--config", str(config)) as proc:
        supervisor = proc.proc.pid
        try:
            second = until(lambda: worker_pid(supervisor, 1), "saw worker 1 start", proc)
            with paused(second):
                assert listeners(port) < 2, "worker 1 listened before it could be paused"
                until(lambda: listeners(port) == 1 or None, "saw worker 0 listen", proc)
                # worker 0 reports once its admin listener is up too, just after the port opens
                waiting = until(
                    lambda: a if (a := ready(admin)) and a.json().get("listening") == [0] else None,
                    "saw worker 0 reported as listening",
                    proc,
                )
                assert waiting.status == 503, waiting.body
                assert waiting.json() == {
                    "ready": False,
                    "error": "not_ready",
                    "message": "1 of 2 workers listening",
                    "listening": [0],
                    "workers": 2,
                }
                assert "workers on http://" not in proc.output()  # nor announced as serving
            answer = until(lambda: a if (a := ready(admin)) and a.status == 200 else None, "got ready", proc)
            assert listeners(port) == 2
            assert [w["body"] for w in answer.json()["workers"]] == [{"ready": True}] * 2
            proc.wait_for(r"2 workers on http://")

            # A worker that dies is not listening until its replacement says it is.
            os.kill(second, signal.SIGKILL)
            gone = until(lambda: a if (a := ready(admin)) and a.status == 503 else None, "got 503", proc)
            assert gone.json()["ready"] is False  # from the pipe, or from asking the dead worker
            until(lambda: a if (a := ready(admin)) and a.status == 200 else None, "got ready again", proc)
            assert listeners(port) == 2
            assert worker_pid(supervisor, 1) not in (None, second)
        finally:
            if proc.proc.poll() is None:
                assert proc.stop(signal.SIGTERM) == 0
