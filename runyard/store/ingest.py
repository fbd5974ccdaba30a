"""A batch of metric points checked and laid out for the insert (used by
:meth:`MetricsMixin.add_metric_points <runyard.store.metrics.MetricsMixin.add_metric_points>`).

Ingest is the hottest path of the store, so a batch is held as one :class:`Column` per tag:
its steps, values, special spellings and times as parallel lists, sorted by step with one
point per step (the last occurrence wins). That shape feeds every later step without another
pass in Python: the insert binds a tag (and a time shared by every point) once and interleaves
the columns into its parameters, the probe for re-sent points is one step range per tag, and
the rollups of a tag whose values are all finite are aggregated a block at a time
(:func:`runyard.store.rollups.aggregate_sorted`).

Most batches are clean: one tag in the ``points`` form (what agents and scripts send), or rows
that all log the same tags (what ``log()`` records). Those are checked a column at a time with
C-level passes (``map``, ``set``, ``sum``) instead of a Python loop per point
(:func:`_point_columns`, :func:`_row_columns`); anything else, and every bad batch, takes the
general pass (:func:`_checked`), which names the first bad field.
"""

from __future__ import annotations

import bisect
import math
import operator
import time
from collections.abc import Iterator, Mapping, Sequence
from itertools import islice, repeat
from typing import Any, cast

from runyard import errors
from runyard.store import rollups
from runyard.store.values import MAX_STEP, check_int, check_tag, encode_value, is_number

#: ``(step, value, special, at)``: one checked point of a tag, in the general pass.
Point = tuple[int, float | None, str | None, float]


class Column:
    """One tag's points: strictly increasing ``steps`` and, at the same index, ``values``
    (a float, or None for a NaN or infinity), their ``specials`` spellings and times."""

    __slots__ = ("ats", "specials", "steps", "values")

    def __init__(self, steps: list[int], values: list[float | None],
                 specials: list[str | None] | None, ats: list[float] | float) -> None:
        self.steps = steps
        self.values = values
        #: None when every value is a finite float (most tags: nothing to spell out).
        self.specials = specials
        #: One float when every point has the same time (a batch sent without times).
        self.ats = ats

    def __len__(self) -> int:
        return len(self.steps)

    def times(self) -> list[float]:
        """Each point's time."""
        return self.ats if type(self.ats) is list else [cast(float, self.ats)] * len(self)

    def value_at(self, step: int) -> tuple[float | None, str | None] | None:
        """``(value, special)`` at ``step``, if this column has that step."""
        i = bisect.bisect_left(self.steps, step)
        if i == len(self.steps) or self.steps[i] != step:
            return None
        return self.values[i], None if self.specials is None else self.specials[i]

    def without(self, drop: set[int]) -> Column:
        """This column less the steps in ``drop``."""
        keep = [i for i, s in enumerate(self.steps) if s not in drop]

        def taken(items: list[Any]) -> list[Any]:
            return [items[i] for i in keep]

        ats = taken(self.ats) if type(self.ats) is list else self.ats
        specials = None if self.specials is None else taken(self.specials)
        return Column(taken(self.steps), taken(self.values), specials, ats)


