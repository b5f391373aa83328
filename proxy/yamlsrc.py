"""YAML source with positions: plain Python values plus the line of every key.

Owns: reading YAML text into plain values, `${VAR}` / `${VAR:-default}` / `${VAR:?message}`
substitution, and the map from key paths to line numbers that lets every config error say
`file:line: key: message`.
Duplicate keys are problems here (PyYAML would silently keep the last one).
Must not: know what any key means (that is `config`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml

from proxy.core.config.source import KeyPath, Source

# ${VAR}, ${VAR:-default} (unset or empty: the default), ${VAR:?message} (unset or empty: an
# error carrying the message), as POSIX sh and Docker Compose read them.
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:-|:\?)([^}]*))?\}")


class YamlSyntaxError(ValueError):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def load(text: str, path: str, env: Mapping[str, str]) -> Source:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else 1
        raise YamlSyntaxError(line, f"{exc.problem or 'invalid YAML'}") from exc
    source = Source(path=path, data=None)
    if node is None:
        source.data = {}
        return source
    source.lines[()] = node.start_mark.line + 1
    source.data = _convert(node, (), source, env)
    return source


def _convert(node: yaml.Node, where: KeyPath, source: Source, env: Mapping[str, str]) -> Any:
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = str(_scalar(key_node, where, source, env))
            child = (*where, key)
            if key in out:
                source.problems.append((child, f"duplicate key (first on line {source.lines[child]})"))
            source.lines[child] = key_node.start_mark.line + 1
            out[key] = _convert(value_node, child, source, env)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            child = (*where, index)
            source.lines[child] = item.start_mark.line + 1
            items.append(_convert(item, child, source, env))
        return items
    return _scalar(node, where, source, env)


def _scalar(node: yaml.Node, where: KeyPath, source: Source, env: Mapping[str, str]) -> Any:
    value = node.value
    if isinstance(value, str) and "${" in value:
        value = _substitute(value, where, source, env)
        # Plain scalars are re-typed, so `port: ${PORT:-8080}` is an int; quoted ones stay text.
        quoted = isinstance(node, yaml.ScalarNode) and node.style is not None
        return value if quoted else _retype(value)
    return yaml.constructor.SafeConstructor().construct_object(node, deep=True)


def _retype(text: str) -> Any:
    """An int, float, bool or null only when that loses nothing the variable held.

    YAML 1.1 resolution would read 0755 as octal, 1_000 and 12:34 as numbers and 2024-06-01 as a
    date: a token set in the environment must reach the config exactly as it was typed.
    """
    if text == "":
        return None
    if text in ("true", "false"):
        return text == "true"
    for kind in (int, float):
        try:
            number = kind(text)
        except ValueError:
            continue
        if str(number) == text:
            return number
    return text


def _substitute(text: str, where: KeyPath, source: Source, env: Mapping[str, str]) -> str:
    def repl(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if op == ":?":
            if env.get(name):
                return env[name]
            state = "empty" if name in env else "not set"
            source.problems.append((where, f"environment variable {name} is {state}: {arg or 'required'}"))
            return ""
        if name in env and (env[name] or op is None):
            return env[name]
        if op == ":-":
            return arg
        source.problems.append((where, f"environment variable {name} is not set and has no default"))
        return ""

    return _ENV.sub(repl, text)
