"""HTTP/1.1 message framing toward vendors: the request head we write and the response we accept.

Owns: turning bytes from a vendor into one final response head (status, version, headers), its
interim 1xx heads and its body chunks, under llhttp's strict default (httptools) plus the checks
llhttp leaves to us; and the bytes of a request head. Every doubt about where a response ends is
a `FramingError` with a short `reason` (a metric label): the connection it came on is never reused
and nothing from it is stored.
Must not: do I/O, read the clock, pool connections or decide retries (that is `pool`,
`transport` and `upstream`).

What llhttp (httptools 0.9, strict) refuses by itself, found by test (tests/upstream/
test_framing.py): bare LF or CR, obs-fold, HTTP/1.2, duplicate or non-digit Content-Length,
Content-Length with Transfer-Encoding, bad chunk framing, control characters in values.
What it lets through and we refuse here: versions other than 1.0/1.1 (it accepts HTTP/0.9 and
HTTP/2.0), statuses of 600 and more, 101 (a switch we never asked for), Content-Length over 2^53,
Transfer-Encoding other than exactly `chunked` (it reads `gzip` or `chunked, gzip` until close),
Transfer-Encoding in HTTP/1.0 (RFC 9112 6.1), Content-Length other than 0 or Transfer-Encoding on
1xx and 204 (RFC 9110 8.6), Transfer-Encoding on 304, a Connection option naming a caching or
representation field (RFC 9110 7.6.1), unbounded heads, and any byte after the final response (a
second, unsolicited response or a body longer than announced).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import httptools

from proxy.core.headers import HOP_BY_HOP
from proxy.core.model import Headers
from proxy.framing import FRAMING_PER_BYTE

Header = tuple[str, str]

MAX_HEADERS: Final = 100  # fields per head
MAX_HEAD_BYTES: Final = 64 * 1024  # status line + fields of one head, and of all heads before the final one
# Bytes of a chunked response that are not its content (heads, chunk-size lines and extensions,
# trailers): at most this plus FRAMING_PER_BYTE (as for requests) per content byte. llhttp
# buffers a trailer field whole before it calls back, so without this a vendor's endless trailer
# would fill our memory.
MAX_FRAMING_BYTES: Final = 2 * MAX_HEAD_BYTES
MAX_STATUS_LINE: Final = 8 * 1024
MAX_INTERIM: Final = 10  # 1xx heads before the final response
MAX_CONTENT_LENGTH: Final = 2**53  # beyond this no float, JSON number or vendor is honest
VERSIONS: Final = frozenset({"1.0", "1.1"})
NO_BODY_STATUSES: Final = frozenset({204, 304})
# How to read the content and whether to store it: never connection options (RFC 9110 7.6.1).
END_TO_END: Final = frozenset(
    {"age", "cache-control", "content-encoding", "content-range", "content-type", "expires", "vary"}
)
_WRITES: Final = frozenset({"POST", "PUT", "PATCH"})


class FramingError(Exception):
    """The vendor's bytes do not frame one clean response; `reason` is a short metric label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


# What one sequence of field names means, worked out once per sequence (a vendor sends the same
# names in the same order on every answer): the names as sent, their lower-case forms, where
# Content-Length is (-1: absent), and whether every name is end-to-end and no framing field.
Names = tuple[tuple[str, ...], tuple[str, ...], int, bool]
NAMES_KEPT: Final = 64  # sequences remembered per upstream; then the memo starts afresh


