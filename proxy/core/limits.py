"""Connection admission and request-framing deadlines for the public listener: pure decisions.

Owns: how many connections one client address and the whole listener may hold (excess load is
shed with a fast answer, never queued), where each request head and body starts and ends in the
byte stream (RFC 9112 sections 2.2, 6 and 7.1), the deadlines that cut slow clients (a head must
arrive within `header_timeout` of its first byte, as nginx's client_header_timeout and Node's
headersTimeout; a body within `body_timeout` of its head), and the framing the listener refuses
before aiohttp's parser sees it.
Must not: do I/O, read the clock (every method that needs time takes `now`), or know routes.
The scanner only ever refuses: bytes it lets through reach aiohttp's parser unchanged, so a
disagreement between the two can cost a connection, never smuggle a request.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import Enum

_CRLF = b"\r\n"
_END_OF_HEAD = b"\r\n\r\n"
_STOP = 1 << 62  # an offset past any chunk: ends the scan after a refusal
_VERSION = re.compile(rb"HTTP/[0-9]\.[0-9]")
# RFC 9112 7.1.1 chunk-size [ chunk-ext ], without the optional whitespace: chunk extensions are a
# known parser-differential vector (Kallus, "Funky Chunks", 2025), so only the strict form passes.
_TOKEN = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QUOTED = rb'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"'
_CHUNK_LINE = re.compile(
    rb"([0-9A-Fa-f]{1,16})(?:;" + _TOKEN + rb"(?:=(?:" + _TOKEN + rb"|" + _QUOTED + rb"))?)*"
)


@dataclass(frozen=True, slots=True)
class ConnLimits:
    per_address: int = 1024  # server.limits.per_client
    total: int = 10_000
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_head: int = 65_536  # well above what the handler accepts (4 KB target + 16 KB of headers)
    max_chunk_line: int = 4096
    max_trailers: int = 16_384
    max_lingering: int = 1024  # shed connections being answered at once; beyond that, reset
    linger: float = 1.0  # how long a shed connection may take to read its 503

    def __post_init__(self) -> None:
        for name in ("per_address", "total", "max_head", "max_chunk_line", "max_trailers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in ("header_timeout", "body_timeout", "linger"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")


class Admission(Enum):
    OK = "ok"
    PER_ADDRESS = "per_address"
    TOTAL = "total"


class ConnTable:
    """Open connections per client address and in total; an address with none is forgotten,
    so the table's size is bounded by the open connections, whatever the traffic."""

    __slots__ = ("_by_address", "limits", "open", "peak")

    def __init__(self, limits: ConnLimits) -> None:
        self.limits = limits
        self._by_address: dict[str, int] = {}
        self.open = 0
        self.peak = 0

    def admit(self, address: str) -> Admission:
        if self.open >= self.limits.total:
            return Admission.TOTAL
        held = self._by_address.get(address, 0)
        if held >= self.limits.per_address:
            return Admission.PER_ADDRESS
        self._by_address[address] = held + 1
        self.open += 1
        self.peak = max(self.peak, self.open)
        return Admission.OK

    def release(self, address: str) -> None:
        held = self._by_address.get(address, 0)
        if held <= 0:
            return
        if held == 1:
            del self._by_address[address]
        else:
            self._by_address[address] = held - 1
        self.open -= 1

    def count(self, address: str) -> int:
        return self._by_address.get(address, 0)

    @property
    def addresses(self) -> int:
        return len(self._by_address)


class Phase(Enum):
    HEAD = "head"  # waiting for or reading a request head: the header deadline runs
    BODY = "body"  # a Content-Length body: the body deadline runs
    CHUNKED = "chunked"  # a chunked body: the body deadline runs
    IDLE = "idle"  # between requests: aiohttp's keep-alive timer owns the connection
    OPAQUE = "opaque"  # CONNECT or an upgrade: bytes we do not frame, no deadline
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int  # 400, 431 or 505
    reason: str
    request: int  # which request on the connection (1 = the first): only the first may be answered


@dataclass(frozen=True, slots=True)
class Framing:
    """What follows a request head: `length` body bytes, a chunked body, nothing, or opaque bytes."""

    kind: Phase  # BODY, CHUNKED, IDLE or OPAQUE
    length: int = 0


