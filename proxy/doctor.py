"""`resilient-proxy doctor`: the seed's discovery step, run against the real upstreams.

Owns: probing each configured upstream before launch: TCP connect and TLS handshake, the health
path, and each route's `sample` rewritten to the upstream path as the proxy would send it;
reporting status, latency, content type, caching and rate-limit headers, whether the credentials
were accepted, the guards' verdict on the real sample, and whom to call. A table, or `--json`.
Exit 1 when an upstream is unreachable, its TLS fails, a sample cannot be fetched, is refused
(4xx/5xx) or fails its guards, or its health path answers 5xx or times out. A route without a
`sample` is probed at its own path when its pattern has no parameters (`/api/rates`); else that
is a warning, as are missing caching headers and a health path answering 4xx (exit 0). Each
sample's latency is shown beside the route's latency budget (`cache.stale_if_slow`); a sample
slower than its budget is a warning: clients holding a copy would be answered with it.
Paths printed and probed are the upstream's own: they include the URL's base path (`/v2/...`).
Vendors are asked through the proxy's own HTTP/1.1 client (`transport.Transport`: strict framing,
bounded numbers, the same base path and TLS settings), so an answer the proxy would refuse is a
failed probe here too, and a coded body is decoded within the same bounds before the guards see it.
Must not: send anything but GET, print a configured header value, or follow redirects.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

from proxy.clock import SystemClock
from proxy.core.cachecontrol import DEFAULT_TARGETS
from proxy.core.config.model import Config, RouteConfig, Timeouts, UpstreamConfig
from proxy.core.config.report import table
from proxy.core.errors import UpstreamError
from proxy.core.guards import check_body
from proxy.core.redact import redact_url, scrub
from proxy.core.routing import match_path, rewrite_path, unsafe_target
from proxy.transport import Outbound, Transport

CACHING_HEADERS = ("cache-control", "etag", "last-modified", "expires", "age", "vary", *DEFAULT_TARGETS)
FRESHNESS_HEADERS = ("cache-control", "expires", "etag", "last-modified")
BODY_LIMIT = 8 * 1024 * 1024


@dataclass(slots=True)
class Probe:
    """One HTTP GET toward an upstream: a health path or a route's sample."""

    what: str  # "health" or the route name
    path: str  # as the client would ask (sample) or the health path
    target: str  # the upstream path+query actually requested
    status: int | None = None
    ms: float | None = None
    budget_ms: float | None = None  # the route's cache.stale_if_slow, when it has one
    content_type: str | None = None
    caching: dict[str, str] = field(default_factory=dict)
    rate_limit: dict[str, str] = field(default_factory=dict)
    auth: str = "-"  # accepted | rejected (401/403) | - (no answer)
    guards: str = "-"  # ok | failed: ... | no guards | not checked
    error: str | None = None
    verdict: str = "ok"  # ok | warn | fail


@dataclass(slots=True)
class UpstreamReport:
    name: str
    url: str
    owner: str
    docs: str
    connect: str = "-"  # ok / error text
    connect_ms: float | None = None
    tls: str = "-"  # "-" for http, else protocol and certificate expiry, or the error
    probes: list[Probe] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # each a fail
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _ssl_context(up: UpstreamConfig) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=up.ca_file) if up.ca_file else ssl.create_default_context()
    if not up.verify_tls:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def check_connect(up: UpstreamConfig, report: UpstreamReport) -> bool:
    """TCP connect (and the TLS handshake for https) within the connect timeout."""
    parts = urlsplit(up.url)
    tls = parts.scheme == "https"
    host, port = parts.hostname or "", parts.port or (443 if tls else 80)
    start = time.perf_counter()
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(
                host, port, ssl=_ssl_context(up) if tls else None, server_hostname=host if tls else None
            ),
            max(up.timeout.connect, 0.1),
        )
    except ssl.SSLError as exc:
        report.connect, report.tls = "ok", f"failed: {exc.reason or exc}"
        report.problems.append(f"TLS handshake with {host}:{port} failed: {exc.reason or exc}")
        return False
    except (OSError, TimeoutError) as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        report.connect = f"failed: {why}"
        report.problems.append(f"cannot connect to {host}:{port}: {why}")
        return False
    report.connect_ms = round((time.perf_counter() - start) * 1000.0, 1)
    report.connect = "ok"
    if tls:
        report.tls = _tls_summary(writer.get_extra_info("ssl_object"), report)
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError):
        await writer.wait_closed()
    return True


