"""``runyard submit BLUEPRINT --config k=v``: turn ``key=value`` strings into a config dict."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from runyard import errors


def _reject_constant(name: str) -> Any:
    # NaN/Infinity are not JSON values a config can carry; keep such text as a string.
    raise ValueError(name)


def parse_value(text: str) -> Any:
    """JSON when it parses (``0.1``, ``64``, ``true``, ``[1,2]``, ``"x"``), else the string."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        return text


def parse_config_overrides(items: Iterable[str], field: str = "config") -> dict[str, Any]:
    """``["lr=0.1", "opt.beta=0.9", "name=abc"]`` -> ``{"lr": 0.1, "opt": {"beta": 0.9}, ...}``.

    Dotted keys build nested objects; a later item replaces an earlier value for the same
    key; a key used both as a value and as an object is refused.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise errors.ValidationError(
                f"{field}: expected KEY=VALUE, got {item!r}", field=field
            )
        parts = key.split(".")
        if any(not p for p in parts):
            raise errors.ValidationError(
                f"{field}: empty part in key {key!r}", field=f"{field}.{key}"
            )
        node = out
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where = ".".join(parts[:depth + 1])
                raise errors.ValidationError(
                    f"{field}.{key}: {where!r} is already set to a value, not an object",
                    field=f"{field}.{key}",
                )
            node = child
        last = parts[-1]
        if isinstance(node.get(last), dict):
            raise errors.ValidationError(
                f"{field}.{key}: already an object with keys set by other items",
                field=f"{field}.{key}",
            )
        node[last] = parse_value(raw)
    return out
