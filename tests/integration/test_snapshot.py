"""Last-known-good survives restarts: the snapshot file, and proxies started from it.

The format is checked exhaustively on a small file (every cut, every flipped byte); the proxy
is restarted from a snapshot while the vendor is down; damaged files give a partial or empty
start, never a crash; and a writer killed with SIGKILL mid-write leaves the previous file whole.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import selectors
import signal
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from proxy.clock import FakeClock
from proxy.core.model import Entry
from proxy.store.snapshot import (
    END,
    MAGIC,
    SNAPSHOT,
    LoadResult,
    Snapshotter,
    dump,
    good_entries,
    parse,
    read_snapshot,
    sweep_temp_files,
    write_snapshot,
)
from tests.conftest import MakeProxy, Proxy
from tests.origin import Origin, Reply
from tests.routes import PRICES

ROOT = Path(__file__).resolve().parents[2]
PRICE = {"sku": "A1", "price": 9.5, "currency": "GBP"}
JSON_TYPE = {"Content-Type": "application/json"}


def entry(body: bytes = b'{"price": 1}', status: int = 200, keep_until: float = 2e9, **kw: Any) -> Entry:
    return Entry(
        status,
        (("Content-Type", "application/json"),),
        body,
        1e9,
        0.0,
        1e9 + 30,
        1e9 + 30,
        1e9 + 3600,
        keep_until,
        keep_until,
        **kw,
    )


RECORDS = [(f"prices\x1f/api/prices/A{i}", entry(f'{{"price": {i}}}'.encode())) for i in range(3)]


def dumped(records: list[tuple[str, Entry]]) -> bytes:
    out = io.BytesIO()
    dump(records, out)
    return out.getvalue()


def parsed(data: bytes) -> LoadResult:
    return parse(io.BytesIO(data), len(data))


# -- the format -----------------------------------------------------------------------------------


def test_round_trip_through_a_file(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "lkg.msgpack"  # the parent directory is created
    result = write_snapshot(str(path), RECORDS)
    assert (result.entries, result.bytes, result.skipped) == (3, path.stat().st_size, 0)
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_bytes().startswith(MAGIC)
    assert read_snapshot(str(path)) == LoadResult(tuple(RECORDS))
    assert sorted(os.listdir(path.parent)) == ["lkg.msgpack"]  # no temp file left behind


def test_an_empty_store_writes_a_valid_empty_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "lkg.msgpack"
    write_snapshot(str(path), [])
    assert read_snapshot(str(path)) == LoadResult(())


@pytest.mark.parametrize(
    ("status", "keep_until", "kept"),
    [
        (200, 2e9, True),
        (203, 2e9, True),
        (204, 2e9, True),
        (200, 1e9, False),  # past keep_until at now=1e9: nothing may use it
        (301, 2e9, False),
        (404, 2e9, False),
        (410, 2e9, False),
        (500, 2e9, False),
    ],
)
def test_only_good_entries_are_kept(status: int, keep_until: float, kept: bool) -> None:
    item = ("k", entry(status=status, keep_until=keep_until))
    assert good_entries([item], now=1e9) == ([item] if kept else [])


def test_every_cut_is_detected_and_keeps_a_prefix() -> None:
    data = dumped(RECORDS)
    for cut in range(len(data)):
        got = parsed(data[:cut])
        assert got.problem is not None, cut
        assert list(got.records) == RECORDS[: len(got.records)], cut
    assert parsed(data).problem is None


def test_every_flipped_byte_is_detected_and_keeps_a_prefix() -> None:
    data = dumped(RECORDS)
    for offset in range(len(data)):
        for flip in (0x01, 0x80, 0xFF):
            damaged = bytearray(data)
            damaged[offset] ^= flip
            got = parsed(bytes(damaged))
            assert got.problem is not None, (offset, flip)
            assert list(got.records) == RECORDS[: len(got.records)], (offset, flip)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "truncated: no complete header"),
        (b"<html>not a snapshot</html>", "not a snapshot file (bad magic)"),
        (os.urandom(4096).replace(MAGIC, b""), "not a snapshot file (bad magic)"),
        (MAGIC + b"\x00\x02\x00\x00", "snapshot format 2 (flags 0) is not readable here"),
        (dumped(RECORDS) + b"\x00", "corrupt: bytes after the end marker"),
        (
            dumped(RECORDS)[:-8] + END.to_bytes(4, "big") + (7).to_bytes(4, "big"),
            "corrupt: the end marker counts 7 records, found 3",
        ),
    ],
)
def test_damaged_files_name_their_problem(data: bytes, problem: str) -> None:
    got = parsed(data)
    assert got.problem == problem


def test_a_record_that_checks_out_but_does_not_decode_is_skipped() -> None:
    good = dumped(RECORDS)
    body = struct.pack(">I", 3) + b"key" + b"\x91\x09"  # a msgpack [9]: some future codec
    alien = struct.pack(">II", len(body), zlib.crc32(body)) + body
    head, first_end = good[:12], 12 + 8 + struct.unpack(">I", good[12:16])[0]
    rest = good[first_end:-8]
    data = head + good[12:first_end] + alien + rest + END.to_bytes(4, "big") + (4).to_bytes(4, "big")
    got = parsed(data)
    assert (got.problem, got.skipped, list(got.records)) == (None, 1, RECORDS)


def test_an_entry_the_codec_refuses_is_skipped_not_fatal(tmp_path: Path) -> None:
    odd = entry(etag="\udce9")  # a lone surrogate cannot be UTF-8 encoded
    path = tmp_path / "lkg.msgpack"
    result = write_snapshot(str(path), [RECORDS[0], ("bad", odd), RECORDS[1]])
    assert (result.entries, result.skipped) == (2, 1)
    assert list(read_snapshot(str(path)).records) == RECORDS[:2]


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    missing = read_snapshot(str(tmp_path / "nope.msgpack"))
    assert missing.missing and missing.records == ()
    a_directory = read_snapshot(str(tmp_path))
    assert not a_directory.missing and a_directory.problem is not None
    assert a_directory.problem.startswith("unreadable")


def test_sweep_removes_only_dead_writers_temp_files(tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    dead_pid = int(dead.stdout)
    names = [
        f".lkg.msgpack.{dead_pid}.1.tmp",
        f".lkg.msgpack.{os.getpid()}.1.tmp",
        f".lkg.msgpack.{os.getppid()}.1.tmp",
        ".other.msgpack.1.1.tmp",
        "lkg.msgpack",
    ]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    assert sweep_temp_files(str(tmp_path / "lkg.msgpack")) == 1
    assert sorted(os.listdir(tmp_path)) == sorted(names[1:])


# -- a proxy started from a snapshot -----------------------------------------------------------------

ROUTES = """
cache: {{snapshot: "{path}"}}
routes:
{PRICES}    cache: {{ttl: 30s, stale_if_error: 1h}}
    guards:
      - {{path: $.price, gt: 0}}
      - {{required: [$.sku, $.price]}}
  - name: plain
    match: /api/plain/{{name}}
    methods: [GET]
    upstream: vendor
    rewrite: /plain/{{name}}
    cache: {{ttl: 30s, stale_if_error: 1h}}
