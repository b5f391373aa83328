"""No test asserts on elapsed wall time, and one free-port helper (issue 13): the rules hold on
tests/ and benchmarks/, and they can fail.

The rule is tests/hygiene.py's; these cases plant violations in a temporary copy and see it
report them, and show what it lets through (instants, the FakeClock, bounded waits).
"""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from tests.hygiene import durations_asserted, helpers_redefined, modules_under

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent


def scan(tmp_path: Path, *sources: str) -> list[str]:
    paths = []
    for n, source in enumerate(sources):
        path = tmp_path / f"test_planted_{n}.py"
        path.write_text(textwrap.dedent(source))
        paths.append(path)
    return [v.source for v in durations_asserted(paths, tmp_path)]


def test_no_test_in_the_tree_asserts_on_elapsed_wall_time() -> None:
    found = durations_asserted(modules_under(TESTS), TESTS.parent)
    assert not found, "\n".join(map(str, found))


def test_a_violation_planted_in_a_copy_of_the_tree_is_caught(tmp_path: Path) -> None:
    copy = tmp_path / "tests"
    shutil.copytree(TESTS, copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / "integration" / "test_resilience.py"
    target.write_text(
        target.read_text()
        + textwrap.dedent("""

            async def test_planted(proxy):
                started = time.monotonic()
                await proxy.get("/api/prices/A1")
                assert time.monotonic() - started < 0.5
            """)
    )
    found = durations_asserted(modules_under(copy), tmp_path)
    assert [(v.path, v.source) for v in found] == [
        ("tests/integration/test_resilience.py", "time.monotonic() - started < 0.5")
    ]
    assert str(found[0]).startswith("tests/integration/test_resilience.py:")


@pytest.mark.parametrize(
    ("source", "flagged"),
    [
        (  # the classic: a stopwatch around a call
            """
            import time
            def test():
                start = time.monotonic()
                work()
                took = time.monotonic() - start
                assert took < 0.5
            """,
            ["took < 0.5"],
        ),
        (  # a helper returning (result, elapsed): only the elapsed half is a duration
            """
            import time
            async def timed(coro):
                start = time.perf_counter()
                result = await coro
                return result, time.perf_counter() - start
            async def test():
                answer, took = await timed(get())
                assert answer.status == 200
                assert 0.25 <= took < 0.8
            """,
            ["0.25 <= took < 0.8"],
        ),
        (  # a deadline compared with a clock read is a duration too
            """
            import time
            def test():
                deadline = time.time() + 5
                while not ready():
                    assert time.time() < deadline, "not ready"
            """,
            ["time.time() < deadline"],
        ),
        (  # other spellings of the clock: from-imports, the loop's clock, a walrus, nanoseconds
            """
            import asyncio
            from time import monotonic, perf_counter_ns
            async def test(loop):
                t0 = loop.time()
                t1 = asyncio.get_running_loop().time()
                n0 = perf_counter_ns()
                assert (spent := monotonic() - t0) < 1
                assert loop.time() - t0 < 1
                assert asyncio.get_running_loop().time() > t1
                assert perf_counter_ns() - n0 < 10**9
                assert round(spent, 1) == 0.5
            """,
            [
                "(spent := (monotonic() - t0)) < 1",
                "loop.time() - t0 < 1",
                "asyncio.get_running_loop().time() > t1",
                "perf_counter_ns() - n0 < 10 ** 9",
                "round(spent, 1) == 0.5",
            ],
        ),
        (  # durations collected in a loop and a comprehension
            """
            import time
            def test():
                times = []
                for _ in range(3):
                    start = time.monotonic()
                    work()
                    times.append(time.monotonic() - start)
                slow = [t for t in times if t > 1]
                assert not slow
            """,
            ["not slow"],
        ),
    ],
)
def test_durations_are_flagged(tmp_path: Path, source: str, flagged: list[str]) -> None:
    assert scan(tmp_path, source) == flagged


def test_a_helper_in_one_module_is_followed_into_another(tmp_path: Path) -> None:
    helper = """
        import time
        def stopwatch(fn):
            start = time.monotonic()
            fn()
            return time.monotonic() - start
        """
    user = """
        from helpers import stopwatch
        def test():
            assert stopwatch(work) < 0.1
        """
    assert scan(tmp_path, helper, user) == ["stopwatch(work) < 0.1"]


def test_what_is_not_a_duration_passes(tmp_path: Path) -> None:
    source = """
        import asyncio, time
        from tests.waiting import until
        async def test(clock, proxy, stats):
            start = clock.now()  # the FakeClock: the proxy's time, moved by the test
            clock.advance(5)
            assert clock.now() - start == 5
            assert stats["process_start_time_seconds"] <= time.time()  # an instant, not elapsed
            assert stats["process_start_time_seconds"] > time.time() - 7 * 86400
            await until(lambda: proxy.ready, what="ready")  # a bounded wait, no assert on it
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not proxy.ready:  # a safety net, not asserted
                await asyncio.sleep(0.01)
            assert proxy.ready
            answer = await proxy.get("/")
            assert answer.status == 200, f"after {time.monotonic() - deadline:.1f}s"
        """
    assert scan(tmp_path, source) == []


def test_one_free_port_helper() -> None:
    found = helpers_redefined(modules_under(TESTS) + modules_under(ROOT / "benchmarks"), ROOT)
    assert not found, "\n".join(found)


def test_a_second_free_port_helper_is_caught(tmp_path: Path) -> None:
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "procs.py").write_text("def free_port() -> int:\n    return 0\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text(
        "import socket\n\n\ndef free_port() -> int:\n    return 1\n"
    )
    found = helpers_redefined(modules_under(tmp_path), tmp_path)
    assert found == ["tests/test_x.py:4: free_port (import it from benchmarks/procs.py)"]
