"""The ``columns`` form of a metrics batch (what agents send): the same points as the rows it
stands for, checked with errors that name the list and the index, stored alike on both
dialects, and sent by the agent for the batches it reads from an SDK's stream."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import pytest

from runyard import errors
from runyard.progress.metrics_stream import RowEncoder
from runyard.progress.reader import MetricsTail, WireRows, wire_columns
from runyard.queue import Queue
from runyard.store import ingest
from runyard.store.base import Store

from ..support.factories import submit

NOW = 1_700_000_000.0


def _as_rows(columns: dict[str, Any]) -> list[list[Any]]:
    """The rows that ``columns`` stands for (a ``None`` value is no point)."""
    ats = columns.get("at") or [None] * len(columns["step"])
    return [[step, ats[i], {tag: vals[i] for tag, vals in columns["values"].items()
                            if vals[i] is not None}]
            for i, step in enumerate(columns["step"])]


def _plain(by_tag: dict[str, ingest.Column]) -> dict[str, tuple[Any, ...]]:
    return {tag: (col.steps, col.values, col.specials, col.times())
            for tag, col in by_tag.items() if len(col)}


def _outcome(fn: Any) -> Any:
    try:
        return _plain(fn())
    except errors.ValidationError:
        return "refused"


def _random_columns(rnd: random.Random) -> dict[str, Any]:
    n = rnd.randrange(1, 40)
    start = rnd.randrange(0, 2**40)
    steps = sorted(rnd.sample(range(start, start + 3 * n), n))
    dirty = rnd.random() < 0.3

    def value() -> Any:
        r = rnd.random()
        if r < 0.1:
            return None
        if r < 0.15:
            return rnd.choice(["NaN", "Infinity", "-Infinity"])
        if r < 0.2:
            return rnd.randrange(-5, 5)
        if dirty and r < 0.25:
            return rnd.choice(["high", True, 10**400, [1.0], math.nan])
        return rnd.uniform(-1e6, 1e6)

    cols: dict[str, Any] = {"step": steps, "values": {
        tag: [value() for _ in steps] for tag in rnd.sample(["loss", "acc", "lr", "x"], 3)}}
    if rnd.random() < 0.7:
        cols["at"] = [NOW + i * 0.001 for i in range(n)]
    if dirty and rnd.random() < 0.3:
        cols["step"] = list(reversed(steps)) if n > 1 else [-1]
    return cols


@pytest.mark.parametrize("seed", range(300))
def test_columns_store_exactly_what_their_rows_would(seed: int) -> None:
    cols = _random_columns(random.Random(seed))
    got = _outcome(lambda: ingest._column_batch(cols, NOW))
    steps = cols["step"]
    if any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
        want = "refused"  # columns hold one step once, in order (rows need not)
    else:
        want = _outcome(lambda: ingest._checked([], [
            [s, NOW if at is None else at, v] for s, at, v in _as_rows(cols)], NOW))
    assert got == want


@pytest.mark.parametrize(("columns", "field"), [
    ([1], "columns"),
    ({"step": [1], "values": {"a": [1.0]}, "extra": 1}, "columns.extra"),
    ({"step": "1", "values": {"a": [1.0]}}, "columns.step"),
    ({"step": [1], "values": [1.0]}, "columns.values"),
    ({"step": [1, 2, 2], "values": {"a": [1.0, 2.0, 3.0]}}, "columns.step[2]"),
    ({"step": [1, -2], "values": {"a": [1.0, 2.0]}}, "columns.step[1]"),
    ({"step": [1, 2], "values": {"a": [1.0]}}, "columns.values.a"),
    ({"step": [1, 2], "values": {"a": [1.0, None, 3.0][:2], "b": [None, "high"]}},
     "columns.values.b[1]"),
    ({"step": [1, 2], "values": {"": [1.0, 2.0]}}, "columns.values"),
    ({"step": [1, 2], "at": [NOW], "values": {"a": [1.0, 2.0]}}, "columns.at"),
    ({"step": [1, 2], "at": [NOW, "soon"], "values": {"a": [1.0, 2.0]}}, "columns.at[1]"),
    ({"step": [1, 2], "at": [NOW, True], "values": {"a": [1.0, 2.0]}}, "columns.at[1]"),
    ({"step": [1, 2.0], "values": {"a": [1.0, 2.0]}}, "columns.step[1]"),
    ({"step": [1, 2**63], "values": {"a": [1.0, 2.0]}}, "columns.step[1]"),
    ({"step": [1, 2], "values": {"a": [1.0, True]}}, "columns.values.a[1]"),
    ({"step": [1, 2], "values": {"a": (1.0, 2.0)}}, "columns.values.a"),
])
def test_bad_columns_name_the_list_and_the_index(columns: Any, field: str) -> None:
    with pytest.raises(errors.ValidationError) as exc:
        ingest.Batch.of([], [], columns)
    assert exc.value.field == field


def test_columns_come_alone() -> None:
    with pytest.raises(errors.ValidationError) as exc:
        ingest.Batch.of([], [[1, NOW, {"a": 1.0}]], {"step": [2], "values": {"a": [1.0]}})
    assert exc.value.field == "columns"


def test_columns_are_stored_and_read_back(store: Store, queue: Queue) -> None:
    rid = submit(queue)["id"]
    cols = {"step": [0, 1, 2, 5], "at": [NOW, NOW + 1, NOW + 2, NOW + 5],
            "values": {"loss": [0.5, 0.25, None, "NaN"], "lr": [1e-3, 1e-3, 1e-3, 1e-4]}}
    assert store.add_metric_points(rid, 1, [], [], cols) == 7
    # Re-sent: nothing changes; a later batch goes on from there.
    assert store.add_metric_points(rid, 1, [], [], cols) == 7
    store.add_metric_points(rid, 1, [], [], {"step": [6], "values": {"loss": [0.125]}})
    loss = store.list_metric_points(rid, tag="loss")
    assert [(p["step"], p["value"]) for p in loss] == [(0, 0.5), (1, 0.25), (5, "NaN"),
                                                       (6, 0.125)]
    assert loss[2]["at"] == NOW + 5 and loss[3]["at"] > NOW + 5  # left out: now
    tags = {t["tag"]: (t["count"], t["last_step"]) for t in store.metric_tags(rid)}
    assert tags == {"loss": (4, 6), "lr": (4, 5)}
    series = store.metric_series(rid, "lr", points=2)  # the rollups counted each once
    assert series["total"] == 4 and series["points"][-1]["count"] == 1


def test_an_sdk_stream_goes_as_columns_cut_rows_and_all(tmp_path: Path) -> None:
    # Each read of the stream is one WireRows, so a read that ends inside a log() call's
    # lines leaves its last row short, and the next read's first: those get nulls.
    path = tmp_path / "metrics.jsonl"
    rows = [(i, NOW + i, {"loss": 1.0 / (i + 1), "acc": 0.5, "lr": 0.1}) for i in range(3000)]
    path.write_text("".join(RowEncoder().lines(rows)))
    tail = MetricsTail(path)
    tail.CHUNK = 10_000  # type: ignore[misc]  # many reads, most cut a row
    sent: list[tuple[int, str, Any]] = []
    while got := tail.read_lines():
        wire = WireRows(at="2026-01-01T00:00:00.000Z", batch_points=1000)
        wire.add(got)
        for batch in wire.batches:
            cols = wire_columns(batch)
            assert cols is not None
            by_tag = ingest._column_batch(cols, NOW)
            sent += [(s, tag, v) for tag, col in by_tag.items()
                     for s, v in zip(col.steps, col.values, strict=True)]
    assert sorted(sent) == sorted((i, tag, v) for i, _, m in rows for tag, v in m.items())


def test_rows_that_are_not_one_step_each_go_as_rows() -> None:
    assert wire_columns([]) is None
    # A step twice (a tag logged again at the same step starts a new row).
    assert wire_columns([[1, NOW, {"a": 1.0}], [1, NOW, {"a": 2.0}]]) is None
    assert wire_columns([[2, NOW, {"a": 1.0}], [1, NOW, {"a": 2.0}]]) is None
    # Every row its own tags: as columns, mostly nulls.
    assert wire_columns([[i, NOW, {f"t{i}": 1.0}] for i in range(10)]) is None
    assert wire_columns([[1, NOW, {"a": 1.0, "b": 2.0}], [2, NOW + 1, {"a": 3.0}]]) == {
        "step": [1, 2], "at": [NOW, NOW + 1], "values": {"a": [1.0, 3.0], "b": [2.0, None]}}
