"""The stored rollups equal a brute-force aggregation of the stored points, whatever shape the
batches had: consecutive steps (the strided path), sparse or shuffled steps, duplicates in a
batch, NaN and infinities, several tags and attempts, and re-sent points (same value or not).
A metric is a function of the step: where several attempts logged a step, only the newest
attempt's point counts, in the rollups, the series and the point listing. Also the multi-row
statements' sizes."""

from __future__ import annotations

import random
from typing import Any

import pytest
import sqlalchemy as sa

from runyard.queue import Queue
from runyard.store import sqlite
from runyard.store.base import Store
from runyard.store.rollups import SHIFTS, Layout
from runyard.store.schema import metric_points, metric_rollups

from ..support.factories import submit


def _newest(points: list[Any]) -> list[Any]:
    """The newest attempt's point of each (tag, step), sorted by (tag, step)."""
    out: dict[tuple[str, int], Any] = {}
    for p in sorted(points, key=lambda p: (p[0], p[1], p[2])):
        out[(p[0], p[1])] = p
    return list(out.values())


def _brute(points: list[Any]) -> dict[tuple[str, int, int], tuple[Any, ...]]:
    out: dict[tuple[str, int, int], list[Any]] = {}
    for tag, step, attempt, value, special in _newest(points):
        for shift in SHIFTS:
            a = out.setdefault((tag, shift, step >> shift), [0, None, None, 0, 0, None, None])
            a[0] += 1
            if value is not None:
                a[1] = value if a[1] is None else min(a[1], value)
                a[2] = value if a[2] is None else max(a[2], value)
            a[3:] = [step, attempt, value, special]  # sorted: the last one seen is the last
    return {k: tuple(v) for k, v in out.items()}


def _check(store: Store, run_id: str) -> None:
    engine: sa.Engine = store.engine  # type: ignore[attr-defined]
    mp, mr = metric_points.c, metric_rollups.c
    with engine.connect() as conn:
        points = [tuple(r) for r in conn.execute(sa.select(
            mp.tag, mp.step, mp.attempt, mp.value, mp.special).where(mp.run_id == run_id))]
        stored = {(r.tag, r.shift, r.block): (r.n, r.vmin, r.vmax, r.last_step, r.last_attempt,
                                              r.last_value, r.last_special)
                  for r in conn.execute(sa.select(metric_rollups).where(mr.run_id == run_id))}
    want = _brute(points)
    assert stored.keys() == want.keys()
    for key, row in want.items():
        assert stored[key] == row, key


def _value(rnd: random.Random) -> Any:
    r = rnd.random()
    return rnd.choice(["NaN", "Infinity", "-Infinity"]) if r < 0.05 else rnd.uniform(-9, 9)


def test_rollups_equal_brute_force_after_every_batch_shape(store: Store, queue: Queue) -> None:
    rnd = random.Random(7)
    rid = str(submit(queue)["id"])
    consecutive = [{"step": s, "tag": "loss", "value": rnd.uniform(-1, 1)}
                   for s in range(3, 2_000)]
    store.add_metric_points(rid, 1, consecutive[:1_000])
    store.add_metric_points(rid, 1, consecutive[1_000:])  # continues inside an open block
    _check(store, rid)
    # Three tags a step, as log() sends them; one has a NaN (the general path).
    rows = [{"step": s, "tag": tag, "value": v} for s in range(5_000, 6_500)
            for tag, v in (("a", s * 0.5), ("b", -s * 1.0), ("c", 0.001))]
    rows[31]["value"] = "NaN"
    store.add_metric_points(rid, 1, rows)
    _check(store, rid)
    # Sparse and shuffled steps with duplicates (the last occurrence wins).
    sparse = [{"step": rnd.randrange(0, 2**24), "tag": "loss", "value": _value(rnd)}
              for _ in range(600)]
    sparse += [{**p, "value": _value(rnd)} for p in sparse[:50]]
    rnd.shuffle(sparse)
    store.add_metric_points(rid, 2, sparse)
    _check(store, rid)
    # Re-sent points: the same values (nothing changes), then new ones (blocks rebuilt).
    store.add_metric_points(rid, 1, consecutive[500:700])
    _check(store, rid)
    store.add_metric_points(rid, 1, [{**p, "value": p["value"] + 100.0}
                                     for p in consecutive[600:650]]
                            + [{"step": 9_999, "tag": "loss", "value": 5.0}])
    _check(store, rid)
    store.add_metric_points(rid, 2, [{"step": s, "tag": "a", "value": float(s)}
                                     for s in range(6_000, 6_100, 3)])
    _check(store, rid)
    # A third attempt over steps both earlier ones logged, then the first one again late.
    store.add_metric_points(rid, 3, [{"step": p["step"], "tag": "loss", "value": _value(rnd)}
                                     for p in sparse[:80]] + consecutive[100:300])
    _check(store, rid)
    store.add_metric_points(rid, 1, consecutive[:400])
    _check(store, rid)


