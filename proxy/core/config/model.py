"""The typed, frozen configuration every other module reads.

Owns: the shape and defaults of the configuration (DESIGN.md section 3).
Must not: parse YAML or read files (that is `config`); hold behaviour beyond small accessors.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Final

from proxy.core.breaker import BreakerPolicy
from proxy.core.cachecontrol import DEFAULT_TARGETS
from proxy.core.guards import Rule
from proxy.core.limits import ConnLimits
from proxy.core.redact import is_secret_header
from proxy.core.retry import RetryPolicy
from proxy.core.routing import Pattern

ALL_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
CACHEABLE_METHODS: Final = frozenset({"GET", "HEAD"})
Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Listen:
    host: str
    port: int

    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ServerTls:
    cert_file: str
    key_file: str


@dataclass(frozen=True, slots=True)
class ServerConfig:
    listen: Listen = Listen("127.0.0.1", 8080)
    workers: int = 1  # 0 means "auto": one per core
    tls: ServerTls | None = None
    shutdown_grace: float = 10.0
    max_body: int = 1024 * 1024  # request bodies, per route overridable
    limits: ConnLimits = ConnLimits()  # noqa: RUF009 - frozen


@dataclass(frozen=True, slots=True)
class AdminConfig:
    listen: Listen = Listen("127.0.0.1", 9901)
    token: str = ""
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class RedisConfig:
    url: str = "redis://127.0.0.1:6379/0"
    namespace: str = "rproxy"
    timeout: float = 0.1


@dataclass(frozen=True, slots=True)
class CacheConfig:
    backend: str = "memory"
    max_bytes: int = 256 * 1024 * 1024
    snapshot: str | None = None
    snapshot_interval: float = 60.0
    redis: RedisConfig = RedisConfig()
    targeted_fields: tuple[str, ...] = DEFAULT_TARGETS  # every route's default (RFC 9213 target list)


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: str = "info"
    access: str = "stdout"
    redact_params: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AlertsConfig:
    webhook: str | None = None


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 1.0
    total: float = 5.0


@dataclass(frozen=True, slots=True)
class RateLimit:
    per_second: float
    burst: int


@dataclass(frozen=True, slots=True)
class HealthCheck:
    path: str
    interval: float = 10.0
    timeout: float = 2.0
    unhealthy_after: int = 3
    healthy_after: int = 2


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    name: str
    url: str
    owner: str = ""
    docs: str = ""
    verify_tls: bool = True
    ca_file: str | None = None
    headers: Headers = ()
    # Client headers forwarded on cached routes besides keyed ones (lower-case): see relay.
    forward_headers: tuple[str, ...] = ()
    timeout: Timeouts = Timeouts()
    retries: RetryPolicy = RetryPolicy()  # noqa: RUF009 - frozen, so sharing is safe
    max_connections: int = 100
    max_queue: int = 10_000
    rate_limit: RateLimit | None = None
    circuit_breaker: BreakerPolicy = BreakerPolicy()  # noqa: RUF009 - frozen
    health_check: HealthCheck | None = None
    version_header: str | None = None


@dataclass(frozen=True, slots=True)
class CacheKey:
    query: str | tuple[str, ...] = "all"  # "all", "none", or the names that are keyed
    headers: tuple[str, ...] = ()  # lower-case


@dataclass(frozen=True, slots=True)
class RouteCache:
    ttl: float = 0.0
    force_ttl: bool = False
    stale_while_revalidate: float = 0.0
    stale_if_error: float = 0.0
    stale_if_slow: float = 0.0  # 0: off; else the latency budget before a usable copy is served
    key: CacheKey = CacheKey()
    share_authorized: bool = False  # store responses to requests with Authorization
    store_set_cookie: bool = False  # store responses that set cookies
    lkg_max_age: float = 7 * 86400.0
    lock_timeout: float = 5.0  # coalescing wait, as nginx's proxy_cache_lock_timeout
    targeted_fields: tuple[str, ...] = DEFAULT_TARGETS  # lower-case, first present and valid wins
    heuristic_fraction: float = 0.1  # of (Date - Last-Modified), RFC 9111 4.2.2; 0: off
    heuristic_max: float = 86400.0


@dataclass(frozen=True, slots=True)
class Fallback:
    status: int
    body: bytes
    content_type: str = "application/json"


@dataclass(frozen=True, slots=True)
class RouteConfig:
    name: str
    match: Pattern
    methods: frozenset[str]
    upstream: str
    rewrite: str | None = None
    any_method: bool = False  # `*` or no `methods`: extension methods too (passed, never cached)
    cache: RouteCache | None = None
    guards: tuple[Rule, ...] = ()
    confirm_after: int = 3
    guards_trip_breaker: bool = False
    guards_oversize: str = "reject"  # "pass": a body too large to check streams through unchecked
    # A vendor 5xx/429 with no usable copy: "replace" with our JSON 502 (DESIGN.md's contract), or
    # "pass" the vendor's own status, body and Retry-After on.
    upstream_errors: str = "replace"
    fallback: Fallback | None = None
    max_object_size: int = 8 * 1024 * 1024
    max_body: int | None = None
    timeout: Timeouts | None = None
    sample: str | None = None


@dataclass(frozen=True, slots=True)
class Config:
    path: str
    server: ServerConfig = ServerConfig()
    admin: AdminConfig = AdminConfig()
    cache: CacheConfig = CacheConfig()
    log: LogConfig = LogConfig()
    alerts: AlertsConfig = AlertsConfig()
    upstreams: tuple[UpstreamConfig, ...] = ()
    routes: tuple[RouteConfig, ...] = ()
    notices: tuple[str, ...] = field(default=())

    def upstream(self, name: str) -> UpstreamConfig:
        for up in self.upstreams:
            if up.name == name:
                return up
        raise KeyError(name)

    def secret_values(self) -> tuple[str, ...]:
        """Every configured value that must never appear in logs or /config."""
        # Only credential headers: X-API-Version's value is not a secret to scrub everywhere.
        values = [v for up in self.upstreams for k, v in up.headers if is_secret_header(k)]
        values += [part for v in list(values) for part in v.split()[1:]]  # "Bearer <token>": the token
        values += [self.admin.token] if self.admin.token else []
        return tuple(v for v in values if len(v) >= 4)
