"""`server.workers: N`: a supervisor, N worker processes sharing the port, one admin view.

Owns: starting workers (each `python -m proxy _worker`, binding the public port with
SO_REUSEPORT so the kernel spreads connections), restarting one that dies, forwarding signals,
and the admin listener of the fleet: it answers /health itself, /ready from what the workers
reported (below), merges /metrics (every sample
gains a `worker` label) and /status (counters summed, the worst breaker state shown) from the
workers' own admin apps on private Unix sockets, and fans mutating calls (purge, reload,
breakers, quarantine promote) out to every worker.
Must not: serve proxy traffic itself.

Ready means every worker listens (issue 12: a warm-up reached one worker only). Each worker
gets the write end of a pipe (`--ready-fd`) and writes one line once its public and admin
listeners are up; the supervisor reads it without polling. A worker that exits (or closes the
pipe without the line) is not listening until its replacement reports. /ready answers 503 until
all have reported, then asks each worker (one shutting down says no); the "N workers on" line
is printed only then, so a script waiting for it finds every worker serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

import aiohttp
from aiohttp import web

from proxy.admin import PAGE_HEADERS, STATUS_PAGE, wants_html
from proxy.core.config.model import Config
from proxy.metrics import Registry
from proxy.procstats import process_families

log = logging.getLogger("proxy.fleet")
_BREAKER_RANK = {"closed": 0, "half_open": 1, "open": 2}


class Fleet:
    def __init__(self, config: Config, workers: int) -> None:
        self.config = config
        self.count = workers
        self.dir = tempfile.mkdtemp(prefix="rproxy-")  # 0700: the workers' admin sockets live here
        self.procs: dict[int, asyncio.subprocess.Process] = {}
        self.stopping = False
        self.listening: set[int] = set()  # workers that reported their listeners up
        self.all_listening = asyncio.Event()
        # Per worker, the write end of its lifeline: held open for the supervisor's whole life
        # and closed by the kernel when it dies, even by SIGKILL; the worker reads EOF and stops.
        self.lifelines: dict[int, int] = {}

    def socket(self, index: int) -> str:
        return os.path.join(self.dir, f"w{index}.sock")

    async def start_worker(self, index: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket(index))
        self._not_listening(index)
        read_fd, write_fd = os.pipe()
        life_read, life_write = os.pipe()
        os.set_inheritable(life_write, False)
        old = self.lifelines.pop(index, None)
        if old is not None:  # the dead worker's: its replacement gets a new one
            os.close(old)
        try:
            self.procs[index] = await self._spawn(index, write_fd, life_read)
        except BaseException:
            os.close(read_fd)
            os.close(life_write)
            raise
        finally:
            os.close(write_fd)  # the worker holds its copy: EOF here once it reported or died
            os.close(life_read)
        self.lifelines[index] = life_write
        self._await_report(index, read_fd)

    def _await_report(self, index: int, read_fd: int) -> None:
        loop = asyncio.get_running_loop()
        proc = self.procs[index]

        def readable() -> None:
            try:
                line = os.read(read_fd, 64)
            except OSError:
                line = b""
            loop.remove_reader(read_fd)
            os.close(read_fd)
            if line.startswith(b"listening") and proc.returncode is None and self.procs.get(index) is proc:
                self.listening.add(index)
                if len(self.listening) == self.count:
                    self.all_listening.set()

        loop.add_reader(read_fd, readable)

    def _not_listening(self, index: int) -> None:
        self.listening.discard(index)
        self.all_listening.clear()

    async def _spawn(self, index: int, ready_fd: int, lifeline_fd: int) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "proxy",
            "_worker",
            "--config",
            self.config.path,
            "--index",
            str(index),
            "--admin-socket",
            self.socket(index),
            "--ready-fd",
            str(ready_fd),
            "--lifeline-fd",
            str(lifeline_fd),
            pass_fds=(ready_fd, lifeline_fd),
        )

    async def watch(self, index: int) -> None:
        """Restart a worker that dies, with a short backoff; never while stopping."""
        delay = 0.5
        while not self.stopping:
            code = await self.procs[index].wait()
            self._not_listening(index)
            if self.stopping:
                return
            log.error("worker %d exited with %s; restarting in %.1fs", index, code, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
            await self.start_worker(index)

    def signal_all(self, signum: int) -> None:
        for proc in self.procs.values():
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signum)

    async def call(
        self, method: str, path: str, *, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> list[tuple[int, int, bytes]]:
        """(worker, status, body) from every worker's admin app; an unreachable worker is 503."""

        async def one(index: int) -> tuple[int, int, bytes]:
            connector = aiohttp.UnixConnector(path=self.socket(index))
            try:
                async with (
                    aiohttp.ClientSession(
                        connector=connector, timeout=aiohttp.ClientTimeout(total=5)
                    ) as session,
                    session.request(
                        method, f"http://worker{path}", data=body or None, headers=headers
                    ) as resp,
                ):
                    return index, resp.status, await resp.read()
            except (TimeoutError, aiohttp.ClientError) as exc:
                return index, 503, json.dumps({"error": "worker_unreachable", "message": str(exc)}).encode()

        return list(await asyncio.gather(*(one(i) for i in range(self.count))))


