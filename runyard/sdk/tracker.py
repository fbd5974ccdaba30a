"""Builds progress snapshots from what the run logged: step, totals, rate, ETA, throttling.

Used only by the SDK's background thread. Timestamps are those of the ``log``/``progress``
calls (not of the drain), so the rate is right even when the drain runs late.
"""

from __future__ import annotations

import collections
import math
from typing import Any

from runyard import defaults, timestamps
from runyard.progress import snapshot as snapshot_mod

#: Snapshot writes per second at most (phase changes, start and end are written at once).
DEFAULT_MIN_INTERVAL_S = 0.5
#: Steps ignored for rate and ETA: the first steps of a run (compilation, data loader start-up,
#: cudnn autotuning) are far slower than the rest and would make the first ETA absurd.
DEFAULT_WARMUP_STEPS = 5
#: The rate is measured over this many seconds of recent steps.
RATE_WINDOW_S = 30.0


class ProgressTracker:
    """The live state of one run's progress and the decision of when to write it."""

    def __init__(self, *, run_id: str, attempt: int, total_steps: int | None = None,
                 total_epochs: float | None = None,
                 min_interval_s: float = DEFAULT_MIN_INTERVAL_S,
                 warmup_steps: int = DEFAULT_WARMUP_STEPS) -> None:
        self.run_id = run_id
        self.attempt = attempt
        self.min_interval_s = min_interval_s
        self.warmup_steps = warmup_steps
        self.seq = 0
        self.phase = "setup"
        self.phase_set_by_user = False
        self.step: int | None = None
        self.total_steps = total_steps
        self.epoch: float | None = None
        self.total_epochs = total_epochs
        self.message: str | None = None
        self.metrics: dict[str, float] = {}
        self.status: str | None = None
        self._distinct_steps = 0
        self._samples: collections.deque[tuple[float, int]] = collections.deque()
        self._dirty = True  # the start snapshot
        self._urgent = True
        self._last_write = -math.inf

    # ------------------------------------------------------------------ updates
    def observe_step(self, step: int, t: float) -> None:
        """A step was reached at time ``t`` (from ``log`` or ``progress``)."""
        if step == self.step:
            return
        self.step = step
        self._distinct_steps += 1
        self._dirty = True
        if not self.phase_set_by_user and self.phase == "setup":
            self._set_phase("train")
        if self._distinct_steps > self.warmup_steps:
            self._samples.append((t, step))
            while len(self._samples) > 2 and t - self._samples[0][0] > RATE_WINDOW_S:
                self._samples.popleft()

    def observe_metrics(self, metrics: dict[str, float]) -> None:
        """Keep the latest value per tag, within the snapshot's bounds."""
        latest = self.metrics
        for tag, value in metrics.items():
            if tag in latest or (
                len(latest) < defaults.SNAPSHOT_MAX_METRICS
                and len(tag) <= defaults.METRIC_NAME_MAX
            ):
                latest[tag] = value
        self._dirty = True

    def apply(self, fields: dict[str, Any], t: float) -> None:
        """Fields given to ``run.progress(...)``; only the keys present change."""
        if "total_steps" in fields:
            self.total_steps = fields["total_steps"]
        if "total_epochs" in fields:
            self.total_epochs = fields["total_epochs"]
        if "epoch" in fields:
            self.epoch = fields["epoch"]
        if "message" in fields:
            self.message = fields["message"]
        if "phase" in fields:
            self.phase_set_by_user = True
            self._set_phase(fields["phase"])
        if "step" in fields:
            self.observe_step(fields["step"], t)
        self._dirty = True

    def _set_phase(self, phase: str) -> None:
        if phase != self.phase:
            self.phase = phase
            self._urgent = True  # phase changes are written at once
        self._dirty = True

    def finish(self, status: str) -> None:
        self.status = status
        self._dirty = self._urgent = True

    # ------------------------------------------------------------------ output
    def due(self, now: float) -> bool:
        """Whether a snapshot should be written now."""
        return self._dirty and (self._urgent or now - self._last_write >= self.min_interval_s)

    def rate(self) -> float | None:
        """Steps per second over the recent window, None during warm-up."""
        if len(self._samples) < 2:
            return None
        (t0, s0), (t1, s1) = self._samples[0], self._samples[-1]
        if t1 <= t0:
            return None
        return (s1 - s0) / (t1 - t0)

    def build(self, now: float) -> dict[str, Any]:
        """The next snapshot (``seq`` incremented); marks the state as written."""
        self.seq += 1
        snap: dict[str, Any] = {
            "schema": snapshot_mod.SCHEMA_ID, "seq": self.seq,
            "updated_at": timestamps.format_time(now), "run_id": self.run_id,
            "attempt": self.attempt, "phase": self.phase,
        }
        if self.step is not None:
            snap["step"] = self.step
        for key in ("total_steps", "epoch", "total_epochs", "message", "status"):
            value = getattr(self, key)
            if value is not None:
                snap[key] = value
        percent = self.percent()
        if percent is not None:
            snap["percent"] = round(percent, 3)
        rate = self.rate()
        if rate is not None:
            snap["rate"] = {"value": rate, "units": "steps/s"}
            if self.total_steps is not None and self.step is not None and rate > 0:
                snap["eta_seconds"] = round(max(0.0, (self.total_steps - self.step) / rate), 3)
        if self.step is not None:
            snap["operations"] = [{"operation": self.phase, "value": self.step,
                                   "final_value": self.total_steps, "units": "steps"}]
        if self.metrics:
            snap["metrics"] = dict(self.metrics)
        self._dirty = self._urgent = False
        self._last_write = now
        return snap

    def percent(self) -> float | None:
        if self.total_steps and self.step is not None:
            return min(100.0, max(0.0, 100.0 * self.step / self.total_steps))
        if self.total_epochs and self.epoch is not None:
            return min(100.0, max(0.0, 100.0 * self.epoch / self.total_epochs))
        return None
