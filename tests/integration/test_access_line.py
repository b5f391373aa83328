"""The access line is written from a template (issue 12): byte for byte the compact JSON of the
documented record (README "Access log"), for any values a transaction can carry, through the
memo of repeated fields, across a reload that changes what is secret, and with NaN still refused.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.accesslog import AccessLog
from proxy.alerts import Alerts
from proxy.core.redact import DEFAULT_SECRET_PARAMS, redact_path_and_query, scrub
from proxy.deliver import Txn
from proxy.telemetry import Telemetry

NOW = 1_764_835_200.123456  # 2025-12-04T08:00:00.123Z


def expected_line(txn: Txn, now: float, secrets: tuple[str, ...] = ()) -> str:
    """The record as the README documents it, encoded as the log always encoded it."""
    second = int(now)
    time = dt.datetime.fromtimestamp(second, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    record: dict[str, Any] = {
        "time": f"{time}.{int((now - second) * 1000):03d}+00:00",
        "request_id": txn.request_id,
        "client": txn.client,
        "method": txn.method,
        "path": scrub(redact_path_and_query(txn.path, tuple(DEFAULT_SECRET_PARAMS)), secrets),
        "route": txn.route,
        "upstream": txn.upstream,
        "status": txn.status,
        "x_cache": txn.x_cache,
        "upstream_status": txn.upstream_status,
        "upstream_ms": None if txn.upstream_ms is None else round(txn.upstream_ms, 2),
        "total_ms": round((now - txn.start) * 1000.0, 2),
        "bytes": txn.bytes,
        "retries": txn.retries,
        "breaker": txn.breaker,
        "guard": txn.guard,
        "stale_reason": txn.stale_reason,
    }
    return json.dumps(record, separators=(",", ":"), allow_nan=False)


def logged(txns: list[tuple[Txn, float]], secrets: tuple[str, ...] = ()) -> tuple[list[str], AccessLog]:
    """Lines a real Telemetry writes to a real file for these transactions (no loop: each line
    is written as it comes)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "access.log"
        access = AccessLog()
        access.open(str(path))
        telemetry = Telemetry(access=access, alerts=Alerts(None), secret_values=secrets)
        for txn, now in txns:
            telemetry.transaction(txn, now)
        access.flush()
        return path.read_text(encoding="utf-8").splitlines(), access


names = st.none() | st.text(max_size=12)
texts = st.text(max_size=40)  # quotes, backslashes, controls, non-ASCII, surrogates...
txns = st.builds(
    Txn,
    request_id=texts,
    start=st.just(0.0),
    method=st.sampled_from(["GET", "HEAD", "POST"]) | texts,
    path=st.sampled_from(["/api/items/1", "/a?token=abc&b=2", '/caf\u00e9?q="x"']) | texts,
    client=st.sampled_from(["127.0.0.1", "::1", ""]),
    route=names,
    upstream=names,
    status=st.integers(100, 599),
    x_cache=st.sampled_from(["HIT", "MISS", "STALE", "BYPASS"]),
    upstream_status=st.none() | st.integers(100, 599),
    upstream_ms=st.none() | st.floats(0, 1e6, allow_nan=False),
    retries=st.integers(0, 5),
    stale_reason=names,
    guard=names,
    breaker=st.none() | st.sampled_from(["closed", "open", "half_open"]),
    bytes=st.integers(0, 10**9),
)


@settings(max_examples=150, deadline=None)
@given(txns, st.floats(0, 1e4, allow_nan=False), st.floats(1e9, 2e9, allow_nan=False))
def test_a_line_is_the_documented_record_as_compact_json(txn: Txn, elapsed: float, now: float) -> None:
    txn.start = now - elapsed
    (line,), access = logged([(txn, now)])
    assert line == expected_line(txn, now)
    assert access.rejected == 0


def test_repeated_fields_come_from_the_memo_and_what_varies_does_not() -> None:
    hit = ("GET", "/api/items/1", "127.0.0.1", "items", "origin", 200, "HIT")
    first = Txn("r1", NOW, *hit, bytes=1024)
    second = Txn("r2", NOW + 0.5, *hit, bytes=1024)
    other = Txn("r3", NOW, "GET", "/api/items/2", "127.0.0.1", "items", "origin", 304, "HIT", bytes=0)
    batch = [(first, NOW), (second, NOW + 1.25), (other, NOW + 2.0), (first, NOW + 3.0)]
    lines, _ = logged(batch)
    assert lines == [expected_line(txn, now) for txn, now in batch]
    assert [json.loads(line)["total_ms"] for line in lines] == [0.0, 750.0, 2000.0, 3000.0]


def test_a_reload_that_adds_a_secret_redacts_paths_already_seen() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "access.log"
        access = AccessLog()
        access.open(str(path))
        telemetry = Telemetry(access=access, alerts=Alerts(None))
        txn = Txn("r1", NOW, "GET", "/api/items/1?voucher=abc123&ref=x9x9x9", "127.0.0.1", "items")
        telemetry.transaction(txn, NOW)
        telemetry.secret_params = (*telemetry.secret_params, "voucher")  # as reload.py sets them
        telemetry.transaction(txn, NOW)
        telemetry.secret_values = ("x9x9x9",)
        telemetry.transaction(txn, NOW)
        paths = [json.loads(line)["path"] for line in path.read_text().splitlines()]
    assert paths == [
        "/api/items/1?voucher=abc123&ref=x9x9x9",
        "/api/items/1?voucher=REDACTED&ref=x9x9x9",
        "/api/items/1?voucher=REDACTED&ref=REDACTED",
    ]


def test_a_nan_latency_is_refused_and_counted_not_written() -> None:
    txn = Txn("r1", NOW, "GET", "/a", "127.0.0.1", upstream="origin", upstream_ms=float("nan"))
    lines, access = logged([(txn, NOW)])
    assert lines == [] and access.rejected == 1
