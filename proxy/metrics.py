"""Per-application metrics registry rendered in the Prometheus text exposition format 0.0.4.

Owns: counters, gauges and histograms keyed by a tuple of label values; `Tally` cells (a count
bumped as a plain attribute on the hottest path, folded into a counter series or a histogram's
fixed-value observations whenever the metric is read) and histogram `Series` handed out to be
observed without a label lookup; collectors evaluated at scrape time; the text rendering.
Must not: hold any module-level state (each app builds its own `Registry`, so tests and reloads
never share counts), read the clock, do I/O, or lock. It is meant for one event loop thread;
`inc`/`observe` are plain dict updates because they run on every request.
Format: https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final, Literal, TypeVar

MetricType = Literal["counter", "gauge", "histogram", "untyped"]
LabelValues = tuple[str, ...]

# Seconds. A fresh hit costs well under a millisecond, so the low end is dense; the upper end
# covers upstream calls up to a typical total timeout.
DEFAULT_LATENCY_BUCKETS: Final[tuple[float, ...]] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

_NAME_RE: Final = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_RE: Final = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


@dataclass(frozen=True, slots=True)
class Sample:
    """One line of a collected family, `<name><suffix>{labels} value` (`suffix`: "_bucket"...)."""

    value: float
    labels: tuple[tuple[str, str], ...] = ()
    suffix: str = ""


@dataclass(frozen=True, slots=True)
class Family:
    """A metric family produced by a collector at scrape time (cache size, breaker state...)."""

    name: str
    type: MetricType
    help: str
    samples: tuple[Sample, ...]


Collector = Callable[[], Iterable[Family]]


def escape_label_value(value: str) -> str:
    """Escape a label value as the 0.0.4 text format requires: backslash, quote, newline."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    # HELP escapes only backslash and newline (quotes are literal there).
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    """Render a sample value; integers without a trailing '.0' for readability."""
    value = float(value)  # typing lets an int through as a float; collectors often pass ints
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _format_le(bound: float) -> str:
    # Same spelling as the official client (repr of a float, "+Inf"), so bucket series match.
    return "+Inf" if math.isinf(bound) else repr(float(bound))


def _label_block(pairs: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in pairs)
    return "{" + inner + "}" if inner else ""


def _check_name(name: str) -> None:
    if not _NAME_RE.match(name):
        raise ValueError(f"invalid metric name {name!r}")


def _check_labels(names: tuple[str, ...], reserved: tuple[str, ...] = ()) -> None:
    for label in names:
        if not _LABEL_RE.match(label) or label.startswith("__") or label in reserved:
            raise ValueError(f"invalid label name {label!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate label names in {names!r}")


