"""`Telemetry.transaction` counts into series it resolves once per (route, method, status,
X-Cache): what it counts is what `rproxy_requests_total` and the duration histograms show,
including past the memo's bound (clients choose methods)."""

from __future__ import annotations

from proxy.accesslog import AccessLog
from proxy.alerts import Alerts
from proxy.deliver import Txn
from proxy.telemetry import _MEMO, Telemetry


def txn(method: str = "GET", status: int = 200, x_cache: str = "MISS", route: str | None = "items") -> Txn:
    t = Txn("id1", 100.0, method, "/api/items/1", "", route=route, upstream="origin")
    t.status, t.x_cache = status, x_cache
    return t


def test_transactions_are_counted_by_route_method_status_and_x_cache() -> None:
    telemetry = Telemetry(access=AccessLog(), alerts=Alerts(None))
    telemetry.transaction(txn(), 100.25)
    telemetry.transaction(txn(), 100.5)
    telemetry.transaction(txn(status=404, x_cache="BYPASS"), 101.0)
    late = txn(route=None)
    late.upstream_ms = 40.0
    telemetry.transaction(late, 102.0)
    assert telemetry.requests.value(("items", "GET", "200", "MISS")) == 2
    assert telemetry.requests.value(("items", "GET", "404", "BYPASS")) == 1
    assert telemetry.requests.value(("-", "GET", "200", "MISS")) == 1  # no route: "-"
    assert (telemetry.duration.count(("items",)), telemetry.duration.sum(("items",))) == (3, 1.75)
    assert telemetry.duration.count(("-",)) == 1
    assert telemetry.upstream_latency.count(("origin",)) == 1
    assert telemetry.upstream_latency.sum(("origin",)) == 0.04
    text = telemetry.registry.render()
    assert 'rproxy_requests_total{route="items",method="GET",status="200",x_cache="MISS"} 2' in text


def test_past_the_memo_every_transaction_is_still_counted() -> None:
    telemetry = Telemetry(access=AccessLog(), alerts=Alerts(None))
    methods = [f"M{i}" for i in range(_MEMO + 10)]
    for method in methods:
        telemetry.transaction(txn(method=method, status=405), 100.5)
    telemetry.transaction(txn(method=methods[-1], status=405), 100.5)  # an unremembered one again
    assert telemetry.requests.value(("items", methods[0], "405", "MISS")) == 1
    assert telemetry.requests.value(("items", methods[-1], "405", "MISS")) == 2
    assert telemetry.duration.count(("items",)) == _MEMO + 11
