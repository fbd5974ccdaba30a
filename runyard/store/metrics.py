"""Metric points: ingest (with :mod:`rollups <runyard.store.rollups>`), listing, tags and
downsampled series (:class:`MetricsMixin`, part of :class:`runyard.store.sql.SQLStore`).

Values follow the conventions of :mod:`runyard.store.values`: NaN and infinities are stored
as ``value`` NULL plus their spelling in ``special`` and travel as those strings.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from runyard import errors
from runyard.defaults import MAX_TAGS_PER_RUN
from runyard.store import ingest, rollups
from runyard.store.access import Access
from runyard.store.base import Row, Transaction
from runyard.store.dialect import run_writes
from runyard.store.prepared import execute_raw
from runyard.store.rollups import Agg, Layout
from runyard.store.schema import IN_BATCH, metric_points, metric_rollups, runs
from runyard.store.values import check_attempt, check_int, check_tag, decode_value

#: Most buckets one series request may ask for (a chart is never wider).
MAX_SERIES_POINTS = 10_000
#: The primary key of ``metric_points``, and the columns a points upsert writes.
POINT_KEY = ("run_id", "tag", "step", "attempt")
POINT_COLUMNS = (*POINT_KEY, "value", "special", "at")
#: What a points upsert does with a (tag, step) of the attempt stored already.
POINT_UPSERT = (f"ON CONFLICT ({', '.join(POINT_KEY)}) DO UPDATE SET value = excluded.value, "
                "special = excluded.special, at = excluded.at")


class MetricsMixin(Access):
    """Metric methods of the store."""

    def _transaction(self, conn: sa.Connection) -> Transaction:
        """The store's transaction primitives over an open write connection."""
        raise NotImplementedError

    def add_metric_points(self, run_id: str, attempt: int,
                          points: Sequence[Mapping[str, Any]],
                          rows: Sequence[Sequence[Any]] = (),
                          then: Callable[[Transaction, ingest.Batch], None] | None = None
                          ) -> int:
        """Upsert a batch of points; returns how many distinct (tag, step) were written.

        Each point is ``{step, tag, value, at}``, each row ``(step, at, {tag: value})`` (the
        compact form: the points one ``log()`` call recorded); ``at`` (UNIX seconds or ISO
        8601) defaults to now (see :meth:`runyard.store.ingest.Batch.of`). ``then`` runs in
        the same transaction once they are written, with the run locked (rule evaluation).
        Re-sending a (tag, step) of the same attempt overwrites it; within one batch the last
        occurrence wins. Errors name ``points[i].field`` or ``rows[i][k]`` and nothing is
        written.
        """
        attempt = check_attempt(attempt)
        batch = ingest.Batch.of(points, rows)
        if not batch.count:
            return 0
        # The aggregates and statements are pure functions of the batch, so they are built
        # before the write transaction (SQLite has one writer: time spent holding it is time
        # every other writer waits), on the usual assumption that every point is new;
        # re-sent points are taken out below.
        aggs = batch.aggregate(attempt)
        point_writes = self.ops.point_writes(run_id, attempt, batch)
        rollup_writes = self.ops.rollup_writes(run_id, aggs)
        mark = self.ops.mark
        with self._write() as conn:
            # The row lock serialises one run's writers on PostgreSQL, so two batches never
            # both count the same re-sent point into a rollup (SQLite has one writer anyway).
            lock = sa.select(runs.c.id).where(runs.c.id == run_id).with_for_update()
            if conn.execute(lock).first() is None:
                raise errors.NotFound(f"run {run_id!r} not found")
            # Under the run's lock, so two batches cannot both take the last places.
            _check_tag_cap(conn, run_id, batch.by_tag.keys())
            seen, changed = _split_resent(conn, mark, run_id, attempt, batch)
            if seen:
                rollup_writes = self.ops.rollup_writes(
                    run_id, batch.without(seen).aggregate(attempt))
            run_writes(conn, point_writes)
            run_writes(conn, rollup_writes)
            for tag, steps in changed.items():
                rollups.recompute(conn, mark, run_id, tag, steps)
            if then is not None:
                then(self._transaction(conn), batch)
        return batch.count

    def metric_tags(self, run_id: str, *, after: str | None = None,
                    limit: int | None = None) -> list[Row]:
        """``[{tag, count, last_step, last_value}]`` of a run, by tag (from the coarsest
        rollups: a few rows per tag however long its history); at most ``limit`` of them,
        those whose tag sorts after ``after``."""
        mr = metric_rollups.c
        top = rollups.SHIFTS[-1]
        where = [mr.run_id == run_id, mr.shift == top]
        if after is not None:
            where.append(mr.tag > after)
        agg = (sa.select(mr.tag, sa.func.sum(mr.n).label("n"), sa.func.max(mr.block).label("mb"))
               .where(*where).group_by(mr.tag).order_by(mr.tag).limit(limit).subquery())
        last = metric_rollups.alias("last")
        stmt = (sa.select(agg.c.tag, agg.c.n, last.c.last_step, last.c.last_value,
                          last.c.last_special)
                .join(last, sa.and_(last.c.run_id == run_id, last.c.tag == agg.c.tag,
                                    last.c.shift == top, last.c.block == agg.c.mb))
                .order_by(agg.c.tag))
        with self._read() as conn:
            return [{"tag": r.tag, "count": int(r.n), "last_step": int(r.last_step),
                     "last_value": decode_value(r.last_value, r.last_special)}
                    for r in conn.execute(stmt)]

    @staticmethod
    def _value_at(conn: sa.Connection, run_id: str, tag: str, step: int) -> float | str | None:
        """The value the latest attempt logged at ``step``."""
        mp = metric_points.c
        r = conn.execute(sa.select(mp.value, mp.special)
                         .where(mp.run_id == run_id, mp.tag == tag, mp.step == step)
                         .order_by(mp.attempt.desc()).limit(1)).first()
        return None if r is None else decode_value(r.value, r.special)

    def list_metric_points(self, run_id: str, *, tag: str | None = None,
                           after_step: int | None = None, attempt: int | None = None,
                           limit: int = 1000, tags: Sequence[str] = (),
                           steps: Sequence[int] = (), at_after: float | None = None,
                           at_before: float | None = None,
                           after: tuple[str, int] | None = None) -> list[Row]:
        """Points ordered by (tag, step): ``[{step, tag, value, at, attempt}]``.

        A metric is a function of the step: each (tag, step) gives the point of the newest
        attempt that logged it, unless ``attempt`` asks for that attempt's own points.
        ``value`` is a float or its special string ("NaN"...). Filters: ``tag`` or any of
        ``tags``, any of ``steps``, logged (``at``) after ``at_after`` / before ``at_before``.
        Pagination: pass the last returned ``(tag, step)`` as ``after`` (or, with one ``tag``,
        its step as ``after_step``); there may be more exactly when ``len(page) == limit``.
        """
        check_int(limit, "limit", 1, 100_000)
        wanted = ([] if tag is None else [tag]) + list(tags)
        for t in wanted:
            check_tag(t, "tag")
        if after_step is not None:
            if len(wanted) != 1:
                raise errors.ValidationError("after_step: needs one tag", field="after_step")
            check_int(after_step, "after_step", -1)
        mp = metric_points.c
        stmt = sa.select(mp.step, mp.tag, mp.value, mp.special, mp.at, mp.attempt).where(
            mp.run_id == run_id)
        if wanted:
            stmt = stmt.where(mp.tag.in_(sorted(set(wanted))))
        if steps:
            stmt = stmt.where(mp.step.in_(sorted({check_int(x, "steps") for x in steps})))
        if at_after is not None:
            stmt = stmt.where(mp.at > at_after)
        if at_before is not None:
            stmt = stmt.where(mp.at < at_before)
        if after_step is not None:
            stmt = stmt.where(mp.step > after_step)
        if after is not None:
            stmt = stmt.where(sa.tuple_(mp.tag, mp.step) > sa.tuple_(
                check_tag(after[0], "after"), check_int(after[1], "after", -1)))
        if attempt is not None:
            stmt = stmt.where(mp.attempt == check_attempt(attempt))
        else:
            stmt = stmt.where(_newest_attempt(metric_points))
        stmt = stmt.order_by(mp.tag, mp.step).limit(limit)
        with self._read() as conn:
            page = list(conn.execute(stmt))
        return [{"step": r.step, "tag": r.tag, "value": decode_value(r.value, r.special),
                 "at": r.at, "attempt": r.attempt} for r in page]

    def metric_series(self, run_id: str, tag: str, *, points: int,
                      min_step: int | None = None, max_step: int | None = None
                      ) -> dict[str, Any]:
        """A downsampled series (docs/metrics-and-artifacts.md).

        The range ``[min_step, max_step]`` (inclusive) is applied first; its data spans
        ``[lo, hi]``. Steps are then cut into at most ``points`` buckets of equal width,
        aligned so that they can be read from the rollups (:class:`rollups.Layout`: a bucket
        is ``(step - base) // width``, ``base <= lo``, and ``width`` is at least
        ``ceil((hi - lo + 1) / points)``). Each bucket gives ``{step, min, max, last,
        count}``: ``step`` and ``last`` are the step and value of its last point. Where
        several attempts logged a step only the newest attempt's point counts, in all five;
        ``min``/``max`` ignore NaN and infinities (None when nothing finite is left). The
        first point of the range is prepended as its own entry (count 1, also counted in its
        bucket) unless it is its bucket's last point; the range's last point is always the
        final bucket's last. Memory and work stay bounded by ``points``.
        """
        check_tag(tag, "tag")
        n = check_int(points, "points", 1, MAX_SERIES_POINTS)
        if min_step is not None:
            check_int(min_step, "min_step")
        if max_step is not None:
            check_int(max_step, "max_step")
        if min_step is not None and max_step is not None and min_step > max_step:
            raise errors.ValidationError("min_step: above max_step", field="min_step")
        mp = metric_points.c
        where = [mp.run_id == run_id, mp.tag == tag]
        if min_step is not None:
            where.append(mp.step >= min_step)
        if max_step is not None:
            where.append(mp.step <= max_step)
        empty = {"tag": tag, "points": [], "total": 0, "min_step": None, "max_step": None}
        with self._read() as conn:
            # Two index seeks (separate subqueries: each is a single-row probe of the PK).
            bounds = conn.execute(sa.select(
                sa.select(sa.func.min(mp.step)).where(*where).scalar_subquery(),
                sa.select(sa.func.max(mp.step)).where(*where).scalar_subquery())).one()
            if bounds[0] is None:
                return empty
            lay = Layout.plan(int(bounds[0]), int(bounds[1]), n)
            buckets: dict[int, Agg] = {}
            for b, agg in _series_parts(conn, run_id, tag, lay, min_step, max_step):
                have = buckets.get(b)
                if have is None:
                    buckets[b] = agg
                else:
                    have.merge(agg)
            out: list[dict[str, Any]] = [
                {"step": a.last_step, "min": a.vmin, "max": a.vmax,
                 "last": decode_value(a.last_value, a.last_special), "count": a.n}
                for _, a in sorted(buckets.items())]
            total = sum(a.n for a in buckets.values())
            if out[0]["step"] != lay.lo:
                first = self._value_at(conn, run_id, tag, lay.lo)
                fin = first if isinstance(first, float) else None
                out.insert(0, {"step": lay.lo, "min": fin, "max": fin, "last": first,
                               "count": 1})
        return {"tag": tag, "points": out, "total": total, "min_step": lay.lo,
                "max_step": lay.hi}

    def count_metric_points(self) -> int:
        """All stored points; the database's estimate where it keeps one and the table is
        large (counting is exact but linear; past a million rows an estimate will do)."""
        with self._read() as conn:
            est = self.ops.estimated_rows(conn, "metric_points")
            if est is not None and est >= 1_000_000:
                return est
            return int(conn.execute(sa.select(sa.func.count()).select_from(metric_points))
                       .scalar_one())


