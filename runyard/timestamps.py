"""Times as the HTTP API and the progress protocol write them: ISO 8601 or UNIX seconds.

One home for the time format every part writes (``2023-11-14T22:13:20.500Z``: UTC,
milliseconds, ``Z``) and for reading times back: the server's bodies and query strings, the
agent (which must not forward a time the server would refuse: one bad time fails a whole
metrics call), the SDK, ``runyard sync`` and the client's models. Light on purpose: the agent
and the SDK import it without the server stack.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

from runyard import errors


def epoch_ms(t: float) -> int:
    """UNIX seconds as whole milliseconds, truncated. Rounded to the microsecond first, so a
    time read from ``...20.123Z`` comes back as ``.123`` whatever the float's last bit."""
    return round(t * 1_000_000) // 1000


def format_ms(ms: int) -> str:
    """Milliseconds since the epoch as ISO 8601 UTC with milliseconds and ``Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def format_time(when: float | datetime | None = None) -> str:
    """UNIX seconds or a datetime (naive means UTC; default: now) as the wire's ISO 8601:
    ``1700000000.5`` -> ``"2023-11-14T22:13:20.500Z"``."""
    if when is None:
        return format_ms(epoch_ms(time.time()))
    if isinstance(when, datetime):
        dt = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
        return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return format_ms(epoch_ms(when))


def parse_iso(text: str) -> datetime:
    """An ISO 8601 time (``Z`` or an offset; no zone means UTC) as an aware datetime;
    raises ValueError for anything else."""
    dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


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
            return parse_iso(value).timestamp()
        except ValueError:
            raise errors.ValidationError(
                f"{field}: expected an ISO 8601 time or UNIX seconds, got {value[:80]!r}",
                field=field) from None
    raise errors.ValidationError(f"{field}: expected a time, got {value!r}", field=field)


def is_time(value: str) -> bool:
    """Whether :func:`parse_time` takes this text ("" too: it stands for no time)."""
    try:
        parse_time(value, "at")
    except errors.ValidationError:
        return False
    return True


class EpochCache:
    """ISO 8601 times to UNIX seconds (None for a missing or unreadable one), parsing each
    distinct value once in a row: the points of one ``log()`` call share their time."""

    def __init__(self) -> None:
        self._last: str | None = None
        self._value: float | None = None

    def epoch(self, at: str | None) -> float | None:
        if at == self._last:
            return self._value
        try:
            value = None if at is None else parse_iso(at).timestamp()
        except ValueError:
            value = None
        self._last, self._value = at, value
        return value
