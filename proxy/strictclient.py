"""A strict parser for upstream responses.

Owns: the one place that reaches into aiohttp's client internals. aiohttp parses responses
leniently outside `python -X dev` (llhttp's lenient headers, LF accepted for CRLF), so a bare LF
inside a vendor's header value starts a new header: `X-A: a\\nSet-Cookie: evil=1` would hand a
cookie to every client sharing the cached answer (response splitting). Here responses are parsed
with aiohttp's own pure-Python parser in strict mode, which refuses such a response; the
transport turns the refusal into a clean 502 and nothing is stored.
Must not: be used for anything but the connector `transport` builds.

It relies on `ResponseHandler.set_response_params` and `BaseConnector._factory` (aiohttp 3.9 to
3.14); when they are missing, `strict_connector` says so in the log and falls back to aiohttp's
default parser rather than failing to start.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import aiohttp
from aiohttp.client_exceptions import ClientPayloadError
from aiohttp.client_proto import ResponseHandler
from aiohttp.http_parser import HttpResponseParserPy

log = logging.getLogger("proxy.strictclient")


class StrictResponseParser(HttpResponseParserPy):
    lax = False

    def feed_data(self, data: bytes, SEP: Any = None, *args: Any, **kwargs: Any) -> Any:
        return super().feed_data(data, b"\r\n", *args, **kwargs)  # RFC 9112 2.2: CRLF only


class StrictResponseHandler(ResponseHandler):
    def set_response_params(
        self,
        *,
        timer: Any = None,
        skip_payload: bool = False,
        read_until_eof: bool = False,
        auto_decompress: bool = True,
        read_timeout: float | None = None,
        read_bufsize: int = 2**16,
        timeout_ceil_threshold: float = 5,
        max_line_size: int = 8190,
        max_field_size: int = 8190,
        max_headers: int = 128,
    ) -> None:
        # Mirrors aiohttp's own method; only the parser class differs.
        self._skip_payload = skip_payload
        self._read_bufsize = read_bufsize
        self._read_timeout = read_timeout
        self._timeout_ceil_threshold = timeout_ceil_threshold
        self._parser = StrictResponseParser(
            self,
            self._loop,
            read_bufsize,
            timer=timer,
            payload_exception=ClientPayloadError,
            response_with_body=not skip_payload,
            read_until_eof=read_until_eof,
            auto_decompress=auto_decompress,
            max_line_size=max_line_size,
            max_field_size=max_field_size,
            max_headers=max_headers,
        )
        self._drain_tail()


def strict_connector(**kwargs: Any) -> aiohttp.TCPConnector:
    connector = aiohttp.TCPConnector(**kwargs)
    if hasattr(connector, "_factory") and hasattr(ResponseHandler, "_drain_tail"):
        connector._factory = functools.partial(StrictResponseHandler, loop=connector._loop)  # type: ignore[assignment]
    else:  # pragma: no cover - a future aiohttp
        log.warning("this aiohttp has no hook for a strict response parser; using its default")
    return connector
