"""Where each config value came from: key paths and their lines in the file.

Owns: `KeyPath`, `Source` (the parsed document plus the line of every key) and how a key path
is spelled in messages. Reading YAML text into a `Source` is the shell's (`proxy.yamlsrc`).
Must not: import a YAML library or read files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

KeyPath = tuple[str | int, ...]


@dataclass(slots=True)
class Source:
    """Parsed document plus where each key path sits in the file."""

    path: str
    data: Any
    lines: dict[KeyPath, int] = field(default_factory=dict)
    problems: list[tuple[KeyPath, str]] = field(default_factory=list)  # unset env vars, duplicate keys

    def line_of(self, where: KeyPath) -> int:
        """The line of `where`, or of its nearest ancestor that has one."""
        probe = where
        while probe:
            if probe in self.lines:
                return self.lines[probe]
            probe = probe[:-1]
        return self.lines.get((), 1)


def format_path(where: KeyPath) -> str:
    out = ""
    for part in where:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "(top level)"
