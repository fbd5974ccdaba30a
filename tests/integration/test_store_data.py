"""Metric points on SQLite and PostgreSQL: validation, idempotency, NaN/Inf, pagination,
tags and downsampled series checked against a brute-force computation."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from runyard import errors
from runyard.queue import Queue
from runyard.store.base import Store
from runyard.store.rollups import SHIFTS, Layout

from ..support.factories import submit


def _run(queue: Queue) -> str:
    return str(submit(queue)["id"])


def pts(steps: Any, tag: str = "loss", value: Any = None) -> list[dict[str, Any]]:
    return [{"step": s, "tag": tag, "value": float(s) if value is None else value, "at": 1.5}
            for s in steps]


def test_points_round_trip_with_specials(store: Store, queue: Queue) -> None:
    rid = _run(queue)
    batch = [{"step": 0, "tag": "loss", "value": 1.25, "at": 10.0},
             {"step": 1, "tag": "loss", "value": "NaN", "at": 11.0},
             {"step": 2, "tag": "loss", "value": "Infinity", "at": 12.0},
             {"step": 3, "tag": "loss", "value": "-Infinity", "at": 13.0},
             {"step": 4, "tag": "loss", "value": math.nan, "at": 14.0},
             {"step": 5, "tag": "loss", "value": 7, "at": 15.0}]
    assert store.add_metric_points(rid, 1, batch) == 6
    got = store.list_metric_points(rid, tag="loss")
    assert [p["value"] for p in got] == [1.25, "NaN", "Infinity", "-Infinity", "NaN", 7.0]
    assert [p["at"] for p in got] == [10.0, 11.0, 12.0, 13.0, 14.0, 15.0]
    assert {p["attempt"] for p in got} == {1}


@pytest.mark.parametrize(("bad", "field"), [
    ({"step": -1, "tag": "t", "value": 1}, "points[1].step"),
    ({"step": 2**63, "tag": "t", "value": 1}, "points[1].step"),
    ({"step": 1.5, "tag": "t", "value": 1}, "points[1].step"),
    ({"step": True, "tag": "t", "value": 1}, "points[1].step"),
    ({"step": 1, "tag": "", "value": 1}, "points[1].tag"),
    ({"step": 1, "tag": "x" * 65, "value": 1}, "points[1].tag"),
    ({"step": 1, "tag": "a\x00b", "value": 1}, "points[1].tag"),
    ({"step": 1, "tag": "t", "value": "nan"}, "points[1].value"),
    ({"step": 1, "tag": "t", "value": None}, "points[1].value"),
    ({"step": 1, "tag": "t", "value": 10**400}, "points[1].value"),
    ({"step": 1, "tag": "t", "value": 1, "at": "yesterday"}, "points[1].at"),
    ("not an object", "points[1]"),
])
def test_bad_point_writes_nothing(store: Store, queue: Queue, bad: Any, field: str) -> None:
    rid = _run(queue)
    with pytest.raises(errors.ValidationError) as exc:
        store.add_metric_points(rid, 1, [{"step": 0, "tag": "t", "value": 1.0}, bad])
    assert exc.value.field == field
    assert field in str(exc.value)
    assert store.list_metric_points(rid) == []


def test_rows_are_points_too(store: Store, queue: Queue) -> None:
    """The compact ``(step, at, {tag: value})`` rows store what the same points would; rows
    come after points, so a (tag, step) in both keeps the row's value."""
    rid = _run(queue)
    written = store.add_metric_points(
        rid, 1, [{"step": 0, "tag": "loss", "value": 9.0, "at": 1.0}],
        [(0, 2.0, {"loss": 1.0, "acc": 0.5}), [1, 3.0, {"loss": "NaN", "acc": 1}],
         (2, None, {"loss": math.inf})])
    assert written == 5
    loss = store.list_metric_points(rid, tag="loss")
    assert [(p["step"], p["value"], p["at"]) for p in loss][:2] == [(0, 1.0, 2.0),
                                                                    (1, "NaN", 3.0)]
    assert loss[2]["value"] == "Infinity" and loss[2]["at"] > 1e9  # no time: now
    assert [p["value"] for p in store.list_metric_points(rid, tag="acc")] == [0.5, 1.0]
    tags = {t["tag"]: t for t in store.metric_tags(rid)}
    assert tags["loss"]["count"] == 3 and tags["acc"]["last_value"] == 1.0


