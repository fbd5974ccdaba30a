"""Checkpoint retention as pure functions: decide, never delete (docs/metrics-and-artifacts.md).

The caller removes the checkpoints in ``delete`` from its index, then asks
``unreferenced`` which blobs no remaining row points at: content addressing means two
checkpoints (or a checkpoint and an artifact) may share one blob.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from runyard import errors

Checkpoint = Mapping[str, Any]


def plan_retention(
    checkpoints: Sequence[Checkpoint],
    keep_last: int | None = None,
    keep_best: int | None = None,
    metric: str | None = None,
    mode: Literal["min", "max"] = "min",
) -> tuple[list[Checkpoint], list[Checkpoint]]:
    """Split ``checkpoints`` into (keep, delete), each ordered by step.

    Only ``complete`` checkpoints are counted and may be deleted; an incomplete one may
    still be uploading, so it is always kept. A complete checkpoint is kept when it is
    among the ``keep_last`` highest steps or the ``keep_best`` best values of ``metric``
    (lowest for ``mode="min"``, highest for ``"max"``; ties go to the later step; a
    checkpoint without a finite value of the metric is never "best"). With neither rule
    set, everything is kept.
    """
    _check_count(keep_last, "keep_last")
    _check_count(keep_best, "keep_best")
    if mode not in ("min", "max"):
        raise errors.ValidationError(f"mode: expected 'min' or 'max', got {mode!r}", field="mode")
    if keep_best is not None and not metric:
        raise errors.ValidationError("metric: required with keep_best", field="metric")

    ordered = sorted(checkpoints, key=_step)
    if keep_last is None and keep_best is None:
        return list(ordered), []

    complete = [c for c in ordered if c.get("status") == "complete"]
    kept: set[int] = set()  # ids of the mappings, which need not be hashable
    if keep_last:
        kept.update(id(c) for c in complete[-keep_last:])
    if keep_best and metric:
        scored = [(value, c) for c in complete if (value := _metric(c, metric)) is not None]
        sign = 1.0 if mode == "min" else -1.0
        scored.sort(key=lambda pair: (sign * pair[0], -_step(pair[1])))
        kept.update(id(c) for _, c in scored[:keep_best])

    keep: list[Checkpoint] = []
    delete: list[Checkpoint] = []
    for checkpoint in ordered:
        if checkpoint.get("status") != "complete" or id(checkpoint) in kept:
            keep.append(checkpoint)
        else:
            delete.append(checkpoint)
    return keep, delete


def unreferenced(blobs: Iterable[str], referenced: Iterable[str]) -> list[str]:
    """The blobs (in their order, once each) that nothing in ``referenced`` points at."""
    still_used = set(referenced)
    seen: set[str] = set()
    result: list[str] = []
    for sha256 in blobs:
        if sha256 not in still_used and sha256 not in seen:
            seen.add(sha256)
            result.append(sha256)
    return result


def _check_count(value: int | None, field: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise errors.ValidationError(
            f"{field}: expected a non-negative integer, got {value!r}", field=field
        )


def _step(checkpoint: Checkpoint) -> int:
    step = checkpoint.get("step")
    if isinstance(step, bool) or not isinstance(step, int):
        raise errors.ValidationError(
            f"step: expected an integer, got {step!r}", field="step"
        )
    return step


def _metric(checkpoint: Checkpoint, metric: str) -> float | None:
    value = (checkpoint.get("metrics") or {}).get(metric)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None
