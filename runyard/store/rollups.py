"""Metric rollups: per-block aggregates that let a downsampled series skip the raw points.

Each ``(run, tag)`` keeps, for every level ``shift`` in :data:`SHIFTS`, one row per block of
``2**shift`` steps that holds points: their count, the min and max of their finite values, and
the last point (highest step) with its value. A metric is a function of the step: where
several attempts logged a step, only the newest attempt's point counts. Ingest merges a
batch's aggregates into these rows in the same transaction as the points. A step whose
counted point changes (re-sent with a *different* value, rare since re-sends normally repeat
the value, or logged again by a retry) has its blocks recomputed instead, since a min or max
cannot be taken back: the finest from the raw points, each coarser one from the four below.

A series over ``span`` steps in ``n`` buckets reads the coarsest level whose blocks are at most
a quarter of a bucket, so it touches fewer than ``16 * n`` rows however long the history is
(plus the raw points of at most two blocks where a step range cuts one), and it answers
exactly: bucket widths are whole multiples of the block width, so no block straddles two
buckets.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import sqlalchemy as sa

from runyard.store.schema import IN_BATCH, metric_points, metric_rollups

#: Block widths are ``2**shift`` steps; each level is 4 times coarser than the one below.
SHIFTS: tuple[int, ...] = (2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22)
#: A series reads the coarsest level whose blocks fit this many times into one bucket.
BLOCKS_PER_BUCKET = 4

_COLS = ("run_id", "tag", "shift", "block", "n", "vmin", "vmax", "last_step", "last_attempt",
         "last_value", "last_special")


@dataclass(slots=True)
class Agg:
    """Aggregate of some points of one tag: what a rollup row or a series bucket holds."""

    n: int
    vmin: float | None
    vmax: float | None
    last_step: int
    last_attempt: int
    last_value: float | None
    last_special: str | None

    @classmethod
    def point(cls, step: int, attempt: int, value: float | None, special: str | None) -> Agg:
        return cls(1, value, value, step, attempt, value, special)

    def merge(self, other: Agg) -> None:
        """Fold ``other`` (disjoint points) into this aggregate."""
        self.n += other.n
        if other.vmin is not None and (self.vmin is None or other.vmin < self.vmin):
            self.vmin = other.vmin
        if other.vmax is not None and (self.vmax is None or other.vmax > self.vmax):
            self.vmax = other.vmax
        if (other.last_step, other.last_attempt) >= (self.last_step, self.last_attempt):
            self.last_step, self.last_attempt = other.last_step, other.last_attempt
            self.last_value, self.last_special = other.last_value, other.last_special


def aggregate(points: Iterable[tuple[str, int, int, float | None, str | None]]
              ) -> dict[tuple[str, int, int], list[Any]]:
    """``{(tag, shift, block): [n, vmin, vmax, last_step, last_attempt, last_value,
    last_special]}`` of ``(tag, step, attempt, value, special)`` points.

    The finest level is built from the points, each coarser one from the level below (a
    quarter of its size); plain lists and inlined merges, since this runs for every
    ingested point.
    """
    finest = SHIFTS[0]
    level: dict[tuple[str, int], list[Any]] = {}
    for tag, step, attempt, value, special in points:
        key = (tag, step >> finest)
        a = level.get(key)
        if a is None:
            level[key] = [1, value, value, step, attempt, value, special]
            continue
        a[0] += 1
        if value is not None:
            if a[1] is None or value < a[1]:
                a[1] = value
            if a[2] is None or value > a[2]:
                a[2] = value
        if step > a[3] or (step == a[3] and attempt >= a[4]):
            a[3], a[4], a[5], a[6] = step, attempt, value, special
    out = {(tag, finest, block): a for (tag, block), a in level.items()}
    prev = finest
    for shift in SHIFTS[1:]:
        up: dict[tuple[str, int], list[Any]] = {}
        for (tag, block), b in level.items():
            key = (tag, block >> (shift - prev))
            a = up.get(key)
            if a is None:
                up[key] = b.copy()
                continue
            a[0] += b[0]
            if b[1] is not None and (a[1] is None or b[1] < a[1]):
                a[1] = b[1]
            if b[2] is not None and (a[2] is None or b[2] > a[2]):
                a[2] = b[2]
            if b[3] > a[3] or (b[3] == a[3] and b[4] >= a[4]):
                a[3], a[4], a[5], a[6] = b[3], b[4], b[5], b[6]
        out.update({(tag, shift, block): a for (tag, block), a in up.items()})
        level, prev = up, shift
    return out


#: A rollup row without its run: ``(tag, shift, block, n, vmin, vmax, last_step,
#: last_attempt, last_value, last_special)``.
RollupRow = tuple[Any, ...]


@dataclass(slots=True)
class Blocks:
    """The rollup rows of one tag and attempt whose values are all finite, column by column
    (``last_special`` is None in every row): :func:`aggregate_sorted`'s result, which the
    SQLite insert interleaves into its parameters without a tuple per row."""

    tag: str
    attempt: int
    shifts: list[int]
    blocks: list[int]
    ns: list[int]
    vmins: list[float]
    vmaxs: list[float]
    last_steps: list[int]
    last_values: list[float]

    def __len__(self) -> int:
        return len(self.blocks)

    def rows(self) -> list[RollupRow]:
        """The same rows as :data:`RollupRow` tuples."""
        return list(zip(repeat(self.tag), self.shifts, self.blocks, self.ns, self.vmins,
                        self.vmaxs, self.last_steps, repeat(self.attempt), self.last_values,
                        repeat(None)))


def aggregate_sorted(tag: str, attempt: int, steps: Sequence[int], values: Sequence[float]
                     ) -> Blocks:
    """The rollups of one attempt's points of ``tag`` whose ``steps`` strictly increase and
    whose ``values`` are all finite (what most batches are): :func:`aggregate`'s result, as
    columns.

    Then a block's points are a slice whose last item is its last point, and each level's
    blocks are slices of the level below. Where a level's items are consecutive (steps
    logged one by one), its blocks are whole strides of ``2**shift`` items, taken with
    C-level ``map`` over strided slices; elsewhere each block is one slice.
    """
    out = Blocks(tag, attempt, [], [], [], [], [], [], [])
    # The level below as columns: sorted keys (steps, then block ids), counts (None: one
    # point each), min, max, last step and last value.
    keys: Sequence[int] = steps
    ns: Sequence[int] | None = None
    vmins: Sequence[float] = values
    vmaxs: Sequence[float] = values
    lsteps: Sequence[int] = steps
    lvalues: Sequence[float] = values
    prev = 0
    level: _Level
    for shift in SHIFTS:
        d = shift - prev
        if len(keys) == 1 and ns is not None:  # one block: the same one at every coarser level
            level = [keys[0] >> d], ns, vmins, vmaxs, lsteps, lvalues
        elif keys[-1] - keys[0] + 1 == len(keys):
            level = _level_consecutive(keys[0], d, ns, vmins, vmaxs, lsteps, lvalues)
        else:
            level = _level_sorted(keys, d, ns, vmins, vmaxs, lsteps, lvalues)
        keys, ns, vmins, vmaxs, lsteps, lvalues = level
        out.shifts += repeat(shift, len(keys))
        out.blocks += keys
        out.ns += ns
        out.vmins += vmins
        out.vmaxs += vmaxs
        out.last_steps += lsteps
        out.last_values += lvalues
        prev = shift
    return out


_Level = tuple[Sequence[int], Sequence[int], Sequence[float], Sequence[float], Sequence[int],
               Sequence[float]]


def _level_sorted(keys: Sequence[int], d: int, ns: Sequence[int] | None,
                  vmins: Sequence[float], vmaxs: Sequence[float], lsteps: Sequence[int],
                  lvalues: Sequence[float]) -> _Level:
    """The blocks of ``key >> d`` over sorted ``keys``, one slice each."""
    blocks = [k >> d for k in keys]
    uniq = list(dict.fromkeys(blocks))
    if len(uniq) == len(blocks):  # one item a block: the level below, renumbered
        return uniq, [1] * len(uniq) if ns is None else ns, vmins, vmaxs, lsteps, lvalues
    nb: list[int] = []
    bmin: list[float] = []
    bmax: list[float] = []
    bstep: list[int] = []
    bvalue: list[float] = []
    i = 0
    for b in uniq:
        j = bisect.bisect_right(blocks, b, i)
        nb.append(j - i if ns is None else sum(ns[i:j]))
        bmin.append(min(vmins[i:j]))
        bmax.append(max(vmaxs[i:j]))
        bstep.append(lsteps[j - 1])
        bvalue.append(lvalues[j - 1])
        i = j
    return uniq, nb, bmin, bmax, bstep, bvalue


def _level_consecutive(first: int, d: int, ns: Sequence[int] | None,
                       vmins: Sequence[float], vmaxs: Sequence[float], lsteps: Sequence[int],
                       lvalues: Sequence[float]) -> _Level:
    """The blocks of ``key >> d`` over the keys ``first, first + 1, ...``: a partial block
    at each end, whole strides of ``2**d`` items between them."""
    g, m = 1 << d, len(vmins)
    head = min(m, -first % g)  # items before the first whole block
    whole = (m - head) // g * g
    cuts = [(0, head), (head, head + whole), (head + whole, m)]
    nb: list[int] = []
    bmin: list[float] = []
    bmax: list[float] = []
    bstep: list[int] = []
    bvalue: list[float] = []
    for lo, hi in cuts:
        if lo == hi:
            continue
        if (lo, hi) != cuts[1]:  # a partial block: one slice
            nb.append(hi - lo if ns is None else sum(ns[lo:hi]))
            bmin.append(min(vmins[lo:hi]))
            bmax.append(max(vmaxs[lo:hi]))
            bstep.append(lsteps[hi - 1])
            bvalue.append(lvalues[hi - 1])
            continue
        if ns is None:
            nb += repeat(g, whole // g)
        else:
            nb += map(_sum, *(ns[lo + r:hi:g] for r in range(g)))
        bmin += map(min, *(vmins[lo + r:hi:g] for r in range(g)))
        bmax += map(max, *(vmaxs[lo + r:hi:g] for r in range(g)))
        bstep += lsteps[lo + g - 1:hi:g]
        bvalue += lvalues[lo + g - 1:hi:g]
    start = first >> d
    return range(start, start + len(nb)), nb, bmin, bmax, bstep, bvalue


def _sum(*ns: int) -> int:
    return sum(ns)


def upsert_sql(mark: str) -> str:
    """Merge rows into ``metric_rollups``, one row of parameters: the same text on SQLite
    and PostgreSQL."""
    return (f"INSERT INTO metric_rollups ({', '.join(_COLS)}) "
            f"VALUES ({', '.join([mark] * len(_COLS))}) {_MERGE}")


@functools.lru_cache(maxsize=64)
def sqlite_upsert_sql(rows: int) -> str:
    """Merge ``rows`` rows into ``metric_rollups`` in one SQLite statement, bound as the run
    id, then each row's :data:`RollupRow` (``WHERE true`` parses the upsert clause after a
    SELECT)."""
    width = len(_COLS) - 1
    row = "(" + ", ".join(["?"] * width) + ")"
    cols = ", ".join(f"column{i}" for i in range(1, width + 1))
    return (f"INSERT INTO metric_rollups ({', '.join(_COLS)}) "
            f"SELECT ?1, {cols} FROM (VALUES {', '.join([row] * rows)}) WHERE true {_MERGE}")


@functools.lru_cache(maxsize=64)
def sqlite_merge_sql(rows: int) -> str:
    """Merge ``rows`` rows of :class:`Blocks` in one SQLite statement, bound as the run id,
    tag and attempt, then each row's ``(shift, block, n, vmin, vmax, last_step,
    last_value)``; ``last_special`` is NULL."""
    row = "(" + ", ".join(["?"] * 7) + ")"
    cols = "?2, column1, column2, column3, column4, column5, column6, ?3, column7, NULL"
    return (f"INSERT INTO metric_rollups ({', '.join(_COLS)}) "
            f"SELECT ?1, {cols} FROM (VALUES {', '.join([row] * rows)}) WHERE true {_MERGE}")


def _merge_clause() -> str:
    # Both dialects evaluate every SET expression against the row as it was.
    old, new = "metric_rollups", "excluded"
    newer = (f"({new}.last_step > {old}.last_step OR ({new}.last_step = {old}.last_step "
             f"AND {new}.last_attempt >= {old}.last_attempt))")
    pick = {c: f"CASE WHEN {newer} THEN {new}.{c} ELSE {old}.{c} END"
            for c in ("last_step", "last_attempt", "last_value", "last_special")}
    return ("ON CONFLICT (run_id, tag, shift, block) DO UPDATE SET "
            f"n = {old}.n + {new}.n, "
            f"vmin = CASE WHEN {old}.vmin IS NULL OR {new}.vmin < {old}.vmin "
            f"THEN {new}.vmin ELSE {old}.vmin END, "
            f"vmax = CASE WHEN {old}.vmax IS NULL OR {new}.vmax > {old}.vmax "
            f"THEN {new}.vmax ELSE {old}.vmax END, "
            + ", ".join(f"{c} = {expr}" for c, expr in pick.items()))


_MERGE = _merge_clause()


def rows(run_id: str, aggs: dict[tuple[str, int, int], list[Any]]) -> list[tuple[Any, ...]]:
    """Parameter tuples for :func:`upsert_sql`, from :func:`aggregate`'s lists."""
    return [(run_id, tag, shift, block, *a) for (tag, shift, block), a in aggs.items()]