class ResponseFraming:
    """Parses the responses on ONE connection, one exchange at a time: `restart` readies it for
    the next response, reusing llhttp's parser only after a response that ended cleanly, so no
    state but the parser's own (between messages) carries over; anything else gets a new one.

    `feed()` returns when the bytes are consumed; the owner reads `head`, `lows` (the lower-case
    name of each field of `head`, in order), `interim`, `body` (chunks it may take away) and
    `complete`. With `head_only` (a HEAD request) the message ends with its head: whatever
    length it announces is not sent (RFC 9110 9.3.2). `names` is the memo of field-name
    sequences (`Names`), shared by the connections to one upstream.
    """

    __slots__ = (
        "_cl",
        "_fed",
        "_head_bytes",
        "_head_only",
        "_names",
        "_parser",
        "_raised",
        "_raw_names",
        "_raw_values",
        "_status_len",
        "_te",
        "_v11",
        "body",
        "body_bytes",
        "complete",
        "framing",
        "head",
        "interim",
        "keep_alive",
        "lows",
        "started",
    )

    def __init__(self, *, head_only: bool = False, names: dict[bytes, Names] | None = None) -> None:
        # The parser holds our bound callbacks (a cycle): `close` breaks it when the connection
        # goes, so the pair is freed by reference counting instead of by the cycle collector.
        self._parser: httptools.HttpResponseParser | None = httptools.HttpResponseParser(self)
        self._names: dict[bytes, Names] = {} if names is None else names
        self._start(head_only)

    def restart(self, *, head_only: bool = False) -> bool:
        """Ready for the next response on this connection (True), or False when the last one did
        not end cleanly (incomplete, not keep-alive, bytes left, the parser spent): never
        reused then, the caller makes a new one (a doubt never carries over)."""
        if not self.complete or not self.keep_alive or self.body or self._parser is None:
            return False
        self._start(head_only)
        return True

    def close(self) -> None:
        self._parser = None

    def _start(self, head_only: bool) -> None:
        self._head_only = head_only
        # Heads keep end-to-end fields only (RFC 9110 7.6.1), sorted out once the head is read.
        self.head: tuple[int, Headers] | None = None  # the final head
        self.lows: tuple[str, ...] = ()
        self.interim: list[tuple[int, Headers]] = []  # a new list: the last one went to its Fetched
        self.body: list[bytes] = []
        self.body_bytes = 0
        self.complete = False
        self.started = False  # a response byte arrived
        self._v11 = False  # its first bytes were `HTTP/1.1 `
        self.keep_alive = False
        self.framing = ""  # "length" | "chunked" | "none" | "eof" (close-delimited)
        self._head_bytes = 0
        self._fed = 0  # every byte of this exchange, for the chunked framing's bound
        self._raised: BaseException | None = None  # what a callback raised, for `feed`
        # The head being read, as `_reset_head` sets it (inlined: once per exchange).
        self._raw_names: list[bytes] = []
        self._raw_values: list[bytes] = []
        self._status_len = 0
        self._cl: int | None = None
        self._te: list[str] | None = None

    def _reset_head(self) -> None:
        """The state of the head being read; again after an interim (1xx) head, so the next
        head is counted and checked afresh."""
        # The field lines as llhttp hands them over, names and values apart: each joined at once.
        self._raw_names, self._raw_values = [], []
        self._status_len = 0
        self._cl = None
        self._te = None

    # -- the owner's side --------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        parser = self._parser
        if self.complete or parser is None:
            raise FramingError("unsolicited", "bytes after a complete response")
        if self.head is None:
            if not self.started:
                self.started = True
                self._v11 = data[:9] == b"HTTP/1.1 "
            self._head_bytes += len(data)
        self._fed += len(data)
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            raise FramingError("upgrade", "the vendor switched protocols unasked") from exc
        except httptools.HttpParserError as exc:
            # What a callback raised, as it noted it; not `__context__`, which is the exception
            # the caller is handling when there is one (a compiled coroutine that awaits inside
            # `except` leaves its exception as the handled one while others run).
            cause, self._raised = self._raised, None
            if isinstance(cause, _HeadDone):
                return
            if self.complete:  # whatever the bytes after it are: a second response, garbage
                raise FramingError("unsolicited", "bytes after a complete response") from None
            if isinstance(cause, FramingError):
                raise cause from None
            raise FramingError("malformed", f"malformed response: {exc}"[:200]) from exc
        if self.head is None and self._head_bytes > MAX_HEAD_BYTES:
            raise FramingError("head_too_large", f"response head over {MAX_HEAD_BYTES} bytes")
        if (
            self.framing == "chunked"
            and self._fed - self.body_bytes > MAX_FRAMING_BYTES + FRAMING_PER_BYTE * self.body_bytes
        ):
            # RFC 9112 7.1.2: a trailer section (or an extension) no bound of ours would let through
            raise FramingError(
                "framing_too_large", "chunked framing or trailers out of all proportion to the content"
            )

    def feed_eof(self, *, reset: bool = False) -> None:
        """The vendor closed: the end of a close-delimited body, else a cut response. A `reset`
        ends no body (RFC 9112 8: complete unless the connection indicated an error)."""
        if self.complete:
            return
        if self.head is not None and self.framing == "eof" and not reset:
            self.complete = True
            self._parser = None
            return
        where = "mid-body" if self.head is not None else "before a complete head"
        raise FramingError("truncated", f"the vendor {'reset' if reset else 'closed'} the connection {where}")

    def take_body(self) -> bytes:
        data = b"".join(self.body) if len(self.body) != 1 else self.body[0]
        self.body = []
        return data

    # -- llhttp callbacks (no on_message_begin: a second message is refused in `feed` and
    # `on_headers_complete`, which costs nothing per answer) -----------------------------------

    def on_status(self, reason: bytes) -> None:
        self._status_len += len(reason)
        if self._status_len > MAX_STATUS_LINE:
            raise self._noted(FramingError("head_too_large", "status line too long"))

    def on_header(self, name: bytes, value: bytes) -> None:
        # Only kept here (one call per field): the head is read in one pass once complete.
        names = self._raw_names
        names.append(name)
        self._raw_values.append(value)
        if len(names) > MAX_HEADERS:
            raise self._noted(FramingError("too_many_headers", f"more than {MAX_HEADERS} header fields"))

    def on_headers_complete(self) -> None:
        try:
            self._headers_complete()
        except (FramingError, _HeadDone) as exc:
            self._raised = exc
            raise

    def _noted(self, exc: BaseException) -> BaseException:
        self._raised = exc
        return exc

    def _headers_complete(self) -> None:
        if self.complete:
            raise FramingError("unsolicited", "a second response after the complete one")
        parser = self._parser
        assert parser is not None
        fields, lows = self._read_head()
        status = parser.get_status_code()
        # The first head's version as its first bytes said (llhttp read the same), else asked
        # (llhttp's answer is a string formatted per call).
        version = "1.1" if self._v11 else parser.get_http_version()
        if version not in VERSIONS:
            raise FramingError("version", f"HTTP/{version} is not HTTP/1.0 or HTTP/1.1")
        if not 100 <= status <= 599:
            raise FramingError("status", f"status {status} is no HTTP status")
        te = self._te
        if te and (te != ["chunked"] or version == "1.0"):
            raise FramingError("transfer_encoding", f"Transfer-Encoding {', '.join(te)!r} refused")
        if (status < 200 or status == 204) and (te or self._cl):
            raise FramingError("body_not_allowed", f"a {status} answer that announces content")
        if status == 304 and te:
            raise FramingError("body_not_allowed", "a 304 answer that announces chunked content")
        if status < 200:
            if len(self.interim) >= MAX_INTERIM:
                raise FramingError("too_many_interim", f"more than {MAX_INTERIM} interim responses")
            self.interim.append((status, fields))
            self._reset_head()
            self._v11 = False  # the next head starts mid-stream
            return
        self.head = (status, fields)
        self.lows = lows
        self.keep_alive = bool(parser.should_keep_alive())
        if self._head_only or status in NO_BODY_STATUSES:
            self.framing = "none"
        elif te:
            self.framing = "chunked"
        elif self._cl is not None:
            self.framing = "length"
        else:  # RFC 9112 6.3 item 8: the body runs until the vendor closes
            self.framing = "eof"
            self.keep_alive = False
        if self._head_only:
            # llhttp would wait for the announced body: stop it here. The parser is spent, so
            # the connection is not reused after a HEAD.
            self.complete = True
            self.keep_alive = False
            self._parser = None
            raise _HeadDone

    def _read_head(self) -> tuple[Headers, tuple[str, ...]]:
        """The head's end-to-end fields and their lower-case names, in one pass over the lines
        (names looked up as one string in the memo, each value decoded on its own: compiled,
        that costs less than a join, one decode and a split); sets Content-Length and
        Transfer-Encoding for the checks."""
        raw = self._raw_names
        if not raw:
            return (), ()
        size = 4 * len(raw) + 2  # name: value CRLF, and the blank line
        for name in raw:
            size += len(name)
        for value in self._raw_values:
            size += len(value)
        if size > MAX_HEAD_BYTES:
            raise FramingError("head_too_large", f"response head over {MAX_HEAD_BYTES} bytes")
        key = b"\r".join(raw)  # llhttp refuses CR in names: a safe separator
        known = self._names.get(key)
        if known is None:
            known = _names(key)
            if len(self._names) >= NAMES_KEPT:
                self._names.clear()
            self._names[key] = known
        names, lows, cl_at, plain = known
        values = [value.decode("latin-1") for value in self._raw_values]
        n = len(names)
        if len(values) != n:  # never: a CR in a name would have been refused
            raise FramingError("malformed", "a field name holds a line break")
        if cl_at >= 0:
            # llhttp let only digits (and OWS) through; up to 15 digits are within the bound
            text = values[cl_at]
            self._cl = int(text) if len(text) < 16 and text.isdigit() else content_length(text)
        if plain:  # pairs by index: compiled, `tuple(zip(...))` iterates generically (~2,700)
            return tuple([(names[i], values[i]) for i in range(n)]), lows
        return self._end_to_end(names, lows, values)

    def _end_to_end(
        self, names: tuple[str, ...], lows: tuple[str, ...], values: list[str]
    ) -> tuple[Headers, tuple[str, ...]]:
        """A head with Transfer-Encoding or hop-by-hop fields: those read, then dropped, with
        every field its Connection names."""
        named = set(HOP_BY_HOP)
        for low, value in zip(lows, values, strict=True):
            if low == "transfer-encoding":
                self._te = [*(self._te or ()), value.strip().lower()]
            elif low == "connection":
                named.update(t.strip().lower() for t in value.split(","))
        if not named.isdisjoint(END_TO_END):  # RFC 9110 7.6.1: dropped, a gzip body reads as identity
            raise FramingError("connection_option", "Connection names a field that is not hop-by-hop")
        kept = [i for i, low in enumerate(lows) if low not in named]
        return tuple((names[i], values[i]) for i in kept), tuple(lows[i] for i in kept)

    def on_body(self, data: bytes) -> None:
        self.body.append(data)
        self.body_bytes += len(data)

    def on_message_complete(self) -> None:
        if self.head is not None:
            self.complete = True  # the parser stays, for `restart`: llhttp is between messages


