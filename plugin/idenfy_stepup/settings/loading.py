"""Reading the settings file: ``${VAR}`` interpolation, validation, one error naming each key."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .models import Settings

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    """The configuration cannot be used; ``problems`` lists ``(key path, message)`` pairs."""

    def __init__(self, problems: list[tuple[str, str]], source: str = "config") -> None:
        self.problems = problems
        self.source = source
        lines = [f"{path or '(top level)'}: {msg}" for path, msg in problems]
        super().__init__(f"{source}: invalid configuration\n  " + "\n  ".join(lines))


def _interpolate(node: Any, path: str, problems: list[tuple[str, str]]) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string, recording unset variables."""
    if isinstance(node, dict):
        return {k: _interpolate(v, _join(path, str(k)), problems) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate(v, f"{path}[{i}]", problems) for i, v in enumerate(node)]
    if not isinstance(node, str):
        return node

    def sub(match: re.Match[str]) -> str:
        value = os.environ.get(match.group(1), match.group(2))
        if value is None:
            problems.append((path, f"environment variable {match.group(1)} is not set"))
            return ""  # a placeholder, so the rest of the file is still validated
        return value

    return _ENV_REF.sub(sub, node)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _loc_to_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path = f"{path}[{part}]" if isinstance(part, int) else _join(path, part)
    return path


def parse_settings(data: Any, source: str = "config") -> Settings:
    """Validate an already-parsed YAML document into frozen settings."""
    if not isinstance(data, dict):
        raise ConfigError([("", "the file must be a YAML mapping")], source)
    unset: list[tuple[str, str]] = []
    data = _interpolate(data, "", unset)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        found = [(_loc_to_path(e["loc"]), _message(e)) for e in exc.errors()]
        found = [p for p in found if not _from_placeholder(p, unset)]
        raise ConfigError(unset + found, source) from None
    if unset:
        raise ConfigError(unset, source)
    return settings


def _from_placeholder(problem: tuple[str, str], unset: list[tuple[str, str]]) -> bool:
    """Whether a validation error is only the echo of an unset variable's empty placeholder:
    it is at (or under) that value's key, or at an enclosing key and names that key."""
    path, message = problem
    for where, _ in unset:
        if path == where or path.startswith((f"{where}.", f"{where}[")):
            return True
        leaf = re.split(r"[.\[]", where)[-1].rstrip("]")
        inside = where.startswith((f"{path}.", f"{path}[")) if path else True
        if inside and re.search(rf"\b{re.escape(leaf)}\b", message):
            return True
    return False


def _message(error: Any) -> str:
    msg = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return "unknown key"
    if error["type"] == "missing":
        return "required key is missing"
    return msg


def load_settings(path: str | Path) -> Settings:
    """Read, interpolate and validate the YAML file at ``path``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([("", f"cannot read file: {exc.strerror}")], str(path)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError([("", f"{where}not valid YAML")], str(path)) from None
    return parse_settings(data, str(path))
