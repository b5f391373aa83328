"""The fleet's one admin view: merging workers' metrics and status."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from proxy.fleet import merge_metrics, merge_status, with_label


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("up 1", 'up{worker="3"} 1'),
        ('req{a="b"} 2', 'req{a="b",worker="3"} 2'),
        ('req{a="x}y"} 2', 'req{a="x}y",worker="3"} 2'),
        ('req{a="q\\"}"} 2', 'req{a="q\\"}",worker="3"} 2'),
        ("req{} 5", 'req{worker="3"} 5'),
        ('h_bucket{le="+Inf"} 7 1700000000', 'h_bucket{le="+Inf",worker="3"} 7 1700000000'),
    ],
)
def test_with_label(line: str, expected: str) -> None:
    assert with_label(line, "worker", "3") == expected


def test_merge_metrics_keeps_families_together_and_parses() -> None:
    one = '# HELP a_total A\n# TYPE a_total counter\na_total{r="x"} 1\n# HELP g G\n# TYPE g gauge\ng 5\n'
    two = '# HELP a_total A\n# TYPE a_total counter\na_total{r="x"} 4\n# HELP g G\n# TYPE g gauge\ng 7\n'
    merged = merge_metrics([(0, one), (1, two)])
    families = {f.name: f for f in text_string_to_metric_families(merged)}
    assert sorted((s.labels["worker"], s.value) for s in families["a"].samples) == [("0", 1.0), ("1", 4.0)]
    assert sorted((s.labels["worker"], s.value) for s in families["g"].samples) == [("0", 5.0), ("1", 7.0)]
    assert merged.count("# TYPE a_total counter") == 1


def test_merge_status_sums_counters_and_shows_the_worst_breaker() -> None:
    def doc(state: str, requests: int, hits: int, lkg: float | None) -> dict[str, object]:
        return {
            "upstreams": [
                {
                    "name": "p",
                    "breaker": {"state": state},
                    "last_success": requests,
                    "last_failure": None,
                    "health": "healthy",
                }
            ],
            "routes": [
                {
                    "name": "r",
                    "requests": requests,
                    "hits": hits,
                    "stale": 1,
                    "guard_rejections": 0,
                    "lkg_age": lkg,
                }
            ],
            "cache": {"entries": 2, "bytes": 10, "max_bytes": 100, "evictions": 0},
        }

    merged = merge_status([doc("closed", 10, 5, 30.0), doc("open", 30, 25, 10.0)])
    assert merged["workers"] == 2
    assert merged["upstreams"][0]["breaker"]["state"] == "open"
    assert merged["upstreams"][0]["last_success"] == 30
    route = merged["routes"][0]
    assert (route["requests"], route["hits"], route["stale"], route["lkg_age"]) == (40, 30, 2, 10.0)
    assert route["hit_ratio"] == 0.75
    assert merged["cache"]["entries"] == 4 and merged["cache"]["max_bytes"] == 200
