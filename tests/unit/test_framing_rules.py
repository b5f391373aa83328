"""`proxy.framing.line_v11`: a request line read for its version where llhttp read it, from the
chunk the request starts at (the listener asks llhttp whenever this says no)."""

from __future__ import annotations

import pytest

from proxy.framing import line_v11


@pytest.mark.parametrize(
    ("chunk", "method", "target", "v11"),
    [
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", b"GET", b"/", True),
        (b"DELETE /a/b?c=d HTTP/1.1\r\n", b"DELETE", b"/a/b?c=d", True),
        (b"GET / HTTP/1.0\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\n\r\n", b"GET", b"/", False),
        (b"GET / HTTP/1.0\r\nX: HTTP/1.1\r\n\r\n", b"GET", b"/", False),
        (b"GET / HTTP/1.10\r\n", b"GET", b"/", False),
        (b"GET / HTTP/1.1", b"GET", b"/", False),  # the line is not whole in this chunk
        (b"GET /ab", b"GET", b"/abc", False),  # nor the target
        (b"", b"GET", b"/", False),  # no chunk: the head did not start one
        # an empty line llhttp skipped shifts the line: never read as a yes
        (b"\r\nGET /a HTTP/1.1\r\n", b"GET", b"/a", False),
        (b"\r\n\r\nGET / HTTP/1.0\r\n", b"GET", b"/", False),
    ],
)
def test_a_request_line_is_http_1_1_only_when_its_bytes_say_so(
    chunk: bytes, method: bytes, target: bytes, v11: bool
) -> None:
    assert line_v11(chunk, method, target) is v11