@pytest.mark.parametrize(("bad", "field"), [
    ((1, 2.0), "rows[1]"),
    ({"step": 1}, "rows[1]"),
    ((1, 2.0, ["loss"]), "rows[1]"),
    ((-1, 2.0, {"t": 1.0}), "rows[1][0]"),
    ((1.5, 2.0, {"t": 1.0}), "rows[1][0]"),
    ((1, "yesterday", {"t": 1.0}), "rows[1][1]"),
    ((1, math.inf, {"t": 1.0}), "rows[1][1]"),
    ((1, 2.0, {"t": "high"}), "rows[1][2].t"),
    ((1, 2.0, {"t": None}), "rows[1][2].t"),
    ((1, 2.0, {"": 1.0}), "rows[1][2]."),
])
def test_bad_row_writes_nothing(store: Store, queue: Queue, bad: Any, field: str) -> None:
    rid = _run(queue)
    with pytest.raises(errors.ValidationError) as exc:
        store.add_metric_points(rid, 1, pts([5]), [(0, 1.0, {"t": 1.0}), bad])
    assert exc.value.field == field
    assert store.list_metric_points(rid) == []


def test_unknown_run_is_not_found(store: Store) -> None:
    with pytest.raises(errors.NotFound):
        store.add_metric_points("nope", 1, pts([0]))


def test_resending_overwrites_never_duplicates(store: Store, queue: Queue) -> None:
    rid = _run(queue)
    store.add_metric_points(rid, 1, pts(range(10)))
    store.add_metric_points(rid, 1, pts(range(5, 15), value=-1.0))
    got = store.list_metric_points(rid, tag="loss")
    assert [p["step"] for p in got] == list(range(15))
    assert [p["value"] for p in got] == [float(s) for s in range(5)] + [-1.0] * 10
    # Within one batch the last occurrence wins.
    assert store.add_metric_points(rid, 1, pts([3, 3], value=9.0)[:1] + pts([3])) == 1
    assert store.list_metric_points(rid, tag="loss", after_step=2, limit=1)[0]["value"] == 3.0
    # Another attempt at the same step is a separate point.
    store.add_metric_points(rid, 2, pts([3], value=42.0))
    assert store.count_metric_points() == 16


def test_keyset_pages_have_no_gaps_or_duplicates(store: Store, queue: Queue) -> None:
    rid = _run(queue)
    store.add_metric_points(rid, 1, pts(range(0, 50)))
    store.add_metric_points(rid, 2, pts(range(20, 60)))  # a retry re-logs steps 20..49
    store.add_metric_points(rid, 1, pts(range(0, 5), tag="acc"))
    seen: list[tuple[int, int]] = []
    after = None
    pages = 0
    while True:
        page = store.list_metric_points(rid, tag="loss", after_step=after, limit=7)
        seen += [(p["step"], p["attempt"]) for p in page]
        pages += 1
        if len(page) < 7:
            break
        after = page[-1]["step"]
    # One point a step: the newest attempt's.
    expected = [(s, 1) for s in range(20)] + [(s, 2) for s in range(20, 60)]
    assert seen == expected
    assert pages > 5
    assert [p["step"] for p in store.list_metric_points(rid, attempt=2, limit=3)] == [20, 21, 22]
    everything = store.list_metric_points(rid, limit=1000)
    assert [p["tag"] for p in everything][:5] == ["acc"] * 5
    with pytest.raises(errors.ValidationError) as exc:
        store.list_metric_points(rid, after_step=3)
    assert exc.value.field == "after_step"
    with pytest.raises(errors.ValidationError):
        store.list_metric_points(rid, tag="loss", limit=0)


def test_metric_tags(store: Store, queue: Queue) -> None:
    rid = _run(queue)
    assert store.metric_tags(rid) == []
    store.add_metric_points(rid, 1, pts(range(3), tag="loss") + pts([0, 7], tag="acc"))
    store.add_metric_points(rid, 1, [{"step": 9, "tag": "lr", "value": "Infinity"}])
    store.add_metric_points(rid, 2, pts([2], tag="loss", value=0.5))
    assert store.metric_tags(rid) == [
        {"tag": "acc", "count": 2, "last_step": 7, "last_value": 7.0},
        {"tag": "loss", "count": 3, "last_step": 2, "last_value": 0.5},
        {"tag": "lr", "count": 1, "last_step": 9, "last_value": "Infinity"},
    ]


