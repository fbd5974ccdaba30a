"""Ingest's checks a column at a time (clean batches) give exactly what the point-by-point
pass gives, and refuse nothing it accepts: random batches, clean and not, are compared with
the general pass; then what each form of statement stores is read back on both dialects."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from runyard import errors
from runyard.queue import Queue
from runyard.store import ingest
from runyard.store.base import Store

from ..support.factories import submit

NOW = 1_700_000_000.0


def _columns(by_tag: dict[str, ingest.Column]) -> dict[str, tuple[Any, ...]]:
    """A batch's columns as plain values (a shared time spelled out for every point)."""
    return {tag: (col.steps, col.values, col.specials, col.times())
            for tag, col in by_tag.items()}


def _general(points: list[Any], rows: list[Any]) -> dict[str, tuple[Any, ...]] | str:
    """What the point-by-point pass makes of a batch: its points as rows, then the rows."""
    try:
        as_rows = ingest.rows_of_points(points, NOW)
        n = len(as_rows)

        def field(i: int, part: str, tag: Any = None) -> str:
            return ingest.point_field(i, part, tag) if i < n else ingest.row_field(
                i - n, part, tag)

        return _columns(ingest._checked([*as_rows, *rows], NOW, field))
    except errors.ValidationError as exc:
        return f"error {exc.field}"


def _fast(points: list[Any], rows: list[Any]) -> dict[str, ingest.Column] | None:
    try:
        return ingest._row_columns(rows or ingest.rows_of_points(points, NOW))
    except errors.ValidationError:
        return None


def _value(rnd: random.Random, dirty: bool) -> Any:
    r = rnd.random()
    if r < 0.03:
        return rnd.choice(["NaN", "Infinity", "-Infinity", math.nan, math.inf])
    if r < 0.06:
        return rnd.randrange(-5, 5)  # an integer: stored as a float
    if dirty and r < 0.08:
        return rnd.choice([None, "high", True, 10**400, [1.0]])
    return rnd.uniform(-1e6, 1e6)


def _points(rnd: random.Random, n: int, dirty: bool) -> list[Any]:
    start = rnd.randrange(0, 2**40)
    at = rnd.choice([None, NOW + 1.5, "each"])
    steps = list(range(start, start + n))
    if rnd.random() < 0.2:
        steps = sorted(rnd.sample(range(start, start + 3 * n), n))
    out: list[Any] = []
    for s in steps:
        p: dict[str, Any] = {"step": s, "tag": "loss", "value": _value(rnd, dirty)}
        if at == "each":
            p["at"] = NOW + s % 97 + rnd.choice([0.25, 0.25, 0.25, 1])
        elif at is not None:
            p["at"] = at
        out.append(p)
    if dirty and out:
        i = rnd.randrange(len(out))
        out[i] = rnd.choice([
            {**out[i], "step": rnd.choice([-1, 2**63, 1.5, True, "7"])},
            {**out[i], "tag": rnd.choice(["", "x" * 65, "a\nb", 3, "other"])},
            {k: v for k, v in out[i].items() if k != rnd.choice(["step", "tag", "value"])},
            {**out[i], "at": rnd.choice([None, "noon", math.nan, 5])},
            {**out[i], "step": out[max(i - 1, 0)]["step"]},  # a repeated step: last wins
            "not an object",
        ])
    return out


def _rows(rnd: random.Random, n: int, dirty: bool) -> list[Any]:
    tags = rnd.sample(["loss", "acc", "lr", "grad"], rnd.randrange(1, 4))
    start = rnd.randrange(0, 2**40)
    same_time = rnd.random() < 0.3
    out: list[Any] = []
    for s in range(start, start + n):
        at = NOW if same_time else NOW + s % 1000 / 8
        out.append(rnd.choice([tuple, list])((s, at, {t: _value(rnd, dirty) for t in tags})))
    if dirty and out:
        i = rnd.randrange(len(out))
        step, at, values = out[i]
        out[i] = rnd.choice([
            (step, at, {**values, "extra": 1.0}),  # other tags than the rest: general pass
            (step, at, {k: v for k, v in list(values.items())[1:]}),
            (rnd.choice([-1, 1.5, True]), at, values),
            (step, rnd.choice([None, "noon", 7, math.inf]), values),
            (step, at, {"": 1.0}),
            (step, at),
            (out[max(i - 1, 0)][0], at, values),
        ])
    return out