def _tls_summary(obj: Any, report: UpstreamReport) -> str:
    if not isinstance(obj, ssl.SSLObject):
        return "ok"
    text = obj.version() or "ok"
    cert = obj.getpeercert()
    if not cert:
        report.warnings.append("TLS certificate not verified (tls.verify: false)")
        return f"{text}, unverified"
    expires = ssl.cert_time_to_seconds(str(cert["notAfter"]))
    days = int((expires - time.time()) // 86400)
    if days < 14:
        report.warnings.append(f"TLS certificate expires in {days} days")
    return f"{text}, cert expires in {days}d"


def base_path(up: UpstreamConfig) -> str:
    """The upstream URL's path (`/v2` of `https://api.example/v2`), which every call starts with."""
    return urlsplit(up.url).path.rstrip("/")


def probe_path(route: RouteConfig) -> str | None:
    """What a client would ask to exercise the route: its `sample`, or its pattern when the
    pattern has no parameters (there is only one thing to ask for)."""
    if route.sample is not None:
        return route.sample
    if not route.match.names and not route.match.prefix:
        return route.match.text
    return None


def sample_target(route: RouteConfig) -> str | None:
    """The path+query (below the upstream's base path) the proxy would request for the route's
    `sample`, or None."""
    sample = probe_path(route)
    if sample is None or unsafe_target(sample) is not None:
        return None
    path, _, query = sample.partition("?")
    found = match_path(route.match, path.split("/")[1:])
    if found is None:
        return None
    target = rewrite_path(route.rewrite, path, found)
    return f"{target}?{query}" if query else target


async def _get(transport: Transport, up: UpstreamConfig, probe: Probe, timeout: float) -> bytes | None:
    """One GET of `probe.target` (which starts with the base path the transport adds)."""
    out = Outbound(
        "GET",
        probe.target[len(base_path(up)) :],
        list(up.headers),
        timeout=Timeouts(connect=min(up.timeout.connect, timeout), total=timeout),
    )
    start = time.perf_counter()
    try:
        fetched = await transport.send(out, BODY_LIMIT)
        await fetched.to_identity(BODY_LIMIT)
    except UpstreamError as exc:
        probe.ms = round((time.perf_counter() - start) * 1000.0, 1)
        probe.error = exc.message[:160]
        return None
    fetched.release()
    probe.ms = round((time.perf_counter() - start) * 1000.0, 1)
    probe.status = fetched.status
    headers = fetched.headers
    probe.content_type = next((v for k, v in headers if k.lower() == "content-type"), None)
    probe.caching = {k: v for k, v in headers if k.lower() in CACHING_HEADERS}
    probe.rate_limit = {k: v for k, v in headers if _rate_header(k)}
    probe.auth = f"rejected ({fetched.status})" if fetched.status in (401, 403) else "accepted"
    if fetched.unreadable is not None or not fetched.complete:
        probe.error = fetched.unreadable or f"body over {BODY_LIMIT} bytes"
        return None
    return fetched.body


def _rate_header(name: str) -> bool:
    low = name.lower()
    return low.startswith(("ratelimit", "x-ratelimit", "x-rate-limit")) or low == "retry-after"


async def probe_sample(
    transport: Transport, up: UpstreamConfig, route: RouteConfig, report: UpstreamReport
) -> None:
    relative = sample_target(route)
    target = None if relative is None else base_path(up) + relative
    asked = probe_path(route)
    probe = Probe(route.name, asked or "-", target or "-", budget_ms=_budget_ms(route))
    report.probes.append(probe)
    if target is None:
        probe.verdict, probe.error = "fail", f"sample {asked!r} does not match {route.match.text}"
        report.problems.append(f"route {route.name}: {probe.error}")
        return
    timeout = (route.timeout or up.timeout).total
    body = await _get(transport, up, probe, timeout)
    if body is None or probe.status is None:
        probe.verdict = "fail"
        report.problems.append(f"route {route.name}: sample {target} failed: {probe.error}")
        return
    if probe.status >= 400:
        probe.verdict = "fail"
        why = "credentials refused" if probe.status in (401, 403) else f"HTTP {probe.status}"
        report.problems.append(f"route {route.name}: sample {target} answered {probe.status} ({why})")
    if not route.guards:
        probe.guards = "no guards"
    elif not 200 <= probe.status < 300:
        probe.guards = "not checked"
    else:
        verdict, _ = check_body(route.guards, body, last_good=None, max_bytes=route.max_object_size)
        probe.guards = "ok" if verdict.ok else "failed: " + ", ".join(v.label() for v in verdict.violations)
        if not verdict.ok:
            probe.verdict = "fail"
            report.problems.append(f"route {route.name}: sample fails its guards ({probe.guards[8:]})")
    if (
        probe.verdict == "ok"
        and route.cache is not None
        and not any(k.lower() in (*FRESHNESS_HEADERS, *route.cache.targeted_fields) for k in probe.caching)
    ):
        probe.verdict = "warn"
        report.warnings.append(f"route {route.name}: no caching headers; the route's ttl decides alone")
    if probe.budget_ms is not None and probe.ms is not None and probe.ms > probe.budget_ms:
        probe.verdict = "warn" if probe.verdict == "ok" else probe.verdict
        report.warnings.append(
            f"route {route.name}: the sample took {probe.ms:g}ms, over the route's stale_if_slow "
            f"{probe.budget_ms:g}ms: clients holding a copy would be answered with it"
        )


def _budget_ms(route: RouteConfig) -> float | None:
    """The route's latency budget in ms (`cache.stale_if_slow`), or None when it has none."""
    if route.cache is None or not route.cache.stale_if_slow:
        return None
    return round(route.cache.stale_if_slow * 1000.0, 1)


async def probe_health(transport: Transport, up: UpstreamConfig, report: UpstreamReport) -> None:
    if up.health_check is None:
        return
    path = base_path(up) + up.health_check.path  # as the health checker asks: url + path
    probe = Probe("health", path, path)
    report.probes.append(probe)
    await _get(transport, up, probe, up.health_check.timeout)
    if probe.status is None or probe.status >= 500:
        probe.verdict = "fail"
        answer = f"answered {probe.status}" if probe.status is not None else f"failed ({probe.error})"
        report.problems.append(f"health path {path} {answer}: not ready")
    elif not 200 <= probe.status < 400:
        probe.verdict = "warn"
        report.warnings.append(
            f"health path {path} answered {probe.status}: the proxy would mark this upstream unhealthy"
        )


async def diagnose_upstream(config: Config, up: UpstreamConfig) -> UpstreamReport:
    report = UpstreamReport(up.name, redact_url(up.url), up.owner or "-", up.docs or "-")
    if not up.owner:
        report.warnings.append("no owner configured: who do we call when it breaks?")
    if not await check_connect(up, report):
        return report
    transport = Transport(up, SystemClock())
    try:
        await probe_health(transport, up, report)
        for route in config.routes:
            if route.upstream != up.name:
                continue
            if "GET" not in route.methods:
                continue  # writes are never probed
            if probe_path(route) is None:
                report.warnings.append(
                    f"route {route.name}: no sample path to probe (its pattern has parameters)"
                )
                continue
            await probe_sample(transport, up, route, report)
    finally:
        await transport.close()
    return report


async def diagnose(config: Config) -> list[UpstreamReport]:
    """Probe every upstream concurrently; results in config order."""
    return list(await asyncio.gather(*(diagnose_upstream(config, up) for up in config.upstreams)))


def to_json(reports: list[UpstreamReport], secrets: tuple[str, ...]) -> str:
    doc = {"ok": all(r.ok for r in reports), "upstreams": [{**asdict(r), "ok": r.ok} for r in reports]}
    return scrub(json.dumps(doc, indent=2), secrets)


def _kv(values: dict[str, str]) -> str:
    return "; ".join(f"{k}: {v}" for k, v in values.items()) or "-"


def render_text(reports: list[UpstreamReport], secrets: tuple[str, ...]) -> str:
    ups = [["upstream", "url", "connect", "tls", "owner"]]
    ups += [
        [
            r.name,
            r.url,
            r.connect + (f" ({r.connect_ms:g}ms)" if r.connect_ms is not None else ""),
            r.tls,
            r.owner,
        ]
        for r in reports
    ]
    probes = [
        [
            "upstream",
            "check",
            "path -> upstream",
            "status",
            "ms",
            "budget ms",
            "type",
            "caching",
            "rate limit",
            "auth",
            "guards",
            "result",
        ]
    ]
    for r in reports:
        for p in r.probes:
            probes.append(
                [
                    r.name,
                    p.what,
                    p.path if p.path == p.target else f"{p.path} -> {p.target}",
                    str(p.status) if p.status is not None else (p.error or "-"),
                    f"{p.ms:g}" if p.ms is not None else "-",
                    f"{p.budget_ms:g}" if p.budget_ms is not None else "-",
                    p.content_type or "-",
                    _kv(p.caching),
                    _kv(p.rate_limit),
                    p.auth,
                    p.guards,
                    p.verdict.upper(),
                ]
            )
    out = [table(ups), ""]
    if len(probes) > 1:
        out += [table(probes), ""]
    for r in reports:
        for text in r.problems:
            out.append(f"FAIL {r.name}: {text}. Owner: {r.owner}" + (f" ({r.docs})" if r.docs != "-" else ""))
        out += [f"warn {r.name}: {text}" for text in r.warnings]
    failed = sum(not r.ok for r in reports)
    out.append(
        f"{len(reports) - failed}/{len(reports)} upstreams ready"
        + ("" if not failed else f"; {failed} need attention (see FAIL lines)")
    )
    return scrub("\n".join(out), secrets)


def run_doctor(config: Config, as_json: bool = False) -> int:
    """The CLI entry point: probe, print, exit 1 when any upstream has a problem."""
    reports = asyncio.run(diagnose(config))
    secrets = config.secret_values()
    print(to_json(reports, secrets) if as_json else render_text(reports, secrets))
    return 0 if all(r.ok for r in reports) else 1
