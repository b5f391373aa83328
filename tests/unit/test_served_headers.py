"""`deliver.served_headers`: the stored fields a copy is served with. Names are classified by a
bounded memo keyed by the name as stored; every spelling, remembered or not, is treated alike."""

from __future__ import annotations

from proxy import deliver
from proxy.core.model import Entry, Headers
from proxy.deliver import served_headers

STORED: Headers = (
    ("Cache-Control", "max-age=60"),
    ("SERVER", "vendor/1.2"),
    ("content-type", "application/json"),
    ("X-Cache", "HIT from elsewhere"),
    ("Content-Length", "2"),
    ("ETag", '"v1"'),
)


def entry(headers: Headers, status: int = 200) -> Entry:
    return Entry(status, headers, b"{}", 0.0, 0.0, 60.0, 60.0, 60.0, 60.0)


def test_ours_are_dropped_a_304_loses_content_fields_and_a_200_says_it_takes_ranges() -> None:
    kept = [("Cache-Control", "max-age=60"), ("content-type", "application/json"), ("ETag", '"v1"')]
    assert served_headers(entry(STORED), not_modified=False) == [*kept, ("Accept-Ranges", "bytes")]
    assert served_headers(entry(STORED), not_modified=True) == [kept[0], kept[2]]
    assert served_headers(entry(STORED, 404), not_modified=False) == kept  # ranges: 200 only
    own = (*STORED, ("accept-RANGES", "none"))  # the vendor's own word is kept, not doubled
    assert served_headers(entry(own), not_modified=False) == [*kept, ("accept-RANGES", "none")]


def test_names_past_the_memo_are_classified_as_remembered_ones_are() -> None:
    many: Headers = tuple((f"X-Vendor-{i}", "1") for i in range(deliver._MAX_KINDS + 1))
    served_headers(entry(many), not_modified=False)  # the memo is full from here on
    assert len(deliver._KINDS) == deliver._MAX_KINDS
    unseen: Headers = (("sErVeR", "v"), ("Content-TYPE", "text/plain"), ("X-Late", "1"), ("AGE", "5"))
    assert served_headers(entry(unseen), not_modified=True) == [("X-Late", "1")]
    assert served_headers(entry(unseen), not_modified=False) == [
        ("Content-TYPE", "text/plain"),
        ("X-Late", "1"),
        ("Accept-Ranges", "bytes"),
    ]