def supervisor_metrics() -> str:
    """The supervisor's own process_* families, as Prometheus text."""
    registry = Registry()
    registry.collector(lambda: list(process_families()))
    return registry.render()


def merge_metrics(texts: Sequence[tuple[int | str, str]]) -> str:
    """Prometheus text from several workers as one exposition: families kept together, each
    sample labelled with its worker."""
    families: dict[str, dict[str, Any]] = {}
    for worker, text in texts:
        current: dict[str, Any] | None = None
        for line in text.splitlines():
            if line.startswith("# HELP ") or line.startswith("# TYPE "):
                name = line.split(" ", 3)[2]
                current = families.setdefault(name, {"help": None, "type": None, "samples": []})
                current["help" if line.startswith("# HELP") else "type"] = line
            elif line and not line.startswith("#") and current is not None:
                current["samples"].append(with_label(line, "worker", str(worker)))
    out: list[str] = []
    for family in families.values():
        out += [x for x in (family["help"], family["type"]) if x]
        out += family["samples"]
    return "\n".join(out) + "\n"


def with_label(sample: str, name: str, value: str) -> str:
    """Add `name="value"` to one sample line; label values may hold any escaped text."""
    brace = sample.find("{")
    space = sample.find(" ")
    if brace == -1 or (space != -1 and space < brace):
        return f'{sample[:space]}{{{name}="{value}"}}{sample[space:]}'
    i, quoted = brace + 1, False
    while i < len(sample):
        ch = sample[i]
        if ch == "\\" and quoted:
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        elif ch == "}" and not quoted:
            break
        i += 1
    inner = sample[brace + 1 : i]
    joined = f'{inner},{name}="{value}"' if inner.strip() else f'{name}="{value}"'
    return f"{sample[:brace]}{{{joined}}}{sample[i + 1 :]}"


