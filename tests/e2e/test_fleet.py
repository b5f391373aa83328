"""`server.workers: 2` as a user runs it: two processes on one port, one admin view."""

from __future__ import annotations

import re
import signal
import socket
from pathlib import Path

import pytest

from benchmarks.procs import free_port
from tests.e2e.test_cli import http, origin_thread, running
from tests.origin import Origin, Reply
from tests.waiting import until_sync


def fleet_config(tmp_path: Path, vendor_url: str, route: str) -> tuple[Path, int, int]:
    """A two-worker config on free ports with one route (YAML flow mapping): path, port, admin."""
    port, admin = free_port(), free_port()
    config = tmp_path / "fleet.yaml"
    config.write_text(
        f"server: {{listen: 127.0.0.1:{port}, workers: 2}}\n"
        f"admin: {{listen: 127.0.0.1:{admin}}}\n"
        "log: {access: off}\n"
        f'upstreams:\n  vendor: {{url: "{vendor_url}"}}\n'
        f"routes:\n  - {route}\n"
    )
    return config, port, admin


def test_two_workers_share_the_port_and_the_admin_view(tmp_path: Path) -> None:
    origin = Origin()
    origin.always(
        "/prices/A1",
        Reply(
            200,
            {"sku": "A1", "price": 9.5},
            {"Content-Type": "application/json", "Cache-Control": "max-age=60"},
        ),
    )
    with origin_thread(origin) as origin_url:
        route = (
            '{name: prices, match: "/api/prices/{sku}", upstream: vendor, rewrite: "/prices/{sku}",'
            " methods: [GET], cache: {ttl: 60s, key: {headers: [Accept-Language]}}}"
        )
        config, port, admin = fleet_config(tmp_path, origin_url, route)
        with running("run", "--config", str(config)) as proc:
            proc.wait_for(r"2 workers on http://")
            ready = f"http://127.0.0.1:{admin}/ready"
            until_sync(lambda: http("GET", ready).status == 200, 20, what=proc.output, step=0.1)  # both up
            answers = [http("GET", f"http://127.0.0.1:{port}/api/prices/A1") for _ in range(20)]
            assert {a.status for a in answers} == {200}
            assert origin.count("/prices/A1") <= 2  # at most one fetch per worker's own memory tier

            metrics = http("GET", f"http://127.0.0.1:{admin}/metrics").body.decode()
            served = re.findall(r'^rproxy_requests_total\{[^}]*worker="(\d)"\} (\S+)$', metrics, re.M)
            assert sum(float(v) for _, v in served) == 20  # one exposition, every worker in it
            assert metrics.count("# TYPE rproxy_requests_total counter") == 1

            status = http(
                "GET", f"http://127.0.0.1:{admin}/status", headers={"Accept": "application/json"}
            ).json()
            assert status["workers"] == 2 and status["routes"][0]["requests"] == 20

            # GET /config through the supervisor, with a route keyed on a header (issue 15: a 500)
            config_doc = http("GET", f"http://127.0.0.1:{admin}/config")
            assert config_doc.status == 200, config_doc.body
            assert config_doc.json()["routes"][0]["cache"]["key"]["headers"] == ["accept-language"]
            # Process metrics per worker, and the supervisor's own
            for worker in ("0", "1", "supervisor"):
                assert re.search(rf'^process_resident_memory_bytes\{{worker="{worker}"\}} \d', metrics, re.M)
            assert metrics.count("# TYPE process_open_fds gauge") == 1

            purged = http("POST", f"http://127.0.0.1:{admin}/purge", {"route": "prices", "prefix": "/"})
            assert purged.status == 200
            assert [w["status"] for w in purged.json()["workers"]] == [200, 200]
            assert proc.stop(signal.SIGTERM) == 0


def _workers_of(supervisor: int) -> list[int]:
    """The `_worker` processes whose parent is `supervisor` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue  # gone while we looked
        if int(fields[1]) == supervisor and b"_worker" in cmdline:
            found.append(int(stat.parent.name))
    return found


def _running(pid: int) -> bool:
    """Alive: not gone and not a zombie (an orphan's exit may wait for init to reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_workers_stop_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    """SIGKILL leaves no handler to forward: each worker holds a lifeline pipe whose other end
    only the supervisor has; the kernel closes it, the worker reads EOF and stops. Nobody is
    left serving the port with nobody to restart or watch it."""
    origin = Origin()
    with origin_thread(origin) as origin_url:
        route = '{name: prices, match: "/api/prices/{sku}", upstream: vendor, methods: [GET], cache: off}'
        config, port, _ = fleet_config(tmp_path, origin_url, route)
        with running("run", "--config", str(config)) as proc:
            proc.wait_for(r"2 workers on http://")
            workers = _workers_of(proc.proc.pid)
            assert len(workers) == 2 and all(_running(pid) for pid in workers)
            proc.proc.kill()
            proc.proc.wait()
            until_sync(lambda: not any(_running(pid) for pid in workers), 20, what=proc.output, step=0.1)
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
