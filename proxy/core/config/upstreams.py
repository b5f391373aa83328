"""Read the `upstreams` section into frozen settings.

Owns: per-upstream schema checks: URLs, credentials only from the environment, timeouts,
retries, rate limits, circuit breakers, health checks.
Must not: know about routes (that is `routes`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

from proxy.core.breaker import BreakerPolicy
from proxy.core.config.keys import children
from proxy.core.config.model import HealthCheck, RateLimit, Timeouts, UpstreamConfig
from proxy.core.config.reader import Reader
from proxy.core.config.source import KeyPath, format_path
from proxy.core.redact import is_secret_header
from proxy.core.retry import RetryPolicy

T = TypeVar("T")
_UPSTREAM_KEYS: Final = children("upstreams.*")


def read_upstreams(r: Reader, value: Any) -> tuple[UpstreamConfig, ...]:
    if value is None:
        r.error(("upstreams",), "at least one upstream is required")
        return ()
    m = r.mapping(("upstreams",), value, value.keys() if isinstance(value, dict) else ())
    return tuple(_upstream(r, ("upstreams", name), name, raw) for name, raw in m.items())


def _upstream(r: Reader, w: KeyPath, name: str, value: Any) -> UpstreamConfig:
    m = r.mapping(w, value, _UPSTREAM_KEYS)
    url = r.string((*w, "url"), m.get("url")).rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        r.error((*w, "url"), f"expected an http:// or https:// URL, got {url!r}")
    if parts.query or parts.fragment:
        r.error((*w, "url"), "must not carry a query or fragment")
    tls = r.mapping((*w, "tls"), m.get("tls"), children("upstreams.*.tls"))
    headers_raw = r.mapping(
        (*w, "headers"), m.get("headers"), m["headers"].keys() if isinstance(m.get("headers"), dict) else ()
    )
    headers = tuple((str(k), r.string((*w, "headers", k), v)) for k, v in headers_raw.items())
    for k, v in headers:
        _check_credential(r, (*w, "headers", k), k, v)
    to = timeouts(r, (*w, "timeout"), m.get("timeout"), Timeouts())
    return UpstreamConfig(
        name=name,
        url=url,
        owner=r.string((*w, "owner"), m.get("owner")),
        docs=r.string((*w, "docs"), m.get("docs")),
        verify_tls=r.boolean((*w, "tls", "verify"), tls.get("verify"), True),
        ca_file=r.string((*w, "tls", "ca_file"), tls.get("ca_file")) or None,
        headers=headers,
        forward_headers=names(r, (*w, "forward_headers"), m.get("forward_headers")),
        timeout=to or Timeouts(),
        retries=_retries(r, (*w, "retries"), m.get("retries")),
        max_connections=r.integer((*w, "max_connections"), m.get("max_connections"), 100, minimum=1),
        max_queue=r.integer((*w, "max_queue"), m.get("max_queue"), 10_000),
        rate_limit=_rate_limit(r, (*w, "rate_limit"), m.get("rate_limit")),
        circuit_breaker=_breaker(r, (*w, "circuit_breaker"), m.get("circuit_breaker")),
        health_check=_health(r, (*w, "health_check"), m.get("health_check")),
        version_header=r.string((*w, "version_header"), m.get("version_header")) or None,
    )


_AUTH_HEADERS: Final = frozenset({"authorization", "proxy-authorization"})


def _check_credential(r: Reader, w: KeyPath, name: str, value: str) -> None:
    """A credential header that expands to nothing (`Bearer ${TOKEN:-}` with TOKEN unset) would
    be sent as is: every call fails 401, or worse, reaches a vendor that allows anonymous use."""
    if not is_secret_header(name) or any(i.key == format_path(w) for i in r.issues):
        return  # an unset variable there is already reported
    parts = value.split()
    if not parts:
        r.error(w, "credential header is empty (is its environment variable set?)")
    elif name.lower() in _AUTH_HEADERS and len(parts) < 2:
        r.error(w, f"credential header has a scheme and an empty token ({parts[0]!r} and nothing after it)")


def timeouts(r: Reader, w: KeyPath, value: Any, base: Timeouts) -> Timeouts | None:
    if value is None:
        return None
    m = r.mapping(w, value, children("upstreams.*.timeout"))
    return Timeouts(
        connect=r.duration((*w, "connect"), m.get("connect"), base.connect),
        total=r.duration((*w, "total"), m.get("total"), base.total),
    )


def _retries(r: Reader, w: KeyPath, value: Any) -> RetryPolicy:
    if value is False or value == "off":
        return RetryPolicy(attempts=0)
    m = r.mapping(w, value, children("upstreams.*.retries"))
    base = RetryPolicy()
    return _build(
        r,
        w,
        base,
        lambda: RetryPolicy(
            attempts=r.integer((*w, "attempts"), m.get("attempts"), base.attempts),
            backoff=r.duration((*w, "backoff"), m.get("backoff"), base.backoff),
            max_backoff=r.duration((*w, "max_backoff"), m.get("max_backoff"), base.max_backoff),
        ),
    )


def _rate_limit(r: Reader, w: KeyPath, value: Any) -> RateLimit | None:
    if value is None:
        return None
    m = r.mapping(w, value, children("upstreams.*.rate_limit"))
    per_second = m.get("per_second")
    if isinstance(per_second, bool) or not isinstance(per_second, int | float) or per_second <= 0:
        r.error((*w, "per_second"), "expected a positive number")
        per_second = 1
    burst = r.integer((*w, "burst"), m.get("burst"), max(1, int(per_second)), minimum=1)
    return RateLimit(per_second=float(per_second), burst=burst)


def _breaker(r: Reader, w: KeyPath, value: Any) -> BreakerPolicy:
    base = BreakerPolicy()
    if value is None:
        return base
    m = r.mapping(w, value, children("upstreams.*.circuit_breaker"))
    slow = m.get("slow_call")
    return _build(
        r,
        w,
        base,
        lambda: BreakerPolicy(
            failure_rate=r.percent((*w, "failure_rate"), m.get("failure_rate"), base.failure_rate),
            minimum_calls=r.integer((*w, "minimum_calls"), m.get("minimum_calls"), base.minimum_calls, 1),
            window=r.duration((*w, "window"), m.get("window"), base.window),
            slow_call=None if slow is None else r.duration((*w, "slow_call"), slow, 0.0),
            open_for=r.duration((*w, "open_for"), m.get("open_for"), base.open_for),
            half_open_probes=r.integer(
                (*w, "half_open_probes"), m.get("half_open_probes"), base.half_open_probes, 1
            ),
        ),
    )


def _build(r: Reader, w: KeyPath, default: T, make: Callable[[], T]) -> T:
    """Build a core policy; its own range checks become config errors at this key."""
    try:
        return make()
    except ValueError as exc:
        r.error(w, str(exc))
        return default


def _health(r: Reader, w: KeyPath, value: Any) -> HealthCheck | None:
    if value is None:
        return None
    m = r.mapping(w, value, children("upstreams.*.health_check"))
    path = r.string((*w, "path"), m.get("path"), "/")
    if not path.startswith("/"):
        r.error((*w, "path"), "must start with /")
    return HealthCheck(
        path=path,
        interval=r.duration((*w, "interval"), m.get("interval"), 10.0),
        timeout=r.duration((*w, "timeout"), m.get("timeout"), 2.0),
        unhealthy_after=r.integer((*w, "unhealthy_after"), m.get("unhealthy_after"), 3, 1),
        healthy_after=r.integer((*w, "healthy_after"), m.get("healthy_after"), 2, 1),
    )


def names(r: Reader, w: KeyPath, value: Any) -> tuple[str, ...]:
    """A list of header names, lower-case."""
    return tuple(r.string((*w, i), h).lower() for i, h in enumerate(r.sequence(w, value)))
