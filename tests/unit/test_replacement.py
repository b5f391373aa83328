"""Never a worse copy (proxy/core/replacement.py): which answers may stand in for the stored copy."""

from __future__ import annotations

import pytest

from proxy.core.replacement import TOO_LARGE, Answer, keeps_copy, refusal

CASES = [
    # answer, guarded, etag sent, conditional, refused because (None: may go on)
    (Answer(200, True), True, None, False, None),
    (Answer(200, False), False, None, False, None),  # unguarded: streams through, not stored
    (Answer(200, False), True, None, False, TOO_LARGE),
    (Answer(304, True), False, None, False, "a 304 to a request without validators"),
    (Answer(304, True), True, None, False, "a 304 to a request without validators"),
    (Answer(304, True, '"v1"'), False, '"v1"', True, None),
    (Answer(304, True, 'W/"v1"'), False, '"v1"', True, None),  # weak comparison
    (Answer(304, True), False, '"v1"', True, None),  # no ETag in the 304: ours stands
    (Answer(304, True), False, None, True, None),  # we sent only If-Modified-Since
    (Answer(304, True, '"v2"'), False, '"v1"', True, "a 304 for another ETag than ours"),
    (Answer(301, True), True, None, False, "a 301 redirect on a guarded route"),
    (Answer(302, True), True, '"v1"', True, "a 302 redirect on a guarded route"),
    (Answer(301, True), False, None, False, None),  # unguarded: storable as RFC 9111 says
    (Answer(404, True), True, None, False, None),  # `keeps_copy` keeps a good copy over it
]


@pytest.mark.parametrize(("answer", "guarded", "sent", "conditional", "why"), CASES)
def test_refusal(answer: Answer, guarded: bool, sent: str | None, conditional: bool, why: str | None) -> None:
    assert refusal(answer, guarded=guarded, etag_sent=sent, conditional=conditional) == why


def test_a_route_may_let_too_large_bodies_pass_unchecked() -> None:
    big = Answer(200, False)
    assert refusal(big, guarded=True, etag_sent=None, conditional=False, oversize_passes=True) is None
    redirect = Answer(301, True)  # the opt-out is about size only
    assert refusal(redirect, guarded=True, etag_sent=None, conditional=False, oversize_passes=True)


KEEPS = [
    # stored status (None: nothing stored), new status, copy usable on error, copy kept
    (None, 500, False, False),
    (200, 500, True, True),
    (200, 404, True, True),
    (200, 404, False, False),  # the copy may no longer be served: the error may be stored
    (200, 200, True, False),
    (404, 500, True, False),  # an error over an error: the newer one
    (301, 410, True, True),
]


@pytest.mark.parametrize(("stored", "new", "usable", "kept"), KEEPS)
def test_an_error_never_replaces_a_servable_good_copy(
    stored: int | None, new: int, usable: bool, kept: bool
) -> None:
    assert keeps_copy(stored_status=stored, new_status=new, copy_usable=usable) is kept
