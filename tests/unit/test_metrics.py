"""Metrics registry: values and text format, checked with the official client's parser."""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from proxy.metrics import (
    DEFAULT_LATENCY_BUCKETS,
    Family,
    Registry,
    Sample,
    bucket,
    escape_label_value,
    format_value,
)


def parse(text: str) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    """Family name -> [(sample name, labels, value)], via prometheus_client's parser."""
    out: dict[str, list[tuple[str, dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(text):
        out[fam.name] = [(s.name, dict(s.labels), float(s.value)) for s in fam.samples]
    return out


def types_and_help(text: str) -> dict[str, tuple[str, str]]:
    return {f.name: (f.type, f.documentation) for f in text_string_to_metric_families(text)}


def test_counter_values_per_label_tuple() -> None:
    reg = Registry()
    c = reg.counter("rproxy_requests_total", "Requests handled.", ("route", "cache"))
    c.inc(("prices", "HIT"))
    c.inc(("prices", "HIT"), 2)
    c.inc(("prices", "MISS"))
    assert c.value(("prices", "HIT")) == 3
    assert c.value(("stock", "HIT")) == 0
    fams = parse(reg.render())
    # The official parser strips `_total` from the family name, not from the sample.
    assert fams["rproxy_requests"] == [
        ("rproxy_requests_total", {"route": "prices", "cache": "HIT"}, 3.0),
        ("rproxy_requests_total", {"route": "prices", "cache": "MISS"}, 1.0),
    ]
    assert types_and_help(reg.render())["rproxy_requests"] == ("counter", "Requests handled.")


def test_unlabelled_metrics_render_zero_before_first_use() -> None:
    reg = Registry()
    reg.counter("rproxy_reloads_total", "Reloads.")
    reg.gauge("rproxy_inflight", "In flight.")
    fams = parse(reg.render())
    assert fams["rproxy_reloads"] == [("rproxy_reloads_total", {}, 0.0)]
    assert fams["rproxy_inflight"] == [("rproxy_inflight", {}, 0.0)]


def test_labelled_metric_without_samples_renders_only_header() -> None:
    reg = Registry()
    reg.counter("rproxy_errors_total", "Errors.", ("route",))
    assert reg.render() == ("# HELP rproxy_errors_total Errors.\n# TYPE rproxy_errors_total counter\n")


def test_gauge_set_inc_dec_and_remove() -> None:
    reg = Registry()
    g = reg.gauge("rproxy_breaker_open", "Open breakers.", ("upstream",))
    g.set(("pricing",), 1)
    g.inc(("pricing",), 2)
    g.dec(("pricing",))
    g.dec(("stock",))
    assert g.value(("pricing",)) == 2
    assert parse(reg.render())["rproxy_breaker_open"] == [
        ("rproxy_breaker_open", {"upstream": "pricing"}, 2.0),
        ("rproxy_breaker_open", {"upstream": "stock"}, -1.0),
    ]
    g.remove(("stock",))
    assert [s[1] for s in parse(reg.render())["rproxy_breaker_open"]] == [{"upstream": "pricing"}]


@pytest.mark.parametrize(
    ("observations", "expected_buckets"),
    [
        ([], {"0.1": 0, "1.0": 0, "+Inf": 0}),
        ([0.1], {"0.1": 1, "1.0": 1, "+Inf": 1}),  # le is inclusive
        ([0.05, 0.5, 0.5, 7.0], {"0.1": 1, "1.0": 3, "+Inf": 4}),
        ([1.0000001], {"0.1": 0, "1.0": 0, "+Inf": 1}),
        ([-3.0], {"0.1": 1, "1.0": 1, "+Inf": 1}),
    ],
)
def test_histogram_buckets_are_cumulative(
    observations: list[float], expected_buckets: dict[str, int]
) -> None:
    reg = Registry()
    h = reg.histogram("rproxy_latency_seconds", "Latency.", buckets=(0.1, 1.0))
    for v in observations:
        h.observe((), v)
    samples = parse(reg.render())["rproxy_latency_seconds"]
    buckets = {lab["le"]: v for name, lab, v in samples if name.endswith("_bucket")}
    assert buckets == expected_buckets
    (total,) = [v for name, _, v in samples if name.endswith("_sum")]
    (count,) = [v for name, _, v in samples if name.endswith("_count")]
    assert total == pytest.approx(sum(observations))
    assert count == len(observations) == h.count()


def test_labelled_histogram_series_are_separate() -> None:
    reg = Registry()
    h = reg.histogram("rproxy_upstream_seconds", "Upstream.", ("upstream",), buckets=(1.0,))
    h.observe(("pricing",), 0.5)
    h.observe(("stock",), 2.0)
    h.observe(("stock",), 3.0)
    samples = parse(reg.render())["rproxy_upstream_seconds"]
    counts = {lab["upstream"]: v for name, lab, v in samples if name.endswith("_count")}
    assert counts == {"pricing": 1.0, "stock": 2.0}
    assert ("rproxy_upstream_seconds_bucket", {"upstream": "stock", "le": "1.0"}, 0.0) in samples
    assert h.sum(("stock",)) == 5.0


def test_unlabelled_histogram_default_buckets_end_in_inf() -> None:
    reg = Registry()
    h = reg.histogram("rproxy_hit_seconds", "Hit latency.")
    h.observe((), 0.0003)
    samples = parse(reg.render())["rproxy_hit_seconds"]
    les = [lab["le"] for name, lab, _ in samples if name.endswith("_bucket")]
    assert len(les) == len(DEFAULT_LATENCY_BUCKETS) + 1
    assert les[-1] == "+Inf"
    assert all(v == 1.0 for name, _, v in samples if name.endswith("_bucket"))


ODD_VALUES = [
    'say "hi"',
    "back\\slash",
    "new\nline",
    "trailing\\",
    '\\"\n',
    "unicode: caf\u00e9 \u2603",
    "",
    "{braces}=,comma",
]


@pytest.mark.parametrize("value", ODD_VALUES)
def test_odd_label_values_round_trip_through_the_parser(value: str) -> None:
    reg = Registry()
    reg.counter("rproxy_odd_total", "Odd.", ("v",)).inc((value,))
    assert parse(reg.render())["rproxy_odd"] == [("rproxy_odd_total", {"v": value}, 1.0)]


@given(st.text(st.characters(exclude_categories=["Cs"]), max_size=40))
def test_any_label_value_round_trips(value: str) -> None:
    reg = Registry()
    reg.gauge("rproxy_prop", "Prop.", ("v",)).set((value,), 2.5)
    assert parse(reg.render())["rproxy_prop"] == [("rproxy_prop", {"v": value}, 2.5)]


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [("a", "a"), ('"', '\\"'), ("\\", "\\\\"), ("\n", "\\n"), ('a\\"\nb', 'a\\\\\\"\\nb')],
)
def test_escape_label_value(raw: str, escaped: str) -> None:
    assert escape_label_value(raw) == escaped


def test_help_text_is_escaped() -> None:
    reg = Registry()
    reg.gauge("rproxy_help", 'Line one\nline "two" \\ end')
    assert types_and_help(reg.render())["rproxy_help"] == ("gauge", 'Line one\nline "two" \\ end')
    assert "\n# TYPE" in reg.render()  # the newline in help did not break the line structure


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (3.0, "3"),
        (0.25, "0.25"),
        (math.inf, "+Inf"),
        (-math.inf, "-Inf"),
        (math.nan, "NaN"),
        (1e20, "1e+20"),
        (-2.0, "-2"),
    ],
)
def test_format_value(value: float, text: str) -> None:
    assert format_value(value) == text


