"""A request's message framing: RFC 9112 6.1 and 6.3's rules on what llhttp let through.

Owns: the limits on a request target and a header line, the header names noted while a head is
parsed (`NOTED`: framing, `Expect`, `Upgrade`, `Host`, and those the fast path reads,
`Request.hints`), the verdict on a head's version and `Host` (one, valid, required in HTTP/1.1:
RFC 9112 3.2), and on a head that announces a body (`Transfer-Encoding` and `Content-Length`,
their combinations, the HTTP version; chunked is the one transfer coding served, with another it
is a 501, as nginx's), the `Content-Length` value, `Expect` values we do not meet (417), whether
`Connection` says close, and `Refused`, which carries a refusal out of the parser's callbacks to
the connection (llhttp wraps whatever a callback raises).
Must not: read bytes, hold state, or answer: `listener.Connection` applies the verdict.
"""

from __future__ import annotations

from typing import Final

from proxy.connguard import VersionNotSupported
from proxy.core.errors import BadRequest, ProxyError

MAX_TARGET: Final = 8190  # as nginx's large_client_header_buffers; the handler answers 414 from 4 KB
MAX_FIELD: Final = 8190  # one header line, as nginx's large_client_header_buffers
READ_SLACK: Final = 256 * 1024  # the most one read hands over (asyncio's and uvloop's buffers)
SLICE: Final = 4096  # a longer read is parsed this much at a time, no further than the pipeline's mark
FRAMING_PER_BYTE: Final = 8  # chunk framing allowed per body byte (one-byte chunks carry five)
METHODS: Final = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")}
# Also the few a miss or a write reads (credentials, only-if-cached, Connection's tokens,
# Idempotency-Key): with them noted, neither builds the header multimap (`Request.first`,
# `Request.has`, `Request.field`).
HINTED: Final = frozenset(
    {
        b"authorization",
        b"cache-control",
        b"connection",
        b"cookie",
        b"idempotency-key",
        b"if-modified-since",
        b"if-none-match",
        b"range",
        b"x-request-id",
    }
)
HINTED_NAMES: Final = frozenset(name.decode("ascii") for name in HINTED)
HINT: Final = 0
HOST: Final = 5
# Lower-case header name -> what it is to the parse (one dict lookup per header line): 1
# Content-Length, 2 Transfer-Encoding, 3 Expect, 4 Upgrade, `HOST`, `HINT` a hinted one.
NOTED: Final = {
    b"content-length": 1,
    b"transfer-encoding": 2,
    b"expect": 3,
    b"upgrade": 4,
    b"host": HOST,
} | dict.fromkeys(HINTED, HINT)
# What a Host may hold: uri-host [":" port] (RFC 9110 7.2, RFC 3986 3.2.2): unreserved, sub-delims,
# pct-encoded, an IP literal's brackets and the port's colon. Stripped from both ends of a value,
# nothing is left unless it holds another byte (`strip`: ~3x cheaper than `translate` here;
# bound once: compiled, a method of `bytes` is otherwise looked up by name on every request).
_HOST_CHARS: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=%:[]"
_STRIP: Final = bytes.strip
# Field names as clients most often spell them -> their lower case, made once: compiled,
# `bytes.lower()` is a method called by name, and every field line of every request needs it.
_SPELLED: Final = (
    b"Host", b"User-Agent", b"Accept", b"Accept-Encoding", b"Accept-Language", b"Connection",
    b"Content-Type", b"Content-Length", b"Transfer-Encoding", b"Cookie", b"Authorization",
    b"Cache-Control", b"Pragma", b"Referer", b"Origin", b"If-None-Match", b"If-Modified-Since",
    b"Range", b"X-Request-Id", b"X-Forwarded-For", b"Idempotency-Key", b"Expect", b"Upgrade",
)  # fmt: skip
LOWER: Final = {spelling: spelling.lower() for spelling in _SPELLED + tuple(s.lower() for s in _SPELLED)}


class ExpectationFailed(ProxyError):
    status = 417
    code = "expectation_failed"


class CodingNotImplemented(ProxyError):
    status = 501
    code = "not_implemented"


