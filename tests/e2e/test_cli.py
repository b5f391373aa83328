"""End to end: the CLI started as a subprocess on free loopback ports, as a user starts it.

Every process is stopped in a `finally` (SIGKILL if a polite signal was not enough); every wait
is for a real event (a printed line, a request reaching the origin, an exit) with a deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from benchmarks.procs import free_port
from tests.origin import Origin, Reply, serve_in_thread

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30.0  # seconds for a subprocess to print that it is listening
STOP_TIMEOUT = 20.0
ISSUE_LINE = re.compile(r"^(?P<file>.+?):(?P<line>\d+): (?P<key>\S+): (?P<message>.+)$")

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


# -- helpers ---------------------------------------------------------------------------------


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


class Running:
    """A CLI subprocess whose stdout is read line by line on a thread (so it never blocks)."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "proxy", *args],
            cwd=ROOT,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, pattern: str, timeout: float = START_TIMEOUT) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                pytest.fail(f"process exited ({self.proc.wait()}) before {pattern!r}:\n" + self.output())
            self.seen.append(line)
            if found := regex.search(line):
                return found
        pytest.fail(f"no line matching {pattern!r} within {timeout}s:\n" + self.output())

    def stop(self, sig: signal.Signals) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=STOP_TIMEOUT)

    def output(self) -> str:
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                return "\n".join(self.seen)
            if line is not None:
                self.seen.append(line)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT)


