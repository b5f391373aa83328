"""Never a worse copy: which vendor answers may stand in for the copy the cache holds.

Owns: the one rule, as a pure function, that refuses an answer before it can be stored or served
as if it were good. Must not: do I/O, read the clock, or store anything (that is `fetch`).

- A 304 is only an answer to OUR conditional request, and only with the validator we sent
  (RFC 9111 4.3.3, 4.3.4): a 304 to a request without validators would turn the stored copy, or
  nothing, into a HIT the vendor never vouched for.
- A 206 is only an answer to a Range request, which a cached fetch never sends (the cache serves
  ranges from the whole copy): a part of the document is not the document.
- On a guarded route the data is the contract: a redirect is not the document (its `max-age`
  would replace the last good copy), and a body too large to check is not a checked body.
- An error status never replaces a good copy that may still be served (`keeps_copy`): the copy
  is what `stale_if_error` promises to serve while the vendor fails (RFC 5861 4).
"""

from __future__ import annotations

from typing import Final

from proxy.core.record import Frozen

TOO_LARGE: Final = "too large to check"


class Answer(Frozen):
    """What the rule reads of a vendor answer (made on every miss: a record, see `record`)."""

    __slots__ = ("complete", "etag", "status")

    def __init__(self, status: int, complete: bool, etag: str | None = None) -> None:
        self.status: Final = status
        self.complete: Final = complete  # False: the body is longer than the route may store
        self.etag: Final = etag


def refusal(
    answer: Answer,
    *,
    guarded: bool,
    etag_sent: str | None,
    conditional: bool,
    oversize_passes: bool = False,
) -> str | None:
    """Why `answer` may not stand in for the stored copy; None when it may go on to the guards."""
    status = answer.status
    if status == 304:
        if not conditional:
            return "a 304 to a request without validators"
        if etag_sent and answer.etag and _opaque(answer.etag) != _opaque(etag_sent):
            return "a 304 for another ETag than ours"
        return None
    if status == 206:  # RFC 9110 15.3.7: part of a range; a cached fetch never sends Range
        return "a 206 to a request without Range"
    if guarded and 300 <= status < 400:
        return f"a {status} redirect on a guarded route"
    if guarded and 200 <= status < 300 and not answer.complete and not oversize_passes:
        return TOO_LARGE  # unless the route said `guards_oversize: pass`: then it streams unchecked
    return None


def keeps_copy(*, stored_status: int | None, new_status: int, copy_usable: bool) -> bool:
    """True when a storable answer must not replace the stored copy: an error over a good copy
    that may still be served on error."""
    return stored_status is not None and stored_status < 400 <= new_status and copy_usable


def _opaque(etag: str) -> str:
    """Weak comparison (RFC 9110 8.8.3.2): W/ is ignored."""
    tag = etag.strip()
    return tag[2:] if tag.startswith("W/") else tag
