"""The error tree: every failure the proxy names, with the HTTP status it becomes.

Owns: error codes, statuses and the JSON body shape of errors the proxy itself generates.
Must not: import aiohttp or any client library: foreign errors are mapped onto this tree once,
at the boundary where they happen (`upstream`).
"""

from __future__ import annotations

import json
from typing import ClassVar

from proxy.core.model import Headers


class ProxyError(Exception):
    status: ClassVar[int] = 502
    code: ClassVar[str] = "proxy_error"
    # a failure talking to the upstream (counts for the breaker, stale-if-error)
    transport: ClassVar[bool] = False

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after

    @property
    def reason(self) -> str:
        """The reason as Cache-Status details, metric labels and logs spell it: `circuit-open`
        (the JSON error code keeps its snake_case identifier, `circuit_open`)."""
        return self.code.replace("_", "-")


class NoRoute(ProxyError):
    status = 404
    code = "no_route"


class MethodNotAllowed(ProxyError):
    status = 405
    code = "method_not_allowed"

    def __init__(self, message: str, allow: tuple[str, ...]) -> None:
        super().__init__(message)
        self.allow = allow


class BadRequest(ProxyError):
    status = 400
    code = "bad_request"


class PayloadTooLarge(ProxyError):
    status = 413
    code = "payload_too_large"


class ClientGone(ProxyError):
    """The client closed the connection mid-request: logged as 499, as nginx does; no one
    reads the answer."""

    status = 499
    code = "client_closed_request"


class UriTooLong(ProxyError):
    status = 414
    code = "uri_too_long"


class HeadersTooLarge(ProxyError):
    status = 431
    code = "request_headers_too_large"


class NotCached(ProxyError):
    """`only-if-cached` with nothing stored (RFC 9111 5.2.1.7)."""

    status = 504
    code = "not_cached"


class RangeNotSatisfiable(ProxyError):
    """No requested range overlaps the stored representation (RFC 9110 15.5.17)."""

    status = 416
    code = "range_not_satisfiable"


class UpstreamError(ProxyError):
    """The upstream answered in a way we cannot use, or the connection broke."""

    status = 502
    code = "upstream_error"
    transport = True


class UpstreamConnectError(UpstreamError):
    code = "upstream_unreachable"


class UpstreamOutcomeUnknown(UpstreamError):
    """A write without Idempotency-Key reached the vendor and no clean answer came back: it is
    never retried, so the client must find out what happened before trying again."""

    code = "upstream_outcome_unknown"


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"


class UpstreamStatus(UpstreamError):
    """A 5xx or 429 from the upstream: a failure we may hide behind a stale copy."""

    code = "upstream_status"

    def __init__(
        self,
        message: str,
        upstream_status: int,
        *,
        retry_after: float | None = None,
        answer: tuple[Headers, bytes] | None = None,
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.upstream_status = upstream_status
        self.answer = answer  # the vendor's own headers and complete body, to pass on


class CircuitOpen(ProxyError):
    status = 503
    code = "circuit_open"


class Overloaded(ProxyError):
    """Bulkhead full or rate limit exceeded toward the upstream."""

    status = 503
    code = "upstream_overloaded"


class DataRejected(ProxyError):
    status = 502
    code = "upstream_data_rejected"

    def __init__(self, message: str, rules: list[str]) -> None:
        super().__init__(message)
        self.rules = rules


def error_body(err: ProxyError, *, route: str | None, upstream: str | None, request_id: str) -> bytes:
    body: dict[str, object] = {
        "error": err.code,
        "message": err.message,
        "route": route,
        "upstream": upstream,
        "request_id": request_id,
    }
    if isinstance(err, DataRejected):
        body["rules"] = err.rules
    if isinstance(err, UpstreamStatus):
        body["upstream_status"] = err.upstream_status
    return json.dumps(body).encode()
