"""`headers.field_value`: the one value of a request header the key holds and the vendor gets."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from proxy.core.headers import field_value


@pytest.mark.parametrize(
    ("lines", "value"),
    [
        ([], None),
        ([("Accept-Language", "fr")], "fr"),
        ([("accept-language", "fr")], "fr"),  # names are case-insensitive
        ([("Accept-Language", "en"), ("Accept-Language", "fr")], "en, fr"),  # RFC 9110 5.3
        ([("Accept-Language", "")], ""),
        # named in Connection: hop-by-hop, never sent, so never keyed (RFC 9110 7.6.1)
        ([("Connection", "close, Accept-Language"), ("Accept-Language", "fr")], None),
        ([("Connection", "close"), ("Connection", "accept-language"), ("Accept-Language", "fr")], None),
        ([("Connection", "keep-alive"), ("Accept-Language", "fr")], "fr"),
    ],
)
def test_field_value(lines: list[tuple[str, str]], value: str | None) -> None:
    assert field_value(CIMultiDict(lines), "Accept-Language") == value
