"""A batch of metric points checked and laid out for the insert (used by
:meth:`MetricsMixin.add_metric_points <runyard.store.metrics.MetricsMixin.add_metric_points>`).

A batch comes as ``points`` (one ``{step, tag, value, at}`` object each), as compact ``rows``
(``(step, at, {tag: value})``: the points one ``log()`` call recorded), or both. Points become
rows first (:func:`rows_of_points`), so one validator checks every batch, and its errors name
the field as it was sent (``points[3].step``, ``rows[3][2].loss``).

Ingest is the hottest path of the store, so a checked batch is held as one :class:`Column` per
tag: its steps, values, special spellings and times as parallel lists, sorted by step with one
point per step (the last occurrence wins). That shape feeds every later step without another
pass in Python: the insert binds a tag (and a time shared by every point) once and interleaves
the columns into its parameters, the probe for re-sent points is one step range per tag, and
the rollups of a tag whose values are all finite are aggregated a block at a time
(:func:`runyard.store.rollups.aggregate_sorted`).

Most batches are clean: rows that all log the same tags (what ``log()`` records, and one tag
in the ``points`` form). Those are checked a column at a time with C-level passes (``map``,
``set``, ``sum``) instead of a Python loop per point (:func:`_row_columns`); anything else,
and every bad batch, takes the general pass (:func:`_checked`), which names the first bad
field.
"""

from __future__ import annotations

import bisect
import math
import operator
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from itertools import islice, repeat
from typing import Any, cast

from runyard import errors, timestamps
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
    def of(cls, points: Sequence[Mapping[str, Any]], rows: Sequence[Sequence[Any]] = ()
           ) -> Batch:
        """Check ``{step, tag, value, at}`` points, then ``(step, at, {tag: value})`` rows
        (after the points: the last occurrence of a step wins); ``at`` is UNIX seconds or
        an ISO 8601 time, left out: now. Errors name ``points[i].field`` or ``rows[i][k]``
        (:func:`point_field`, :func:`row_field`)."""
        for name, given in (("points", points), ("rows", rows)):
            if isinstance(given, (str, bytes)) or not isinstance(given, Sequence):
                raise errors.ValidationError(f"{name}: expected a list", field=name)
        now = time.time()
        if not points:
            return cls(_row_columns(rows) or _checked(rows, now, row_field))
        as_rows = rows_of_points(points, now)
        if not rows:
            return cls(_row_columns(as_rows) or _checked(as_rows, now, point_field))
        n = len(as_rows)

        def field(i: int, part: str, tag: Any = None) -> str:
            return point_field(i, part, tag) if i < n else row_field(i - n, part, tag)

        return cls(_checked([*as_rows, *rows], now, field))

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

_ROW_STEP = operator.itemgetter(0)
_ROW_AT = operator.itemgetter(1)
_ROW_VALUES = operator.itemgetter(2)


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


# --------------------------------------------------------------------------- general pass


#: Names a field of a batch for an error: ``(index, part, tag)``, where ``part`` is "" (the row
#: or point itself), "step", "at", "tag" or "value" (``tag`` the key the value is under).
FieldName = Callable[[int, str, Any], str]
_ROW_PARTS = {"": "", "step": "[0]", "at": "[1]"}
_POINT_KEYS = frozenset(("step", "tag", "value", "at"))
_STEP = operator.itemgetter("step")
_TAG = operator.itemgetter("tag")
_VALUE = operator.itemgetter("value")
_GET_AT = operator.methodcaller("get", "at")


def row_field(i: int, part: str, tag: Any = None) -> str:
    """``rows[i]``, ``rows[i][0]`` (step), ``rows[i][1]`` (at), ``rows[i][2].tag``."""
    return f"rows[{i}]{_ROW_PARTS[part]}" if part in _ROW_PARTS else f"rows[{i}][2].{tag}"


def point_field(i: int, part: str, tag: Any = None) -> str:
    """``points[i]`` or ``points[i].part``."""
    return f"points[{i}].{part}" if part else f"points[{i}]"


