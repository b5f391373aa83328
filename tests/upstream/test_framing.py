"""Response framing on byte strings: what llhttp refuses by itself and what we add (no sockets)."""

from __future__ import annotations

import pytest

from proxy.http1 import (
    MAX_FRAMING_BYTES,
    MAX_HEADERS,
    FramingError,
    Names,
    ResponseFraming,
    content_length,
    head_prefix,
    request_bytes,
)

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"


def parse(data: bytes, *, head_only: bool = False, eof: bool = False) -> ResponseFraming:
    framing = ResponseFraming(head_only=head_only)
    framing.feed(data)
    if eof:
        framing.feed_eof()
    return framing


def reason(data: bytes, **kw: bool) -> str:
    with pytest.raises(FramingError) as caught:
        parse(data, **kw)
    return caught.value.reason


def test_a_clean_response_fed_byte_by_byte() -> None:
    framing = ResponseFraming()
    for i in range(len(OK)):
        framing.feed(OK[i : i + 1])
    assert framing.complete and framing.keep_alive and framing.framing == "length"
    assert framing.head == (200, (("Content-Length", "2"),)) and framing.take_body() == b"hi"


def test_chunked_and_close_delimited_bodies() -> None:
    chunked = parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n1\r\n!\r\n0\r\n\r\n")
    assert (chunked.complete, chunked.take_body(), chunked.keep_alive) == (True, b"hi!", True)
    open_ended = parse(b"HTTP/1.1 200 OK\r\n\r\nhi")
    assert not open_ended.complete and open_ended.framing == "eof" and not open_ended.keep_alive
    open_ended.feed_eof()
    assert open_ended.complete and open_ended.take_body() == b"hi"


