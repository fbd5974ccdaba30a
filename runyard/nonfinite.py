"""How NaN and the infinities travel in JSON, which has no spelling for them.

Every body, progress file and stored point spells them ``"NaN"``, ``"Infinity"`` and
``"-Infinity"`` (docs/progress-protocol.md); this module is the one place that knows it.
"""

from __future__ import annotations

import math
from typing import Any

from runyard import jsonvalues

NAN = "NaN"
POS_INF = "Infinity"
NEG_INF = "-Infinity"
#: Each spelling and the float it stands for.
SPECIALS: dict[str, float] = {NAN: math.nan, POS_INF: math.inf, NEG_INF: -math.inf}


def encode(value: Any) -> Any:
    """A number as it goes on the wire: itself when finite, else its spelling. Anything
    that is not a non-finite float (None, an int, a bool) is returned as it is."""
    if value != value:  # NaN is the only value unequal to itself; cheaper than math.isnan
        return NAN
    if value == math.inf:
        return POS_INF
    if value == -math.inf:
        return NEG_INF
    return value


def decode(value: Any) -> float | None:
    """The float a wire value stands for, or None when it is not a number (a bool, an
    unknown string...)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        return SPECIALS.get(value)
    return None


def to_wire(obj: Any) -> Any:
    """``obj`` with every non-finite float (at any depth) spelled as a string; mapping keys
    become strings, tuples lists, and text that is not valid Unicode made printable."""
    return jsonvalues.safe_copy(obj, encode)