def recompute(conn: sa.Connection, mark: str, run_id: str, tag: str, steps: Iterable[int]
              ) -> None:
    """Rebuild every rollup row whose block holds one of ``steps``: the finest level from
    the raw points, counting only the newest attempt's point of each step, then each
    coarser level from the rebuilt level below (a block's four children at most), so that
    the work does not grow with the history. One read per level and run of adjacent
    blocks (a retry's overlap is one such run)."""
    mp, mr = metric_points.c, metric_rollups.c
    finest = SHIFTS[0]
    blocks = sorted({step >> finest for step in steps})
    fresh: dict[tuple[str, int, int], Agg] = {}
    for first, last in _runs(blocks):
        # By step, newest attempt first: the first row of a step is the one that counts.
        for r in conn.execute(sa.select(mp.step, mp.attempt, mp.value, mp.special)
                              .where(mp.run_id == run_id, mp.tag == tag,
                                     mp.step >= first << finest,
                                     mp.step <= ((last + 1) << finest) - 1)
                              .order_by(mp.step, mp.attempt.desc())):
            step = int(r.step)
            key = (tag, finest, step >> finest)
            acc = fresh.get(key)
            if acc is None:
                fresh[key] = Agg.point(step, int(r.attempt), r.value, r.special)
            elif step != acc.last_step:
                acc.merge(Agg.point(step, int(r.attempt), r.value, r.special))
    _replace(conn, mark, run_id, tag, finest, fresh)
    prev = finest
    for shift in SHIFTS[1:]:
        d = shift - prev
        blocks = sorted({b >> d for b in blocks})
        fresh = {}
        for first, last in _runs(blocks):
            for c in conn.execute(sa.select(mr.block, mr.n, mr.vmin, mr.vmax, mr.last_step,
                                            mr.last_attempt, mr.last_value, mr.last_special)
                                  .where(mr.run_id == run_id, mr.tag == tag, mr.shift == prev,
                                         mr.block >= first << d,
                                         mr.block <= ((last + 1) << d) - 1)):
                child = Agg(int(c.n), c.vmin, c.vmax, int(c.last_step), int(c.last_attempt),
                            c.last_value, c.last_special)
                key = (tag, shift, int(c.block) >> d)
                acc = fresh.get(key)
                if acc is None:
                    fresh[key] = child
                else:
                    acc.merge(child)
        _replace(conn, mark, run_id, tag, shift, fresh)
        prev = shift


