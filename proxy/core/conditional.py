"""A client's conditional request against a stored entry, RFC 9110 section 13.

Owns: whether If-None-Match or If-Modified-Since matches what is stored, so the answer is a 304.
Must not: read the clock, do I/O, or decide whether the entry is fresh (`freshness`).
"""

from __future__ import annotations

from proxy.core.freshness import http_date
from proxy.core.model import Entry


def not_modified(entry: Entry, if_none_match: str | None, if_modified_since: str | None) -> bool:
    """Whether a client conditional matches the entry (RFC 9110 13.1.2, 13.1.3, 13.2.2).

    If-None-Match takes precedence: when present, If-Modified-Since is ignored.
    """
    return validators_match(entry.etag, entry.last_modified, if_none_match, if_modified_since)


def validators_match(
    etag: str | None, last_modified: str | None, if_none_match: str | None, if_modified_since: str | None
) -> bool:
    """`not_modified` on the validators alone (what a prepared fresh hit keeps of its entry)."""
    if if_none_match is not None:
        if etag is None:
            return if_none_match.strip() == "*"
        wanted = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        return "*" in wanted or etag.removeprefix("W/") in wanted
    if if_modified_since is not None and last_modified is not None:
        since, modified = http_date(if_modified_since), http_date(last_modified)
        return since is not None and modified is not None and modified <= since
    return False