class Tally:
    """A count of events the hot path bumps as `tally.n += 1` (no call, no dict): the metrics it
    is attached to (`Counter.attach`, `Histogram.attach`) fold what it gained since they last
    looked whenever they are read, so a scrape or `value()` is never behind."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


class _Link:
    __slots__ = ("labels", "seen", "tally", "value")

    def __init__(self, labels: LabelValues, tally: Tally, value: float) -> None:
        self.labels, self.tally, self.value, self.seen = labels, tally, value, tally.n


class _Metric:
    """Shared parts of the three metric kinds: name, help, label names, arity check, tallies."""

    type: MetricType = "untyped"

    def __init__(self, name: str, help: str, labels: tuple[str, ...]) -> None:
        self.name = name
        self.help = help
        self.label_names = labels
        self._links: list[_Link] = []

    def _link(self, labels: LabelValues, tally: Tally, value: float) -> None:
        self._arity(labels)
        self._links.append(_Link(labels, tally, value))

    def _fold(self) -> None:
        """Add what every attached tally gained since the last read."""
        for link in self._links:
            gained = link.tally.n - link.seen
            if gained:
                link.seen += gained
                self._gain(link.labels, link.value, gained)

    def _unlink(self, labels: LabelValues) -> None:
        self._fold()
        self._links = [link for link in self._links if link.labels != labels]

    def _gain(self, labels: LabelValues, value: float, n: int) -> None:
        raise NotImplementedError

    def _arity(self, labels: LabelValues) -> None:  # only when a label tuple is first seen
        if len(labels) != len(self.label_names):
            raise ValueError(f"{self.name}: expected labels {self.label_names!r}, got {labels!r}")
        for value in labels:
            if not isinstance(value, str):
                raise TypeError(f"{self.name}: label values must be str, got {value!r}")

    def _pairs(self, labels: LabelValues) -> tuple[tuple[str, str], ...]:
        return tuple(zip(self.label_names, labels, strict=True))

    def samples(self) -> list[Sample]:
        raise NotImplementedError


class _Scalar(_Metric):
    """A counter or gauge: one float per label tuple."""

    def __init__(self, name: str, help: str, labels: tuple[str, ...]) -> None:
        super().__init__(name, help, labels)
        self._values: dict[LabelValues, float] = {}
        if not labels:  # an unlabelled series exists from the start: a scrape shows 0, not nothing
            self._values[()] = 0.0

    def value(self, labels: LabelValues = ()) -> float:
        if self._links:
            self._fold()
        return self._values.get(labels, 0.0)

    def remove(self, labels: LabelValues) -> None:
        """Forget one series (e.g. a route dropped by a config reload), and its tallies."""
        self._unlink(labels)
        self._values.pop(labels, None)

    def _gain(self, labels: LabelValues, value: float, n: int) -> None:
        self._add(labels, n)

    def _add(self, labels: LabelValues, n: float) -> None:
        values = self._values
        current = values.get(labels)
        if current is None:
            self._arity(labels)
            current = 0.0
        values[labels] = current + n

    def samples(self) -> list[Sample]:
        self._fold()
        return [Sample(v, self._pairs(k)) for k, v in sorted(self._values.items())]


class Counter(_Scalar):
    """A monotonically increasing count. Name it `..._total` by convention."""

    type: MetricType = "counter"

    def inc(self, labels: LabelValues = (), n: float = 1.0) -> None:
        if n < 0:
            raise ValueError(f"{self.name}: counters only go up (n={n})")
        self._add(labels, n)

    def attach(self, labels: LabelValues, tally: Tally) -> None:
        """Count `tally`'s events in the series `labels` (as `inc(labels)` each would)."""
        self._link(labels, tally, 1.0)


class Gauge(_Scalar):
    """A value that goes up and down (in-flight requests, open breakers)."""

    type: MetricType = "gauge"

    def set(self, labels: LabelValues, value: float) -> None:
        if labels not in self._values:
            self._arity(labels)
        self._values[labels] = value

    def inc(self, labels: LabelValues = (), n: float = 1.0) -> None:
        self._add(labels, n)

    def dec(self, labels: LabelValues = (), n: float = 1.0) -> None:
        self._add(labels, -n)


def bucket(bounds: tuple[float, ...], value: float) -> int:
    """`bisect_left`'s answer (`le` is inclusive) in a fifth of its cost, compiled: a short loop."""
    for i, bound in enumerate(bounds):
        if not bound < value:
            return i
    return len(bounds)


