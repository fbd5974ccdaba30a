"""The progress snapshot history of a run (:class:`ProgressMixin`, part of
:class:`runyard.store.sql.SQLStore`): keyset pages of whole snapshots, and a series cut into
buckets the way metric series are (:class:`runyard.store.rollups.Layout`, here over the
snapshots' ids, which grow with time), so a chart of a long history reads a bounded answer.
"""

from __future__ import annotations

import sqlalchemy as sa

from runyard.store.access import Access, rows
from runyard.store.base import Row
from runyard.store.metrics import _bucket_of
from runyard.store.rollups import Layout
from runyard.store.schema import progress_snapshots
from runyard.store.values import check_attempt, check_int

#: Most snapshots a keyset page may hold, and most buckets a series may ask for.
MAX_PAGE = 1000
MAX_POINTS = 10_000


class ProgressMixin(Access):
    """Progress-history reads of the store."""

    def list_progress(self, run_id: str, *, attempt: int | None = None,
                      after_id: int | None = None, limit: int = 100) -> list[Row]:
        """Snapshots oldest first, ``id`` above ``after_id``, of one attempt or all."""
        check_int(limit, "limit", 1, MAX_PAGE)
        ps = progress_snapshots.c
        stmt = sa.select(progress_snapshots).where(*_where(run_id, attempt, after_id))
        with self._read() as conn:
            return rows(conn.execute(stmt.order_by(ps.id).limit(limit)))

    def progress_series(self, run_id: str, *, points: int, attempt: int | None = None,
                        after_id: int | None = None) -> tuple[list[Row], int]:
        """At most ``points`` snapshots standing for the history (``id`` above
        ``after_id``): ids are cut into buckets of equal width as a metric series' steps
        are, each bucket gives its newest snapshot with ``count`` (how many it stands for),
        and the first snapshot of the range is always kept. Returns (rows, total)."""
        n = check_int(points, "points", 1, MAX_POINTS)
        ps = progress_snapshots.c
        where = _where(run_id, attempt, after_id)
        with self._read() as conn:
            lo, hi, total = conn.execute(sa.select(sa.func.min(ps.id), sa.func.max(ps.id),
                                                   sa.func.count()).where(*where)).one()
            if lo is None:
                return [], 0
            lay = Layout.plan(int(lo), int(hi), n)
            buckets = (sa.select(sa.func.max(ps.id).label("last"), sa.func.count().label("n"))
                       .where(*where).group_by(_bucket_of(ps.id, lay)).subquery())
            stmt = (sa.select(progress_snapshots, buckets.c.n.label("count"))
                    .join(buckets, buckets.c.last == ps.id).order_by(ps.id))
            out = rows(conn.execute(stmt))
            if out and out[0]["id"] != lo:
                head = rows(conn.execute(sa.select(progress_snapshots).where(ps.id == lo)))
                out = [{**head[0], "count": 1}, *out]
        return out, int(total)


def _where(run_id: str, attempt: int | None, after_id: int | None) -> list[sa.ColumnElement[bool]]:
    ps = progress_snapshots.c
    where = [ps.run_id == run_id]
    if attempt is not None:
        where.append(ps.attempt == check_attempt(attempt))
    if after_id is not None:
        where.append(ps.id > check_int(after_id, "after_id"))
    return where
