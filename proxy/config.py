"""The config file: read once at the edge, then `proxy.core.config.document` makes it a frozen
`Config`.

Owns: reading the file, the environment for `${VAR}`, and YAML syntax (via `proxy.yamlsrc`).
Must not: be read as a dict downstream; do network I/O.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from proxy.core.config.document import ConfigError, read_document
from proxy.core.config.model import Config
from proxy.core.config.reader import ConfigIssue
from proxy.yamlsrc import YamlSyntaxError, load

__all__ = ["ConfigError", "load_config", "parse_config"]


def load_config(path: str, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate `path`; raise ConfigError carrying every problem found."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigError([ConfigIssue(path, 0, "(file)", exc.strerror or str(exc))]) from exc
    return parse_config(text, path, os.environ if env is None else env)


def parse_config(text: str, path: str, env: Mapping[str, str]) -> Config:
    try:
        source = load(text, path, env)
    except YamlSyntaxError as exc:
        raise ConfigError([ConfigIssue(path, exc.line, "(syntax)", exc.message)]) from exc
    return read_document(source, path)