class Series:
    """One histogram series (`Histogram.series`), observed without a label lookup."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # last slot: above every finite bound (+Inf only)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bucket(self.bounds, value)] += 1
        self.sum += value
        self.count += 1


class Histogram(_Metric):
    """Observations counted into fixed buckets; rendered cumulative, as Prometheus expects."""

    type: MetricType = "histogram"

    def __init__(self, name: str, help: str, labels: tuple[str, ...], buckets: tuple[float, ...]) -> None:
        super().__init__(name, help, labels)
        bounds = tuple(float(b) for b in buckets if not math.isinf(b))
        if not bounds or any(a >= b for a, b in itertools.pairwise(bounds)):
            raise ValueError(f"{name}: buckets must be non-empty and strictly increasing")
        self.buckets = bounds
        self._states: dict[LabelValues, Series] = {}
        if not labels:
            self._states[()] = Series(bounds)

    def observe(self, labels: LabelValues, value: float) -> None:
        (self._states.get(labels) or self.series(labels)).observe(value)

    def series(self, labels: LabelValues) -> Series:  # made when new; observed without lookups
        state = self._states.get(labels)
        if state is None:
            self._arity(labels)
            state = self._states[labels] = Series(self.buckets)
        return state

    def attach(self, labels: LabelValues, tally: Tally, value: float) -> None:
        """Observe `value` in the series `labels` once per `tally` event."""
        self._link(labels, tally, value)

    def _gain(self, labels: LabelValues, value: float, n: int) -> None:
        state = self._states.get(labels) or self.series(labels)
        state.counts[bucket(self.buckets, value)] += n
        state.sum += value * n
        state.count += n

    def count(self, labels: LabelValues = ()) -> int:
        return self._read(labels).count

    def sum(self, labels: LabelValues = ()) -> float:
        return self._read(labels).sum

    def _read(self, labels: LabelValues) -> Series:
        self._fold()  # nothing to do without tallies
        return self._states.get(labels) or Series(self.buckets)  # none yet: zero

    def remove(self, labels: LabelValues) -> None:
        self._unlink(labels)
        self._states.pop(labels, None)

    def samples(self) -> list[Sample]:
        self._fold()
        out: list[Sample] = []
        for key, state in sorted(self._states.items()):
            pairs = self._pairs(key)
            running = 0
            for bound, n in zip((*self.buckets, math.inf), state.counts, strict=True):
                running += n
                out.append(Sample(float(running), (*pairs, ("le", _format_le(bound))), "_bucket"))
            out.append(Sample(state.sum, pairs, "_sum"))
            out.append(Sample(float(state.count), pairs, "_count"))
        return out


_M = TypeVar("_M", bound=_Metric)


class Registry:
    """All metrics of one application. Create one per app; pass it to whoever records."""

    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}
        self._collectors: list[Collector] = []
        # Scrapes where a collector raised; the failing family is left out, the rest still render.
        self.collector_errors = 0

    def _register(self, metric: _M) -> _M:
        _check_name(metric.name)
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name!r} is already registered")
        self._metrics[metric.name] = metric
        return metric

    def counter(self, name: str, help: str, labels: tuple[str, ...] = ()) -> Counter:
        _check_labels(labels)
        return self._register(Counter(name, help, labels))

    def gauge(self, name: str, help: str, labels: tuple[str, ...] = ()) -> Gauge:
        _check_labels(labels)
        return self._register(Gauge(name, help, labels))

    def histogram(
        self,
        name: str,
        help: str,
        labels: tuple[str, ...] = (),
        buckets: tuple[float, ...] = DEFAULT_LATENCY_BUCKETS,
    ) -> Histogram:
        _check_labels(labels, reserved=("le",))
        return self._register(Histogram(name, help, labels, buckets))

    def collector(self, fn: Collector) -> None:
        """Add a callback run at every scrape; it returns the families it owns."""
        self._collectors.append(fn)

    def get(self, name: str) -> _Metric | None:
        return self._metrics.get(name)

    def families(self) -> list[Family]:
        """Every family, registered metrics first (in registration order), then collectors."""
        out = [Family(m.name, m.type, m.help, tuple(m.samples())) for m in self._metrics.values()]
        for fn in self._collectors:
            try:
                collected = list(fn())
            except Exception:
                # A broken callback must not take /metrics down during an incident.
                self.collector_errors += 1
                continue
            out.extend(collected)
        return out

    def render(self) -> str:
        lines: list[str] = []
        for fam in self.families():
            lines.append(f"# HELP {fam.name} {_escape_help(fam.help)}")
            lines.append(f"# TYPE {fam.name} {fam.type}")
            lines.extend(
                f"{fam.name}{s.suffix}{_label_block(s.labels)} {format_value(s.value)}" for s in fam.samples
            )
        return "\n".join(lines) + "\n" if lines else ""


CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