def _fetch(conn: sa.Connection, sql: str, params: tuple[Any, ...]) -> list[Any]:
    """The rows of a driver-level query (the hot path's reads skip SQLAlchemy's result)."""
    cursor = execute_raw(conn, sql, params)
    try:
        return list(cursor.fetchall())
    finally:
        cursor.close()


def _check_tag_cap(conn: sa.Connection, run_id: str, tags: Collection[str]) -> None:
    """Refuse a batch that would give the run more than :data:`MAX_TAGS_PER_RUN` distinct
    tags. A batch of known tags costs one indexed probe; the run's tags are counted only when
    the batch brings new ones."""
    if len(tags) > MAX_TAGS_PER_RUN:
        raise _too_many_tags(run_id, len(tags))
    mr = metric_rollups.c
    top = rollups.SHIFTS[-1]
    listed = list(tags)
    known: set[str] = set()
    for i in range(0, len(listed), IN_BATCH):
        known.update(conn.execute(
            sa.select(mr.tag).distinct().where(mr.run_id == run_id, mr.shift == top,
                                               mr.tag.in_(listed[i:i + IN_BATCH]))).scalars())
    new = len(listed) - len(known)
    if not new:
        return
    have = conn.execute(sa.select(sa.func.count(sa.distinct(mr.tag)))
                        .where(mr.run_id == run_id, mr.shift == top)).scalar_one()
    if have + new > MAX_TAGS_PER_RUN:
        raise _too_many_tags(run_id, have + new)


