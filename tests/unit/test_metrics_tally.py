"""`Tally`: a count the hot path bumps as a plain attribute, folded into the counter series and
the histogram's fixed-value observations it is attached to whenever they are read."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from proxy.metrics import Registry, Tally


def scraped(reg: Registry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): float(s.value)
        for fam in text_string_to_metric_families(reg.render())
        for s in fam.samples
    }


def test_a_tally_is_counted_by_every_read_of_what_it_is_attached_to() -> None:
    reg = Registry()
    requests = reg.counter("rproxy_requests_total", "Requests.", ("route", "status"))
    duration = reg.histogram("rproxy_request_duration_seconds", "Time.", ("route",), buckets=(0.001, 1.0))
    tally = Tally()
    requests.attach(("prices", "200"), tally)
    duration.attach(("prices",), tally, 0.0)
    requests.inc(("prices", "200"))  # counted the ordinary way too
    duration.observe(("prices",), 0.5)
    assert requests.value(("prices", "200")) == 1 and duration.count(("prices",)) == 1
    tally.n += 3
    assert requests.value(("prices", "200")) == 4
    assert (duration.count(("prices",)), duration.sum(("prices",))) == (4, 0.5)
    tally.n += 2  # read through a scrape this time: folded once, never twice
    samples = scraped(reg)
    assert samples[("rproxy_requests_total", (("route", "prices"), ("status", "200")))] == 6
    bucket = ("rproxy_request_duration_seconds_bucket", (("le", "0.001"), ("route", "prices")))
    assert samples[bucket] == 5  # the tally's observations are 0 s: the first bucket
    assert samples[("rproxy_request_duration_seconds_count", (("route", "prices"),))] == 6
    assert requests.value(("prices", "200")) == 6


def test_a_tally_shared_by_two_series_counts_in_each() -> None:
    reg = Registry()
    requests = reg.counter("rproxy_requests_total", "Requests.", ("route", "method"))
    duration = reg.histogram("rproxy_request_duration_seconds", "Time.", ("route",))
    get, head = Tally(), Tally()
    for method, tally in (("GET", get), ("HEAD", head)):
        requests.attach(("prices", method), tally)
        duration.attach(("prices",), tally, 0.0)
    get.n += 5
    head.n += 2
    assert requests.value(("prices", "GET")) == 5 and requests.value(("prices", "HEAD")) == 2
    assert duration.count(("prices",)) == 7


def test_removing_a_series_forgets_its_tallies() -> None:
    reg = Registry()
    requests = reg.counter("rproxy_requests_total", "Requests.", ("route",))
    tally = Tally()
    requests.attach(("gone",), tally)
    tally.n += 1
    requests.remove(("gone",))
    tally.n += 1
    assert requests.value(("gone",)) == 0
    assert "gone" not in reg.render()


def test_a_tally_with_the_wrong_labels_is_refused() -> None:
    reg = Registry()
    requests = reg.counter("rproxy_requests_total", "Requests.", ("route", "status"))
    with pytest.raises(ValueError, match="expected labels"):
        requests.attach(("prices",), Tally())


def test_a_histogram_series_observed_directly_is_the_series_of_its_labels() -> None:
    reg = Registry()
    duration = reg.histogram("rproxy_request_duration_seconds", "Time.", ("route",), buckets=(0.001, 1.0))
    series = duration.series(("prices",))
    assert duration.series(("prices",)) is series  # one series per labels, made once
    series.observe(0.5)
    duration.observe(("prices",), 2.0)  # the labelled way lands in the same series
    assert (duration.count(("prices",)), duration.sum(("prices",))) == (2, 2.5)
    samples = scraped(reg)
    assert samples[("rproxy_request_duration_seconds_bucket", (("le", "1.0"), ("route", "prices")))] == 1
    assert samples[("rproxy_request_duration_seconds_bucket", (("le", "+Inf"), ("route", "prices")))] == 2
    assert duration.count(("other",)) == 0 and duration.sum(("other",)) == 0.0
    with pytest.raises(ValueError):
        duration.series(("prices", "extra"))
