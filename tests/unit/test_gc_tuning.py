"""The serving process's collector settings (proxy.serve.tune_gc), applied and then undone here so
the rest of the test process keeps CPython's defaults."""

from __future__ import annotations

import gc

from proxy.serve import GC_THRESHOLDS, tune_gc


def test_tune_gc_freezes_what_exists_and_raises_the_thresholds() -> None:
    before = gc.get_threshold()
    long_lived: list[list[int]] = [[] for _ in range(10)]  # containers alive when the proxy starts listening
    try:
        tune_gc()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert GC_THRESHOLDS[0] > before[0]
        assert gc.get_freeze_count() >= len(long_lived)
        collected = {id(o) for o in gc.get_objects()}  # every generation the collector walks
        assert not any(id(x) in collected for x in long_lived)  # frozen: in none of them
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