def _too_many_tags(run_id: str, total: int) -> errors.ValidationError:
    return errors.ValidationError(
        f"tag: run {run_id} may have at most {MAX_TAGS_PER_RUN} distinct tags; this batch "
        f"would bring it to {total} (nothing of it was stored)", field="tag")


def _split_resent(conn: sa.Connection, mark: str, run_id: str, attempt: int,
                  batch: ingest.Batch) -> tuple[dict[str, set[int]], dict[str, list[int]]]:
    """By tag, the batch's steps some attempt has stored already (left out of the incremental
    rollups), and those of them whose rollups must be rebuilt from the raw points.

    A metric is a function of the step: at each step the newest attempt's point counts.
    So a step needs rebuilding when this attempt replaces an earlier attempt's point there,
    or re-sends its own with a different value; a step a newer attempt holds already changes
    nothing. One index range probe per tag; a batch that continues its run's history (the
    usual case) finds nothing there.
    """
    sql = (f"SELECT step, attempt, value, special FROM metric_points WHERE run_id = {mark} "
           f"AND tag = {mark} AND step >= {mark} AND step <= {mark}")
    seen: dict[str, set[int]] = {}
    changed: dict[str, list[int]] = {}
    for tag, lo, hi in batch.spans():
        rows = _fetch(conn, sql, (run_id, tag, lo, hi))
        if not rows:
            continue
        # The newest stored attempt of each step, and this attempt's point where it has one.
        newest: dict[int, int] = {}
        mine: dict[int, tuple[Any, Any]] = {}
        for step, att, value, special in rows:
            step, att = int(step), int(att)
            if att > newest.get(step, -1):
                newest[step] = att
            if att == attempt:
                mine[step] = (value, special)
        for step, att in newest.items():
            new = batch.value_of(tag, step)
            if new is None:
                continue
            seen.setdefault(tag, set()).add(step)
            if att > attempt:
                continue
            if att < attempt or new != mine[step]:
                changed.setdefault(tag, []).append(step)
    return seen, changed


