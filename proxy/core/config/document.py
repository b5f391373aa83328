"""The whole config document: a `Source` (values with their lines) to a frozen `Config`.

Owns: the top-level sections (server, admin, cache, log, alerts) and every load-time check;
upstreams and routes are read by `routes`. Each error names `file:line: key: message`, and all
of them are reported at once (`ConfigError`).
Must not: read files or environment, or import a YAML library (that is `proxy.config`).
"""

from __future__ import annotations

from typing import Any

from proxy.core.cachecontrol import DEFAULT_TARGETS
from proxy.core.config.keys import children
from proxy.core.config.model import (
    AdminConfig,
    AlertsConfig,
    CacheConfig,
    Config,
    Listen,
    LogConfig,
    RedisConfig,
    ServerConfig,
    ServerTls,
)
from proxy.core.config.reader import ConfigIssue, Reader
from proxy.core.config.routes import read_routes, read_targeted
from proxy.core.config.source import KeyPath, Source
from proxy.core.config.upstreams import read_upstreams
from proxy.core.limits import ConnLimits


class ConfigError(Exception):
    def __init__(self, issues: list[ConfigIssue]) -> None:
        super().__init__("\n".join(str(i) for i in issues))
        self.issues = issues


def read_document(source: Source, path: str) -> Config:
    """Validate the document; raise ConfigError carrying every problem found."""
    r = Reader(source)
    top = r.mapping((), source.data, children(""))
    upstreams = read_upstreams(r, top.get("upstreams"))
    cache = _cache(r, top.get("cache"))
    config = Config(
        path=path,
        server=_server(r, top.get("server")),
        admin=_admin(r, top.get("admin")),
        cache=cache,
        log=_log(r, top.get("log")),
        alerts=AlertsConfig(
            webhook=r.string(
                ("alerts", "webhook"),
                r.mapping(("alerts",), top.get("alerts"), children("alerts")).get("webhook"),
            )
            or None
        ),
        upstreams=upstreams,
        routes=read_routes(r, top.get("routes"), {u.name for u in upstreams}, cache.targeted_fields),
    )
    if not config.admin.listen.is_loopback() and not config.admin.token:
        r.error(("admin", "listen"), "an admin listener off loopback needs admin.token")
    if not config.routes:
        r.error(("routes",), "at least one route is required")
    if r.issues:
        raise ConfigError(sorted(r.issues, key=lambda i: i.line))
    return config


def _listen(r: Reader, where: KeyPath, value: Any, default: Listen) -> Listen:
    if value is None:
        return default
    text = r.string(where, value)
    host, sep, port_text = text.rpartition(":")
    if not sep or not (port_text.isascii() and port_text.isdigit()) or not 0 <= int(port_text) <= 65535:
        r.error(where, f"expected host:port, got {text!r}")
        return default
    return Listen(host.strip("[]") or "0.0.0.0", int(port_text))


def _server(r: Reader, value: Any) -> ServerConfig:
    m = r.mapping(("server",), value, children("server"))
    workers_raw = m.get("workers")
    workers = 0 if workers_raw == "auto" else r.integer(("server", "workers"), workers_raw, 1, minimum=1)
    tls = None
    if m.get("tls") is not None:
        t = r.mapping(("server", "tls"), m["tls"], children("server.tls"))
        tls = ServerTls(
            r.string(("server", "tls", "cert_file"), t.get("cert_file")),
            r.string(("server", "tls", "key_file"), t.get("key_file")),
        )
        if not tls.cert_file or not tls.key_file:
            r.error(("server", "tls"), "needs both cert_file and key_file")
    return ServerConfig(
        listen=_listen(r, ("server", "listen"), m.get("listen"), ServerConfig().listen),
        workers=workers,
        tls=tls,
        shutdown_grace=r.duration(("server", "shutdown_grace"), m.get("shutdown_grace"), 10.0),
        max_body=r.size(("server", "max_body"), m.get("max_body"), ServerConfig().max_body),
        limits=_limits(r, m.get("limits")),
    )


def _limits(r: Reader, value: Any) -> ConnLimits:
    """Connection limits on the public listener; behind a load balancer every client shares one
    address, so raise `per_client` there."""
    w: KeyPath = ("server", "limits")
    m = r.mapping(w, value, children("server.limits"))
    base = ConnLimits()
    try:
        return ConnLimits(
            per_address=r.integer((*w, "per_client"), m.get("per_client"), base.per_address, minimum=1),
            total=r.integer((*w, "total"), m.get("total"), base.total, minimum=1),
            header_timeout=_deadline(r, w, m, "header_timeout", base.header_timeout),
            body_timeout=_deadline(r, w, m, "body_timeout", base.body_timeout),
            send_timeout=_deadline(r, w, m, "send_timeout", base.send_timeout),
        )
    except ValueError as exc:
        r.error(w, str(exc))
        return base


def _deadline(r: Reader, w: KeyPath, m: dict[str, Any], name: str, default: float) -> float:
    """A listener deadline: 0s would cut every client at once, so it is refused at its own key."""
    seconds = r.duration((*w, name), m.get(name), default)
    if seconds <= 0:
        r.error((*w, name), "must be longer than 0s")
        return default
    return seconds


def _admin(r: Reader, value: Any) -> AdminConfig:
    if value is False or value == "off":
        return AdminConfig(enabled=False)
    m = r.mapping(("admin",), value, children("admin"))
    return AdminConfig(
        listen=_listen(r, ("admin", "listen"), m.get("listen"), AdminConfig().listen),
        token=r.string(("admin", "token"), m.get("token")),
    )


def _cache(r: Reader, value: Any) -> CacheConfig:
    w: KeyPath = ("cache",)
    m = r.mapping(w, value, children("cache"))
    backend = r.string((*w, "backend"), m.get("backend"), "memory")
    if backend not in ("memory", "redis"):
        r.error((*w, "backend"), f"expected memory or redis, got {backend!r}")
    rm = r.mapping((*w, "redis"), m.get("redis"), children("cache.redis"))
    redis = RedisConfig(
        url=r.string((*w, "redis", "url"), rm.get("url"), RedisConfig().url),
        namespace=r.string((*w, "redis", "namespace"), rm.get("namespace"), "rproxy"),
        timeout=r.duration((*w, "redis", "timeout"), rm.get("timeout"), 0.1),
    )
    return CacheConfig(
        backend=backend,
        max_bytes=r.size((*w, "max_bytes"), m.get("max_bytes"), CacheConfig().max_bytes),
        snapshot=r.string((*w, "snapshot"), m.get("snapshot")) or None,
        snapshot_interval=r.duration((*w, "snapshot_interval"), m.get("snapshot_interval"), 60.0),
        redis=redis,
        targeted_fields=read_targeted(r, (*w, "targeted_fields"), m.get("targeted_fields"), DEFAULT_TARGETS),
    )


def _log(r: Reader, value: Any) -> LogConfig:
    m = r.mapping(("log",), value, children("log"))
    level = r.string(("log", "level"), m.get("level"), "info").lower()
    if level not in ("debug", "info", "warning", "error"):
        r.error(("log", "level"), "expected debug, info, warning or error")
    access = m.get("access")
    access_text = "off" if access is False else r.string(("log", "access"), access, "stdout")
    params = tuple(
        r.string(("log", "redact_params", i), p)
        for i, p in enumerate(r.sequence(("log", "redact_params"), m.get("redact_params")))
    )
    return LogConfig(level=level, access=access_text, redact_params=params)