@pytest.mark.parametrize(
    ("data", "expected"),
    [  # refused by llhttp itself in its strict default
        (b"HTTP/1.1 200 OK\r\nX-A: a\nSet-Cookie: x\r\nContent-Length: 2\r\n\r\nhi", "malformed"),
        (b"HTTP/1.1 200 OK\nContent-Length: 2\n\nhi", "malformed"),
        (b"HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 2\r\n\r\nhi", "malformed"),
        (b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nhi", "malformed"),
        (b"HTTP/1.2 200 OK\r\nContent-Length: 2\r\n\r\nhi", "malformed"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhi", "malformed"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nhi", "malformed"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n", "malformed"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhi\r\n0\r\n\r\n", "malformed"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhiXX0\r\n\r\n", "malformed"),
        (b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\nhi", "malformed"),
        (b"HTTP/1.1 99 X\r\nContent-Length: 2\r\n\r\nhi", "malformed"),
        # let through by llhttp, refused by our checks
        (b"HTTP/2.0 200 OK\r\nContent-Length: 2\r\n\r\nhi", "version"),
        (b"HTTP/0.9 200 OK\r\nContent-Length: 2\r\n\r\nhi", "version"),
        (b"HTTP/1.1 600 X\r\nContent-Length: 2\r\n\r\nhi", "status"),
        (b"HTTP/1.1 101 Sw\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n", "upgrade"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1152921504606846976\r\n\r\nhi", "content_length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nhi", "transfer_encoding"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\nhi", "transfer_encoding"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "transfer_encoding",
        ),
        (b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "transfer_encoding"),
        (b"HTTP/1.1 204 No\r\nContent-Length: 2\r\n\r\nhi", "body_not_allowed"),
        (b"HTTP/1.1 204 No\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "body_not_allowed"),
        (b"HTTP/1.1 304 NM\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "body_not_allowed"),
        (b"HTTP/1.1 100 C\r\nContent-Length: 2\r\n\r\nhi", "body_not_allowed"),
        (b"HTTP/1.1 304 NM\r\nContent-Length: 2\r\n\r\nhi", "unsolicited"),  # the "body" after it
        (OK + b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi", "unsolicited"),
        (OK + b"garbage", "unsolicited"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nhi", "unsolicited"),  # longer than announced
    ],
)
def test_what_is_refused(data: bytes, expected: str) -> None:
    assert reason(data) == expected


CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize(
    "opening",
    [
        CHUNKED + b"2\r\nhi\r\n0\r\nX-Trailer: ",  # a trailer field that never ends
        CHUNKED + b"2;x=",  # a chunk extension that never ends
    ],
)
def test_chunked_framing_is_bounded_by_the_content(opening: bytes) -> None:
    """llhttp holds a trailer field whole before it calls back: a vendor that never ends one
    (or a chunk extension) is refused within a bound, not buffered. (Trailer lines are bounded
    by the field count, as a head's are.)"""
    framing = ResponseFraming()
    framing.feed(opening)
    fed = len(opening)
    with pytest.raises(FramingError) as caught:
        while fed < 10 * MAX_FRAMING_BYTES:
            framing.feed(b"a" * 4096)
            fed += 4096
    assert caught.value.reason == "framing_too_large" and fed <= MAX_FRAMING_BYTES + 8192


def test_small_chunks_and_a_short_trailer_pass() -> None:
    """Framing in proportion to the content: one-byte chunks (five bytes of framing each) and a
    trailer, which is read and dropped (never merged into the head)."""
    body = b"x" * 50_000
    chunks = b"".join(b"1\r\n%c\r\n" % c for c in body)
    framing = parse(CHUNKED + chunks + b"0\r\nX-Checksum: abc\r\n\r\n")
    assert framing.complete and framing.take_body() == body
    assert framing.head == (200, ())  # Transfer-Encoding is hop-by-hop; the trailer is not in it


def test_a_304_may_announce_the_length_of_what_it_stands_for() -> None:  # RFC 9110 8.6
    framing = parse(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 2\r\n\r\n")
    assert framing.complete and framing.keep_alive and framing.take_body() == b""


def test_bounds_on_heads() -> None:
    fields = b"".join(b"X-%d: v\r\n" % i for i in range(MAX_HEADERS + 1))
    assert reason(b"HTTP/1.1 200 OK\r\n" + fields + b"Content-Length: 0\r\n\r\n") == "too_many_headers"
    assert reason(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n") == "head_too_large"
    # a head that never ends is cut before llhttp buffers it all
    assert reason(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70_000) == "head_too_large"
    assert reason(b"HTTP/1.1 200 " + b"R" * 9000 + b"\r\n\r\n") == "head_too_large"


def test_interim_heads_are_collected_and_bounded() -> None:
    early = b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
    framing = parse(early + b"HTTP/1.1 100 Continue\r\n\r\n" + OK)
    assert framing.interim == [(103, (("Link", "</a>"),)), (100, ())]
    assert framing.head is not None and framing.head[0] == 200 and framing.take_body() == b"hi"
    assert reason(early * 11 + OK) == "too_many_interim"


def test_a_head_response_ends_with_its_head() -> None:
    framing = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n", head_only=True)
    assert framing.complete and framing.body_bytes == 0
    assert not framing.keep_alive  # the parser is spent: the connection is not reused


def test_a_cut_response_is_truncated() -> None:
    assert reason(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhi", eof=True) == "truncated"
    assert reason(b"HTTP/1.1 200 OK\r\nContent", eof=True) == "truncated"
    never = ResponseFraming()
    with pytest.raises(FramingError) as caught:
        never.feed_eof()
    assert caught.value.reason == "truncated" and not never.started


def test_connection_close_and_http_1_0_are_not_kept_alive() -> None:
    assert not parse(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi").keep_alive
    assert not parse(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi").keep_alive
    assert parse(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nhi").keep_alive


@pytest.mark.parametrize("value", ["0", "42", " 7 ", "9007199254740992"])
def test_content_length_accepted(value: str) -> None:
    assert content_length(value) == int(value)


@pytest.mark.parametrize("value", ["", "-1", "+1", "1.0", "0x10", "9007199254740993", "١٢", "1 2"])
def test_content_length_refused(value: str) -> None:
    with pytest.raises(FramingError):
        content_length(value)


def test_request_bytes() -> None:
    prefix = head_prefix("vendor.example:8443", ())
    get = request_bytes("GET", "/v2/prices/a%2Fb?x=1", prefix, [("Accept", "application/json")], None)
    assert get == (
        b"GET /v2/prices/a%2Fb?x=1 HTTP/1.1\r\nHost: vendor.example:8443\r\nAccept: application/json\r\n\r\n"
    )
    post = request_bytes("POST", "/b", prefix, [], b"{}")
    assert post.endswith(b"Content-Length: 2\r\n\r\n{}")
    assert b"Content-Length: 0\r\n" in request_bytes("PUT", "/b", prefix, [], None)
    assert b"Content-Length" not in request_bytes("DELETE", "/b", prefix, [], None)


@pytest.mark.parametrize(
    "headers", [[("X-Token", "a\r\nSet-Cookie: x")], [("X-Token", "a\nb")], [("X-A\r\nB", "v")]]
)
def test_a_line_break_in_our_own_header_is_never_sent(headers: list[tuple[str, str]]) -> None:
    with pytest.raises(ValueError):
        request_bytes("GET", "/b", "", headers, None)
    with pytest.raises(ValueError):  # the constant part, checked once when it is made
        head_prefix("vendor.example", headers)


@pytest.mark.parametrize("target", ["/b\r\nX-Injected: 1", "/b\nc", "/b\rc", "/b HTTP/1.1\r\n\r\nGET /c"])
def test_a_line_break_in_the_target_is_never_sent(target: str) -> None:
    with pytest.raises(ValueError):
        request_bytes("GET", target, "", [], None)


def test_heads_keep_end_to_end_fields_only() -> None:  # RFC 9110 7.6.1
    framing = parse(
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: timeout=5\r\nX-Hop: 1\r\n"
        b"Transfer-Encoding: chunked\r\nX-End: 2\r\n\r\n0\r\n\r\n"
    )
    assert framing.head == (200, (("X-End", "2"),)) and framing.keep_alive


def test_restart_reuses_the_parser_only_after_a_clean_keep_alive_response() -> None:
    framing = parse(OK)
    assert framing.take_body() == b"hi"
    assert framing.restart() and not framing.complete and framing.head is None and not framing.started
    framing.feed(b"HTTP/1.1 201 Created\r\nX-Second: 1\r\nContent-Length: 3\r\n\r\nabc")
    assert (
        framing.head == (201, (("X-Second", "1"), ("Content-Length", "3"))) and framing.take_body() == b"abc"
    )
    assert framing.complete and framing.keep_alive and framing.interim == []
    # a restarted framing refuses what a new one refuses
    assert framing.restart()
    with pytest.raises(FramingError) as caught:
        framing.feed(b"HTTP/2.0 200 OK\r\nContent-Length: 2\r\n\r\nhi")
    assert caught.value.reason == "version"


def test_restart_hands_over_nothing_of_the_last_response() -> None:
    early = b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
    framing = parse(
        early + b"HTTP/1.1 200 OK\r\nConnection: X-Hop\r\nX-Hop: 1\r\nContent-Length: 2\r\n\r\nhi"
    )
    first_interim = framing.interim
    assert framing.take_body() == b"hi" and framing.restart()
    framing.feed(b"HTTP/1.1 200 OK\r\nX-Hop: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    assert framing.head == (200, (("X-Hop", "2"),)) and framing.framing == "chunked"
    assert framing.interim == [] and first_interim == [(103, (("Link", "</a>"),))]  # given away, kept


@pytest.mark.parametrize(
    ("data", "head_only", "take"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhi", False, True),  # incomplete
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi", False, True),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi", False, True),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n", True, True),  # a HEAD: parser spent
        (OK, False, False),  # body bytes not taken
    ],
)
def test_restart_refuses_after_a_response_that_did_not_end_cleanly(
    data: bytes, head_only: bool, take: bool
) -> None:
    framing = parse(data, head_only=head_only)
    if take:
        framing.take_body()
    assert not framing.restart()


def test_a_second_response_without_restart_is_unsolicited() -> None:
    framing = parse(OK)
    with pytest.raises(FramingError) as caught:
        framing.feed(OK)
    assert caught.value.reason == "unsolicited"


def test_the_head_comes_with_the_lower_case_name_of_each_field() -> None:
    framing = parse(
        b"HTTP/1.1 200 OK\r\nCache-Control: max-age=1\r\nX-ID:  7 \r\nContent-Length: 2\r\n\r\nhi"
    )
    assert framing.head == (200, (("Cache-Control", "max-age=1"), ("X-ID", "7 "), ("Content-Length", "2")))
    assert framing.lows == ("cache-control", "x-id", "content-length")
    # hop-by-hop fields and those Connection names are gone from both, in step
    framing = parse(
        b'HTTP/1.1 200 OK\r\nConnection: X-Hop\r\nX-Hop: 1\r\nETag: "a"\r\n'
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    )
    assert framing.head == (200, (("ETag", '"a"'),)) and framing.lows == ("etag",)


def test_names_learnt_on_one_connection_serve_the_next_and_never_mix_values() -> None:
    names: dict[bytes, Names] = {}
    first = ResponseFraming(names=names)
    first.feed(b"HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 0\r\n\r\n")
    second = ResponseFraming(names=names)
    second.feed(b"HTTP/1.1 200 OK\r\nX-A: 2\r\nContent-Length: 1\r\n\r\nz")
    assert len(names) == 1
    assert second.head == (200, (("X-A", "2"), ("Content-Length", "1"))) and second.take_body() == b"z"
    assert first.head == (200, (("X-A", "1"), ("Content-Length", "0")))


def test_an_exception_the_caller_is_handling_is_no_reason() -> None:
    # `feed` while an exception is being handled, as a compiled coroutine that awaits inside
    # `except` leaves it for every callback the loop runs meanwhile: the answer's own reason
    # counts. Reading `__context__` instead gave "truncated" here, the handled exception's.
    try:
        raise FramingError("truncated", "an earlier exchange's")
    except FramingError:
        assert reason(b"HTTP/1.1 200 OK\nContent-Length: 2\n\nhi") == "malformed"
        assert reason(b"HTTP/1.1 204 No\r\nContent-Length: 2\r\n\r\nhi") == "body_not_allowed"
        assert parse(OK).complete
        head = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", head_only=True)
        assert head.complete and head.head == (200, (("Content-Length", "9"),))