@pytest.mark.parametrize("seed", range(40))
def test_columns_checks_equal_the_general_pass(seed: int, monkeypatch: pytest.MonkeyPatch
                                               ) -> None:
    """Whatever the batch, :meth:`Batch.of` lays it out (or refuses it) as the general pass
    does, and clean batches do take the column checks."""
    monkeypatch.setattr(ingest.time, "time", lambda: NOW)  # "now" for points without one
    rnd = random.Random(seed)
    for _ in range(25):
        n, dirty = rnd.choice([1, 2, 7, 300]), rnd.random() < 0.5
        points = _points(rnd, n, dirty) if rnd.random() < 0.5 else []
        rows = _rows(rnd, n, dirty) if not points or rnd.random() < 0.2 else []
        want = _general(points, rows)
        fast = _fast(points, rows) if not (points and rows) else None
        if fast is not None:
            assert _columns(fast) == want
        else:
            assert dirty or (points and rows), "a clean batch took the general pass"
        try:
            got: dict[str, tuple[Any, ...]] | str = _columns(
                ingest.Batch.of(points, rows).by_tag)
        except errors.ValidationError as exc:
            got = f"error {exc.field}"
        assert got == want


def test_clean_batches_take_the_column_checks() -> None:
    points = [{"step": s, "tag": "loss", "value": s / 3} for s in range(5, 1005)]
    col = _fast(points, [])
    assert col is not None and col["loss"].ats == NOW and col["loss"].specials is None
    timed = [{**p, "at": NOW + p["step"]} for p in points]
    col = _fast(timed, [])
    assert col is not None and col["loss"].times() == [NOW + s for s in range(5, 1005)]
    special = [*points[:-1], {**points[-1], "value": "NaN"}]
    col = _fast(special, [])
    assert col is not None and col["loss"].specials == [None] * 999 + ["NaN"]
    assert col["loss"].values[-1] is None
    rows = [[s, NOW + s, {"loss": 1.0, "acc": 0.5, "lr": 1}] for s in range(100)]
    cols = ingest._row_columns(rows)
    assert cols is not None and set(cols) == {"loss", "acc", "lr"}
    assert cols["lr"].values == [1.0] * 100 and cols["lr"].specials is None
    # Two tags in the points form, or rows of different tags: the general pass.
    assert _fast([*points, {"step": 1, "tag": "acc", "value": 1.0}], []) is None
    assert ingest._row_columns([*rows, [100, NOW, {"loss": 1.0}]]) is None


def test_iso_times_are_seconds_and_each_text_is_read_once(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    monkeypatch.setattr(ingest.time, "time", lambda: NOW)
    iso = [[1, "2026-01-01T00:00:00Z", {"loss": 1.0}], [2, None, {"loss": 1.0}],
           [3, "2026-01-01T00:00:00Z", {"loss": 1.0}], [4, "", {"loss": 1.0}]]
    assert ingest.Batch.of([], iso).by_tag["loss"].times() == [1767225600.0, NOW,
                                                               1767225600.0, NOW]
    points = [{"step": 1, "tag": "a", "value": 1.0, "at": "2026-01-01T00:00:01Z"}]
    assert ingest.Batch.of(points).by_tag["a"].times() == [1767225601.0]
    with pytest.raises(errors.ValidationError) as exc:
        ingest.Batch.of([], [*iso, [5, "noon", {"loss": 1.0}]])
    assert exc.value.field == "rows[4][1]"


def test_every_statement_form_stores_what_was_sent(store: Store, queue: Queue) -> None:
    """Points of one shared time, of a time each, with NaN and infinities, and rows: each
    form of insert binds its own parameters, read back here on both dialects."""
    rid = str(submit(queue)["id"])
    assert store.add_metric_points(rid, 1, [
        {"step": s, "tag": "shared", "value": s * 0.5, "at": 12.5} for s in range(600)]) == 600
    store.add_metric_points(rid, 1, [
        {"step": s, "tag": "each", "value": -s * 1.0, "at": 100.0 + s} for s in range(700)])
    store.add_metric_points(rid, 1, [
        {"step": s, "tag": "odd", "value": "NaN" if s % 3 else s, "at": 7.0}
        for s in range(0, 90, 2)])
    store.add_metric_points(rid, 2, [], [
        (s, 50.0 + s, {"r1": 1.0 / (s + 1), "r2": math.inf if s == 4 else 2.0})
        for s in range(530)])
    read = {tag: store.list_metric_points(rid, tag=tag, limit=1000)
            for tag in ("shared", "each", "odd", "r1", "r2")}
    assert [(p["step"], p["value"], p["at"]) for p in read["shared"]] == [
        (s, s * 0.5, 12.5) for s in range(600)]
    assert [(p["step"], p["value"], p["at"]) for p in read["each"]] == [
        (s, -s * 1.0, 100.0 + s) for s in range(700)]
    assert [p["value"] for p in read["odd"]] == [
        "NaN" if s % 3 else float(s) for s in range(0, 90, 2)]
    assert [(p["value"], p["at"], p["attempt"]) for p in read["r1"]] == [
        (1.0 / (s + 1), 50.0 + s, 2) for s in range(530)]
    assert [p["value"] for p in read["r2"]][3:6] == [2.0, "Infinity", 2.0]
    tags = {t["tag"]: t for t in store.metric_tags(rid)}
    assert tags["each"]["count"] == 700 and tags["r2"]["last_value"] == 2.0
