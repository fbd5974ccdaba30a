"""A batch of metric points checked and laid out for the insert (used by
:meth:`MetricsMixin.add_metric_points <runyard.store.metrics.MetricsMixin.add_metric_points>`).

Ingest is the hottest path of the store, so a batch is checked in one pass into one list per
tag of ``(tag, step, value, special, at)`` tuples, sorted by step with one point per step (the
last occurrence wins). That shape feeds every later step without another pass in Python: the
insert's parameters are the tuples flattened, the probe for re-sent points is one step range
per tag, and the rollups of a tag whose values are all finite are aggregated a block at a time
(:func:`runyard.store.rollups.aggregate_sorted`).
"""

from __future__ import annotations

import bisect
import math
import operator
import time
from collections.abc import Iterator, Mapping, Sequence
from itertools import chain, islice
from typing import Any, cast

from runyard import errors
from runyard.store import rollups
from runyard.store.data import MAX_STEP, _check_int, _check_tag, _encode_value, _is_number

#: ``(tag, step, value, special, at)``: one checked point, as the insert binds it.
Point = tuple[str, int, float | None, str | None, float]


class Batch:
    """The checked points of one ingest call, by tag (see the module docstring)."""

    __slots__ = ("by_tag", "count", "special_tags")

    def __init__(self, by_tag: dict[str, list[Point]], special_tags: set[str]) -> None:
        self.by_tag = by_tag
        #: Tags with a NaN or an infinity: their rollups take the general path.
        self.special_tags = special_tags
        self.count = sum(len(pts) for pts in by_tag.values())

    @classmethod
    def of(cls, points: Sequence[Mapping[str, Any]],
           rows: Sequence[Sequence[Any]] = ()) -> Batch:
        """Check ``{step, tag, value, at}`` points, then compact ``(step, at, {tag: value})``
        rows (what one ``log()`` call records: no object per point); errors name
        ``points[i].field`` or ``rows[i][k]``."""
        for name, given in (("points", points), ("rows", rows)):
            if isinstance(given, (str, bytes)) or not isinstance(given, Sequence):
                raise errors.ValidationError(f"{name}: expected a list", field=name)
        now = time.time()
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
                tag = _check_tag(tag, f"points[{i}].tag")
                pts = by_tag[tag] = []
            step = p.get("step")
            if type(step) is not int or not 0 <= step <= MAX_STEP:
                step = _check_int(step, f"points[{i}].step")
            value = p.get("value")
            if type(value) is float and value - value == 0.0:  # finite: the common case
                special = None
            else:
                value, special = _encode_value(value, f"points[{i}].value")
                if value is None:
                    special_tags.add(tag)
            at = p.get("at")
            if at is None:
                at = now
            elif type(at) is not float or at - at != 0.0:
                at = _seconds(at, now, f"points[{i}].at")
            pts.append((tag, step, value, special, at))
        for i, row in enumerate(rows):
            if type(row) not in (list, tuple) or len(row) != 3 or (
                    type(row[2]) is not dict and not isinstance(row[2], Mapping)):
                raise errors.ValidationError(
                    f"rows[{i}]: expected [step, at, {{tag: value}}]", field=f"rows[{i}]")
            step, at, values = row
            if type(step) is not int or not 0 <= step <= MAX_STEP:
                step = _check_int(step, f"rows[{i}][0]")
            if type(at) is not float or at - at != 0.0:
                at = _seconds(at, now, f"rows[{i}][1]")
            for tag, value in values.items():
                pts = by_tag.get(tag) if type(tag) is str else None
                if pts is None:
                    tag = _check_tag(tag, f"rows[{i}][2].{tag}")
                    pts = by_tag[tag] = []
                if type(value) is float and value - value == 0.0:
                    special = None
                else:
                    value, special = _encode_value(value, f"rows[{i}][2].{tag}")
                    if value is None:
                        special_tags.add(tag)
                pts.append((tag, step, value, special, at))
        for tag, pts in by_tag.items():
            if not _increasing(pts):
                last = {p[1]: p for p in pts}  # the last occurrence of a step wins
                by_tag[tag] = [last[s] for s in sorted(last)]
        return cls(by_tag, special_tags)

    def spans(self) -> Iterator[tuple[str, int, int]]:
        """``(tag, first step, last step)`` of each tag."""
        for tag, pts in self.by_tag.items():
            yield tag, pts[0][1], pts[-1][1]

    def flat(self) -> list[Any]:
        """Every point's five values in a row, tag after tag (the insert's parameters)."""
        return list(chain.from_iterable(chain.from_iterable(self.by_tag.values())))

    def rows(self, run_id: str, attempt: int) -> list[tuple[Any, ...]]:
        """``(run_id, tag, step, attempt, value, special, at)`` of every point."""
        return [(run_id, t, s, attempt, v, sp, at)
                for pts in self.by_tag.values() for t, s, v, sp, at in pts]

    def value_of(self, tag: str, step: int) -> tuple[float | None, str | None] | None:
        """``(value, special)`` of the batch's point at ``(tag, step)``, if it has one."""
        pts = self.by_tag.get(tag)
        if not pts:
            return None
        i = _index(pts, step)
        return None if i is None else (pts[i][2], pts[i][3])

    def without(self, seen: Mapping[str, set[int]]) -> Batch:
        """This batch less the steps in ``seen`` (by tag)."""
        by_tag = {}
        for tag, pts in self.by_tag.items():
            drop = seen.get(tag)
            kept = [p for p in pts if p[1] not in drop] if drop else pts
            if kept:
                by_tag[tag] = kept
        return Batch(by_tag, self.special_tags & set(by_tag))

    def aggregate(self, attempt: int) -> list[rollups.RollupRow]:
        """The rollup rows of these points (to merge into the stored ones)."""
        out: list[rollups.RollupRow] = []
        for tag, pts in self.by_tag.items():
            if tag in self.special_tags:
                aggs = rollups.aggregate((t, s, attempt, v, sp) for t, s, v, sp, _ in pts)
                out += [(t, shift, block, *a) for (t, shift, block), a in aggs.items()]
            else:
                # Two comprehensions: several times faster than transposing with zip(*pts).
                # (A tag outside special_tags has a float value at every point.)
                values = cast(list[float], [p[2] for p in pts])
                out += rollups.aggregate_sorted(tag, attempt, [p[1] for p in pts], values)
        return out


def _seconds(at: Any, now: float, field: str) -> float:
    """A point's time as UNIX seconds (``now`` when left out)."""
    if at is None:
        return now
    try:
        seconds = float(at) if _is_number(at) else math.nan
    except OverflowError:
        seconds = math.nan
    if not math.isfinite(seconds):
        raise errors.ValidationError(f"{field}: expected UNIX seconds", field=field)
    return seconds


def _increasing(pts: list[Point]) -> bool:
    steps = [p[1] for p in pts]
    return all(map(operator.lt, steps, islice(steps, 1, None)))


def _index(pts: list[Point], step: int) -> int | None:
    i = bisect.bisect_left(pts, step, key=_STEP)
    return i if i < len(pts) and pts[i][1] == step else None


_STEP = operator.itemgetter(1)
