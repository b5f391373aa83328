"""Our request ids: a per-process prefix, then a counter in at least eight hex digits."""

from __future__ import annotations

import pytest

from proxy.exchange import Request
from proxy.requestid import RequestIds


@pytest.mark.parametrize("start", [0, 250, 65_530, 16_777_210, 0xFFFFFFF0, 0xFFFFFFFF, 2**40])
def test_ids_are_the_prefix_and_the_counter_in_hex(start: int) -> None:
    ids = RequestIds(last=start)
    made = [ids.new_bytes() for _ in range(12)] + [ids.new().encode("ascii")]
    expected = [b"%s%08x" % (ids.prefix.encode(), start + i) for i in range(1, 14)]
    assert made == expected
    assert len(set(made)) == len(made)


def test_each_process_has_its_own_prefix() -> None:
    first, second = RequestIds(), RequestIds()
    assert first.prefix != second.prefix and len(first.prefix) == 12
    assert first.new() != second.new()


@pytest.mark.parametrize(
    ("sent", "echoed"),
    [
        (b"abc-123", True),
        (b"a" * 128, True),
        (b"a" * 129, False),
        (b"abc\n", False),
        (b"a b", False),
        (b"", False),
    ],
)
def test_a_clients_id_is_echoed_only_when_sane(sent: bytes, echoed: bool) -> None:
    ids = RequestIds()
    got = ids.of(Request("GET", "/", [(b"X-Request-Id", sent)]))
    assert (got == sent.decode()) is echoed
    assert echoed or got.startswith(ids.prefix)
