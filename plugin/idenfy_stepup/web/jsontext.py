"""Text from JSON that cannot be written back out (lone UTF-16 surrogates), and its depth.

Python's ``json`` decodes an escape such as ``"\\ud800"`` to a lone surrogate, a ``str`` that
no UTF-8 encoder accepts. Decoded network input carrying one would fail later, far from where
it arrived (a Redis key, a redirect's query, a log line): a 500 instead of a clear refusal.
Every decoder of network JSON asks :func:`has_lone_surrogate` first.
"""

from __future__ import annotations

from typing import Any


def has_lone_surrogate(value: Any) -> bool:
    """True if any string in ``value`` (keys included, at any depth) is not valid Unicode.

    Iterative, so a deeply nested value cannot exhaust the recursion limit.
    """
    todo = [value]
    while todo:
        node = todo.pop()
        if isinstance(node, str):
            if not _encodable(node):
                return True
        elif isinstance(node, dict):
            todo.extend(node.keys())
            todo.extend(node.values())
        elif isinstance(node, list | tuple):
            todo.extend(node)
    return False


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def json_depth(value: Any) -> int:
    """How deeply JSON containers nest in ``value`` (iterative: no recursion to exhaust)."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        node, depth = todo.pop()
        if isinstance(node, dict):
            node = list(node.values())
        if isinstance(node, list):
            deepest = max(deepest, depth)
            todo.extend((child, depth + 1) for child in node)
    return deepest