def _series_parts(conn: sa.Connection, run_id: str, tag: str, lay: Layout,
                  min_step: int | None, max_step: int | None) -> list[tuple[int, Agg]]:
    """``(bucket, Agg)`` pieces of a series: whole blocks from the rollups, and raw points
    where ``[min_step, max_step]`` cuts a block (or everywhere at ``shift`` 0)."""
    if lay.shift == 0:
        return _raw_buckets(conn, run_id, tag, lay, lay.lo, lay.hi)
    s = lay.shift
    first, last = lay.lo >> s, lay.hi >> s
    parts: list[tuple[int, Agg]] = []
    if min_step is not None and min_step > first << s:
        parts += _raw_buckets(conn, run_id, tag, lay, lay.lo, min(lay.hi, ((first + 1) << s) - 1))
        first += 1
    if max_step is not None and max_step < ((last + 1) << s) - 1 and last >= first:
        parts += _raw_buckets(conn, run_id, tag, lay, max(lay.lo, last << s), lay.hi)
        last -= 1
    if first <= last:
        parts += _rollup_buckets(conn, run_id, tag, lay, first, last)
    return parts


def _bucket_of(expr: Any, lay: Layout) -> Any:
    return (expr - sa.literal(lay.base, sa.BigInteger)) // sa.literal(lay.width, sa.BigInteger)