@contextmanager
def running(*args: str, env: dict[str, str] | None = None) -> Iterator[Running]:
    proc = Running(*args, env=env)
    try:
        yield proc
    finally:
        proc.kill()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None, timeout: float = 15.0
) -> Answer:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={**({"Content-Type": "application/json"} if data else {}), **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return Answer(resp.status, dict(resp.headers.items()), resp.read())
    except urllib.error.HTTPError as err:
        return Answer(err.code, dict(err.headers.items()), err.read())


def origin_thread(origin: Origin) -> contextlib.AbstractContextManager[str]:
    """Serve `origin` on a free port from its own event loop on a thread; yield its URL."""
    return serve_in_thread(origin.app(), STOP_TIMEOUT)


class SignallingOrigin(Origin):
    """An Origin that tells the test thread when a request has reached it."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = threading.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.arrived.set()
        return await super().handle(request)


# -- check -----------------------------------------------------------------------------------


def test_check_accepts_the_example_config() -> None:
    done = cli("check", "--config", "config/example.yaml")
    assert done.returncode == 0, done.stderr
    assert "config/example.yaml: OK" in done.stdout
    assert re.search(r"^prices\s+/api/prices/\{sku\}", done.stdout, re.MULTILINE)
    # each route's latency budget (stale_if_slow) beside its stale windows
    assert re.search(
        r"^route\s+match\s+methods\s+upstream\s+ttl\s+swr\s+sie\s+slow\s+guards$", done.stdout, re.M
    )
    assert re.search(r"^prices\s.*\s200ms\s+3$", done.stdout, re.MULTILINE)


BROKEN = """\
server:
  listen: 127.0.0.1:8080
  colour: blue
upstreams:
  vendor:
    url: ftp://example.com
    timeout: {total: soon}
routes:
  - name: prices
    match: /api/prices/{sku}
    upstream: nowhere
    cache: {ttl: 30s}
  - name: bookings
    match: /api/bookings
    methods: [POST]
    upstream: vendor
    cache: {ttl: 10s}
"""


def test_check_reports_every_error_with_file_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN)
    done = cli("check", "--config", str(path))
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert lines[-1] == f"5 error(s) in {path}"
    issues = [ISSUE_LINE.match(line) for line in lines[:-1]]
    assert all(issues), lines
    found = [(m["file"], int(m["line"]), m["key"]) for m in issues if m]
    assert found == [
        (str(path), 3, "server.colour"),
        (str(path), 6, "upstreams.vendor.url"),
        (str(path), 7, "upstreams.vendor.timeout.total"),
        (str(path), 11, "routes[0].upstream"),
        (str(path), 17, "routes[1].cache"),
    ]
    assert "unknown upstream 'nowhere'" in lines[3]


def test_demo_config_passes_check_and_matches_the_packaged_copy() -> None:
    done = cli("check", "--config", "config/demo.yaml", env={"DEMO_VENDOR_URL": "http://127.0.0.1:9"})
    assert done.returncode == 0, done.stderr
    assert (ROOT / "config/demo.yaml").read_text() == (ROOT / "proxy/static/demo.yaml").read_text()


def test_demo_config_without_the_vendor_url_names_the_variable() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DEMO_VENDOR_URL"}
    done = subprocess.run(
        [sys.executable, "-m", "proxy", "check", "--config", "config/demo.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 1
    assert "upstreams.vendor.url: environment variable DEMO_VENDOR_URL is not set" in done.stderr


# -- run -------------------------------------------------------------------------------------

PRICE = {"sku": "A1", "price": 9.5, "currency": "GBP"}


def run_config(origin_url: str, port: int, admin_port: int) -> str:
    return textwrap.dedent(f"""\
        server: {{listen: 127.0.0.1:{port}, shutdown_grace: 10s}}
        admin: {{listen: 127.0.0.1:{admin_port}}}
        log: {{access: off}}
        upstreams:
          vendor: {{url: {origin_url}, retries: {{attempts: 0}}}}
        routes:
          - name: prices
            match: /api/prices/{{sku}}
            methods: [GET, HEAD]
            upstream: vendor
            rewrite: /prices/{{sku}}
            cache: {{ttl: 30s}}
        """)


def test_run_serves_miss_then_hit_and_finishes_in_flight_requests_on_sigterm(tmp_path: Path) -> None:
    origin = SignallingOrigin()
    origin.always(
        "/prices/A1", Reply(200, PRICE, {"Content-Type": "application/json", "Cache-Control": "max-age=60"})
    )
    origin.always(
        "/prices/SLOW", Reply(200, {**PRICE, "sku": "SLOW"}, {"Content-Type": "application/json"}, delay=1.5)
    )
    port = free_port()
    config = tmp_path / "proxy.yaml"
    with origin_thread(origin) as origin_url, ThreadPoolExecutor(1) as pool:
        config.write_text(run_config(origin_url, port, free_port()))
        with running("run", "--config", str(config)) as proxy:
            proxy.wait_for(rf"listening on http://127\.0\.0\.1:{port}")
            base = f"http://127.0.0.1:{port}"
            first = http("GET", f"{base}/api/prices/A1")
            second = http("GET", f"{base}/api/prices/A1")
            assert (first.status, first.headers["X-Cache"]) == (200, "MISS")
            assert (second.status, second.headers["X-Cache"]) == (200, "HIT")
            assert first.json() == second.json() == PRICE
            assert origin.count("/prices/A1") == 1

            origin.arrived.clear()
            slow: Future[Answer] = pool.submit(http, "GET", f"{base}/api/prices/SLOW")
            assert origin.arrived.wait(timeout=10), "the slow request never reached the origin"
            assert proxy.stop(signal.SIGTERM) == 0, proxy.output()
            answer = slow.result(timeout=STOP_TIMEOUT)
            assert answer.status == 200
            assert answer.json()["sku"] == "SLOW"
            # One log format (issue 15): the event log is JSON lines, no "2026-... INFO x:" prefix.
            lines = proxy.output().splitlines()
            logged = [json.loads(line) for line in lines if line.startswith("{")]
            assert any(d.get("logger") == "proxy.serve" and d["level"] == "info" for d in logged), lines
            assert not [line for line in lines if re.match(r"^\d{4}-\d\d-\d\d .*(INFO|WARNING|ERROR)", line)]


# -- demo ------------------------------------------------------------------------------------


@dataclass
class Demo:
    proc: Running
    proxy: str
    vendor: str
    status: str  # the admin status page, or a note that this build has none

    def mode(self, mode: str) -> None:
        answer = http("POST", f"{self.vendor}/__vendor/mode", {"mode": mode})
        assert answer.json() == {"mode": mode}

    def vendor_requests(self) -> int:
        return int(http("GET", f"{self.vendor}/__vendor/mode").json()["requests"])

    def get(self, path: str) -> Answer:
        return http("GET", self.proxy + path)


@contextmanager
def demo() -> Iterator[Demo]:
    with running("demo", "--port", "0", env={"DEMO_ACCESS_LOG": "off"}) as proc:
        status = proc.wait_for(r"^  status  (?P<url>.+?)(  |$)")["url"]
        urls = proc.wait_for(r"^  P=(?P<proxy>http://\S+) V=(?P<vendor>http://\S+)$")
        proc.wait_for(r"Ctrl-C stops the demo")
        yield Demo(proc, urls["proxy"], urls["vendor"], status)


def assert_fallback(answer: Answer) -> None:
    """The prices route's configured fallback: a JSON 503, never vendor data."""
    assert answer.status == 503
    assert answer.headers["Content-Type"].startswith("application/json")
    assert answer.json() == {"error": "prices unavailable", "hint": "try again in a minute"}
    assert answer.headers["X-Cache"] == "FALLBACK" and int(answer.headers["Retry-After"]) >= 1


def test_demo_caches_refuses_bad_data_and_stops_on_sigint() -> None:
    with demo() as d:
        first, second = d.get("/api/prices/ABC-1"), d.get("/api/prices/ABC-1")
        assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("MISS", "HIT")
        good = first.json()
        assert second.json() == good and good["price"] > 0
        catalogue = d.get("/api/catalogue/summer")
        assert catalogue.status == 200 and len(catalogue.json()["items"]) == 50
        assert d.vendor_requests() == 2  # the HIT never reached the vendor

        d.mode("zero-price")
        refused = d.get("/api/prices/ZERO-1")
        assert_fallback(refused)
        assert b'"price": 0' not in refused.body
        assert "upstream-data-rejected" in refused.headers["Cache-Status"]
        assert d.get("/api/prices/ABC-1").json() == good  # the cached copy is untouched

        d.mode("empty-catalogue")
        kept = d.get("/api/catalogue/summer")
        assert (kept.status, kept.headers["X-Cache"]) == (200, "STALE")
        assert len(kept.json()["items"]) == 50
        assert "min_items" in kept.headers["Cache-Status"]

        d.mode("html")
        assert_fallback(d.get("/api/prices/HTML-1"))

        d.mode("ok")
        order = {"sku": "ABC-1", "quantity": 2}
        key = {"Idempotency-Key": "order-1"}
        booked = http("POST", f"{d.proxy}/api/bookings", order, key)
        again = http("POST", f"{d.proxy}/api/bookings", order, key)
        assert (booked.status, booked.headers["X-Cache"]) == (201, "BYPASS")
        assert again.status == 201 and again.headers.get("Idempotent-Replayed") == "true"
        assert again.json() == booked.json() and booked.json()["quantity"] == 2

        assert d.proc.stop(signal.SIGINT) == 0, d.proc.output()
        assert "demo: stopping" in d.proc.output()


def test_demo_vendor_down_serves_copies_and_fallbacks_then_the_breaker_opens() -> None:
    with demo() as d:
        good = d.get("/api/prices/ABC-1").json()
        assert len(d.get("/api/catalogue/summer").json()["items"]) == 50

        d.mode("down")
        cached = d.get("/api/prices/ABC-1")
        assert cached.status == 200 and cached.headers["X-Cache"] in ("HIT", "STALE", "UPDATING")
        assert cached.json() == good
        catalogue = d.get("/api/catalogue/summer")  # max-age=0: past freshness at once
        assert (catalogue.status, catalogue.headers["X-Cache"]) == (200, "STALE")
        assert len(catalogue.json()["items"]) == 50

        booking = http("POST", f"{d.proxy}/api/bookings", {"sku": "ABC-1"})
        assert booking.status in (502, 503)
        assert booking.json()["route"] == "bookings" and booking.json()["error"] in (
            "upstream_status",
            "circuit_open",
        )

        statuses = []
        for i in range(12):  # 5 failed calls in 30s open it; each uncached key costs up to 2
            answer = d.get(f"/api/prices/NEW-{i}")
            assert_fallback(answer)
            statuses.append(answer.headers["Cache-Status"])
            if "circuit-open" in statuses[-1]:
                break
        assert "circuit-open" in statuses[-1], statuses
        calls = d.vendor_requests()
        assert_fallback(d.get("/api/prices/NEW-99"))
        assert d.vendor_requests() == calls  # an open breaker keeps the vendor out of it

        page = http("GET", d.status, headers={"Accept": "application/json"})
        assert page.status == 200
        assert [u["breaker"]["state"] for u in page.json()["upstreams"]] == ["open"]

        assert d.proc.stop(signal.SIGINT) == 0, d.proc.output()


def test_version_and_no_internal_command_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    from proxy.__main__ import main, version

    with pytest.raises(SystemExit) as stopped:
        main(["--version"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out.strip() == f"resilient-proxy {version()}"
    assert version()[0].isdigit()
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "_worker" not in text
    for command in ("run", "check", "doctor", "inventory", "demo", "config-reference"):
        assert command in text