class MessageBytes:
    """The bytes one request takes as they are read. llhttp hands a header or trailer field over
    only once it ends (RFC 9112 5, 7.1.2), so no callback of ours sees one that never does: it
    would be buffered until the deadline. Bounded here instead: the head limit, plus one read
    (the bytes before the message began are counted with it), plus FRAMING_PER_BYTE per body byte."""

    __slots__ = ("body", "fed", "limit")

    def __init__(self, max_head: int) -> None:
        self.limit = max_head + READ_SLACK
        self.fed = 0
        self.body = 0  # of which body (the connection adds what llhttp hands over)

    def begin(self) -> None:
        self.fed = self.body = 0

    def overgrown(self, size: int) -> bool:
        """`size` more bytes read: True when the message outgrew its bound."""
        self.fed += size
        return self.fed - self.body > self.limit + FRAMING_PER_BYTE * self.body


class Refused(Exception):
    """A head or body refused while parsing; `err` is what the client is answered."""

    def __init__(self, err: ProxyError) -> None:
        super().__init__(err.message)
        self.err = err


def body_length(codings: list[bytes], lengths: list[bytes], version: str) -> tuple[bool, int | None]:
    """(chunked, Content-Length) of a head whose `Transfer-Encoding` codings (lower-case) and
    `Content-Length` values were noted while parsing; raises `Refused` for a framing we refuse."""
    chunked = bool(codings)
    if chunked:
        if lengths:
            raise Refused(BadRequest("both Content-Length and Transfer-Encoding"))
        if version != "1.1":
            raise Refused(BadRequest("Transfer-Encoding in an HTTP/1.0 request"))
        if codings[-1] != b"chunked" or codings.count(b"chunked") != 1:
            raise Refused(BadRequest("Transfer-Encoding must end in chunked, once"))
        # RFC 9112 6.1: a coding we would not decode, whose bytes the vendor would get as the body
        # (`gzip, chunked`; `identity` is none since RFC 7230); empty list elements are no coding
        if any(coding and coding != b"chunked" for coding in codings):
            raise Refused(CodingNotImplemented("only the chunked transfer coding is accepted"))
    elif len(lengths) > 1:
        raise Refused(BadRequest("more than one Content-Length"))  # RFC 9112 6.3 (5)
    return chunked, _content_length(lengths[0]) if lengths else None


def bad_head(version: str, host: bytes | None) -> ProxyError | None:
    """The refusal of a head for its version (llhttp's "0.9" is a request line without one), or
    for its `Host` as RFC 9112 3.2 requires: an HTTP/1.1 request without one, any with a second
    (noted as an invalid value) or an invalid one; an empty Host is lawful (no authority)."""
    if version != "1.1" and version != "1.0":
        if version == "0.9":
            return BadRequest("the request line has no HTTP version")
        return VersionNotSupported("only HTTP/1.0 and HTTP/1.1 are served here")
    if host is None:
        return BadRequest("an HTTP/1.1 request needs one Host") if version == "1.1" else None
    if _STRIP(host, _HOST_CHARS):
        return BadRequest("one Host with a valid host[:port] value is required")
    return None


def expectation(expect: bytes | None, version: str) -> tuple[bool, ProxyError | None]:
    """(whether 100 Continue is sent before the body is read, the refusal of an expectation we
    do not meet: RFC 9110 10.1.1) for a head's `Expect` value (lower-case)."""
    if expect is None or expect == b"100-continue":
        return expect is not None and version == "1.1", None
    return False, ExpectationFailed("only 100-continue is expected here")


def _content_length(raw: bytes) -> int:
    value = raw.strip(b" \t")
    if not value.isdigit() or len(value) > 18:
        raise Refused(BadRequest("invalid Content-Length"))
    return int(value)


def closes(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether a `Connection` field names `close` (RFC 9112 9.3: it wins over `keep-alive`)."""
    return any(
        name.lower() == b"connection" and b"close" in (t.strip(b" \t").lower() for t in value.split(b","))
        for name, value in headers
    )


def printable(exc: Exception) -> str:
    """The parser's complaint, safe to echo in our JSON error: printable ASCII, 120 at most."""
    text = str(exc) or type(exc).__name__
    return "".join(c if " " <= c < "\x7f" else "?" for c in text)[:120]