class Batch:
    """The checked points of one ingest call, by tag (see the module docstring)."""

    __slots__ = ("by_tag", "count")

    def __init__(self, by_tag: dict[str, Column]) -> None:
        self.by_tag = by_tag
        self.count = sum(map(len, by_tag.values()))

    @classmethod
    def of(cls, points: Sequence[Mapping[str, Any]],
           rows: Sequence[Sequence[Any]] = (), columns: Mapping[str, Any] | None = None
           ) -> Batch:
        """Check ``{step, tag, value, at}`` points, then compact ``(step, at, {tag: value})``
        rows (what one ``log()`` call records: no object per point), or ``columns`` alone
        (see :func:`_column_batch`); errors name ``points[i].field``, ``rows[i][k]`` or
        ``columns.key[i]``."""
        if columns is not None:
            if points or rows:
                raise errors.ValidationError(
                    "columns: cannot come with points or rows in one batch", field="columns")
            return cls(_column_batch(columns, time.time()))
        for name, given in (("points", points), ("rows", rows)):
            if isinstance(given, (str, bytes)) or not isinstance(given, Sequence):
                raise errors.ValidationError(f"{name}: expected a list", field=name)
        now = time.time()
        fast = None
        # Rows come after points (the last occurrence of a step wins), so a batch with both
        # takes the general pass.
        if not rows:
            fast = _point_columns(points, now)
        elif not points:
            fast = _row_columns(rows)
        return cls(fast if fast is not None else _checked(points, rows, now))

    def spans(self) -> Iterator[tuple[str, int, int]]:
        """``(tag, first step, last step)`` of each tag."""
        for tag, col in self.by_tag.items():
            yield tag, col.steps[0], col.steps[-1]

    def rows(self, run_id: str, attempt: int) -> list[tuple[Any, ...]]:
        """``(run_id, tag, step, attempt, value, special, at)`` of every point."""
        out: list[tuple[Any, ...]] = []
        for tag, col in self.by_tag.items():
            specials = repeat(None) if col.specials is None else col.specials
            out += zip(repeat(run_id), repeat(tag), col.steps, repeat(attempt), col.values,
                       specials, col.times())
        return out

    def value_of(self, tag: str, step: int) -> tuple[float | None, str | None] | None:
        """``(value, special)`` of the batch's point at ``(tag, step)``, if it has one."""
        col = self.by_tag.get(tag)
        return None if col is None else col.value_at(step)

    def without(self, seen: Mapping[str, set[int]]) -> Batch:
        """This batch less the steps in ``seen`` (by tag)."""
        by_tag = {}
        for tag, col in self.by_tag.items():
            drop = seen.get(tag)
            kept = col.without(drop) if drop else col
            if len(kept):
                by_tag[tag] = kept
        return Batch(by_tag)

    def aggregate(self, attempt: int) -> tuple[list[rollups.Blocks], list[rollups.RollupRow]]:
        """The rollups of these points (to merge into the stored ones): tags with only finite
        values as columns, the others as rows."""
        blocks: list[rollups.Blocks] = []
        rows: list[rollups.RollupRow] = []
        for tag, col in self.by_tag.items():
            if col.specials is None:  # every value a float
                blocks.append(rollups.aggregate_sorted(tag, attempt, col.steps,
                                                       cast(list[float], col.values)))
            else:
                aggs = rollups.aggregate(zip(repeat(tag), col.steps, repeat(attempt),
                                             col.values, col.specials))
                rows += [(t, shift, block, *a) for (t, shift, block), a in aggs.items()]
        return blocks, rows


# --------------------------------------------------------------------------- clean batches

_STEP = operator.itemgetter("step")
_TAG = operator.itemgetter("tag")
_VALUE = operator.itemgetter("value")
_AT = operator.itemgetter("at")
_ROW_STEP = operator.itemgetter(0)
_ROW_AT = operator.itemgetter(1)
_ROW_VALUES = operator.itemgetter(2)


def _point_columns(points: Sequence[Any], now: float) -> dict[str, Column] | None:
    """The column of ``points`` that are all clean (objects of one valid tag, integer steps
    in range and increasing, finite times or none) checked a field at a time; None for any
    other batch, which the general pass then checks point by point."""
    if not points:
        return {}
    try:
        # Each getter raises for a point that is not an object or lacks the field.
        tags = set(map(_TAG, points))
        steps = list(map(_STEP, points))
        values = list(map(_VALUE, points))
    except (KeyError, TypeError):  # a field left out, not an object, an unhashable tag
        return None
    try:
        ats: list[Any] | float | None = _times(list(map(_AT, points)))
    except KeyError:  # a point without a time (stamped now): then none may have one
        ats = None if any(map(operator.contains, points, repeat("at"))) else now
    if len(tags) != 1 or not _steps_ok(steps):
        return None
    (tag,) = tags
    checked = _values(values)
    if not _tag_ok(tag) or ats is None or checked is None:
        return None
    return {tag: Column(steps, checked[0], checked[1], ats)}