def merge_status(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """One /status from every worker's: counters summed, the worst breaker, the newest times."""
    if not docs:
        return {}
    out: dict[str, Any] = json.loads(json.dumps(docs[0]))
    out["workers"] = len(docs)
    ups = {u["name"]: u for u in out.get("upstreams", [])}
    routes = {r["name"]: r for r in out.get("routes", [])}
    for doc in docs[1:]:
        for u in doc.get("upstreams", []):
            _merge_upstream(ups.setdefault(u["name"], u), u)
        for r in doc.get("routes", []):
            mine = routes.setdefault(r["name"], r)
            if mine is not r:
                for key in ("requests", "hits", "stale", "fallbacks", "guard_rejections"):
                    mine[key] = (mine.get(key) or 0) + (r.get(key) or 0)
                ages = [a for a in (mine.get("lkg_age"), r.get("lkg_age")) if a is not None]
                mine["lkg_age"] = min(ages) if ages else None
        for key in ("entries", "bytes", "max_bytes", "evictions"):
            if key in doc.get("cache", {}):
                out["cache"][key] = (out["cache"].get(key) or 0) + doc["cache"][key]
    for r in routes.values():
        r["hit_ratio"] = (r["hits"] / r["requests"]) if r.get("requests") else None
    return out


def _merge_upstream(mine: dict[str, Any], other: dict[str, Any]) -> None:
    if mine is other:
        return
    a, b = mine.get("breaker") or {}, other.get("breaker") or {}
    if _BREAKER_RANK.get(b.get("state", ""), 0) > _BREAKER_RANK.get(a.get("state", ""), 0):
        mine["breaker"] = b
    for key in ("last_success", "last_failure"):
        times = [t for t in (mine.get(key), other.get(key)) if t is not None]
        mine[key] = max(times) if times else None
    if other.get("health") == "unhealthy":
        mine["health"] = "unhealthy"


def build_fleet_app(fleet: Fleet) -> web.Application:
    async def health(_: web.Request) -> web.Response:
        alive = sum(1 for p in fleet.procs.values() if p.returncode is None)
        return web.json_response({"status": "ok", "workers": fleet.count, "alive": alive})

    async def ready(_: web.Request) -> web.Response:
        if not fleet.all_listening.is_set():
            listening = sorted(fleet.listening)
            return web.json_response(
                {
                    "ready": False,
                    "error": "not_ready",
                    "message": f"{len(listening)} of {fleet.count} workers listening",
                    "listening": listening,
                    "workers": fleet.count,
                },
                status=503,
            )
        answers = await fleet.call("GET", "/ready")
        worst = max(status for _, status, _ in answers)
        results = [{"worker": w, "status": s, "body": _json_or_text(b)} for w, s, b in answers]
        return web.json_response({"ready": worst == 200, "workers": results}, status=worst)

    async def metrics(_: web.Request) -> web.Response:
        answers = await fleet.call("GET", "/metrics")
        texts: list[tuple[int | str, str]] = [(w, b.decode()) for w, status, b in answers if status == 200]
        texts.append(("supervisor", supervisor_metrics()))  # the supervisor is a process too
        text = merge_metrics(texts)
        return web.Response(text=text, content_type="text/plain", charset="utf-8")

    async def status(request: web.Request) -> web.StreamResponse:
        if wants_html(request.headers.get("Accept", "")):
            return web.FileResponse(STATUS_PAGE, headers=PAGE_HEADERS)
        answers = await fleet.call("GET", "/status", headers={"Accept": "application/json"})
        docs = [json.loads(body) for _, status, body in answers if status == 200]
        return web.json_response(merge_status(docs), status=200 if docs else 503)

    async def fan_out(request: web.Request) -> web.Response:
        """Config, quarantine and every mutating call: ask each worker."""
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() in ("authorization", "content-type", "accept")
        }
        answers = await fleet.call(
            request.method, request.path_qs, body=await request.read(), headers=headers
        )
        worst = max(status for _, status, _ in answers)
        if request.path == "/config" and answers[0][1] == 200:
            return web.Response(body=answers[0][2], content_type="application/json")
        results = [{"worker": w, "status": s, "body": _json_or_text(b)} for w, s, b in answers]
        return web.json_response({"workers": results}, status=worst)

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/status", status)
    app.router.add_route("*", "/{tail:.*}", fan_out)
    return app


def _json_or_text(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")


async def supervise(config: Config, workers: int) -> int:
    fleet = Fleet(config, workers)
    for index in range(workers):
        await fleet.start_worker(index)
    watchers = [asyncio.create_task(fleet.watch(i), name=f"watch-worker-{i}") for i in range(workers)]
    runner = None
    if config.admin.enabled:
        runner = web.AppRunner(build_fleet_app(fleet), access_log=None, handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, config.admin.listen.host, config.admin.listen.port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: fleet.signal_all(signal.SIGHUP))

    async def announce() -> None:
        await fleet.all_listening.wait()  # the line means "serving": every worker listens
        print(
            f"resilient-proxy: {workers} workers on http://{config.server.listen}"
            + (f", admin on http://{config.admin.listen}" if runner else ""),
            flush=True,
        )

    announcer = asyncio.create_task(announce(), name="announce-workers")
    await stop.wait()
    announcer.cancel()
    await asyncio.gather(announcer, return_exceptions=True)
    fleet.stopping = True
    fleet.signal_all(signal.SIGTERM)
    codes = [await p.wait() for p in fleet.procs.values()]
    for task in watchers:
        task.cancel()
    await asyncio.gather(*watchers, return_exceptions=True)
    if runner is not None:
        await runner.cleanup()
    with contextlib.suppress(OSError):
        for index in range(workers):
            os.unlink(fleet.socket(index))
        os.rmdir(fleet.dir)
    return max([0, *codes])
