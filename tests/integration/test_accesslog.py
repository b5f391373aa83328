"""AccessLog against real files and pipes, driven from the event loop."""

from __future__ import annotations

import datetime
import json
import math
import os
import threading
from pathlib import Path

import pytest

from proxy.accesslog import AccessLog


def read_lines(path: Path) -> list[dict[str, object]]:
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


async def test_every_line_is_compact_json_in_order(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = AccessLog()
    log.open(str(path))
    assert log.enabled
    n = 2_000
    for i in range(n):
        log.write({"time": "2025-11-29T07:06:40Z", "i": i, "route": "prices", "path": "/a?b=1"})
    await log.close()
    records = read_lines(path)
    assert [r["i"] for r in records] == list(range(n))
    assert log.written == n and log.dropped == 0
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first == '{"time":"2025-11-29T07:06:40Z","i":0,"route":"prices","path":"/a?b=1"}'


async def test_appends_to_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    path.write_text('{"old":true}\n', encoding="utf-8")
    log = AccessLog()
    log.open(str(path))
    log.write({"new": True})
    await log.close()
    assert read_lines(path) == [{"old": True}, {"new": True}]


async def test_off_is_a_no_op(tmp_path: Path) -> None:
    log = AccessLog()
    log.open("off")
    assert not log.enabled
    log.write({"i": 1})
    await log.close()
    assert log.written == 0 and log.dropped == 0
    assert list(tmp_path.iterdir()) == []


async def test_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    log = AccessLog()
    log.open("stdout")
    log.write({"status": 200, "x_cache": "HIT"})
    log.write({"status": 503, "x_cache": "STALE"})
    await log.close()
    out = capsys.readouterr().out.splitlines()
    assert [json.loads(line) for line in out] == [
        {"status": 200, "x_cache": "HIT"},
        {"status": 503, "x_cache": "STALE"},
    ]


async def test_unserialisable_records_are_rejected_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = AccessLog()
    log.open(str(path))
    log.write({"latency": math.nan})  # strict JSON has no NaN
    log.write({"when": datetime.date(2025, 1, 2), "ok": "caf\u00e9"})  # str() fallback, unicode
    await log.close()
    assert log.rejected == 1
    assert read_lines(path) == [{"when": "2025-01-02", "ok": "caf\u00e9"}]


async def test_full_queue_drops_and_counts_instead_of_blocking() -> None:
    # A pipe nobody reads stands in for a stalled disk or stdout consumer: once its buffer is
    # full the writer thread blocks, the tiny queue fills, and write() must drop, not wait.
    read_fd, write_fd = os.pipe()
    log = AccessLog(max_queue=4)
    log.open(f"/dev/fd/{write_fd}")
    n = 400
    pad = "x" * 1000  # ~1 KB lines: the 64 KB pipe buffer holds a few dozen
    for i in range(n):
        log.write({"i": i, "pad": pad})
    assert log.dropped > 0

    received = bytearray()

    def drain() -> None:
        while chunk := os.read(read_fd, 65536):
            received.extend(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    await log.close()
    os.close(write_fd)
    reader.join()
    os.close(read_fd)

    got = [json.loads(line)["i"] for line in received.decode().splitlines()]
    assert len(got) + log.dropped == n
    assert got == sorted(got) and got[0] == 0  # order kept; what was kept was the earliest
    assert log.written == len(got)


async def test_open_errors_surface_at_open(tmp_path: Path) -> None:
    log = AccessLog()
    with pytest.raises(OSError):
        log.open(str(tmp_path / "missing-dir" / "access.log"))
    assert not log.enabled


async def test_double_open_raises_and_reopen_after_close_works(tmp_path: Path) -> None:
    log = AccessLog()
    log.open(str(tmp_path / "a.log"))
    with pytest.raises(RuntimeError):
        log.open(str(tmp_path / "b.log"))
    await log.close()
    await log.close()  # idempotent
    log.open(str(tmp_path / "b.log"))
    log.write({"to": "b"})
    await log.close()
    assert read_lines(tmp_path / "b.log") == [{"to": "b"}]
    assert (tmp_path / "a.log").read_text() == ""


async def test_a_file_is_written_by_the_loop_and_a_pipe_by_the_writer_thread(tmp_path: Path) -> None:
    # A regular file: the page cache takes the write at once, so the loop writes it (issue 12);
    # a pipe can stall, so only the writer thread ever waits on it.
    path = tmp_path / "access.log"
    log = AccessLog()
    log.open(str(path))
    assert not log.threaded
    log.write({"i": 1})
    log.flush()
    assert path.read_text(encoding="utf-8") == '{"i":1}\n'  # in the file when flush returns
    assert log.written == 1
    await log.close()
    read_fd, write_fd = os.pipe()
    piped = AccessLog()
    piped.open(f"/dev/fd/{write_fd}")
    assert piped.threaded
    piped.write({"i": 2})
    await piped.close()
    os.close(write_fd)
    assert os.read(read_fd, 100) == b'{"i":2}\n'
    os.close(read_fd)


async def test_stderr_is_a_destination_and_stays_open(capfd: pytest.CaptureFixture[str]) -> None:
    log = AccessLog()
    log.open("stderr")
    log.write({"status": 200})
    await log.close()
    os.write(2, b"still open\n")  # close() closed its own copy of the descriptor
    assert capfd.readouterr().err.splitlines() == ['{"status":200}', "still open"]
    assert not (Path.cwd() / "stderr").exists()