def _row_columns(rows: Sequence[Any]) -> dict[str, Column] | None:
    """The columns of compact rows that are all clean and log the same tags (every ``log()``
    call of a loop usually does), checked a field at a time; None otherwise."""
    if set(map(type, rows)) - {tuple, list} or set(map(len, rows)) != {3}:
        return None
    steps = list(map(_ROW_STEP, rows))
    ats = _times(list(map(_ROW_AT, rows)))
    dicts = list(map(_ROW_VALUES, rows))
    if ats is None or not _steps_ok(steps) or set(map(type, dicts)) != {dict}:
        return None
    first = dicts[0]
    # Same size and every key of the first: the same tags (a dict's keys are distinct).
    if set(map(len, dicts)) != {len(first)}:
        return None
    out: dict[str, Column] = {}
    for tag in first:
        if not _tag_ok(tag):
            return None
        try:
            checked = _values(list(map(operator.itemgetter(tag), dicts)))
        except KeyError:
            return None
        if checked is None:
            return None
        # The columns share steps and times: nothing changes a column's lists in place.
        out[tag] = Column(steps, checked[0], checked[1], ats)
    return out


def _steps_ok(steps: list[Any]) -> bool:
    """Plain ints, strictly increasing, in range."""
    if set(map(type, steps)) != {int} or not _increasing(steps):
        return False
    return bool(0 <= steps[0] and steps[-1] <= MAX_STEP)


def _tag_ok(tag: Any) -> bool:
    if type(tag) is not str:
        return False
    try:
        check_tag(tag, "tag")
    except errors.ValidationError:
        return False
    return True


def _values(values: list[Any]) -> tuple[list[float | None], list[str | None] | None] | None:
    """``(values, specials)`` of one tag's given values (specials None when every value is a
    finite float); None when one is not a valid value."""
    # A sum of floats is finite only if each is (a NaN or an infinity carries through);
    # a sum that overflows only sends the column through the loop below.
    if set(map(type, values)) == {float}:
        total = sum(values)
        if total - total == 0.0:
            return values, None
    out: list[float | None] = []
    specials: list[str | None] = []
    for v in values:
        try:
            f, special = encode_value(v, "value")
        except errors.ValidationError:
            return None
        out.append(f)
        specials.append(special)
    return out, specials if any(specials) else None


def _times(ats: list[Any]) -> list[float] | float | None:
    """Times that are all finite floats, as one float when they are all the same; None
    otherwise (the general pass converts integers and reports the rest)."""
    if set(map(type, ats)) != {float}:
        return None
    total = sum(ats)
    if total - total != 0.0:
        return None
    return ats[0] if ats.count(ats[0]) == len(ats) else ats


# --------------------------------------------------------------------------- columns


def _column_batch(columns: Any, now: float) -> dict[str, Column]:
    """The columns form: ``{"step": [...], "at": [...], "values": {tag: [...]}}``, one
    item per step in every list (a value ``None`` where the tag has no point at that step),
    steps strictly increasing, ``at`` UNIX seconds (left out: now). The most compact form on
    the wire and the cheapest to read: flat lists of numbers are all the decoder builds, and
    they become the batch's columns as they are."""
    if not isinstance(columns, Mapping):
        raise errors.ValidationError("columns: expected an object", field="columns")
    for key in columns:
        if key not in ("step", "at", "values"):
            raise errors.ValidationError(f"columns.{key}: unknown field", field=f"columns.{key}")
    steps, ats, values = columns.get("step"), columns.get("at"), columns.get("values")
    if type(steps) is not list:
        raise errors.ValidationError("columns.step: expected a list", field="columns.step")
    if not isinstance(values, Mapping):
        raise errors.ValidationError("columns.values: expected an object of lists",
                                     field="columns.values")
    count = len(steps)
    if steps and not _steps_ok(steps):
        for i, step in enumerate(steps):
            field = f"columns.step[{i}]"
            check_int(step, field)
            if i and step <= steps[i - 1]:
                raise errors.ValidationError(f"{field}: steps must increase", field=field)
    times: list[float] | float
    if ats is None:
        times = now
    else:
        if type(ats) is not list or len(ats) != count:
            raise errors.ValidationError(f"columns.at: expected a list of {count} times",
                                         field="columns.at")
        found = _times(ats) if ats else now
        times = found if found is not None else [
            _seconds(at, now, f"columns.at[{i}]") for i, at in enumerate(ats)]
    out: dict[str, Column] = {}
    for tag, given in values.items():
        check_tag(tag, "columns.values")
        field = f"columns.values.{tag}"
        if type(given) is not list or len(given) != count:
            raise errors.ValidationError(f"{field}: expected a list of {count} values",
                                         field=field)
        tag_steps, tag_times = steps, times
        index: Sequence[int] = range(count)
        if None in given:  # the steps without a point of this tag are left out
            index = [i for i, v in enumerate(given) if v is not None]
            given = [given[i] for i in index]
            tag_steps = [steps[i] for i in index]
            if type(times) is list:
                tag_times = [times[i] for i in index]
        checked = _values(given)
        if checked is None:
            for i, v in zip(index, given, strict=True):
                encode_value(v, f"{field}[{i}]")
            raise AssertionError("a value _values refused passed _encode_value")
        if given:
            # The columns share steps and times: nothing changes a column's lists in place.
            out[tag] = Column(tag_steps, checked[0], checked[1], tag_times)
    return out


