"""Bounded decoding of the codings guards read through (proxy/core/encoding.py)."""

from __future__ import annotations

import gzip
import zlib

import pytest

from proxy.core.encoding import PIECE, RATIO_FREE, DecodeError, Inflater, TooLarge, accepts, decode

DOC = b'{"items": [' + b",".join(b'{"sku": "S%d", "price": 1.5}' % i for i in range(200)) + b"]}"


@pytest.mark.parametrize(
    ("coding", "body"),
    [
        (None, DOC),
        ("identity", DOC),
        ("gzip", gzip.compress(DOC)),
        ("x-gzip", gzip.compress(DOC)),
        (" GZIP ", gzip.compress(DOC)),
        ("deflate", zlib.compress(DOC)),
    ],
)
def test_codings_decode_to_the_document(coding: str | None, body: bytes) -> None:
    assert decode(body, coding, limit=1 << 20) == DOC


def test_a_bomb_stops_at_the_ratio_bound() -> None:
    bomb = gzip.compress(b"\0" * (40 << 20))  # 40 MB of zeros in about 40 KB
    with pytest.raises(DecodeError, match="inflates past") as raised:
        decode(bomb, "gzip", limit=8 << 20)
    assert not isinstance(raised.value, TooLarge)  # a bomb, not a large document


def test_the_object_limit_bounds_even_honest_ratios() -> None:
    with pytest.raises(TooLarge, match="inflates past 1000"):  # too large to store; may stream
        decode(gzip.compress(DOC), "gzip", limit=1000)


def test_small_bodies_may_compress_as_they_like() -> None:
    zeros = b"\0" * (RATIO_FREE // 2)  # over 100:1, but under the ratio-free size
    assert decode(gzip.compress(zeros), "gzip", limit=RATIO_FREE) == zeros


@pytest.mark.parametrize(
    ("coding", "body", "why"),
    [
        ("gzip", b"not gzip at all", "corrupt"),
        ("gzip", gzip.compress(DOC)[:-12], "truncated"),
        ("gzip", gzip.compress(DOC) + b"tail", "trailing"),
        ("br", b"\x0b", "cannot be checked"),
        ("gzip, br", b"", "cannot be checked"),
    ],
)
def test_what_cannot_be_read_is_an_error(coding: str, body: bytes, why: str) -> None:
    with pytest.raises(DecodeError, match=why):
        decode(body, coding, limit=1 << 20)


@pytest.mark.parametrize(
    ("header", "accepted"),
    [
        (None, False),  # no header: we send identity (scripts rarely decode)
        ("", False),
        ("gzip", True),
        ("GZIP", True),
        ("deflate, gzip;q=0.5", True),
        ("gzip;q=0", False),
        ("gzip;q=0.000", False),
        ("*", True),
        ("*;q=0", False),
        ("*, gzip;q=0", False),  # the named coding wins over the wildcard
        ("gzip;q=0, *", False),
        ("br, identity", False),
    ],
)
def test_which_clients_accept_gzip(header: str | None, accepted: bool) -> None:
    assert accepts(header, "gzip") is accepted


def test_the_inflater_streams_in_bounded_pieces() -> None:
    body = b"\0" * (5 * PIECE + 7)
    coded = gzip.compress(body)
    inflater = Inflater("gzip")
    pieces = [p for i in range(0, len(coded), 100) for p in inflater.feed(coded[i : i + 100])]
    inflater.close()
    assert b"".join(pieces) == body
    assert max(len(p) for p in pieces) <= PIECE


@pytest.mark.parametrize(
    ("coded", "why"),
    [
        (gzip.compress(DOC)[:-20], "ended early"),
        (gzip.compress(DOC) + b"junk", "trailing bytes"),
        (b"not gzip at all", "corrupt"),
    ],
)
def test_the_inflater_refuses_what_is_not_one_whole_body(coded: bytes, why: str) -> None:
    inflater = Inflater("gzip")
    with pytest.raises(DecodeError, match=why):
        for _ in inflater.feed(coded):
            pass
        inflater.close()
