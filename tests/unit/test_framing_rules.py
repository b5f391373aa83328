"""`proxy.framing.opens_v11`: a chunk's first request line read for its version, as llhttp
would have read it (the listener asks llhttp whenever this says no)."""

from __future__ import annotations

import pytest

from proxy.framing import opens_v11


@pytest.mark.parametrize(
    ("data", "v11"),
    [
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", True),
        (b"GET /a HTTP/1.1\r\n", True),
        (b"GET / HTTP/1.0\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\n\r\n", False),  # the first line decides
        (b"GET / HTTP/1.0\r\nX: a HTTP/1.1\r\n\r\n", False),  # never a later line
        (b"GET / HTTP/1.10\r\n", False),
        (b"GET / HTTP/1.1", False),  # the line is not whole yet
        (b"\r\nGET / HTTP/1.1\r\n", False),  # an empty line first: not where a request starts
        (b"HTTP/1.1\r\n", False),
        (b"", False),
    ],
)
def test_a_chunk_opens_an_http_1_1_head_only_when_its_first_line_says_so(data: bytes, v11: bool) -> None:
    assert opens_v11(data) is v11
