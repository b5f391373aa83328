"""One log format (issue 15): event lines and plain lines are JSON objects like access lines; keys
are printed with readable separators; secret query values are redacted by name pattern, also in
the refresh-failure line that prints a key."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from proxy.clock import FakeClock
from proxy.core.keys import SEP, VARY_SEP
from proxy.logformat import JsonFormatter, readable
from tests.conftest import MakeProxy
from tests.origin import Origin, Reply

PRICE = {"sku": "A1", "price": 9.5, "currency": "GBP"}


def record(name: str, message: str, level: int = logging.WARNING, *args: object) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, args, None)


def test_event_line_is_the_event_json_plus_level() -> None:
    event = json.dumps({"event": "breaker_opened", "time": "2026-12-04T01:00:00+00:00", "upstream": "v"})
    line = JsonFormatter().format(record("proxy.events", event))
    assert not line.startswith("20")  # no "2026-... ERROR proxy.events:" prefix
    assert json.loads(line) == {
        "time": "2026-12-04T01:00:00+00:00",
        "level": "warning",
        "event": "breaker_opened",
        "upstream": "v",
    }


def test_plain_line_is_json_with_logger_and_traceback() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        rec = logging.LogRecord(
            "proxy.admin", logging.ERROR, __file__, 1, "admin %s failed", ("GET",), sys.exc_info()
        )
    doc = json.loads(JsonFormatter().format(rec))
    assert (doc["level"], doc["logger"], doc["message"]) == ("error", "proxy.admin", "admin GET failed")
    assert "ValueError: boom" in doc["error"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"prices{SEP}/api/p/A1?token=abc&page=2", "prices | /api/p/A1?token=REDACTED&page=2"),
        (f"k{SEP}/p?a=1;session=s{VARY_SEP}en", "k | /p?a=1;session=REDACTED ~ en"),
        ("/p?ids[]=1&api_key[]=k&user[password]=pw", "/p?ids[]=1&api_key[]=REDACTED&user[password]=REDACTED"),
        (
            "/p?jwt=j&code=c&signature=s&X-Client-Secret=x",
            "/p?jwt=REDACTED&code=REDACTED&signature=REDACTED&X-Client-Secret=REDACTED",
        ),
        ("plain text, no query", "plain text, no query"),
    ],
)
def test_readable_keys_and_redacted_queries(text: str, expected: str) -> None:
    assert readable(text) == expected


def test_configured_secret_values_are_scrubbed() -> None:
    line = JsonFormatter(["vendor-s3cret"]).format(record("proxy.x", "sent vendor-s3cret"))
    assert "vendor-s3cret" not in line and json.loads(line)["message"] == "sent REDACTED"


async def test_refresh_failure_line_prints_a_readable_redacted_key(
    origin: Origin, make_proxy: MakeProxy, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    origin.json("/prices/A1", PRICE, headers={"Cache-Control": "max-age=1"})
    proxy = await make_proxy()
    target = "/api/prices/A1?access_token=tok-98765&page=2"
    assert (await proxy.get(target)).status == 200
    origin.always("/prices/A1", Reply(500, "down"))
    clock.advance(5)  # stale, inside stale-while-revalidate: a background refresh, which fails
    with caplog.at_level(logging.INFO, logger="proxy.refresh"):
        assert (await proxy.get(target)).status == 200
        await proxy.settle()
    (failed,) = [r for r in caplog.records if "background refresh" in r.getMessage()]
    assert "tok-98765" in failed.getMessage()  # the raw record, before formatting
    line = JsonFormatter().format(failed)
    doc = json.loads(line)
    assert "tok-98765" not in line and SEP not in doc["message"]
    assert "prices | /api/prices/A1?" in doc["message"] and "access_token=REDACTED" in doc["message"]
