"""The checks every store write applies to its input, and how metric values are stored.

Conventions, binding for callers:

* Special metric values travel as the JSON-ready strings ``"NaN"``, ``"Infinity"`` and
  ``"-Infinity"`` in both directions; they are stored as ``value`` NULL plus the spelling in
  ``special`` (SQLite cannot keep a NaN in a REAL column).
* Every write validates all of its input first and writes nothing when any of it is bad; a
  bad field raises :class:`runyard.errors.ValidationError` naming that field.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from runyard import errors, nonfinite

MAX_STEP = 2**63 - 1
MAX_TAG_LEN = 64
#: Largest attempt number (the column is a 32-bit integer).
MAX_ATTEMPT = 2**31 - 1


def is_int(v: Any) -> bool:
    """An int, and not a bool."""
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    """An int or a float, and not a bool."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def encode_value(v: Any, field: str) -> tuple[float | None, str | None]:
    """A point's value as (finite float or None, special spelling or None)."""
    if isinstance(v, str):
        if v in nonfinite.SPECIALS:
            return None, v
        raise errors.ValidationError(
            f"{field}: expected a number or one of {', '.join(nonfinite.SPECIALS)}, got {v!r}",
            field=field)
    if not is_number(v):
        raise errors.ValidationError(f"{field}: expected a number, got {type(v).__name__}",
                                     field=field)
    try:
        f = float(v)
    except OverflowError:
        raise errors.ValidationError(f"{field}: number too large", field=field) from None
    spelled = nonfinite.encode(f)
    return (None, spelled) if type(spelled) is str else (f, None)


def decode_value(value: float | None, special: str | None) -> float | str | None:
    """The JSON-ready form of a stored value: a float, or its special spelling."""
    return special if special is not None else value


def check_tag(tag: Any, field: str) -> str:
    """A metric tag: 1 to :data:`MAX_TAG_LEN` characters, none of them a control character."""
    if not isinstance(tag, str) or not 1 <= len(tag) <= MAX_TAG_LEN:
        raise errors.ValidationError(f"{field}: expected a string of 1 to {MAX_TAG_LEN} "
                                     "characters", field=field)
    if any(ord(ch) < 32 for ch in tag):
        raise errors.ValidationError(f"{field}: control characters are not allowed", field=field)
    return tag


def check_int(v: Any, field: str, lo: int = 0, hi: int = MAX_STEP) -> int:
    """An integer from ``lo`` to ``hi`` (a bool is not one)."""
    if not is_int(v) or not lo <= v <= hi:
        raise errors.ValidationError(f"{field}: expected an integer from {lo} to {hi}, "
                                     f"got {v!r}", field=field)
    return int(v)


def check_attempt(v: Any, field: str = "attempt") -> int:
    """An attempt number."""
    return check_int(v, field, 0, MAX_ATTEMPT)


def check_choice(v: Any, field: str, choices: Sequence[str]) -> str:
    """One of ``choices``."""
    if v not in choices:
        raise errors.ValidationError(f"{field}: expected one of {', '.join(choices)}, got {v!r}",
                                     field=field)
    return str(v)


def check_sha(v: Any, field: str = "sha256") -> str:
    """A SHA-256 digest as 64 lowercase hex digits."""
    if not (isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v)):
        raise errors.ValidationError(f"{field}: expected 64 lowercase hex digits", field=field)
    return v


def check_name(v: Any, field: str, max_len: int = 255) -> str:
    """A name of 1 to ``max_len`` characters, without NUL."""
    if not isinstance(v, str) or not 1 <= len(v) <= max_len or "\x00" in v:
        raise errors.ValidationError(f"{field}: expected a string of 1 to {max_len} characters",
                                     field=field)
    return v
