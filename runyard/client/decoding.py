"""Reading the server's JSON (docs/http-api.md): ISO 8601 times, numbers that may be
``"NaN"`` or an infinity, optional integers and node lists; a value of the wrong shape is a
contract breach, refused with a :class:`runyard.errors.ValidationError`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from runyard import errors, nonfinite, timestamps

#: A JSON object as the server answers it.
JSON = Mapping[str, Any]


def parse_time(value: Any, name: str = "time") -> datetime | None:
    """An ISO 8601 string (``...Z``) or null; anything else is a contract breach."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise errors.ValidationError(f"{name}: expected an ISO 8601 time, got {value!r}",
                                     field=name)
    try:
        return timestamps.parse_iso(value)
    except ValueError:
        raise errors.ValidationError(f"{name}: expected an ISO 8601 time, got {value!r}",
                                     field=name) from None


def parse_number(value: Any) -> float | None:
    """A JSON number or one of the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``."""
    if value is None:
        return None
    if isinstance(value, str):
        return nonfinite.SPECIALS.get(value, math.nan)
    return float(value)


def opt_int(value: Any) -> int | None:
    """An integer, or None for null."""
    return None if value is None else int(value)


def nodes_of(value: Any) -> tuple[str, ...] | None:
    """A list of node names as a tuple; anything else is None."""
    return tuple(str(n) for n in value) if isinstance(value, list) else None
