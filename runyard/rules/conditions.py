"""Evaluating a rule's condition: state in, observations in, new state and maybe a hit out.

Pure (no database, no clock of its own), so each condition's meaning is tested directly
(docs/rules.md). The state is O(1) per rule per run: the best value, one counter, the last
step evaluated, whether the rule fired in this attempt. A rule fires at most once per
attempt; a new attempt starts its condition afresh (its hit count goes on).

Metric conditions see a tag's points in step order. A point at or below the last step
evaluated is skipped: re-sent batches (the store's points are idempotent upserts) and
points that arrive late never count twice.
"""

from __future__ import annotations

import bisect
import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from runyard import nonfinite
from runyard.rules.spec import Rule

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


@dataclass
class State:
    """One rule's state on one run (a row of ``rule_states``)."""

    attempt: int = 0
    #: Which feed drives a metric rule: "points", or "snapshot" until a point arrives.
    feed: str | None = None
    last_step: int | None = None
    best: float | None = None
    #: Consecutive points past a threshold; evaluations without improvement on a plateau.
    count: int = 0
    fired: bool = False
    hits: int = 0
    last_hit_at: float | None = None
    last_hit: dict[str, Any] | None = field(default=None)

    def for_attempt(self, attempt: int) -> State:
        """The state to evaluate ``attempt`` with: a newer attempt starts afresh, keeping
        the hit count and the last hit."""
        if attempt <= self.attempt:
            return self
        return State(attempt=attempt, hits=self.hits, last_hit_at=self.last_hit_at,
                     last_hit=self.last_hit)

    @classmethod
    def of(cls, row: Mapping[str, Any] | None) -> State:
        if row is None:
            return cls()
        return cls(attempt=int(row["attempt"]), feed=row.get("feed"),
                   last_step=row.get("last_step"), best=row.get("best"),
                   count=int(row.get("count") or 0), fired=bool(row.get("fired")),
                   hits=int(row.get("hits") or 0), last_hit_at=row.get("last_hit_at"),
                   last_hit=row.get("last_hit"))

    def row(self) -> dict[str, Any]:
        best = self.best if self.best is None or math.isfinite(self.best) else None
        return {"attempt": self.attempt, "feed": self.feed, "last_step": self.last_step,
                "best": best, "count": self.count, "fired": self.fired, "hits": self.hits,
                "last_hit_at": self.last_hit_at, "last_hit": self.last_hit}


@dataclass(frozen=True)
class Hit:
    """What made a rule fire: the evidence a hit event carries."""

    evidence: dict[str, Any]


def _wire(value: float | None) -> Any:
    return None if value is None else nonfinite.encode(value)


def values_of(values: Sequence[float | None], specials: Sequence[str | None] | None
              ) -> Sequence[float]:
    """A column's values as floats, NaN and the infinities included."""
    if specials is None:
        return values  # type: ignore[return-value]
    return [nonfinite.SPECIALS[s] if s is not None else float(v)  # type: ignore[arg-type]
            for v, s in zip(values, specials, strict=True)]


def observe(rule: Rule, state: State, tag: str, steps: Sequence[int],
            values: Sequence[float | None], specials: Sequence[str | None] | None
            ) -> Hit | None:
    """Feed one tag's points (``steps`` strictly increasing; ``values`` None where
    ``specials`` spells a NaN or an infinity) to a metric rule; ``state`` is updated."""
    if state.fired:
        return None
    if rule.when == "nan":
        return _nan(state, tag, steps, specials)
    start = 0 if state.last_step is None else bisect.bisect_right(steps, state.last_step)
    if rule.when == "plateau" and rule.min_step:
        start = max(start, bisect.bisect_left(steps, rule.min_step))
    if start >= len(steps):
        return None
    nums = values_of(values, specials)
    if rule.when == "threshold":
        return _threshold(rule, state, tag, steps, nums, start)
    return _plateau(rule, state, tag, steps, nums, start)


def _nan(state: State, tag: str, steps: Sequence[int],
         specials: Sequence[str | None] | None) -> Hit | None:
    if specials is None:  # every value finite: the usual batch costs nothing here
        return None
    for step, special in zip(steps, specials, strict=True):
        if special is not None:
            state.fired = True
            return Hit({"tag": tag, "step": step, "value": special})
    return None


