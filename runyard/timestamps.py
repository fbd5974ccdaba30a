"""Times as the HTTP API and the progress protocol write them: ISO 8601 or UNIX seconds.

One parser for the server's bodies and query strings, the agent (which must not forward a
time the server would refuse: one bad time fails a whole metrics call) and the worker's view
of a claim. Light on purpose: the agent imports it without the server stack.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from runyard import errors


def parse_time(value: str | float | int | None, field: str) -> float | None:
    """An ISO 8601 string (``Z`` or offset; no zone means UTC), or UNIX seconds as a number
    or a numeric string, as UNIX seconds; None or "" -> None. Anything else, non-finite
    seconds included, is a :class:`~runyard.errors.ValidationError` naming ``field``."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise errors.ValidationError(f"{field}: expected a time", field=field)
        return float(value)
    if isinstance(value, str):
        try:
            seconds = float(value)
        except ValueError:
            pass
        else:
            if not math.isfinite(seconds):
                raise errors.ValidationError(f"{field}: expected a time, got {value!r}",
                                             field=field)
            return seconds
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise errors.ValidationError(
                f"{field}: expected an ISO 8601 time or UNIX seconds, got {value[:80]!r}",
                field=field) from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return dt.timestamp()
    raise errors.ValidationError(f"{field}: expected a time, got {value!r}", field=field)


def is_time(value: str) -> bool:
    """Whether :func:`parse_time` takes this text ("" too: it stands for no time)."""
    try:
        parse_time(value, "at")
    except errors.ValidationError:
        return False
    return True
