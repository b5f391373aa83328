"""The public listener's connection guard: its bookkeeping and its answers.

Owns: the table of connections per client address and in total (`limits.ConnTable`), the
counters and throttled log lines about shed load, cut slow clients and refused framing (exported
as `rproxy_connections_*`, `rproxy_slow_clients_closed_total`, `rproxy_requests_refused_total`),
and `answer`, a complete JSON error response written before any request reached the driver.
The protocol that applies them, one strict parse per head, is `listener.Connection`;
`listener.Listener` is this guard plus what its connections share.
Must not: parse requests, route, cache or rewrite.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from http import HTTPStatus
from typing import Final

from mypy_extensions import mypyc_attr

from proxy.core.errors import ProxyError, error_body
from proxy.core.limits import Admission, ConnLimits, ConnTable, Throttle
from proxy.metrics import Registry

log = logging.getLogger("proxy.connguard")
REPORT_EVERY: Final = 10.0  # seconds between log lines about shed load or cut clients


class TooManyConnections(ProxyError):
    status = 503
    code = "too_many_connections"


class RequestTimeout(ProxyError):
    status = 408
    code = "request_timeout"


class VersionNotSupported(ProxyError):
    status = 505
    code = "http_version_not_supported"


@dataclass(slots=True)
class GuardStats:
    admitted: int = 0
    shed_per_address: int = 0
    shed_total: int = 0
    reset: int = 0  # shed while too many shed connections were lingering: closed without a word
    header_timeouts: int = 0
    body_timeouts: int = 0
    send_timeouts: int = 0
    refused: int = 0


def answer(err: ProxyError, *extra: tuple[str, str]) -> bytes:
    """A complete HTTP/1.1 error response in the proxy's JSON shape, closing the connection."""
    rid = f"guard-{secrets.token_hex(6)}"
    body = error_body(err, route=None, upstream=None, request_id=rid)
    head = [
        f"HTTP/1.1 {err.status} {HTTPStatus(err.status).phrase}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
        f"X-Request-Id: {rid}",
        *(f"{k}: {v}" for k, v in extra),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


# `publicport.Listener` subclasses it and stays interpreted (setup.py): mypyc must allow that.
@mypyc_attr(allow_interpreted_subclasses=True)
class ConnGuard:
    """The bookkeeping of one listening socket (`listener.Listener` extends it)."""

    def __init__(
        self,
        limits: ConnLimits | None = None,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        registry: Registry | None = None,
    ) -> None:
        self.limits = limits or ConnLimits()
        self.loop = loop or asyncio.get_running_loop()
        self.table = ConnTable(self.limits)
        self.stats = GuardStats()
        self.lingering = 0
        self._shed_log = Throttle(REPORT_EVERY)
        self._slow_log = Throttle(REPORT_EVERY)
        r = registry or Registry()  # a private one when nobody exports them
        self.open_gauge = r.gauge("rproxy_connections_open", "Client connections open on the public listener")
        self.shed_total = r.counter(
            "rproxy_connections_shed_total",
            "Connections answered 503 at once: over the per-address or total limit",
            ("reason",),
        )
        self.slow_total = r.counter(
            "rproxy_slow_clients_closed_total",
            "Connections cut for not sending a request head or body, or not reading answers, in time",
            ("phase",),
        )
        self.refused_total = r.counter(
            "rproxy_requests_refused_total", "Requests refused by the listener for their framing", ("status",)
        )

    def admitted(self) -> None:
        self.stats.admitted += 1
        self.open_gauge.set((), self.table.open)

    def released(self, address: str) -> None:
        self.table.release(address)
        self.open_gauge.set((), self.table.open)

    def refused(self, status: int) -> None:
        self.stats.refused += 1
        self.refused_total.inc((str(status),))

    def shed(self, why: Admission, address: str) -> None:
        self.shed_total.inc((why.value,))
        if why is Admission.TOTAL:
            self.stats.shed_total += 1
        else:
            self.stats.shed_per_address += 1
        held = self._shed_log.allow(self.loop.time())
        if held is not None:
            log.warning(
                "shedding connections (%s): %d open of %d, %d from %s of %d; %d more shed since "
                "the last report",
                why.value,
                self.table.open,
                self.limits.total,
                self.table.count(address),
                address,
                self.limits.per_address,
                held,
            )

    def cut(self, which: str, address: str) -> None:
        self.slow_total.inc((which,))
        if which == "header":
            self.stats.header_timeouts += 1
        elif which == "send":
            self.stats.send_timeouts += 1
        else:
            self.stats.body_timeouts += 1
        held = self._slow_log.allow(self.loop.time())
        if held is not None:
            log.info(
                "closed a slow client (%s timeout) from %s; %d more since the last report",
                which,
                address,
                held,
            )
