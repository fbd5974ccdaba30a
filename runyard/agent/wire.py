"""The agent's wire encoding of a metrics stream: the lines the reader returns, as the bodies
of ``POST /v1/runs/{id}/metrics`` (see docs/http-api.md).

The reader (:mod:`runyard.progress.reader`) reads and parses; this module turns its lines into
compact rows in batches the server takes, with the bounds the server would refuse a whole
batch for applied point by point here.
"""

from __future__ import annotations

from typing import Any

from runyard import defaults, errors, nonfinite, timestamps
from runyard.progress import reader
from runyard.progress.metrics_stream import TAG_MAX


def _refuse(raw: bytes) -> Any:
    """Where orjson is missing, every line takes :func:`reader.parse_line`."""
    raise ValueError("no fast decoder")


#: A row of ``POST /v1/runs/{id}/metrics``: ``[step, at, {tag: value}]``, values JSON-safe.
WireRow = list[Any]
#: Distinct time texts :class:`WireRows` remembers as seconds.
TIMES_KEPT = 4096
_NONFINITE_TEXT = frozenset(nonfinite.SPECIALS)


class WireRows:
    """Stream lines as the compact rows the agent sends, in batches of ``batch_points``.

    The result is what :func:`reader.parse_line` makes of each line, put on the wire: times as
    UNIX seconds (a point without one gets ``at``), a non-finite value spelled as a string,
    a bad line a :class:`reader.TailWarning` with its number, and a point beyond a bound of the
    server's (a tag longer than ``max_tag``, a step above ``max_step``) left out, since the
    server would refuse its whole batch: counted in :attr:`dropped`, the first such tag and
    step kept in :attr:`long_tag` and :attr:`big_step`. Consecutive points of one step and
    time share a row unless a tag repeats (what one ``run.log({...}, step=)`` wrote). A
    batch ends between rows: the row under way when it reaches ``batch_points`` may take it
    past that, up to twice as far, since a batch whose rows all hold the same tags is one
    the server checks a column at a time, and a row cut in two would make it check every
    point.

    Most lines are what the SDK writes: those are checked on orjson's result with exact type
    tests and added with no object per point, since this runs for every point the agent
    forwards. Any other line goes through :func:`reader.parse_line`, so the two agree by
    construction.
    """

    def __init__(self, *, at: str, batch_points: int, max_tag: int = TAG_MAX,
                 max_step: int = defaults.METRIC_STEP_MAX) -> None:
        self.at = at
        self.batch_points = batch_points
        self.max_tag = min(max_tag, TAG_MAX)
        self.max_step = max_step
        self.batches: list[list[WireRow]] = []
        self.points = 0
        self.warnings: list[reader.TailWarning] = []
        self.dropped = 0
        self.long_tag: str | None = None
        self.big_step: int | None = None
        self._count = batch_points  # points in the last batch: the first point opens one
        # The last row's values and step and time, while the row may grow (no step: a new
        # row is due, as at a batch's start).
        self._values: dict[str, Any] = {}
        self._step: int | None = None
        self._at: str | None = None
        # Times as UNIX seconds by their text: the server takes seconds as they come, where
        # each ISO time would cost it a parse (and it is the busiest of the three processes).
        self._times: dict[str, float] = {}

    def _seconds(self, at: str) -> float | None:
        """``at`` as UNIX seconds ("" as this read's time), or None when the server would
        refuse it."""
        known = self._times.get(at)
        if known is None:
            try:
                known = timestamps.parse_time(at or self.at, "at")
            except errors.ValidationError:
                return None
            assert known is not None
            if len(self._times) >= TIMES_KEPT:
                self._times.clear()
            self._times[at] = known
        return known

    def add(self, got: reader.TailLines) -> None:
        """Add the lines (and the warnings) of one :meth:`reader.MetricsTail.read_lines`."""
        self.warnings.extend(got.warnings)
        loads = reader.fast_loads or _refuse
        nonfinite, max_tag, max_step = _NONFINITE_TEXT, self.max_tag, self.max_step
        batch_points, count, first = self.batch_points, self._count, got.first
        batch = self.batches[-1] if self.batches else []
        values, row_step, row_at = self._values, self._step, self._at
        good_at = row_at
        added = 0
        for index, raw in enumerate(got.lines):
            try:
                obj = loads(raw)
                step, tag, value, at = obj["step"], obj["tag"], obj["value"], obj["at"]
                fast = (type(step) is int and type(tag) is str and type(at) is str
                        and 0 <= step <= max_step and 0 < len(tag) <= max_tag)
            except (ValueError, KeyError, TypeError):  # not JSON, a key missing, no object
                fast = False
            # orjson refuses NaN, the infinities and integers past 64 bits: its floats are
            # finite, its integers fit a float.
            if fast and type(value) is not float:
                if type(value) is int:
                    value = float(value)
                else:
                    fast = type(value) is str and value in nonfinite
            # A time is checked once: the SDK's lines repeat one for many points.
            if fast and at != row_at and at != good_at:
                fast = self._seconds(at) is not None
                if fast:
                    good_at = at
            if not fast:
                point = self._parse(raw, first + index)
                if point is None:
                    continue
                step, tag, value, at = point
            if (step == row_step and at == row_at and tag not in values
                    and count < 2 * batch_points):
                values[tag] = value
            else:
                if count >= batch_points:
                    batch, count = [], 0
                    self.batches.append(batch)
                values, row_step, row_at = {tag: value}, step, at
                batch.append([step, self._seconds(at), values])
            count += 1
            added += 1
        self.points += added
        self._count, self._values, self._step, self._at = count, values, row_step, row_at

    def _parse(self, raw: bytes, number: int) -> tuple[int, str, Any, str] | None:
        """A line off the fast path, through :func:`reader.parse_line`: the point in wire form, or
        None when it is blank, bad (a warning) or has a tag too long to forward."""
        if not raw.strip():
            return None
        parsed = reader.parse_line(raw)
        if isinstance(parsed, str):
            self.warnings.append(reader.TailWarning(number, parsed))
            return None
        too_long = len(parsed.tag) > self.max_tag
        if too_long or parsed.step > self.max_step:
            self.dropped += 1
            if too_long and self.long_tag is None:
                self.long_tag = parsed.tag
            elif not too_long and self.big_step is None:
                self.big_step = parsed.step
            return None
        value: Any = parsed.value
        if value - value != 0.0:  # NaN or an infinity: spelled as a string
            value = nonfinite.encode(value)
        return parsed.step, parsed.tag, value, self.at if parsed.at is None else parsed.at
