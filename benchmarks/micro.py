"""Hot-path micro-benchmarks of the pure core, with timeit, reported in microseconds per call.

Owns: one small fixture per core function (freshness decision, key building, codec encode and
decode, guards on a 1,000-item catalogue). Each proxy module is imported lazily inside its
benchmark: a module or function that does not exist (yet) makes that line "skipped", never
the suite fail.
"""

from __future__ import annotations

import importlib
import json
import statistics
import timeit
from collections.abc import Callable
from typing import Any

Bench = Callable[[], Callable[[], object]]


def _entry(body: bytes) -> Any:
    model = importlib.import_module("proxy.core.model")
    return model.Entry(
        status=200,
        headers=(
            ("Content-Type", "application/json"),
            ("Cache-Control", "max-age=300"),
            ("ETag", '"abc123"'),
            ("Date", "Sat, 29 Nov 2025 09:00:00 GMT"),
        ),
        body=body,
        stored_at=1000.0,
        initial_age=0.0,
        fresh_until=1300.0,
        stale_until=1360.0,
        error_until=4600.0,
        keep_until=4600.0,
        etag='"abc123"',
        url="http://127.0.0.1:9001/items/1",
    )


def _body() -> bytes:
    from benchmarks.origin import make_body

    return make_body("1", 1024)


def bench_decide() -> Callable[[], object]:
    decide = importlib.import_module("proxy.core.decide")
    entry = _entry(_body())
    vendor = decide.Vendor()
    return lambda: decide.on_lookup(entry, 1100.0, vendor)


def bench_store_decision() -> Callable[[], object]:
    """Parse Cache-Control, decide storable, compute deadlines: what a miss adds."""
    freshness = importlib.import_module("proxy.core.freshness")
    cachecontrol = importlib.import_module("proxy.core.cachecontrol")
    settings = importlib.import_module("proxy.core.config.model")
    policy = settings.RouteCache(ttl=300.0, stale_while_revalidate=60.0, stale_if_error=3600.0)
    headers = _entry(b"").headers

    def run() -> object:
        cc = cachecontrol.parse("max-age=300, stale-while-revalidate=60")
        freshness.storable(status=200, headers=headers, cc=cc, policy=policy, authorized=False)
        return freshness.deadlines(
            headers=headers, cc=cc, policy=policy, request_time=1000.0, response_time=1000.01, lkg=True
        )

    return run


def bench_key() -> Callable[[], object]:
    keys = importlib.import_module("proxy.core.keys")
    settings = importlib.import_module("proxy.core.config.model")
    policy = settings.CacheKey(query="all", headers=("accept-language",))
    hdrs = {"accept-language": "en-GB"}
    return lambda: keys.primary_key("items", "/api/items/1", "b=2&a=1", policy, hdrs.get)


def bench_encode() -> Callable[[], object]:
    codec = importlib.import_module("proxy.store.codec")
    entry = _entry(_body())
    return lambda: codec.encode(entry)


def bench_decode() -> Callable[[], object]:
    codec = importlib.import_module("proxy.store.codec")
    data = codec.encode(_entry(_body()))
    return lambda: codec.decode(data)


def bench_pack() -> Callable[[], object]:
    """What the memory tier does to every entry it stores (issue 11: on every miss)."""
    memory = importlib.import_module("proxy.store.memory")
    entry = _entry(_body())
    size = entry.size()
    return lambda: memory.pack(entry, size)


def catalogue(n: int = 1000) -> dict[str, Any]:
    return {
        "currency": "EUR",
        "count": n,
        "items": [
            {"sku": f"SKU-{i}", "price": 10 + i % 90, "stock": i % 7, "name": f"item {i}"} for i in range(n)
        ],
    }


GUARD_RULES = [
    {"path": "$.items", "min_items": 1},
    {"path": "$.items", "max_shrink": "50%"},
    {"path": "$.items[*].price", "gt": 0},
    {"path": "$.items[*].sku", "type": "string"},
    {"path": "$.currency", "one_of": ["GBP", "EUR", "USD"]},
    {"required": ["$.count", "$.currency"]},
]


def bench_guards() -> Callable[[], object]:
    guards = importlib.import_module("proxy.core.guards")
    rules = importlib.import_module("proxy.core.guard_rules").parse_guards(GUARD_RULES)
    doc = catalogue()
    last = catalogue()
    return lambda: guards.check_doc(rules, doc, last_good=last)


def bench_guards_body() -> Callable[[], object]:
    """Guards including json.loads of the 1,000-item body (what a store really pays)."""
    guards = importlib.import_module("proxy.core.guards")
    rules = importlib.import_module("proxy.core.guard_rules").parse_guards(GUARD_RULES)
    body = json.dumps(catalogue()).encode()
    last = catalogue()
    return lambda: guards.check_body(rules, body, last_good=last)


BENCHES: dict[str, tuple[str, Bench]] = {
    "decide.on_lookup": ("HIT/STALE/FETCH of a stored entry (hit path)", bench_decide),
    "freshness.store": ("Cache-Control parse + storable + deadlines (miss path)", bench_store_decision),
    "keys.primary_key": ("key with a sorted query and one keyed header", bench_key),
    "codec.encode": ("1 KB entry -> msgpack", bench_encode),
    "codec.decode": ("msgpack -> 1 KB entry", bench_decode),
    "memory.pack": ("1 KB entry -> the memory tier's stored form (msgpack + LZ4)", bench_pack),
    "guards.check_doc": ("6 rules on a parsed 1,000-item catalogue", bench_guards),
    "guards.check_body": ("the same, json.loads included", bench_guards_body),
}


def time_call(fn: Callable[[], object], budget: float, repeats: int) -> tuple[float, int]:
    """Median microseconds per call over `repeats` rounds of about `budget` seconds each."""
    timer = timeit.Timer(fn)
    number, elapsed = timer.autorange()
    per_call = elapsed / number
    number = max(1, int(budget / per_call)) if per_call > 0 else number
    rounds = timer.repeat(repeat=repeats, number=number)
    return statistics.median(r / number for r in rounds) * 1e6, number


def run_micro(quick: bool = False) -> dict[str, Any]:
    budget, repeats = (0.05, 3) if quick else (0.3, 5)
    out: dict[str, Any] = {}
    for name, (what, make) in BENCHES.items():
        try:
            fn = make()
            fn()  # fail here, not inside timeit, when a signature has moved
            us, number = time_call(fn, budget, repeats)
        except (ImportError, AttributeError, TypeError, ValueError, KeyError) as exc:
            out[name] = {"what": what, "us": None, "skipped": f"{type(exc).__name__}: {exc}"[:200]}
            continue
        out[name] = {"what": what, "us": round(us, 3), "calls_per_round": number, "skipped": None}
    return out
