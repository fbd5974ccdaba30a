"""Checkpoint retention planning and unreferenced blobs (pure functions)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from runyard import errors
from runyard.artifacts import plan_retention, unreferenced


def ckpt(step: int, loss: float | None = None, status: str = "complete") -> dict[str, Any]:
    metrics = {} if loss is None else {"loss": loss}
    return {"step": step, "sha256": f"{step:064x}", "status": status, "metrics": metrics}


def steps(checkpoints: list[Any]) -> list[int]:
    return [c["step"] for c in checkpoints]


LOSSES = {100: 0.9, 200: 0.5, 300: 0.7, 400: 0.2, 500: 0.6, 600: 0.8}


@pytest.fixture
def history() -> list[dict[str, Any]]:
    # Deliberately out of order: the plan orders by step.
    return [ckpt(s, LOSSES[s]) for s in (300, 100, 600, 200, 500, 400)]


def test_no_rule_keeps_everything(history: list[dict[str, Any]]) -> None:
    keep, delete = plan_retention(history)
    assert steps(keep) == [100, 200, 300, 400, 500, 600]
    assert delete == []


def test_keep_last(history: list[dict[str, Any]]) -> None:
    keep, delete = plan_retention(history, keep_last=2)
    assert steps(keep) == [500, 600]
    assert steps(delete) == [100, 200, 300, 400]


def test_keep_best_min(history: list[dict[str, Any]]) -> None:
    keep, delete = plan_retention(history, keep_best=2, metric="loss", mode="min")
    assert steps(keep) == [200, 400]
    assert steps(delete) == [100, 300, 500, 600]


def test_keep_best_max(history: list[dict[str, Any]]) -> None:
    keep, _ = plan_retention(history, keep_best=2, metric="loss", mode="max")
    assert steps(keep) == [100, 600]


def test_last_and_best_are_a_union(history: list[dict[str, Any]]) -> None:
    keep, delete = plan_retention(history, keep_last=1, keep_best=2, metric="loss")
    assert steps(keep) == [200, 400, 600]
    assert steps(delete) == [100, 300, 500]


def test_only_complete_checkpoints_count_and_incomplete_are_kept() -> None:
    history = [
        ckpt(100, 0.5),
        ckpt(200, 0.4),
        ckpt(300, 0.1, status="incomplete"),  # maybe still uploading
        ckpt(400, 0.3),
        ckpt(500, 0.05, status="incomplete"),
    ]
    keep, delete = plan_retention(history, keep_last=1, keep_best=1, metric="loss")
    # Last complete is 400, best complete is 400 too; incomplete ones neither count nor go.
    assert steps(keep) == [300, 400, 500]
    assert steps(delete) == [100, 200]


def test_missing_or_non_finite_metric_is_never_best() -> None:
    history = [ckpt(1, 0.3), ckpt(2), ckpt(3, math.nan), ckpt(4, -math.inf), ckpt(5, 0.9)]
    history.append({"step": 6, "sha256": "f" * 64, "status": "complete", "metrics": None})
    history.append({"step": 7, "sha256": "e" * 64, "status": "complete",
                    "metrics": {"loss": "0.0"}})
    keep, _ = plan_retention(history, keep_best=2, metric="loss")
    assert steps(keep) == [1, 5]


def test_ties_prefer_the_later_step() -> None:
    keep, _ = plan_retention([ckpt(1, 0.5), ckpt(2, 0.5), ckpt(3, 0.5)], keep_best=1,
                             metric="loss")
    assert steps(keep) == [3]


def test_zero_and_more_than_available() -> None:
    history = [ckpt(1, 0.1), ckpt(2, 0.2)]
    keep, delete = plan_retention(history, keep_last=0)
    assert (keep, steps(delete)) == ([], [1, 2])
    keep, delete = plan_retention(history, keep_last=10)
    assert (steps(keep), delete) == ([1, 2], [])
    assert plan_retention([], keep_last=3) == ([], [])


def test_keep_and_delete_partition_the_input(history: list[dict[str, Any]]) -> None:
    keep, delete = plan_retention(history, keep_last=2, keep_best=1, metric="loss")
    assert sorted(map(id, keep + delete)) == sorted(map(id, history))
    assert all(any(k is c for c in history) for k in keep)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"keep_last": -1}, "keep_last"),
        ({"keep_last": 1.5}, "keep_last"),
        ({"keep_last": True}, "keep_last"),
        ({"keep_best": -2, "metric": "loss"}, "keep_best"),
        ({"keep_best": 2}, "metric"),
        ({"keep_best": 2, "metric": ""}, "metric"),
        ({"keep_last": 1, "mode": "median"}, "mode"),
    ],
)
def test_bad_options(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(errors.ValidationError) as caught:
        plan_retention([ckpt(1, 0.1)], **kwargs)
    assert caught.value.field == field


def test_bad_step() -> None:
    with pytest.raises(errors.ValidationError) as caught:
        plan_retention([{"step": "10", "status": "complete"}], keep_last=1)
    assert caught.value.field == "step"


def test_unreferenced() -> None:
    a, b, c, d = ("a" * 64, "b" * 64, "c" * 64, "d" * 64)
    assert unreferenced([a, b, c, b, d], referenced=[b, d]) == [a, c]
    assert unreferenced([a, a], referenced=[]) == [a]
    assert unreferenced([], referenced=[a]) == []
    assert unreferenced(iter([c, a]), referenced=iter([])) == [c, a]


def test_shared_blob_survives_retention() -> None:
    # Two checkpoints with identical bytes share one blob: deleting one row must not
    # delete the blob the kept row still points at.
    shared = "5" * 64
    history = [
        {"step": 1, "sha256": shared, "status": "complete", "metrics": {}},
        {"step": 2, "sha256": "6" * 64, "status": "complete", "metrics": {}},
        {"step": 3, "sha256": shared, "status": "complete", "metrics": {}},
    ]
    keep, delete = plan_retention(history, keep_last=1)
    doomed = unreferenced([c["sha256"] for c in delete], [c["sha256"] for c in keep])
    assert doomed == ["6" * 64]
