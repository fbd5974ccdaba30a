"""Each condition's meaning, on plain values (no database)."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from runyard import nonfinite
from runyard.rules import conditions, logmatch, spec
from runyard.rules.conditions import State


def _rule(**data: Any) -> spec.Rule:
    return spec.parse_rule(data)


def _feed(rule: spec.Rule, state: State, steps: list[int], values: list[float],
          tag: str = "loss") -> conditions.Hit | None:
    encoded = [nonfinite.encode(v) for v in values]
    specials = [e if type(e) is str else None for e in encoded]
    plain = [None if s else v for v, s in zip(values, specials, strict=True)]
    return conditions.observe(rule, state, tag, steps, plain,
                              specials if any(specials) else None)


def test_nan_fires_on_the_first_nonfinite_value_once() -> None:
    rule, st = _rule(when="nan", tag="loss"), State()
    assert _feed(rule, st, [0, 1, 2], [1.0, 0.5, 0.2]) is None
    hit = _feed(rule, st, [3, 4, 5], [0.1, math.inf, math.nan])
    assert hit is not None and hit.evidence == {"tag": "loss", "step": 4, "value": "Infinity"}
    assert st.fired and _feed(rule, st, [6], [math.nan]) is None


def test_threshold_needs_consecutive_points_and_never_counts_a_replay() -> None:
    rule, st = _rule(when="threshold", tag="loss", op=">", value=10, for_points=3), State()
    assert _feed(rule, st, [0, 1, 2], [11, 12, 5]) is None and st.count == 0
    assert _feed(rule, st, [3, 4], [11, math.nan]) is None and st.count == 0  # NaN resets
    assert _feed(rule, st, [5, 6], [20, 30]) is None and st.count == 2
    assert _feed(rule, st, [5, 6], [20, 30]) is None and st.count == 2  # re-sent: skipped
    hit = _feed(rule, st, [7, 8], [40, 50])
    assert hit is not None and hit.evidence["step"] == 7 and hit.evidence["consecutive"] == 3


def _keras(values: list[float], patience: int, min_delta: float, mode: str,
           start_from_epoch: int = 0) -> tuple[int, float] | None:
    """Keras 3 ``EarlyStopping.on_epoch_end``, line for line (keras/src/callbacks/
    early_stopping.py): the epoch it stops at and its best value."""
    delta = -min_delta if mode == "min" else min_delta
    better = (lambda a, b: a < b) if mode == "min" else (lambda a, b: a > b)
    best: float | None = None
    wait = 0
    for epoch, current in enumerate(values):
        if epoch < start_from_epoch:
            continue
        wait += 1
        if best is None or better(current - delta, best):
            best, wait = current, 0
            continue
        if wait >= patience and epoch > 0:
            return epoch, best
    return None


def test_plateau_worked_example_matches_keras() -> None:
    # EarlyStopping(monitor="val_loss", patience=2, min_delta=0.1) stops at epoch 4 with
    # best 0.85 on these values (checked against Keras 3.15 itself).
    values = [1.0, 0.95, 0.85, 0.8, 0.76, 0.7]
    assert _keras(values, 2, 0.1, "min") == (4, 0.85)
    rule, st = _rule(when="plateau", tag="val_loss", patience=2, min_delta=0.1), State()
    assert _feed(rule, st, [0, 1, 2], values[:3]) is None
    assert (st.best, st.count) == (0.85, 0)
    hit = _feed(rule, st, [3, 4, 5], values[3:])
    assert hit is not None
    assert hit.evidence["step"] == 4 and hit.evidence["best"] == 0.85
    assert hit.evidence["evaluations_without_improvement"] == 2


@pytest.mark.parametrize("mode", ["min", "max"])
def test_plateau_matches_keras_on_random_series(mode: str) -> None:
    rng = random.Random(18)
    for _ in range(300):
        n = rng.randint(1, 40)
        values = [round(rng.uniform(0, 1), 2) for _ in range(n)]
        patience, delta, warm = rng.randint(0, 5), rng.choice([0.0, 0.01, 0.05]), rng.randint(0, 3)
        expected = _keras(values, patience, delta, mode, warm)
        rule = _rule(when="plateau", tag="v", mode=mode, patience=patience, min_delta=delta,
                     min_step=warm)
        st, got = State(), None
        for lo in range(0, n, 7):  # in batches, as points arrive
            hit = _feed(rule, st, list(range(lo, min(n, lo + 7))), values[lo:lo + 7], "v")
            got = got or hit
        want = None if expected is None or (patience == 0 and expected[0] == 0) else expected
        assert (None if got is None else (got.evidence["step"], got.evidence["best"])) == want


def test_plateau_relative_delta_and_nan() -> None:
    rule, st = _rule(when="plateau", tag="l", patience=1, min_delta="10%"), State()
    assert _feed(rule, st, [0, 1], [1.0, 0.85], "l") is None and st.best == 0.85
    hit = _feed(rule, st, [2], [0.8], "l")  # 0.8 is not below 0.85 - 0.085
    assert hit is not None and hit.evidence["best"] == 0.85
    st = State()
    assert _feed(rule, st, [0], [1.0], "l") is None
    assert _feed(rule, st, [1], [math.nan], "l") is not None  # a NaN never improves


def test_snapshots_feed_a_rule_until_points_arrive() -> None:
    rule = _rule(when="threshold", tag="loss", op=">", value=1, for_points=2)
    st = State()
    assert conditions.observe_snapshot(rule, st, 5, {"loss": 3}) is None
    assert st.feed == "snapshot" and st.count == 1
    assert conditions.observe_snapshot(rule, st, 5, {"loss": 3}) is None  # same step: once
    assert conditions.observe_snapshot(rule, st, 6, {"loss": "NaN"}) is None and st.count == 0
    st.feed = "points"
    assert conditions.observe_snapshot(rule, st, 9, {"loss": 3}) is None and st.count == 0
    nan, st = _rule(when="nan"), State()
    hit = conditions.observe_snapshot(nan, st, 3, {"acc": 0.5, "loss": "-Infinity"})
    assert hit is not None and hit.evidence == {"tag": "loss", "step": 3, "value": "-Infinity"}


def test_a_new_attempt_starts_afresh_but_keeps_the_hits() -> None:
    st = State(attempt=1, last_step=50, best=0.1, count=4, fired=True, hits=2, last_hit_at=9.0)
    assert st.for_attempt(1) is st
    new = st.for_attempt(2)
    assert (new.attempt, new.fired, new.last_step, new.best, new.hits) == (2, False, None,
                                                                           None, 2)
    assert State.of(new.row()) == new


def test_status_stalled_and_runtime() -> None:
    rule = _rule(when="status", status=["completed", "lost"])
    assert conditions.status_matches(rule, "queued", "lost") == "lost"
    assert conditions.status_matches(rule, "completed", "completed") == "completed"
    assert conditions.status_matches(rule, "failed", "user_error") is None
    stalled = _rule(when="stalled", after_s=60)
    assert conditions.stalled(stalled, now=100, last_step_at=50, stall_after_s=600) is None
    assert conditions.stalled(stalled, now=200, last_step_at=None, stall_after_s=600) is None
    assert conditions.stalled(stalled, now=200, last_step_at=100, stall_after_s=600) == 100
    default = _rule(when="stalled")
    assert conditions.stalled(default, now=200, last_step_at=100, stall_after_s=50) == 100
    long = _rule(when="runtime", max_s=100, eta=True)
    assert conditions.overtime(long, now=50, started_at=0, eta_s=10) is None
    assert conditions.overtime(long, now=50, started_at=0, eta_s=60)["expected_total_s"] == 110
    assert conditions.overtime(long, now=101, started_at=0, eta_s=None)["elapsed_s"] == 101
    assert conditions.overtime(_rule(when="runtime", max_s=100), now=50, started_at=0,
                               eta_s=60) is None


def test_log_search_is_line_by_line_and_linear() -> None:
    chunks = [{"stream": "stdout", "offset": 0, "data": "epoch 1\nok\n"},
              {"stream": "stderr", "offset": 7, "data": "x\nRuntimeError: CUDA out of memory. "
                                                        "Tried\nmore\n"}]
    found = logmatch.search("CUDA out of memory", chunks, ("stdout", "stderr"))
    assert found == logmatch.Found("stderr", 7, "RuntimeError: CUDA out of memory. Tried")
    assert logmatch.search("CUDA", chunks, ("stdout",)) is None
    assert logmatch.search("^ok$", chunks, ("stdout",)) is not None
    # A match never spans two lines, whatever the pattern says.
    assert logmatch.search(r"epoch 1\sok", chunks, ("stdout",)) is None
    assert logmatch.search("1[^x]ok", chunks, ("stdout",)) is None
    # A pattern that backtracks exponentially in Python's re is accepted and answers (RE2
    # is linear); the lines here would take Python's re longer than the test suite.
    assert logmatch.compile_problem("(a|aa)+$") is None
    evil = [{"stream": "stdout", "offset": 0, "data": "a" * 60 + "b\n" + "a" * 60 + "\n"}]
    hit = logmatch.search("(a|aa)+$", evil, ("stdout",))
    assert hit is not None and hit.line == "a" * 60
    # Only the first LINE_MAX characters of a line are searched.
    long = [{"stream": "stdout", "offset": 0, "data": "x" * 10_000 + "NEEDLE\n"}]
    assert logmatch.search("NEEDLE", long, ("stdout",)) is None
