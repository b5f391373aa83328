"""proxy.limits: connection admission, request framing and slow-client deadlines (pure, no loop)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.core.limits import (
    Admission,
    ConnLimits,
    ConnTable,
    Framing,
    Phase,
    Refusal,
    RequestReader,
    Throttle,
    frame,
)

LIMITS = ConnLimits(per_address=2, total=3, header_timeout=10.0, body_timeout=30.0)


# -- ConnTable ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "expected", "open_after", "addresses_after"),
    [
        (["+a", "+a", "+a"], ["ok", "ok", "per_address"], 2, 1),
        (["+a", "+b", "+c", "+d"], ["ok", "ok", "ok", "total"], 3, 3),
        (["+a", "+a", "-a", "+a"], ["ok", "ok", "ok"], 2, 1),
        (["+a", "+a", "+b", "+b"], ["ok", "ok", "ok", "total"], 3, 2),
        (["+a", "-a", "-a", "-b", "+a"], ["ok", "ok"], 1, 1),  # releasing what is not held is a no-op
        (["+a", "+b", "-a", "-b"], ["ok", "ok"], 0, 0),  # an address with nothing open is forgotten
    ],
)
def test_admission_table(
    steps: list[str], expected: list[str], open_after: int, addresses_after: int
) -> None:
    table = ConnTable(LIMITS)
    got = []
    for step in steps:
        if step[0] == "+":
            got.append(table.admit(step[1:]).value)
        else:
            table.release(step[1:])
    assert got == expected
    assert (table.open, table.addresses) == (open_after, addresses_after)


@given(st.lists(st.tuples(st.booleans(), st.sampled_from("abcde")), max_size=200))
def test_admission_invariants(ops: list[tuple[bool, str]]) -> None:
    table = ConnTable(LIMITS)
    held: dict[str, int] = {}
    for admit, address in ops:
        if admit:
            verdict = table.admit(address)
            if verdict is Admission.OK:
                held[address] = held.get(address, 0) + 1
            elif verdict is Admission.TOTAL:
                assert sum(held.values()) == LIMITS.total
            else:
                assert held.get(address, 0) == LIMITS.per_address
        else:
            table.release(address)
            if held.get(address):
                held[address] -= 1
        assert table.open == sum(held.values()) <= LIMITS.total
        assert all(table.count(a) == n <= LIMITS.per_address for a, n in held.items())
        assert table.addresses == sum(1 for n in held.values() if n)
    assert table.peak <= LIMITS.total


@pytest.mark.parametrize(
    "bad",
    [
        {"per_address": 0},
        {"total": 0},
        {"header_timeout": 0.0},
        {"body_timeout": -1.0},
        {"max_head": 0},
        {"linger": 0.0},
    ],
)
def test_limits_must_be_positive(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        ConnLimits(**bad)  # type: ignore[arg-type]


# -- frame: what follows a head, or why it is refused ---------------------------------------------


def head(*lines: str, line: str = "POST /x HTTP/1.1") -> bytes:
    return "\r\n".join([line, "Host: a", *lines]).encode("latin-1")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (head(line="GET / HTTP/1.1"), Framing(Phase.IDLE)),
        (head("Content-Length: 5"), Framing(Phase.BODY, 5)),
        (head("content-length:\t7 "), Framing(Phase.BODY, 7)),
        (head("Content-Length: 0"), Framing(Phase.IDLE)),
        (head("Transfer-Encoding: chunked"), Framing(Phase.CHUNKED)),
        (head("Transfer-Encoding: gzip, Chunked"), Framing(Phase.CHUNKED)),
        (head("Transfer-Encoding: gzip", "Transfer-Encoding: chunked"), Framing(Phase.CHUNKED)),
        (head(line="GET / HTTP/1.0"), Framing(Phase.IDLE)),
        (head("Content-Length: 3", line="POST /x HTTP/1.0"), Framing(Phase.BODY, 3)),
        (head("Connection: Upgrade", "Upgrade: websocket", line="GET / HTTP/1.1"), Framing(Phase.OPAQUE)),
        (head(line="CONNECT a:443 HTTP/1.1"), Framing(Phase.OPAQUE)),
        # refused: the classic desync shapes (RFC 9112 6.1, 6.3) and malformed lines (2.2, 5.2)
        (head("Content-Length: 4", "Transfer-Encoding: chunked"), 400),
        (head("Content-Length: 4", "Content-Length: 5"), 400),
        (head("Content-Length: 4", "Content-Length: 4"), 400),
        (head("Content-Length: 4, 4"), 400),
        (head("Content-Length: +4"), 400),
        (head("Content-Length: 0x4"), 400),
        (head("Content-Length: 1234567890123456789"), 400),
        (head("Transfer-Encoding: chunked", line="POST /x HTTP/1.0"), 400),
        (head("Transfer-Encoding: gzip"), 400),
        (head("Transfer-Encoding: chunked, gzip"), 400),
        (head("Transfer-Encoding: chunked", "Transfer-Encoding: chunked"), 400),
        (head("Transfer-Encoding: xchunked"), 400),
        (head("X-A: a", " folded"), 400),
        (head("X-A: a", "\tfolded"), 400),
        (head("X-A: a\nX-B: b"), 400),
        (head("X-A: a\rb"), 400),
        (head("no colon here"), 400),
        (head(line="GET /x"), 400),
        (head(line="GET /x HTTP/2.0"), 505),
        (head(line="GET /x HTTP/0.9"), 505),
        (head(line="GET /x http/1.1"), 400),
    ],
)
def test_frame(raw: bytes, expected: Framing | int) -> None:
    got = frame(raw)
    assert (got[0] if isinstance(got, tuple) else got) == expected


# -- RequestReader: deadlines ------------------------------------------------------------------------

GET = b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n"


def post(body: bytes) -> bytes:
    return b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(body) + body


def chunked(*chunks: bytes, trailers: bytes = b"") -> bytes:
    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks)
    return (
        b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        + body
        + b"0\r\n"
        + trailers
        + b"\r\n"
    )


@pytest.mark.parametrize(
    ("feeds", "phase", "deadline", "requests"),
    [
        ([], Phase.HEAD, 10.0, 0),  # the first head is due from the moment the connection opens
        ([(5.0, b"GET /a HT")], Phase.HEAD, 10.0, 0),  # trickling bytes never extends it
        ([(5.0, GET)], Phase.IDLE, None, 1),  # between requests: no deadline of ours
        ([(5.0, GET), (50.0, b"G")], Phase.HEAD, 60.0, 1),  # the next head is due from its first byte
        ([(5.0, GET), (50.0, b"\r\n\r\n")], Phase.IDLE, None, 1),  # empty lines are not a head
        ([(5.0, post(b"abcdef")[:-3])], Phase.BODY, 35.0, 1),  # a body is due from its head's end
        ([(5.0, post(b"abcdef")[:-3]), (20.0, b"def")], Phase.IDLE, None, 1),
        ([(5.0, chunked(b"abc")[:-5])], Phase.CHUNKED, 35.0, 1),
        ([(5.0, chunked(b"abc", b"de", trailers=b"X-T: 1\r\n"))], Phase.IDLE, None, 1),
        ([(1.0, GET + post(b"xy") + GET + chunked(b"z"))], Phase.IDLE, None, 4),  # pipelined
        (
            [(1.0, b"GET /a HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\nraw bytes")],
            Phase.OPAQUE,
            None,
            1,
        ),
    ],
)
def test_deadlines(
    feeds: list[tuple[float, bytes]], phase: Phase, deadline: float | None, requests: int
) -> None:
    reader = RequestReader(LIMITS, 0.0)
    for now, data in feeds:
        assert reader.feed(data, now) is None
        assert reader.passed == len(data)
    assert (reader.phase, reader.deadline, reader.requests) == (phase, deadline, requests)


@pytest.mark.parametrize(
    ("feeds", "now", "expired"),
    [
        ([], 9.99, None),
        ([], 10.0, "header"),
        ([(5.0, b"GET /a")], 10.0, "header"),
        ([(5.0, post(b"ab")[:-1])], 34.0, None),
        ([(5.0, post(b"ab")[:-1])], 35.0, "body"),
        ([(5.0, GET)], 1e9, None),
    ],
)
def test_expired(feeds: list[tuple[float, bytes]], now: float, expired: str | None) -> None:
    reader = RequestReader(LIMITS, 0.0)
    for at, data in feeds:
        reader.feed(data, at)
    assert reader.expired(now) == expired


# -- RequestReader: refusals ---------------------------------------------------------------------

CHUNKED_HEAD = b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
BAD_CHUNK = "invalid chunk size or extension"


@pytest.mark.parametrize(
    ("stream", "refusal", "passed"),
    [
        (
            b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
            Refusal(505, "only HTTP/1.0 and HTTP/1.1 are served here", 1),
            0,
        ),
        (
            b"\r\nPOST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            Refusal(400, "Transfer-Encoding in an HTTP/1.0 request", 1),
            2,
        ),
        # a refused second request: something may be answering the first, so it gets no reply
        (
            GET + b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            Refusal(400, "more than one Content-Length", 2),
            len(GET),
        ),
        (CHUNKED_HEAD + b"3;\x00\r\nabc\r\n0\r\n\r\n", Refusal(400, BAD_CHUNK, 1), len(CHUNKED_HEAD)),
        (CHUNKED_HEAD + b"3 \r\nabc\r\n0\r\n\r\n", Refusal(400, BAD_CHUNK, 1), len(CHUNKED_HEAD)),
        (CHUNKED_HEAD + b"-3\r\nabc\r\n0\r\n\r\n", Refusal(400, BAD_CHUNK, 1), len(CHUNKED_HEAD)),
        (CHUNKED_HEAD + b"0x3\r\nabc\r\n0\r\n\r\n", Refusal(400, BAD_CHUNK, 1), len(CHUNKED_HEAD)),
        (
            CHUNKED_HEAD + b"1\r\na\r\n" + b"f" * 17 + b"\r\n",
            Refusal(400, BAD_CHUNK, 1),
            len(CHUNKED_HEAD) + 6,
        ),
        (
            CHUNKED_HEAD + b"3\nabc\n0\n\n",
            Refusal(400, "bare CR or LF in a chunked body", 1),
            len(CHUNKED_HEAD),
        ),
        (
            CHUNKED_HEAD + b"3\r\nabcXY0\r\n\r\n",
            Refusal(400, "chunk data not followed by CRLF", 1),
            len(CHUNKED_HEAD) + 6,
        ),
        (
            CHUNKED_HEAD + b"0\r\n folded: trailer\r\n\r\n",
            Refusal(400, "invalid or oversized trailer section", 1),
            len(CHUNKED_HEAD) + 3,
        ),
        (
            b"GET / HTTP/1.1\r\nX: " + b"a" * 70_000 + b"\r\n\r\n",
            Refusal(431, "request head too large", 1),
            0,
        ),
    ],
)
def test_refusals(stream: bytes, refusal: Refusal, passed: int) -> None:
    reader = RequestReader(ConnLimits(), 0.0)
    assert reader.feed(stream, 1.0) == refusal
    assert reader.passed == passed
    assert (reader.phase, reader.deadline) == (Phase.REFUSED, None)
    assert reader.feed(b"GET / HTTP/1.1\r\n\r\n", 2.0) == refusal and reader.passed == 0  # stays refused


def test_chunk_extensions_in_the_strict_form_pass() -> None:
    body = b'3;name=value;flag;q="a \\" b"\r\nabc\r\n0\r\n\r\n'
    reader = RequestReader(ConnLimits(), 0.0)
    assert reader.feed(chunked()[:-5] + body, 1.0) is None
    assert reader.phase is Phase.IDLE


def test_an_endless_head_is_refused_once_it_outgrows_max_head() -> None:
    reader = RequestReader(ConnLimits(max_head=100), 0.0)
    assert reader.feed(b"GET / HTTP/1.1\r\n", 1.0) is None
    for _ in range(8):  # 16 + 80 bytes: still within 100
        assert reader.feed(b"X-Pad: 012", 1.0) is None
    refusal = reader.feed(b"X" * 5, 1.0)
    assert refusal is not None and refusal.status == 431


# -- properties ----------------------------------------------------------------------------------


@st.composite
def valid_requests(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["get", "post", "chunked", "empty-lines"]))
    body = draw(st.binary(max_size=40))
    if kind == "get":
        return GET
    if kind == "post":
        return post(body)
    if kind == "chunked":
        return chunked(
            *[body[i : i + 7] for i in range(0, len(body), 7)],
            trailers=draw(st.sampled_from([b"", b"X-T: 1\r\n"])),
        )
    return b"\r\n" + GET


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True) if b > a]


@settings(max_examples=300)
@given(st.lists(valid_requests(), min_size=1, max_size=6), st.lists(st.integers(0, 800), max_size=12))
def test_valid_pipelines_are_framed_alike_however_they_are_cut(
    requests: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(requests)
    reader = RequestReader(ConnLimits(), 0.0)
    for piece in split(stream, cuts):
        assert reader.feed(piece, 1.0) is None
        assert reader.passed == len(piece)
    assert (reader.phase, reader.deadline) == (Phase.IDLE, None)
    assert reader.requests == sum(1 for r in requests if r.lstrip(b"\r\n"))


ATOMS = [
    b"GET / HTTP/1.1\r\n",
    b"POST / HTTP/1.0\r\n",
    b"Content-Length: 3\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"\r\n",
    b"\n",
    b"\r",
    b"abc",
    b"3\r\n",
    b"0\r\n",
    b";x=y",
    b" ",
    b"HTTP/2.0",
    b"Upgrade: x\r\n",
    b"ff",
]


@settings(max_examples=400)
@given(
    st.lists(st.sampled_from(ATOMS) | st.binary(max_size=6), max_size=40),
    st.lists(st.integers(0, 300), max_size=10),
)
def test_any_bytes_give_the_same_verdict_however_they_are_cut(atoms: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(atoms)
    whole = RequestReader(ConnLimits(), 0.0)
    verdict = whole.feed(stream, 1.0)
    pieces = RequestReader(ConnLimits(), 0.0)
    handed = bytearray()  # what the HTTP parser would have been given
    got = None
    for piece in split(stream, cuts):
        got = pieces.feed(piece, 1.0)
        handed += piece[: pieces.passed]
        if got is not None:
            break
    assert got == verdict
    assert (pieces.phase, pieces.requests) == (whole.phase, whole.requests)
    if verdict is not None:
        # The parser never receives a refused head or chunk line whole: given only what was
        # handed on, a fresh reader finds nothing to refuse.
        assert RequestReader(ConnLimits(), 0.0).feed(bytes(handed), 1.0) is None


# -- Throttle --------------------------------------------------------------------------------------


def test_throttle_reports_once_per_interval_and_counts_the_rest() -> None:
    gate = Throttle(10.0)
    got = [gate.allow(t) for t in (0.0, 1.0, 2.0, 9.9, 10.0, 10.5, 25.0)]
    assert got == [0, None, None, None, 3, None, 1]