def rows_of_points(points: Sequence[Any], now: float) -> list[tuple[Any, Any, dict[Any, Any]]]:
    """The ``points`` form as rows, one a point, a time left out as ``now`` (the rows'
    checks then find them clean). A point that is not an object of those four fields, or
    whose tag is no string, is refused here, naming it; the rest is checked as rows."""
    keys: set[str] = set()
    if points and set(map(type, points)) == {dict} and (
            keys := set().union(*points)) <= _POINT_KEYS:
        # The usual batch, converted a field at a time: C-level passes, and no loop per
        # point in Python but the one that builds the rows' dicts.
        try:
            tags = list(map(_TAG, points))
            steps = list(map(_STEP, points))
            values = list(map(_VALUE, points))
        except KeyError:  # a field left out: the loop below names it
            tags = []
        if tags and set(map(type, tags)) == {str}:
            ats: Sequence[Any] = [now] * len(points)
            if "at" in keys:
                ats = [now if at is None else at for at in map(_GET_AT, points)]
            dicts = [{t: v} for t, v in zip(tags, values, strict=True)]
            return list(zip(steps, ats, dicts, strict=True))
    out: list[tuple[Any, Any, dict[Any, Any]]] = []
    for i, p in enumerate(points):
        if type(p) is not dict and not isinstance(p, Mapping):  # the abc check is slow
            raise errors.ValidationError(f"points[{i}]: expected an object",
                                         field=f"points[{i}]")
        if not p.keys() <= _POINT_KEYS:
            key = min(map(str, p.keys() - _POINT_KEYS))
            raise errors.ValidationError(f"points[{i}].{key}: unknown field",
                                         field=f"points[{i}].{key}")
        tag = p.get("tag")
        if type(tag) is not str:  # a dict's key must be hashable
            check_tag(tag, f"points[{i}].tag")
        at = p.get("at")
        out.append((p.get("step"), now if at is None else at, {tag: p.get("value")}))
    return out


def _checked(rows: Sequence[Sequence[Any]], now: float, field: FieldName
             ) -> dict[str, Column]:
    """Every point checked one by one (naming the first bad field), then laid out as columns."""
    by_tag: dict[str, list[Point]] = {}
    special_tags: set[str] = set()
    # Rows written in the same millisecond share their ISO time: each is parsed once.
    last_text: Any = None
    last_at = now
    for i, row in enumerate(rows):
        if type(row) not in (list, tuple) or len(row) != 3 or (
                type(row[2]) is not dict and not isinstance(row[2], Mapping)):
            raise errors.ValidationError(
                f"{field(i, '', None)}: expected [step, at, {{tag: value}}]",
                field=field(i, "", None))
        step, at, values = row
        if type(step) is not int or not 0 <= step <= MAX_STEP:
            step = check_int(step, field(i, "step", None))
        if type(at) is not float or at - at != 0.0:
            if type(at) is str and at == last_text:
                at = last_at
            else:
                text = at
                at = _seconds(at, now, field(i, "at", None))
                if type(text) is str:
                    last_text, last_at = text, at
        for tag, value in values.items():
            pts = by_tag.get(tag) if type(tag) is str else None
            if pts is None:
                tag = check_tag(tag, field(i, "tag", tag))
                pts = by_tag[tag] = []
            if type(value) is float and value - value == 0.0:  # finite: the common case
                special = None
            else:
                value, special = encode_value(value, field(i, "value", tag))
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
    """A point's time as UNIX seconds (``now`` when left out), from seconds or ISO 8601."""
    if at is None:
        return now
    if type(at) is str:
        seconds = timestamps.parse_time(at, field)
        return now if seconds is None else seconds
    try:
        seconds = float(at) if is_number(at) else math.nan
    except OverflowError:
        seconds = math.nan
    if not math.isfinite(seconds):
        raise errors.ValidationError(f"{field}: expected UNIX seconds", field=field)
    return seconds


def _increasing(steps: list[int]) -> bool:
    return all(map(operator.lt, steps, islice(steps, 1, None)))
