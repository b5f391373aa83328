"""One log format: every line on stderr is a JSON object, as access lines are.

Owns: the `logging.Formatter` that `serve.setup_logging` installs. Event records (logger
`proxy.events`, whose message is already a JSON object) become that object plus `level`; any
other record becomes `{"time", "level", "logger", "message"}` plus `error` (the traceback) when
there is one. In every string: internal cache-key separators are printed readably (` | ` between
key parts, ` ~ ` before Vary values), query values named as secrets are redacted by pattern
(`redact.is_secret_param`), and configured secret values are scrubbed.
Must not: decide what is logged, or drop a record (a message that is not JSON is still logged).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Iterable
from typing import Any, Final

from proxy.core.keys import SEP, VARY_SEP
from proxy.core.redact import REDACTED, is_secret_param, scrub

EVENTS_LOGGER: Final = "proxy.events"
# name=value after ?, & or ; anywhere in free text (a logged key, URL or path).
_PARAM: Final = re.compile(r"(?P<lead>[?&;])(?P<name>[^=&;?#\s\"'|~]+)=(?P<value>[^&;#\s\"'|~]*)")


def readable(text: str, secret_values: Iterable[str] = ()) -> str:
    """Key separators made visible, secret query values and configured secrets redacted."""
    text = text.replace(VARY_SEP, " ~ ").replace(SEP, " | ")
    text = _PARAM.sub(
        lambda m: f"{m['lead']}{m['name']}={REDACTED}" if is_secret_param(m["name"]) else m[0], text
    )
    return scrub(text, secret_values)


def _clean(value: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return readable(value, secrets)
    if isinstance(value, dict):
        return {k: _clean(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v, secrets) for v in value]
    return value


class JsonFormatter(logging.Formatter):
    """A JSON object per line; see the module docstring."""

    def __init__(self, secret_values: Iterable[str] = ()) -> None:
        super().__init__()
        self.secret_values = tuple(secret_values)

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        level = record.levelname.lower()
        doc: dict[str, Any] | None = None
        if record.name == EVENTS_LOGGER:
            try:
                parsed = json.loads(message)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict):
                doc = {"time": parsed.pop("time", None) or _time(record), "level": level, **parsed}
        if doc is None:
            doc = {"time": _time(record), "level": level, "logger": record.name, "message": message}
        if record.exc_info:
            doc["error"] = self.formatException(record.exc_info)
        return json.dumps(_clean(doc, self.secret_values), default=str, separators=(",", ":"))


def _time(record: logging.LogRecord) -> str:
    return dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds")