def test_collectors_run_at_scrape_time() -> None:
    reg = Registry()
    size = {"entries": 1}

    def cache_families() -> Iterable[Family]:
        yield Family("rproxy_cache_entries", "gauge", "Entries.", (Sample(size["entries"]),))
        yield Family(
            "rproxy_breaker_state",
            "gauge",
            "1 for the current state.",
            (
                Sample(1, (("upstream", "pricing"), ("state", "open"))),
                Sample(0, (("upstream", "pricing"), ("state", "closed"))),
            ),
        )

    reg.collector(cache_families)
    assert parse(reg.render())["rproxy_cache_entries"] == [("rproxy_cache_entries", {}, 1.0)]
    size["entries"] = 42
    fams = parse(reg.render())
    assert fams["rproxy_cache_entries"] == [("rproxy_cache_entries", {}, 42.0)]
    assert ("rproxy_breaker_state", {"upstream": "pricing", "state": "open"}, 1.0) in fams[
        "rproxy_breaker_state"
    ]


def test_failing_collector_is_skipped_and_counted() -> None:
    reg = Registry()
    reg.counter("rproxy_ok_total", "Still here.")

    def broken() -> Iterable[Family]:
        raise RuntimeError("boom")

    reg.collector(broken)
    assert "rproxy_ok" in parse(reg.render())
    assert reg.collector_errors == 1


def test_registries_do_not_share_state() -> None:
    a, b = Registry(), Registry()
    a.counter("rproxy_x_total", "x").inc()
    b.counter("rproxy_x_total", "x")
    assert parse(b.render())["rproxy_x"] == [("rproxy_x_total", {}, 0.0)]


@pytest.mark.parametrize(
    "build",
    [
        lambda r: r.counter("9bad", "x"),
        lambda r: r.counter("bad-name", "x"),
        lambda r: r.counter("ok", "x", ("bad-label",)),
        lambda r: r.counter("ok", "x", ("__reserved",)),
        lambda r: r.counter("ok", "x", ("a", "a")),
        lambda r: r.histogram("ok", "x", ("le",)),
        lambda r: r.histogram("ok", "x", buckets=(1.0, 0.5)),
        lambda r: r.histogram("ok", "x", buckets=()),
    ],
)
def test_invalid_definitions_raise(build: object) -> None:
    with pytest.raises(ValueError):
        build(Registry())  # type: ignore[operator]


def test_duplicate_name_raises() -> None:
    reg = Registry()
    reg.counter("rproxy_dup_total", "x")
    with pytest.raises(ValueError, match="already registered"):
        reg.gauge("rproxy_dup_total", "x")


@pytest.mark.parametrize("labels", [(), ("a", "b", "c"), ("only",)])
def test_wrong_label_arity_raises(labels: tuple[str, ...]) -> None:
    c = Registry().counter("rproxy_arity_total", "x", ("route", "cache"))
    with pytest.raises(ValueError, match="expected labels"):
        c.inc(labels)


def test_counter_rejects_negative_increment() -> None:
    c = Registry().counter("rproxy_neg_total", "x")
    with pytest.raises(ValueError):
        c.inc((), -1)
    assert c.value() == 0


@given(
    st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=20, unique=True),
    st.floats(allow_nan=False),
)
def test_a_value_falls_in_the_bucket_bisect_left_finds(bounds: list[float], value: float) -> None:
    ordered = tuple(sorted(bounds))
    assert bucket(ordered, value) == bisect_left(ordered, value)
    for bound in ordered:  # on a bound: that bucket (`le` is inclusive)
        assert bucket(ordered, bound) == bisect_left(ordered, bound)