def _threshold(rule: Rule, state: State, tag: str, steps: Sequence[int],
               nums: Sequence[float], start: int) -> Hit | None:
    op, limit, need = _OPS[rule.op or ">"], float(rule.value or 0.0), rule.for_points
    count = state.count
    for i in range(start, len(steps)):
        count = count + 1 if op(nums[i], limit) else 0  # NaN compares false: a reset
        if count >= need:
            state.count, state.last_step, state.fired = count, steps[i], True
            return Hit({"tag": tag, "step": steps[i], "value": _wire(nums[i]),
                        "op": rule.op, "threshold": limit, "for_points": need,
                        "consecutive": count})
    state.count, state.last_step = count, steps[-1]
    return None


def improved(rule: Rule, value: float, best: float | None) -> bool:
    """Keras' ``EarlyStopping._is_improvement``: strictly better than ``best`` by more than
    ``min_delta`` (absolute, or that fraction of ``|best|``). The first value always
    improves; a NaN never does."""
    if best is None:
        return not math.isnan(value)
    delta = rule.min_delta * abs(best) if rule.min_delta_relative else rule.min_delta
    if math.isinf(delta) or math.isnan(delta):
        delta = 0.0
    if rule.mode == "min":
        return value + delta < best
    return value - delta > best


def _plateau(rule: Rule, state: State, tag: str, steps: Sequence[int],
             nums: Sequence[float], start: int) -> Hit | None:
    best, wait = state.best, state.count
    # The common case inline (an absolute delta, a best already known): one comparison a
    # point; anything else goes through ``improved``.
    fast = not rule.min_delta_relative and math.isfinite(rule.min_delta)
    delta, low = rule.min_delta, rule.mode == "min"
    for i in range(start, len(steps)):
        v = nums[i]
        if fast and best is not None:
            better = v + delta < best if low else v - delta > best
        else:
            better = improved(rule, v, best)
        if better:
            best, wait = v, 0
            continue
        wait += 1
        if wait >= rule.patience:
            state.best, state.count, state.last_step, state.fired = best, wait, steps[i], True
            return Hit({"tag": tag, "step": steps[i], "value": _wire(nums[i]),
                        "best": _wire(best), "patience": rule.patience,
                        "evaluations_without_improvement": wait})
    state.best, state.count, state.last_step = best, wait, steps[-1]
    return None


def observe_snapshot(rule: Rule, state: State, step: int, metrics: Mapping[str, Any]
                     ) -> Hit | None:
    """Feed a progress snapshot's ``metrics`` (the latest values, at ``step``) to a metric
    rule that has seen no point yet. A rule follows its tag's points once any arrive: a
    snapshot repeats the latest values, which would count as new evaluations."""
    if state.feed == "points" or state.fired:
        return None
    tag_ = rule.tag or "*"
    tags = list(metrics) if tag_ == "*" else [tag_] if tag_ in metrics else []
    for tag in tags:
        value = nonfinite.decode(metrics[tag])
        if value is None:
            continue
        special = nonfinite.encode(value)
        state.feed = "snapshot"
        hit = observe(rule, state, tag, [step], [None if type(special) is str else value],
                      [special] if type(special) is str else None)
        if hit is not None:
            return hit
    return None


def status_matches(rule: Rule, status: str, reason: str | None) -> str | None:
    """The status or termination reason of a change that a status rule watches, or None."""
    if status in rule.status:
        return status
    if reason is not None and reason in rule.status:
        return reason
    return None


def stalled(rule: Rule, *, now: float, last_step_at: float | None,
            stall_after_s: float) -> float | None:
    """Seconds without a new step when a stalled rule holds (``after_s``, else the run's
    ``stall_after_s``), else None. As for the run's ``stalled`` flag, a run that never
    reported a step is not stalled: it may not report progress at all."""
    if last_step_at is None:
        return None
    quiet = now - last_step_at
    return quiet if quiet > (rule.after_s or stall_after_s) else None


def overtime(rule: Rule, *, now: float, started_at: float | None, eta_s: float | None
             ) -> dict[str, Any] | None:
    """The evidence when a runtime rule holds: running longer than ``max_s``, or (``eta``)
    the ETA says it will; else None."""
    if started_at is None or rule.max_s is None:
        return None
    elapsed = now - started_at
    if elapsed > rule.max_s:
        return {"elapsed_s": round(elapsed, 3), "max_s": rule.max_s}
    if rule.eta and eta_s is not None and elapsed + eta_s > rule.max_s:
        return {"elapsed_s": round(elapsed, 3), "eta_s": round(eta_s, 3), "max_s": rule.max_s,
                "expected_total_s": round(elapsed + eta_s, 3)}
    return None


def fresh(state: State) -> State:
    """A copy to evaluate on (the caller keeps the old one to see what changed)."""
    return replace(state)
