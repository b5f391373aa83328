"""`Fetched.to_identity`: a coded body is decoded once at the boundary, and a large one on a
thread, so a bomb never holds the event loop (issue 11)."""

from __future__ import annotations

import asyncio
import gzip
import os

from proxy.core.model import Headers
from proxy.fetched import DECODE_OFF_LOOP, Fetched

LIMIT = 64 << 20


def coded(body: bytes, coding: str = "gzip") -> Fetched:
    head = (("Content-Type", "application/json"), ("Content-Encoding", coding), ("Content-Length", "9"))
    return Fetched(200, head, gzip.compress(body), 0.0, 0.0)


async def steps_to_finish(fetched: Fetched) -> bool:
    """True when `to_identity` finished without giving the loop to anyone else."""
    task = asyncio.ensure_future(fetched.to_identity(LIMIT))
    await asyncio.sleep(0)  # exactly one step of the task
    done = task.done()
    await task
    return done


async def test_a_small_body_is_decoded_in_place() -> None:
    fetched = coded(b'{"price": 1}')
    assert await steps_to_finish(fetched)
    assert fetched.body == b'{"price": 1}' and fetched.unreadable is None
    assert fetched.headers == (("Content-Type", "application/json"),)


async def test_a_large_body_inflates_off_the_loop() -> None:
    body = os.urandom(DECODE_OFF_LOOP)  # incompressible: the gzip is larger than the threshold
    fetched = coded(body)
    assert len(fetched.body) >= DECODE_OFF_LOOP
    assert not await steps_to_finish(fetched)  # the loop ran other work while it inflated
    assert fetched.body == body


async def test_a_large_bomb_is_unreadable_and_keeps_its_coding() -> None:
    bomb = coded(os.urandom(DECODE_OFF_LOOP) + b"\0" * (LIMIT + 1))
    assert not await steps_to_finish(bomb)
    assert bomb.unreadable is not None and "inflates past" in bomb.unreadable
    assert ("Content-Encoding", "gzip") in bomb.headers  # never half-decoded


async def test_an_unknown_coding_is_unreadable() -> None:
    fetched = Fetched(200, (("Content-Encoding", "br"),), b"\x1b\x00", 0.0, 0.0)
    await fetched.to_identity(LIMIT)
    assert fetched.unreadable == "content coding 'br' cannot be checked"
    assert fetched.body == b"\x1b\x00"


async def test_an_incomplete_body_is_left_to_the_stream() -> None:
    fetched = coded(b"x" * 100)
    fetched.complete = False
    before = fetched.body
    await fetched.to_identity(LIMIT)
    assert fetched.body == before and fetched.unreadable is None


async def test_the_parser_s_names_follow_the_headers_they_were_read_with() -> None:
    fetched = coded(b'{"price": 1}')
    parsed: tuple[Headers, tuple[str, ...]] = (
        fetched.headers,
        ("content-type", "content-encoding", "content-length"),
    )
    fetched.lows_of = parsed
    assert fetched.coding() == "gzip"
    await fetched.to_identity(LIMIT)  # the coding fields go: the names go with them
    assert fetched.lows() == ("content-type",) and fetched.lows_of == (fetched.headers, ("content-type",))
    fetched.headers = (("X-New", "1"), ("ETag", '"e"'))  # replaced by someone who knows nothing of names
    assert fetched.lows() == ("x-new", "etag")
