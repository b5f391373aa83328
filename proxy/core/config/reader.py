"""Typed reads of plain YAML values, collecting every error with its key path.

Owns: units (durations, sizes, percentages), type checks, unknown-key checks.
Must not: know the schema (that is `config`); stop at the first error: `check` reports them all.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any, Final

from proxy.core.config.source import KeyPath, Source, format_path

_DURATION: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_SIZE: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|k|kib|mb|m|mib|gb|g|gib)?\s*$", re.IGNORECASE)
_DURATION_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
# Sizes are binary multiples, as nginx reads `8m` and most ops expect `256MB` to mean MiB.
_SIZE_UNITS: Final = {
    "b": 1,
    "k": 1024,
    "kb": 1024,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1024**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1024**3,
    "gib": 1024**3,
}


class ConfigIssue(Exception):
    """One problem in the file, with the place it is at."""

    def __init__(self, path: str, line: int, key: str, message: str) -> None:
        super().__init__(f"{path}:{line}: {key}: {message}")
        self.path, self.line, self.key, self.message = path, line, key, message


class Reader:
    def __init__(self, source: Source) -> None:
        self.source = source
        self.issues: list[ConfigIssue] = []
        for where, message in source.problems:
            self.error(where, message)

    def error(self, where: KeyPath, message: str) -> None:
        line = self.source.line_of(where)
        self.issues.append(ConfigIssue(self.source.path, line, format_path(where), message))

    def mapping(self, where: KeyPath, value: Any, allowed: Iterable[str]) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error(where, f"expected a mapping, got {_kind(value)}")
            return {}
        allowed_set = set(allowed)
        for key in value:
            if key not in allowed_set:
                hint = ", ".join(sorted(allowed_set))
                self.error((*where, key), f"unknown key (expected one of: {hint})")
        return {k: v for k, v in value.items() if k in allowed_set}

    def sequence(self, where: KeyPath, value: Any) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.error(where, f"expected a list, got {_kind(value)}")
            return []
        return value

    def string(self, where: KeyPath, value: Any, default: str = "") -> str:
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.error(where, f"expected a string, got {_kind(value)}")
            return default
        return str(value)

    def boolean(self, where: KeyPath, value: Any, default: bool) -> bool:
        if value is None:
            return default
        if not isinstance(value, bool):
            self.error(where, f"expected true or false, got {_kind(value)}")
            return default
        return value

    def integer(self, where: KeyPath, value: Any, default: int, minimum: int = 0) -> int:
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(where, f"expected an integer, got {_kind(value)}")
            return default
        if value < minimum:
            self.error(where, f"must be at least {minimum}")
            return default
        return value

    def duration(self, where: KeyPath, value: Any, default: float) -> float:
        """`250ms`, `30s`, `5m`, `24h`, `7d`, or a number of seconds."""
        if value is None:
            return default
        if isinstance(value, bool):
            self.error(where, "expected a duration like 250ms, 30s, 5m, 24h")
            return default
        if isinstance(value, int | float):
            if not math.isfinite(value):  # YAML's .inf and .nan
                self.error(where, "expected a duration like 250ms, 30s, 5m, 24h")
                return default
            if value < 0:
                self.error(where, "a duration cannot be negative")
                return default
            return float(value)
        match = _DURATION.match(str(value))
        if not match:
            message = (
                "a duration cannot be negative"
                if str(value).strip().startswith("-")
                else (f"expected a duration like 250ms, 30s, 5m, 24h, got {value!r}")
            )
            self.error(where, message)
            return default
        return float(match.group(1)) * _DURATION_UNITS[match.group(2)]

    def size(self, where: KeyPath, value: Any, default: int) -> int:
        """`256MB`, `8m`, `64KB`, or a number of bytes."""
        if value is None:
            return default
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        match = _SIZE.match(str(value)) if isinstance(value, str) else None
        if not match:
            self.error(where, f"expected a size like 64KB, 8MB, 1GB, got {value!r}")
            return default
        unit = (match.group(2) or "b").lower()
        return int(float(match.group(1)) * _SIZE_UNITS[unit])

    def percent(self, where: KeyPath, value: Any, default: float) -> float:
        """`50%` or a number from 0 to 100; returned as a fraction 0..1."""
        if value is None:
            return default
        text = str(value).strip()
        number_text = text[:-1] if text.endswith("%") else text
        try:
            number = float(number_text)
        except ValueError:
            number = -1.0
        if isinstance(value, bool) or not 0.0 <= number <= 100.0:
            self.error(where, f"expected a percentage like 50%, got {value!r}")
            return default
        return number / 100.0


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, int | float):
        return f"the number {value}"
    return f"the string {str(value)!r}"