# --------------------------------------------------------------------------- general pass


def _checked(points: Sequence[Mapping[str, Any]], rows: Sequence[Sequence[Any]], now: float
             ) -> dict[str, Column]:
    """Every point checked one by one (naming the first bad field), then laid out as columns."""
    by_tag: dict[str, list[Point]] = {}
    special_tags: set[str] = set()
    for i, p in enumerate(points):
        if type(p) is not dict and not isinstance(p, Mapping):  # the abc check is slow
            raise errors.ValidationError(f"points[{i}]: expected an object",
                                         field=f"points[{i}]")
        tag: Any = p.get("tag")
        # A batch repeats a few tags many times: each distinct tag is checked once.
        pts = by_tag.get(tag) if type(tag) is str else None
        if pts is None:
            tag = check_tag(tag, f"points[{i}].tag")
            pts = by_tag[tag] = []
        step = p.get("step")
        if type(step) is not int or not 0 <= step <= MAX_STEP:
            step = check_int(step, f"points[{i}].step")
        value = p.get("value")
        if type(value) is float and value - value == 0.0:  # finite: the common case
            special = None
        else:
            value, special = encode_value(value, f"points[{i}].value")
            if value is None:
                special_tags.add(tag)
        at = p.get("at")
        if at is None:
            at = now
        elif type(at) is not float or at - at != 0.0:
            at = _seconds(at, now, f"points[{i}].at")
        pts.append((step, value, special, at))
    for i, row in enumerate(rows):
        if type(row) not in (list, tuple) or len(row) != 3 or (
                type(row[2]) is not dict and not isinstance(row[2], Mapping)):
            raise errors.ValidationError(
                f"rows[{i}]: expected [step, at, {{tag: value}}]", field=f"rows[{i}]")
        step, at, values = row
        if type(step) is not int or not 0 <= step <= MAX_STEP:
            step = check_int(step, f"rows[{i}][0]")
        if type(at) is not float or at - at != 0.0:
            at = _seconds(at, now, f"rows[{i}][1]")
        for tag, value in values.items():
            pts = by_tag.get(tag) if type(tag) is str else None
            if pts is None:
                tag = check_tag(tag, f"rows[{i}][2].{tag}")
                pts = by_tag[tag] = []
            if type(value) is float and value - value == 0.0:
                special = None
            else:
                value, special = encode_value(value, f"rows[{i}][2].{tag}")
                if value is None:
                    special_tags.add(tag)
            pts.append((step, value, special, at))
    out: dict[str, Column] = {}
    for tag, pts in by_tag.items():
        if not _increasing([p[0] for p in pts]):
            last = {p[0]: p for p in pts}  # the last occurrence of a step wins
            pts = [last[s] for s in sorted(last)]
        ats = [p[3] for p in pts]
        out[tag] = Column([p[0] for p in pts], [p[1] for p in pts],
                          [p[2] for p in pts] if tag in special_tags else None,
                          ats[0] if ats.count(ats[0]) == len(ats) else ats)
    return out


def _seconds(at: Any, now: float, field: str) -> float:
    """A point's time as UNIX seconds (``now`` when left out)."""
    if at is None:
        return now
    try:
        seconds = float(at) if is_number(at) else math.nan
    except OverflowError:
        seconds = math.nan
    if not math.isfinite(seconds):
        raise errors.ValidationError(f"{field}: expected UNIX seconds", field=field)
    return seconds


def _increasing(steps: list[int]) -> bool:
    return all(map(operator.lt, steps, islice(steps, 1, None)))