"""


def routes(path: Path, extra: str = "") -> str:
    return ROUTES.format(path=path, PRICES=PRICES).replace("cache: {snapshot", f"cache: {{{extra}snapshot", 1)


def snapshotter(proxy: Proxy) -> Snapshotter:
    app = proxy.client.app
    assert isinstance(app, web.Application)
    return app[SNAPSHOT]


def price(sku: str, value: float) -> Reply:
    return Reply(200, {"sku": sku, "price": value, "currency": "GBP"}, JSON_TYPE)


async def test_restart_during_an_outage_serves_the_last_good_copies(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock, tmp_path: Path
) -> None:
    path = tmp_path / "var" / "lkg.msgpack"
    for i in range(3):
        origin.always(f"/prices/A{i}", price(f"A{i}", 1.0 + i))
    origin.always("/plain/fr", Reply(200, b"bonjour", {"Vary": "Accept-Language"}))
    origin.always("/plain/missing", Reply(404, b"gone"))
    first: Proxy = await make_proxy(routes(path))
    for i in range(3):
        assert (await first.get(f"/api/prices/A{i}")).status == 200
    assert await (await first.get("/api/plain/fr", headers={"Accept-Language": "fr"})).read() == b"bonjour"
    assert (await first.get("/api/plain/missing")).status == 404
    await first.client.close()  # shutdown writes the snapshot
    written = read_snapshot(str(path))
    assert written.problem is None
    assert sorted(k for k, _ in written.records) == [  # the 404 is not a good copy
        "plain\x1f/api/plain/fr\x1e",  # the variant for clients without Accept-Language
        "plain\x1f/api/plain/fr\x1efr",
        *(f"prices\x1f/api/prices/A{i}" for i in range(3)),
    ]

    for name in ("/prices/A0", "/prices/A1", "/prices/A2", "/plain/fr", "/plain/missing"):
        origin.always(name, Reply(503, b"vendor down"))
    clock.advance(2 * 3600)  # past stale-if-error (1h); last-known-good lasts 7 days
    second: Proxy = await make_proxy(routes(path))
    assert snapshotter(second).loaded == 3  # the variant is past its stale-if-error: not loaded
    for i in range(3):
        answer = await second.get(f"/api/prices/A{i}")
        assert answer.status == 200 and answer.headers["X-Cache"] == "STALE"
        assert (await answer.json())["price"] == 1.0 + i
        assert (
            answer.headers["Cache-Status"]
            == 'resilient-proxy; fwd=stale; fwd-status=503; ttl=-7170; detail="last-known-good"'
        )
    # A route without guards keeps no last-known-good: past stale-if-error it is an error.
    assert (await second.get("/api/plain/fr", headers={"Accept-Language": "fr"})).status == 502
    assert (await second.get("/api/plain/missing")).status == 502


async def test_a_restored_vary_variant_is_found(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock, tmp_path: Path
) -> None:
    path = tmp_path / "lkg.msgpack"
    origin.always("/plain/x", Reply(200, b"bonjour", {"Vary": "Accept-Language"}))
    first: Proxy = await make_proxy(routes(path))
    await first.get("/api/plain/x", headers={"Accept-Language": "fr"})
    await first.client.close()
    origin.always("/plain/x", Reply(503, b"down"))
    clock.advance(60)  # inside stale-if-error
    second: Proxy = await make_proxy(routes(path))
    answer = await second.get("/api/plain/x", headers={"Accept-Language": "fr"})
    assert answer.status == 200 and await answer.read() == b"bonjour"
    assert answer.headers["X-Cache"] == "STALE"
    assert second.state.vary == {"plain\x1f/api/plain/x": ("accept-language",)}


async def test_entries_of_routes_no_longer_configured_are_not_loaded(
    origin: Origin, make_proxy: MakeProxy, tmp_path: Path
) -> None:
    path = tmp_path / "lkg.msgpack"
    write_snapshot(str(path), [("gone\x1f/api/gone/1", entry()), ("plain\x1f/api/plain/a", entry())])
    proxy: Proxy = await make_proxy(routes(path))
    assert [k for k, _ in proxy.state.store.items()] == ["plain\x1f/api/plain/a"]


def _three_prices_snapshot(path: Path) -> bytes:
    records = [
        (
            f"prices\x1f/api/prices/A{i}",
            entry(json.dumps({"sku": f"A{i}", "price": i + 1}).encode(), keep_until=4e9),
        )
        for i in range(3)
    ]
    write_snapshot(str(path), records)
    return path.read_bytes()


@pytest.mark.parametrize(
    ("damage", "loaded", "problem"),
    [
        ("cut in the last record", 2, "truncated inside record 3"),
        ("cut before the end marker", 3, "truncated: the end marker is missing"),
        ("flipped byte in the second record", 1, "corrupt: checksum mismatch in record 2"),
        ("random bytes", 0, "not a snapshot file (bad magic)"),
        ("empty file", 0, "truncated: no complete header"),
    ],
)
async def test_damaged_snapshot_gives_a_partial_or_empty_start(
    origin: Origin,
    make_proxy: MakeProxy,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    damage: str,
    loaded: int,
    problem: str,
) -> None:
    path = tmp_path / "lkg.msgpack"
    data = _three_prices_snapshot(path)
    damaged = {
        "cut in the last record": data[:-20],
        "cut before the end marker": data[:-8],
        "flipped byte in the second record": _flip_in_record(data, 2),
        "random bytes": os.urandom(len(data)).replace(MAGIC, b""),
        "empty file": b"",
    }[damage]
    path.write_bytes(damaged)
    origin.always("/prices/A0", Reply(503, b"down"))
    caplog.set_level(logging.WARNING, logger="proxy.store.snapshot")
    proxy: Proxy = await make_proxy(routes(path))
    assert snapshotter(proxy).loaded == loaded
    assert len(proxy.state.store) == loaded
    assert any(problem in r.getMessage() for r in caplog.records)
    assert proxy.state.telemetry.events.value(("snapshot_damaged",)) == 1
    first = await proxy.get("/api/prices/A0")  # served from the snapshot, or an honest 502
    assert first.status == (200 if loaded else 502)
    await proxy.client.close()  # the next shutdown replaces the damaged file with a good one
    assert read_snapshot(str(path)).problem is None


def _flip_in_record(data: bytes, n: int) -> bytes:
    offset = 12
    for _ in range(n - 1):
        offset += 8 + int.from_bytes(data[offset : offset + 4], "big")
    damaged = bytearray(data)
    damaged[offset + 30] ^= 0x20
    return bytes(damaged)


async def test_missing_snapshot_starts_empty_with_a_warning(
    origin: Origin, make_proxy: MakeProxy, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "new" / "lkg.msgpack"
    caplog.set_level(logging.WARNING, logger="proxy.store.snapshot")
    origin.always("/plain/a", Reply(200, b"a", {"Cache-Control": "max-age=60"}))
    proxy: Proxy = await make_proxy(routes(path))
    assert snapshotter(proxy).loaded == 0 and len(proxy.state.store) == 0
    assert any("no snapshot file yet" in r.getMessage() for r in caplog.records)
    assert path.parent.is_dir()  # created at start, so a bad path shows at once
    await proxy.get("/api/plain/a")
    await proxy.client.close()
    assert [k for k, _ in read_snapshot(str(path)).records] == ["plain\x1f/api/plain/a"]


async def test_a_failing_write_is_reported_and_shutdown_still_completes(
    origin: Origin, make_proxy: MakeProxy, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    path = blocker / "lkg.msgpack"  # its "directory" is a file: every write fails
    origin.always("/plain/a", Reply(200, b"a", {"Cache-Control": "max-age=60"}))
    proxy: Proxy = await make_proxy(routes(path))
    await proxy.get("/api/plain/a")
    snap = snapshotter(proxy)
    assert await snap.write() is None
    assert snap.failures == 1 and snap.last_error is not None
    assert proxy.state.telemetry.events.value(("snapshot_write_failed",)) == 1
    await proxy.client.close()
    assert snap.failures == 2  # tried once more at shutdown, and shutdown went on
    assert not proxy.state.ready


async def test_the_periodic_writer_keeps_the_file_current(
    origin: Origin, make_proxy: MakeProxy, tmp_path: Path
) -> None:
    path = tmp_path / "lkg.msgpack"
    origin.always("/plain/a", Reply(200, b"a", {"Cache-Control": "max-age=60"}))
    proxy: Proxy = await make_proxy(routes(path, extra="snapshot_interval: 20ms, "))
    await proxy.get("/api/plain/a")
    snap = snapshotter(proxy)
    deadline = time.monotonic() + 5.0  # wait for a real event (a write), bounded
    keys: list[str] = []
    # The file is renamed into place on the writer thread just before the count is taken.
    while time.monotonic() < deadline and (keys != ["plain\x1f/api/plain/a"] or snap.writes < 1):
        await asyncio.sleep(0.01)
        keys = [k for k, _ in read_snapshot(str(path)).records]
    assert keys == ["plain\x1f/api/plain/a"]
    assert snap.writes >= 1 and snap.last_result is not None and snap.last_result.entries == 1


async def test_requests_are_served_while_a_large_snapshot_is_written(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock, tmp_path: Path
) -> None:
    origin.always("/plain/a", Reply(200, b"a", {"Cache-Control": "max-age=60"}))
    proxy: Proxy = await make_proxy(routes(tmp_path / "lkg.msgpack"))
    await proxy.get("/api/plain/a")
    big = bytes(range(256)) * 4096  # 1 MiB
    now = clock.now()
    for i in range(128):
        proxy.state.store.put(f"plain\x1f/api/plain/big{i}", entry(big, keep_until=now + 60), now)
    writing = asyncio.ensure_future(snapshotter(proxy).write())
    answer = await proxy.get("/api/plain/a")  # the loop is free while the thread writes 128 MiB
    assert answer.headers["X-Cache"] == "HIT"
    assert not writing.done()
    result = await writing
    assert result is not None and result.entries == 129


# -- kill -9 while a snapshot is being written -------------------------------------------------------

WRITER = textwrap.dedent("""
    import sys
    from proxy.core.model import Entry
    from proxy.store.snapshot import write_snapshot

    path, count = sys.argv[1], int(sys.argv[2])
    body = bytes(range(256)) * 4096  # 1 MiB per entry
    generation = 0
    while True:
        generation += 1
        headers = (("X-Generation", str(generation)),)
        records = [(f"prices\\x1f/api/prices/{i}", Entry(200, headers, body, 0.0, 0.0, 4e9, 4e9,
                                                         4e9, 4e9, 4e9)) for i in range(count)]
        write_snapshot(path, records)
        print(generation, flush=True)