def _newest_attempt(points: sa.Table | Any) -> Any:
    """``points``' rows that no later attempt of their run overwrote at their (tag, step): a
    primary-key probe per row."""
    newer = metric_points.alias("newer")
    return ~sa.exists().where(newer.c.run_id == points.c.run_id, newer.c.tag == points.c.tag,
                              newer.c.step == points.c.step,
                              newer.c.attempt > points.c.attempt)


def _raw_buckets(conn: sa.Connection, run_id: str, tag: str, lay: Layout, lo: int, hi: int
                 ) -> list[tuple[int, Agg]]:
    mp = metric_points.c
    where = [mp.run_id == run_id, mp.tag == tag, mp.step >= lo, mp.step <= hi,
             _newest_attempt(metric_points)]
    agg = (sa.select(_bucket_of(mp.step, lay).label("b"), sa.func.count().label("n"),
                     sa.func.min(mp.value).label("vmin"), sa.func.max(mp.value).label("vmax"),
                     sa.func.max(mp.step).label("ms"))
           .where(*where).group_by(sa.literal_column("b")).subquery())
    latest = metric_points.alias("latest")
    pick = (sa.select(latest.c.attempt, latest.c.value, latest.c.special)
            .where(latest.c.run_id == run_id, latest.c.tag == tag, latest.c.step == agg.c.ms)
            .order_by(latest.c.attempt.desc()).limit(1))
    stmt = sa.select(agg.c.b, agg.c.n, agg.c.vmin, agg.c.vmax, agg.c.ms,
                     pick.with_only_columns(latest.c.attempt).scalar_subquery().label("la"),
                     pick.with_only_columns(latest.c.value).scalar_subquery().label("lv"),
                     pick.with_only_columns(latest.c.special).scalar_subquery().label("ls"))
    return [(int(r.b), Agg(int(r.n), r.vmin, r.vmax, int(r.ms), int(r.la), r.lv, r.ls))
            for r in conn.execute(stmt)]


def _rollup_buckets(conn: sa.Connection, run_id: str, tag: str, lay: Layout, first: int,
                    last: int) -> list[tuple[int, Agg]]:
    mr = metric_rollups.c
    start = mr.block * sa.literal(1 << lay.shift, sa.BigInteger)
    agg = (sa.select(_bucket_of(start, lay).label("b"), sa.func.sum(mr.n).label("n"),
                     sa.func.min(mr.vmin).label("vmin"), sa.func.max(mr.vmax).label("vmax"),
                     sa.func.max(mr.block).label("mb"))
           .where(mr.run_id == run_id, mr.tag == tag, mr.shift == lay.shift,
                  mr.block >= first, mr.block <= last)
           .group_by(sa.literal_column("b")).subquery())
    # The bucket's last point is its last block's: one primary-key probe per bucket (a
    # correlated lookup, not a join, which PostgreSQL may plan as a scan per bucket).
    end = metric_rollups.alias("end")
    probe = sa.select(end.c.last_step).where(end.c.run_id == run_id, end.c.tag == tag,
                                             end.c.shift == lay.shift, end.c.block == agg.c.mb)
    ends = [probe.with_only_columns(end.c[c]).scalar_subquery().label(c)
            for c in ("last_step", "last_attempt", "last_value", "last_special")]
    stmt = sa.select(agg.c.b, agg.c.n, agg.c.vmin, agg.c.vmax, *ends)
    return [(int(r.b), Agg(int(r.n), r.vmin, r.vmax, int(r.last_step), int(r.last_attempt),
                           r.last_value, r.last_special))
            for r in conn.execute(stmt)]
