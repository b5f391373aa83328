"""The head bytes `responsewriter` writes: status line, fields, framing, Date (issue 11/12)."""

from __future__ import annotations

from proxy.deliver import cache_status
from proxy.responsewriter import serialize_head, status_and_fields

DATE = b"Date: Fri, 04 Dec 2026 10:00:00 GMT\r\n"


def test_status_line_and_fields_in_order() -> None:
    head, has_date = status_and_fields("1.1", 200, [("Content-Type", "text/plain"), ("X-A", "1")])
    assert head == b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-A: 1\r\n"
    assert has_date is False


def test_a_field_with_cr_or_lf_is_dropped_and_the_rest_kept() -> None:
    headers = [
        ("X-A", "1"),
        ("X-Evil", "a\r\nSet-Cookie: x=1"),
        ("X-Bad\n", "v"),
        ("X-Cr", "a\rb"),
        ("Date", "Thu, 03 Dec 2026 00:00:00 GMT"),
        ("X-B", "2"),
    ]
    head, has_date = status_and_fields("1.0", 404, headers)
    assert head == (b"HTTP/1.0 404 Not Found\r\nX-A: 1\r\nDate: Thu, 03 Dec 2026 00:00:00 GMT\r\nX-B: 2\r\n")
    assert has_date is True


def test_a_dropped_date_does_not_count() -> None:
    _, has_date = status_and_fields("1.1", 200, [("Date", "x\r\ny")])
    assert has_date is False


def test_unknown_status_has_an_empty_reason_and_non_latin1_falls_back_to_utf8() -> None:
    head, _ = status_and_fields("1.1", 599, [("X-Name", "caf\u00e9 \u2713")])
    assert head == "HTTP/1.1 599 \r\nX-Name: caf\u00e9 \u2713\r\n".encode()


def test_serialize_head_adds_framing_and_our_date_unless_the_answer_has_one() -> None:
    ours = serialize_head("1.1", 204, [("X-A", "1")], "Connection: close\r\n", DATE)
    assert ours == b"HTTP/1.1 204 No Content\r\nX-A: 1\r\nConnection: close\r\n" + DATE + b"\r\n"
    theirs = serialize_head("1.1", 200, [("date", "D")], "Content-Length: 0\r\n", DATE)
    assert theirs == b"HTTP/1.1 200 OK\r\ndate: D\r\nContent-Length: 0\r\n\r\n"


def test_cache_status_parameters_in_order() -> None:
    full = cache_status(
        hit=False, fwd="miss", fwd_status=200, ttl=59.7, stored=True, collapsed=True, detail='a"b\\c'
    )
    assert full == 'resilient-proxy; fwd=miss; fwd-status=200; ttl=59; stored; collapsed; detail="a\\"b\\\\c"'
    assert cache_status(hit=True, ttl=-0.5) == "resilient-proxy; hit; ttl=-1"
    assert cache_status(hit=False) == "resilient-proxy"


def test_no_fields_is_the_status_line_alone() -> None:
    assert status_and_fields("1.1", 204, []) == (b"HTTP/1.1 204 No Content\r\n", False)
    assert serialize_head("1.0", 304, [], "", DATE) == b"HTTP/1.0 304 Not Modified\r\n" + DATE + b"\r\n"