""")


def test_kill_9_during_a_write_leaves_the_previous_snapshot_loadable(tmp_path: Path) -> None:
    path = tmp_path / "lkg.msgpack"
    count = 64
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(count)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            assert sel.select(timeout=60), "the writer never finished a first snapshot"
        completed = int(proc.stdout.readline())
        assert completed >= 1
        # Wait (bounded) until the next write is under way, then kill it mid-write.
        deadline = time.monotonic() + 60
        temp: list[str] = []
        while time.monotonic() < deadline and not temp:
            time.sleep(0.001)
            temp = [
                n
                for n in os.listdir(tmp_path)
                if n.endswith(".tmp") and (tmp_path / n).exists() and _size(tmp_path / n) > 0
            ]
        assert temp, "never saw a write in progress"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    left = [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    assert left, "the kill landed between writes; the test proves nothing this time"

    got = read_snapshot(str(path))
    assert got.problem is None
    assert len(got.records) == count
    generations = {e.header("X-Generation") for _, e in got.records}
    assert len(generations) == 1  # one whole generation, never a mix
    assert int(generations.pop() or 0) >= completed
    assert sweep_temp_files(str(path)) == len(left)  # the dead writer's temp file is cleared
    assert os.listdir(tmp_path) == ["lkg.msgpack"]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