def frame(head: bytes) -> Framing | tuple[int, str]:
    """How the body after `head` (without its final CRLFCRLF) is delimited, or (status, why) when
    the head must be refused. Only what RFC 9112 forbids is refused; the rest is aiohttp's."""
    if not head.count(b"\r") == head.count(b"\n") == head.count(_CRLF):
        return 400, "bare CR or LF in the request head"  # RFC 9112 2.2
    lines = head.split(_CRLF)
    request_line = lines[0]
    version = request_line.rpartition(b" ")[2]
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        if _VERSION.fullmatch(version):
            return 505, "only HTTP/1.0 and HTTP/1.1 are served here"
        return 400, "the request line has no HTTP version"
    lengths: list[bytes] = []
    codings: list[bytes] = []
    upgrade = False
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t"):
            return 400, "obsolete line folding"  # RFC 9112 5.2
        name, colon, value = line.partition(b":")
        if not colon:
            return 400, "a header line without a colon"
        low = name.lower()
        if low == b"content-length":
            lengths.append(value.strip(b" \t"))
        elif low == b"transfer-encoding":
            codings.extend(c.strip(b" \t").lower() for c in value.split(b","))
        elif low == b"upgrade":
            upgrade = True
    if codings:
        if lengths:
            return 400, "both Content-Length and Transfer-Encoding"  # RFC 9112 6.3 (3)
        if version != b"HTTP/1.1":
            return 400, "Transfer-Encoding in an HTTP/1.0 request"  # RFC 9112 6.1
        if codings[-1] != b"chunked" or codings.count(b"chunked") != 1:
            return 400, "Transfer-Encoding must end in chunked, once"  # RFC 9112 6.3 (4)
        return Framing(Phase.CHUNKED)
    if upgrade or request_line.startswith(b"CONNECT "):
        return Framing(Phase.OPAQUE)
    if not lengths:
        return Framing(Phase.IDLE)
    if len(lengths) > 1:
        return 400, "more than one Content-Length"  # RFC 9112 6.3 (5)
    if not lengths[0].isdigit() or len(lengths[0]) > 18:
        return 400, "invalid Content-Length"
    length = int(lengths[0])
    return Framing(Phase.BODY, length) if length else Framing(Phase.IDLE)


class _Chunk(Enum):
    SIZE = 0
    DATA = 1
    DATA_END = 2
    TRAILER = 3


