"""Checks on JSON values that users send, and a safe copy of values read back.

Every value a user sends (config, notes, snapshots, event details, imported runs) is stored
and later shown to every other user. One lone surrogate (``"\\ud800"``) or a value nested a
few hundred levels deep would then break the pages that list it, for everyone. So values are
refused at the edge when they hold invalid Unicode or nest deeper than :data:`MAX_DEPTH`
(their size is bounded by the request body limits, docs/security.md), and what is read back
is copied without recursion, with any invalid text that is already stored made printable.

Both walks are iterative: a deep value must not cost the server its stack.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from runyard import errors

#: How deep a JSON value may nest (objects and arrays); configs in practice stay under 10.
MAX_DEPTH = 64


def check(value: Any, field: str, *, max_depth: int = MAX_DEPTH) -> None:
    """Refuse a value with a lone surrogate in a string or key, or nested deeper than
    ``max_depth``, with a :class:`runyard.errors.ValidationError` naming where."""
    stack: list[tuple[Any, str, int]] = [(value, field, 0)]
    while stack:
        node, where, depth = stack.pop()
        if isinstance(node, str):
            _check_text(node, where)
        elif isinstance(node, Mapping | list | tuple):
            if depth >= max_depth:
                raise errors.ValidationError(
                    f"{where}: nested deeper than {max_depth} levels", field=field)
            if isinstance(node, Mapping):
                for key, item in node.items():
                    inner = f"{where}.{_printable(str(key)):.40}"
                    _check_text(str(key), inner)
                    stack.append((item, inner, depth + 1))
            else:
                stack.extend((item, f"{where}[{i}]", depth + 1) for i, item in enumerate(node))


def _check_text(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise errors.ValidationError(
            f"{where}: not valid Unicode (a lone surrogate code point)",
            field=where.split(".")[0].split("[")[0]) from None


def safe_copy(value: Any, number: Callable[[float], Any]) -> Any:
    """A deep copy fit for JSON output: floats through ``number`` (which spells the
    non-finite ones), keys as strings, and invalid Unicode replaced by U+FFFD."""
    root: list[Any] = [None]
    # Each entry: (source node, container to write into, key or index there).
    stack: list[tuple[Any, Any, Any]] = [(value, root, 0)]
    while stack:
        node, into, at = stack.pop()
        if isinstance(node, str):
            into[at] = _printable(node)
        elif isinstance(node, float):
            into[at] = number(node)
        elif isinstance(node, Mapping):
            out: dict[str, Any] = {}
            into[at] = out
            for key, item in node.items():
                k = _printable(str(key))
                out[k] = None
                stack.append((item, out, k))
        elif isinstance(node, list | tuple):
            items: list[Any] = [None] * len(node)
            into[at] = items
            stack.extend((item, items, i) for i, item in enumerate(node))
        else:
            into[at] = node
    return root[0]


_SURROGATE = re.compile("[\ud800-\udfff]")


def _printable(text: str) -> str:
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