# ---------------------------------------------------------------- series
def layout(lo: int, hi: int, n: int) -> tuple[int, int]:
    """(base, width) of the buckets, checked against what the docstring promises."""
    lay = Layout.plan(lo, hi, n)
    block = 1 << lay.shift
    assert lay.base <= lo and lay.base % block == 0 and lay.width % block == 0
    assert lay.width * n >= hi - lo + 1  # at most n buckets ...
    assert (hi - lay.base) // lay.width < n
    if lay.shift:  # ... and not much coarser than asked: a block is at most 1/4 of ideal
        assert block * 4 <= -(-(hi - lo + 1) // n)
    return lay.base, lay.width


def brute_series(points: dict[tuple[int, int], Any], n: int, min_step: int | None,
                 max_step: int | None) -> dict[str, Any]:
    """The documented algorithm, in plain Python over every point (at each step, the newest
    attempt's)."""
    newest = {s: a for s, a in sorted(points)}
    inside = {(s, a): v for (s, a), v in points.items() if newest[s] == a
              and (min_step is None or s >= min_step) and (max_step is None or s <= max_step)}
    if not inside:
        return {"points": [], "total": 0, "min_step": None, "max_step": None}
    lo = min(s for s, _ in inside)
    hi = max(s for s, _ in inside)

    def latest(step: int) -> Any:
        return inside[(step, max(a for s, a in inside if s == step))]

    def finite(v: Any) -> bool:
        return isinstance(v, float)

    buckets: dict[int, list[tuple[int, Any]]] = {}
    base, width = layout(lo, hi, n)
    for (s, _a), v in inside.items():
        b = (s - base) // width
        buckets.setdefault(b, []).append((s, v))
    out = []
    for b in sorted(buckets):
        vals = [v for _, v in buckets[b] if finite(v)]
        last_step = max(s for s, _ in buckets[b])
        out.append({"step": last_step, "min": min(vals) if vals else None,
                    "max": max(vals) if vals else None, "last": latest(last_step),
                    "count": len(buckets[b])})
    if out[0]["step"] != lo:
        v = latest(lo)
        out.insert(0, {"step": lo, "min": v if finite(v) else None,
                       "max": v if finite(v) else None, "last": v, "count": 1})
    return {"points": out, "total": len(inside), "min_step": lo, "max_step": hi}


def test_series_matches_brute_force_on_random_data(store: Store, queue: Queue) -> None:
    rnd = random.Random(1234)
    rid = _run(queue)
    truth: dict[tuple[int, int], Any] = {}
    for attempt in (1, 2):
        steps = sorted(rnd.sample(range(0, 5000), 400))
        batch = []
        for s in steps:
            v: Any = rnd.choice(["NaN", "Infinity"]) if rnd.random() < 0.03 else rnd.uniform(-5, 5)
            batch.append({"step": s, "tag": "loss", "value": v, "at": 1.0})
            truth[(s, attempt)] = v
        store.add_metric_points(rid, attempt, batch)
    store.add_metric_points(rid, 1, pts(range(10), tag="other"))  # must not leak in
    cases = [(1, None, None), (7, None, None), (50, None, None), (2000, None, None),
             (10_000, None, None), (13, 1000, 2000), (5, 2500, None), (9, None, 77),
             (3, 4000, 4000)]
    for _ in range(10):
        a, b = sorted(rnd.sample(range(0, 5100), 2))
        cases.append((rnd.randint(1, 300), a, b))
    for n, lo, hi in cases:
        got = store.metric_series(rid, "loss", points=n, min_step=lo, max_step=hi)
        want = brute_series(truth, n, lo, hi)
        assert got["tag"] == "loss"
        for key in ("total", "min_step", "max_step"):
            assert got[key] == want[key], (n, lo, hi, key)
        assert got["points"] == want["points"], (n, lo, hi)  # doubles round-trip exactly


def check_series(store: Store, rid: str, truth: dict[tuple[int, int], Any],
                 cases: list[tuple[int, int | None, int | None]]) -> None:
    for n, lo, hi in cases:
        got = store.metric_series(rid, "loss", points=n, min_step=lo, max_step=hi)
        want = brute_series(truth, n, lo, hi)
        for key in ("total", "min_step", "max_step"):
            assert got[key] == want[key], (n, lo, hi, key)
        assert got["points"] == want["points"], (n, lo, hi)


def test_series_over_every_rollup_level(store: Store, queue: Queue) -> None:
    """Sparse steps up to 2**30, so long buckets read the coarsest blocks; ranges cut blocks."""
    rnd = random.Random(99)
    rid = _run(queue)
    truth: dict[tuple[int, int], Any] = {}
    steps = sorted(rnd.sample(range(0, 2**30), 3000))
    for i in range(0, len(steps), 700):  # several batches, so rollup rows are merged
        batch = [{"step": s, "tag": "loss", "value": rnd.uniform(-1, 1)} for s in steps[i:i + 700]]
        store.add_metric_points(rid, 1, batch)
        truth.update({(p["step"], 1): p["value"] for p in batch})
    cases: list[tuple[int, int | None, int | None]] = [(1, None, None), (3, None, None),
                                                      (64, None, None), (2000, None, None)]
    for _ in range(12):
        a, b = sorted(rnd.sample(range(0, 2**30), 2))
        cases.append((rnd.choice([1, 2, 7, 40, 300]), a, b))
    shifts = {Layout.plan(min(s for s, _ in truth), max(s for s, _ in truth), n).shift
              for n, _, _ in cases}
    assert {SHIFTS[-1], 0} <= shifts | {0} and len(shifts) >= 3
    check_series(store, rid, truth, cases)


def test_series_after_resends_and_later_attempts(store: Store, queue: Queue) -> None:
    """A re-sent point with the same value changes nothing; with a new value its rollups are
    rebuilt (min/max cannot be taken back); a later attempt's point replaces the earlier
    one's at that step, in ``last`` and in the counts."""
    rid = _run(queue)
    truth: dict[tuple[int, int], Any] = {}

    def send(attempt: int, batch: list[dict[str, Any]]) -> None:
        store.add_metric_points(rid, attempt, batch)
        truth.update({(p["step"], attempt): p["value"] for p in batch})

    send(1, [{"step": s, "tag": "loss", "value": float(s % 97)} for s in range(0, 20_000)])
    cases: list[tuple[int, int | None, int | None]] = [
        (1, None, None), (10, None, None), (100, None, None), (7, 150, 19_000), (3, 64, 64)]
    check_series(store, rid, truth, cases)
    send(1, [{"step": s, "tag": "loss", "value": float(s % 97)} for s in range(5000, 6000)])
    check_series(store, rid, truth, cases)  # same values: counts not doubled
    send(1, [{"step": 7000, "tag": "loss", "value": 1e9},   # new max ...
             {"step": 96, "tag": "loss", "value": "NaN"}])  # ... and the old max (96) gone
    check_series(store, rid, truth, cases)
    send(1, [{"step": 7000, "tag": "loss", "value": 3.0}])  # and that max withdrawn again
    check_series(store, rid, truth, cases)
    send(2, [{"step": s, "tag": "loss", "value": -float(s)} for s in range(19_990, 20_000)])
    check_series(store, rid, truth, cases)
    assert store.metric_tags(rid) == [{"tag": "loss", "count": 20_000, "last_step": 19_999,
                                       "last_value": -19_999.0}]


def test_series_edges(store: Store, queue: Queue) -> None:
    rid = _run(queue)
    empty = {"tag": "loss", "points": [], "total": 0, "min_step": None, "max_step": None}
    assert store.metric_series(rid, "loss", points=10) == empty
    store.add_metric_points(rid, 1, pts(range(100, 200)))
    assert store.metric_series(rid, "loss", points=10, min_step=0, max_step=99) == empty
    # More buckets than points: every point is its own bucket, nothing invented.
    got = store.metric_series(rid, "loss", points=500)
    assert [p["step"] for p in got["points"]] == list(range(100, 200))
    assert all(p["count"] == 1 for p in got["points"])
    # One bucket: the first point is kept as its own entry, the last is the bucket's last.
    one = store.metric_series(rid, "loss", points=1)
    assert one["points"] == [
        {"step": 100, "min": 100.0, "max": 100.0, "last": 100.0, "count": 1},
        {"step": 199, "min": 100.0, "max": 199.0, "last": 199.0, "count": 100}]
    assert one["total"] == 100
    # Huge steps take the overflow-safe bucket width.
    store.add_metric_points(rid, 1, pts([2**63 - 1], value=5.0))
    big = store.metric_series(rid, "loss", points=4)
    assert big["max_step"] == 2**63 - 1
    assert big["points"][-1]["step"] == 2**63 - 1
    assert sum(p["count"] for p in big["points"][1:]) == big["total"] == 101


@pytest.mark.parametrize(("kw", "field"), [
    ({"points": 0}, "points"), ({"points": 10**6}, "points"),
    ({"points": 5, "min_step": -1}, "min_step"),
    ({"points": 5, "min_step": 9, "max_step": 3}, "min_step"),
])
def test_series_bad_arguments(store: Store, queue: Queue, kw: dict[str, Any], field: str
                              ) -> None:
    with pytest.raises(errors.ValidationError) as exc:
        store.metric_series(_run(queue), "loss", **kw)
    assert exc.value.field == field


def test_count_metric_points(store: Store, queue: Queue) -> None:
    assert store.count_metric_points() == 0
    a, b = _run(queue), _run(queue)
    store.add_metric_points(a, 1, pts(range(30)))
    store.add_metric_points(b, 1, pts(range(12), tag="x"))
    assert store.count_metric_points() == 42