class RequestReader:
    """Follows one connection's request stream and says which deadline is running.

    `feed(data, now)` returns None, or a `Refusal`; after a refusal only `passed` bytes of that
    chunk (those before the refused head or chunk line) may reach the HTTP parser.
    `deadline` is the time by which the current head or body must be complete, or None.
    """

    __slots__ = (
        "_buf",
        "_chunk",
        "_crlf",
        "_remaining",
        "_trailers",
        "deadline",
        "limits",
        "passed",
        "phase",
        "refusal",
        "requests",
    )

    def __init__(self, limits: ConnLimits, now: float) -> None:
        self.limits = limits
        self.phase = Phase.HEAD  # the first head is due from the moment the connection opens
        self.deadline: float | None = now + limits.header_timeout
        self.requests = 0  # complete heads seen
        self.passed = 0
        self.refusal: Refusal | None = None
        self._buf = bytearray()
        self._remaining = 0
        self._chunk = _Chunk.SIZE
        self._crlf = 0
        self._trailers = 0

    def expired(self, now: float) -> str | None:
        """ "header" or "body" when that deadline has passed, else None."""
        if self.deadline is None or now < self.deadline:
            return None
        return "header" if self.phase is Phase.HEAD else "body"

    def feed(self, data: bytes, now: float) -> Refusal | None:
        if self.refusal is not None:
            self.passed = 0
            return self.refusal
        self.passed = len(data)
        i, n = 0, len(data)
        while i < n:
            phase = self.phase
            if phase is Phase.IDLE or (phase is Phase.HEAD and not self._buf):
                while i < n and data[i] in b"\r\n":  # RFC 9112 2.2: empty lines before a request
                    i += 1
                if i == n:
                    break
                if phase is Phase.IDLE:
                    self.phase, self.deadline = Phase.HEAD, now + self.limits.header_timeout
                i = self._head(data, i, i, now)
            elif phase is Phase.HEAD:
                i = self._head(data, i, 0, now)
            elif phase is Phase.BODY:
                take = min(self._remaining, n - i)
                i += take
                self._remaining -= take
                if not self._remaining:
                    self._idle()
            elif phase is Phase.CHUNKED:
                i = self._chunked(data, i, now)
            else:
                break
        return self.refusal

    # -- heads -----------------------------------------------------------------------------

    def _head(self, data: bytes, i: int, unit_start: int, now: float) -> int:
        buf = self._buf
        if not buf:
            end = data.find(_END_OF_HEAD, i)
            if end >= 0:
                return self._complete(data[i:end], end + 4, unit_start, now)
            if len(data) - i > self.limits.max_head:
                return self._refuse(431, "request head too large", unit_start, head=True)
            buf += data[i:]
            return len(data)
        seam = len(buf)
        buf += data[i:]
        end = buf.find(_END_OF_HEAD, max(0, seam - 3))
        if end < 0:
            if len(buf) > self.limits.max_head:
                return self._refuse(431, "request head too large", unit_start, head=True)
            return len(data)
        head = bytes(buf[:end])
        buf.clear()
        return self._complete(head, i + end + 4 - seam, unit_start, now)

    def _complete(self, head: bytes, after: int, unit_start: int, now: float) -> int:
        if len(head) > self.limits.max_head:
            return self._refuse(431, "request head too large", unit_start, head=True)
        framing = frame(head)
        if isinstance(framing, tuple):
            return self._refuse(framing[0], framing[1], unit_start, head=True)
        self.requests += 1
        self.phase = framing.kind
        if framing.kind is Phase.BODY:
            self._remaining = framing.length
            self.deadline = now + self.limits.body_timeout
        elif framing.kind is Phase.CHUNKED:
            self._chunk, self._trailers = _Chunk.SIZE, 0
            self.deadline = now + self.limits.body_timeout
        else:
            self.deadline = None
        return after

    def _idle(self) -> None:
        self.phase, self.deadline = Phase.IDLE, None

    def _refuse(self, status: int, reason: str, unit_start: int, *, head: bool) -> int:
        self.refusal = Refusal(status, reason, self.requests + 1 if head else self.requests)
        self.phase, self.deadline, self.passed = Phase.REFUSED, None, unit_start
        self._buf.clear()
        return _STOP

    # -- chunked bodies (RFC 9112 7.1) -----------------------------------------------------

    def _chunked(self, data: bytes, i: int, now: float) -> int:
        n = len(data)
        state = self._chunk
        if state is _Chunk.DATA:
            take = min(self._remaining, n - i)
            self._remaining -= take
            if not self._remaining:
                self._chunk, self._crlf = _Chunk.DATA_END, 0
            return i + take
        if state is _Chunk.DATA_END:
            while i < n and self._crlf < 2:
                if data[i] != _CRLF[self._crlf]:
                    return self._refuse(400, "chunk data not followed by CRLF", i, head=False)
                self._crlf += 1
                i += 1
            if self._crlf == 2:
                self._chunk = _Chunk.SIZE
            return i
        start = i if not self._buf else 0
        j = data.find(b"\n", i)
        if j < 0:
            self._buf += data[i:]
            cap = self.limits.max_chunk_line if state is _Chunk.SIZE else self.limits.max_trailers
            if len(self._buf) > cap:
                return self._refuse(400, "chunk line too long", start, head=False)
            return n
        line = bytes(self._buf) + data[i : j + 1] if self._buf else data[i : j + 1]
        self._buf.clear()
        if not line.endswith(_CRLF) or b"\r" in line[:-2]:
            return self._refuse(400, "bare CR or LF in a chunked body", start, head=False)
        if state is _Chunk.SIZE:
            found = _CHUNK_LINE.fullmatch(line, 0, len(line) - 2)
            if found is None:
                return self._refuse(400, "invalid chunk size or extension", start, head=False)
            size = int(found.group(1), 16)
            if size:
                self._chunk, self._remaining = _Chunk.DATA, size
            else:
                self._chunk = _Chunk.TRAILER
            return j + 1
        if line == _CRLF:  # the empty line after the trailers ends the message
            self._idle()
            return j + 1
        self._trailers += len(line)
        if self._trailers > self.limits.max_trailers or line[:1] in (b" ", b"\t") or b":" not in line:
            return self._refuse(400, "invalid or oversized trailer section", start, head=False)
        return j + 1


class Throttle:
    """At most one report per `interval` seconds; counts the ones it held back."""

    __slots__ = ("held", "interval", "next_at")

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.next_at = -math.inf
        self.held = 0

    def allow(self, now: float) -> int | None:
        """None: stay quiet. Else: report now, mentioning this many held back."""
        if now < self.next_at:
            self.held += 1
            return None
        held, self.held, self.next_at = self.held, 0, now + self.interval
        return held
