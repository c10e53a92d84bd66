"""Reading the settings file: ``${VAR}`` and ``${file:PATH}`` interpolation, validation, one error
naming each key."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .models import Settings

# ${VAR}, ${VAR:-default}, ${file:PATH}, ${file:PATH:-default}. A path cannot contain "}" or ":-".
_REF = re.compile(
    r"\$\{(?:file:(?P<file>[^}]+?)|(?P<var>[A-Za-z_][A-Za-z0-9_]*))(?::-(?P<default>[^}]*))?\}"
)
# A secret file is a key, a password or a PEM; anything this large is the wrong file.
_MAX_SECRET_FILE_BYTES = 1 << 20


class _Unreadable(Exception):
    """A ``${file:…}`` that cannot be used; the message never contains the file's content."""


def _read_secret_file(name: str) -> str | None:
    """The file's text with one trailing newline removed (``echo``, Docker and Kubernetes
    secrets end with one), or None when it does not exist. Only a regular file is read: a FIFO
    or a device (``/dev/zero``) would block or never end."""
    try:
        # O_NONBLOCK: opening a FIFO would otherwise wait for a writer before fstat can refuse it.
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise _Unreadable("is not a regular file")
            data = _read_up_to(fd, _MAX_SECRET_FILE_BYTES + 1)
        finally:
            os.close(fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _Unreadable(f"cannot be read: {exc.strerror}") from None
    if len(data) > _MAX_SECRET_FILE_BYTES:
        raise _Unreadable(f"is larger than {_MAX_SECRET_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _Unreadable("is not UTF-8 text") from None  # the error would quote a byte of it
    return text.removesuffix("\n")


def _read_up_to(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit and (chunk := os.read(fd, limit - size)):
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


class ConfigError(Exception):
    """The configuration cannot be used; ``problems`` lists ``(key path, message)`` pairs."""

    def __init__(self, problems: list[tuple[str, str]], source: str = "config") -> None:
        self.problems = problems
        self.source = source
        lines = [f"{path or '(top level)'}: {msg}" for path, msg in problems]
        super().__init__(f"{source}: invalid configuration\n  " + "\n  ".join(lines))


def _interpolate(node: Any, path: str, problems: list[tuple[str, str]]) -> Any:
    """Replace ``${VAR}`` / ``${file:PATH}`` (each with an optional ``:-default``) in every
    string, recording unset variables and unusable files (a default stands in only for an unset
    variable or a file that does not exist, never for one that exists but cannot be read)."""
    if isinstance(node, dict):
        return {k: _interpolate(v, _join(path, str(k)), problems) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate(v, f"{path}[{i}]", problems) for i, v in enumerate(node)]
    if not isinstance(node, str):
        return node

    def sub(match: re.Match[str]) -> str:
        default, file = match.group("default"), match.group("file")
        value: str | None
        if file is None:
            value = os.environ.get(match.group("var"), default)
            if value is None:
                problems.append((path, f"environment variable {match.group('var')} is not set"))
            return value or ""  # "": a placeholder, so the rest of the file is still validated
        try:
            value = _read_secret_file(file)
        except _Unreadable as exc:
            problems.append((path, f"secret file {file} {exc}"))
            return ""
        if value is None:
            value = default
            if value is None:
                problems.append((path, f"secret file {file} does not exist"))
        return value or ""

    return _REF.sub(sub, node)


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