def _names(key: bytes) -> Names:
    names = tuple(key.decode("latin-1").split("\r"))
    lows = tuple(name.lower() for name in names)
    cl_at = lows.index("content-length") if "content-length" in lows else -1
    return names, lows, cl_at, HOP_BY_HOP.isdisjoint(lows)


class _HeadDone(Exception):
    """Raised from a callback to stop llhttp after the head of a HEAD response."""


def content_length(value: str) -> int:
    """RFC 9110 8.6: 1*DIGIT; bounded, because a vendor's number is never trusted."""
    text = value.strip()
    if text.isdigit() and text.isascii() and len(text) <= 16 and (length := int(text)) <= MAX_CONTENT_LENGTH:
        return length
    raise FramingError("content_length", f"Content-Length {value[:40]!r} refused")


def head_prefix(host: str, headers: Iterable[Header]) -> str:
    """The constant part of every request head toward one upstream: Host and configured headers
    (latin-1, checked here once: the upstream URL is parsed once, not per request)."""
    text = "".join([_line(f"Host: {host}\r\n")] + [_line(f"{k}: {v}\r\n") for k, v in headers])
    text.encode("latin-1")
    return text


def request_bytes(
    method: str, target: str, prefix: str, headers: Iterable[Header], body: bytes | None
) -> bytes:
    """One request as one buffer: the target byte for byte, `prefix` (from `head_prefix`), our
    headers, Content-Length. The head is one string, encoded once (cheaper than encoding and
    joining its pieces). Each line is checked to hold no CR or LF but its ending: one from an
    env var or a value would split the head."""
    parts = [_line(f"{method} {target} HTTP/1.1\r\n"), prefix]
    for name, value in headers:
        parts.append(_line(f"{name}: {value}\r\n"))
    if body or method in _WRITES:  # RFC 9110 8.6: a write says its length
        parts.append(f"Content-Length: {len(body or b'')}\r\n")
    parts.append("\r\n")
    text = "".join(parts)
    return text.encode("latin-1") + body if body else text.encode("latin-1")


def _line(line: str) -> str:
    """`line`, whose only CR and LF must be its closing CRLF. Found, not counted: `find` is a
    `memchr`, `count` a loop over every character (~1,800 instructions a request head)."""
    end = len(line) - 2
    if line.find("\r") != end or line.find("\n") != end + 1:
        raise ValueError("a request line or header field holds a line break")
    return line