def _runs(blocks: Sequence[int]) -> list[tuple[int, int]]:
    """``(first, last)`` of each run of adjacent ids in sorted ``blocks``."""
    out: list[tuple[int, int]] = []
    for b in blocks:
        if out and out[-1][1] + 1 == b:
            out[-1] = (out[-1][0], b)
        else:
            out.append((b, b))
    return out


def _replace(conn: sa.Connection, mark: str, run_id: str, tag: str, shift: int,
             fresh: dict[tuple[str, int, int], Agg]) -> None:
    """Put ``fresh`` (rows of one level) in place of the stored rows of their blocks."""
    if not fresh:
        return
    mr = metric_rollups.c
    blocks = [block for (_, _, block) in fresh]
    for i in range(0, len(blocks), IN_BATCH):
        conn.execute(sa.delete(metric_rollups).where(
            mr.run_id == run_id, mr.tag == tag, mr.shift == shift,
            mr.block.in_(blocks[i:i + IN_BATCH])))
    conn.exec_driver_sql(upsert_sql(mark), rows(run_id, {
        key: [a.n, a.vmin, a.vmax, a.last_step, a.last_attempt, a.last_value, a.last_special]
        for key, a in fresh.items()}))


@dataclass(frozen=True)
class Layout:
    """How a series over ``[lo, hi]`` is cut: buckets of ``width`` steps counted from
    ``base``, read from the level ``shift`` (0: the raw points)."""

    lo: int
    hi: int
    shift: int
    base: int
    width: int

    @classmethod
    def plan(cls, lo: int, hi: int, points: int) -> Layout:
        ideal = -(-(hi - lo + 1) // points)
        shift = max((s for s in SHIFTS if (1 << s) * BLOCKS_PER_BUCKET <= ideal), default=0)
        block = 1 << shift
        base = (lo >> shift) << shift
        # At most `points` buckets from base to hi, each a whole number of blocks.
        width = -(-(hi - base + 1) // points)
        width = -(-width // block) * block
        return cls(lo, hi, shift, base, width)

    def bucket(self, step: int) -> int:
        return (step - self.base) // self.width

