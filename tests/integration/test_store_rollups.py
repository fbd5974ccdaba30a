"""The stored rollups equal a brute-force aggregation of the stored points, whatever shape the
batches had: consecutive steps (the strided path), sparse or shuffled steps, duplicates in a
batch, NaN and infinities, several tags and attempts, and re-sent points (same value or not).
Also the multi-row statements' sizes."""

from __future__ import annotations

import random
from typing import Any

import pytest
import sqlalchemy as sa

from runyard.queue import Queue
from runyard.store import sqlite
from runyard.store.base import Store
from runyard.store.rollups import SHIFTS
from runyard.store.schema import metric_points, metric_rollups

from ..support.factories import submit


def _brute(points: list[Any]) -> dict[tuple[str, int, int], tuple[Any, ...]]:
    out: dict[tuple[str, int, int], list[Any]] = {}
    for tag, step, attempt, value, special in sorted(points, key=lambda p: (p[0], p[1], p[2])):
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


@pytest.mark.parametrize("count", [0, 1, 7, 511, 512, 513, 1_000, 1_537])
def test_statement_sizes_cover_the_rows_with_few_texts(count: int) -> None:
    sizes = list(sqlite._statement_sizes(count, 512))
    assert sum(sizes) == count
    assert all(s == 512 or (s & (s - 1) == 0 and s < 512) for s in sizes)
    assert len(sizes) <= count // 512 + 9
