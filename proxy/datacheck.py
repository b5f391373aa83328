"""Sanity guards on a fetched body, as the request path applies them.

Owns: running a route's guards on a fresh 2xx body (decoded), hysteresis per key, and what a
rejection leaves behind: quarantine, metrics, an alert event, the contract-drift record.
Must not: store or serve anything (that is `fetch` and `handler`); decide rules (that is `guards`).
"""

from __future__ import annotations

import json
from typing import Any

from proxy.clock import Clock
from proxy.core import freshness
from proxy.core.encoding import DecodeError, decode
from proxy.core.errors import DataRejected
from proxy.core.guards import Verdict, Violation, check_body
from proxy.core.model import Entry, Headers
from proxy.fetched import Fetched
from proxy.quarantine import Quarantine
from proxy.runtime import RouteState
from proxy.telemetry import Telemetry


class DataCheck:
    def __init__(self, clock: Clock, telemetry: Telemetry, quarantine: Quarantine) -> None:
        self.clock, self.telemetry, self.quarantine = clock, telemetry, quarantine

    def check(self, rs: RouteState, entry: Entry | None, fetched: Fetched) -> tuple[Verdict, Any]:
        rules, limit = rs.config.guards, rs.config.max_object_size
        try:
            body = decode(fetched.body, fetched.coding(), limit)
        except DecodeError as exc:  # a bomb, a corrupt stream, a coding we cannot read
            return Verdict(False, (Violation("encoding", "$", str(exc)[:80]),), False), None
        # Parsing the last good copy costs as much as parsing the new one: only relative rules need it.
        last_good = _last_good(entry, limit) if any(rule.relative for rule in rules) else None
        return check_body(rules, body, last_good=last_good, max_bytes=limit)

    def verdict(
        self,
        rs: RouteState,
        key: str,
        entry: Entry | None,
        fetched: Fetched,
        checked: tuple[Verdict, Any] | None,
    ) -> DataRejected | None:
        if not rs.config.guards or not 200 <= fetched.status < 300:
            return None
        verdict, doc = checked or self.check(rs, entry, fetched)
        hysteresis = rs.hysteresis_for(key)
        now = self.clock.now()
        if verdict.ok:
            hysteresis.reset()
            self._drift(rs, doc, now)
            return None
        if verdict.relative_only and hysteresis.observe(verdict, doc):
            self.telemetry.event(
                "guard_change_confirmed",
                now,
                level="info",
                route=rs.config.name,
                rules=[v.label() for v in verdict.violations],
            )
            self._drift(rs, doc, now)
            return None
        self.reject(rs, fetched, verdict, now, key)
        return DataRejected(verdict.detail(), [v.label() for v in verdict.violations])

    def reject(self, rs: RouteState, fetched: Fetched, verdict: Verdict, now: float, key: str = "") -> None:
        telemetry, route = self.telemetry, rs.config.name
        rs.guard_rejections += 1
        rs.upstream.track.data_faults += 1
        self.quarantine.add(route, fetched.body, verdict, now, fetched.status, fetched.headers, key)
        for violation in verdict.violations:
            telemetry.guard_rejections.inc((route, violation.rule))
        telemetry.data_faults.inc((rs.upstream.name,))
        telemetry.event(
            "guard_rejected",
            now,
            route=route,
            upstream=rs.upstream.name,
            violations=[{"rule": v.rule, "path": v.path, "value": v.value} for v in verdict.violations],
        )

    def _drift(self, rs: RouteState, doc: Any, now: float) -> None:
        if doc is None:
            return
        change = rs.drift.observe(doc)
        if change is not None:
            self.telemetry.drift.inc((rs.config.name,))
            self.telemetry.event(
                "contract_drift",
                now,
                route=rs.config.name,
                upstream=rs.upstream.name,
                change=change.summary(),
            )


def _coding(headers: Headers) -> str | None:
    return freshness.header(headers, "content-encoding")


def _last_good(entry: Entry | None, limit: int) -> Any | None:
    """The stored copy as a document, decoded like a new body: relative guards compare like with like."""
    if entry is None or not 200 <= entry.status < 300:
        return None
    try:
        return json.loads(decode(entry.body, _coding(entry.headers), limit))
    except (ValueError, RecursionError, DecodeError):
        return None