def test_a_retry_overwrites_the_steps_it_logs_again(store: Store, queue: Queue) -> None:
    """Attempt 2 logs steps 0..49 again: those steps read as attempt 2's points, once each,
    in the listing, the rollups and every series; attempt 1 stays readable by number."""
    rid = str(submit(queue)["id"])
    store.add_metric_points(rid, 1, [{"step": s, "tag": "loss", "value": float(s)}
                                     for s in range(100)])
    store.add_metric_points(rid, 2, [{"step": s, "tag": "loss", "value": 1000.0 + s}
                                     for s in range(50)])
    _check(store, rid)
    got = store.list_metric_points(rid, tag="loss")
    assert [(p["step"], p["attempt"]) for p in got] == (
        [(s, 2) for s in range(50)] + [(s, 1) for s in range(50, 100)])
    assert [p["value"] for p in got[:50]] == [1000.0 + s for s in range(50)]
    assert len(store.list_metric_points(rid)) == 100
    old = store.list_metric_points(rid, tag="loss", attempt=1)
    assert [(p["step"], p["value"]) for p in old] == [(s, float(s)) for s in range(100)]
    # Pages of the newest points: exactly `limit` rows each, none lost or repeated.
    pages, after = [], None
    while True:
        page = store.list_metric_points(rid, tag="loss", after_step=after, limit=30)
        pages += page
        if len(page) < 30:
            break
        after = page[-1]["step"]
    assert [(p["step"], p["attempt"]) for p in pages] == [(p["step"], p["attempt"]) for p in got]
    # Raw points (shift 0), rollups, and a range cutting blocks: all count 100 steps.
    for kwargs in ({"points": 100}, {"points": 2}, {"points": 3, "min_step": 1, "max_step": 98}):
        series = store.metric_series(rid, "loss", **kwargs)  # type: ignore[arg-type]
        lo, hi = kwargs.get("min_step", 0), kwargs.get("max_step", 99)
        want = [1000.0 + s if s < 50 else float(s) for s in range(lo, hi + 1)]
        buckets = series["points"]
        lay = Layout.plan(lo, hi, kwargs["points"])
        # The range's first point, when prepended, is counted in its bucket too.
        prepended = len(buckets) > 1 and lay.bucket(buckets[1]["step"]) == lay.bucket(lo)
        counted = buckets[1:] if prepended else buckets
        assert series["total"] == len(want) == sum(b["count"] for b in counted), kwargs
        assert min(b["min"] for b in counted) == min(want), kwargs
        assert max(b["max"] for b in counted) == max(want), kwargs
        assert buckets[-1]["last"] == want[-1]
    assert store.metric_series(rid, "loss", points=1)["points"][0]["last"] == 1000.0
    assert store.metric_tags(rid)[0]["count"] == 100
    # A late write of the older attempt stays stored but does not count.
    store.add_metric_points(rid, 1, [{"step": s, "tag": "loss", "value": -5.0 + s}
                                     for s in range(40, 60)])
    _check(store, rid)
    assert store.metric_series(rid, "loss", points=2)["total"] == 100
    assert store.list_metric_points(rid, tag="loss")[45]["value"] == 1045.0
    # Attempt 3 overlaps a sparse stretch of both, with a NaN and re-sends in one batch.
    store.add_metric_points(rid, 3, [{"step": s, "tag": "loss", "value": "NaN" if s == 48
                                      else -1.0 * s} for s in (10, 48, 48, 70, 150, 2**20)])
    _check(store, rid)
    assert store.metric_series(rid, "loss", points=5)["total"] == 102


@pytest.mark.parametrize("count", [0, 1, 7, 511, 512, 513, 1_000, 1_537])
def test_statement_sizes_cover_the_rows_with_few_texts(count: int) -> None:
    sizes = list(sqlite._statement_sizes(count, 512))
    assert sum(sizes) == count
    assert all(s == 512 or (s & (s - 1) == 0 and s < 512) for s in sizes)
    assert len(sizes) <= count // 512 + 9
