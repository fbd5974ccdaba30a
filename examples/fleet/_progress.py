"""Tiny writer of the Runyard progress protocol v1 (docs/progress-protocol.md) for the examples.

Stand-alone on purpose (standard library only): it shows that any script can report progress
by writing two files, without the SDK. Both files are optional: with the environment
variables unset the script still runs and only prints.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCHEMA = "runyard.progress/v1"
#: Write the snapshot at most this often, except on start, end and phase changes.
MIN_INTERVAL_S = 0.5
#: No ETA before this many steps: the first steps include warm-up and would mislead.
ETA_WARMUP_STEPS = 2


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _json_number(value: float) -> float | str:
    # JSON has no NaN/Infinity: the protocol writes them as strings.
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def load_config(description: str) -> tuple[dict[str, Any], int]:
    """Config from ``--config PATH`` or ``RUNYARD_CONFIG_FILE`` (``{}`` if neither); seed too."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", default=os.environ.get("RUNYARD_CONFIG_FILE"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    config: dict[str, Any] = {}
    if args.config:
        config = json.loads(Path(args.config).read_text(encoding="utf-8"))
    return config, args.seed


def artifact_dir() -> Path:
    path = Path(os.environ.get("RUNYARD_ARTIFACT_DIR") or "artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_result(name: str, result: dict[str, Any]) -> Path:
    """Write ``result`` as JSON into the artifact directory (bundled by the agent at exit)."""
    target = artifact_dir() / name
    target.write_text(json.dumps(result, indent=2, sort_keys=True), encoding="utf-8")
    return target


class Reporter:
    """Writes the snapshot (atomic replace) and appends metric points (JSON Lines)."""

    def __init__(self, total_steps: int, units: str = "steps") -> None:
        self.total_steps = total_steps
        self.units = units
        self.progress_file = os.environ.get("RUNYARD_PROGRESS_FILE")
        self.metrics_file = os.environ.get("RUNYARD_METRICS_FILE")
        self.stop_file = os.environ.get("RUNYARD_STOP_FILE")
        self.seq = 0
        self.phase = ""
        self.step = 0
        self.metrics: dict[str, float | str] = {}
        self._start = time.monotonic()
        self._first_step_at: float | None = None
        self._last_write = 0.0

    @property
    def should_stop(self) -> bool:
        return bool(self.stop_file) and Path(str(self.stop_file)).exists()

    def update(self, *, phase: str | None = None, step: int | None = None,
               message: str = "", force: bool = False, **metrics: float) -> None:
        """Record progress; ``metrics`` also go to the metrics stream at this step."""
        changed_phase = phase is not None and phase != self.phase
        if phase is not None:
            self.phase = phase
        if step is not None:
            if self._first_step_at is None and step > 0:
                self._first_step_at = time.monotonic()
            self.step = step
        if metrics:
            self._append_metrics(metrics)
            self.metrics.update({k: _json_number(float(v)) for k, v in metrics.items()})
        now = time.monotonic()
        if force or changed_phase or now - self._last_write >= MIN_INTERVAL_S:
            self._write_snapshot(message)
            self._last_write = now

    def _append_metrics(self, metrics: dict[str, float]) -> None:
        if not self.metrics_file:
            return
        at = _now()
        lines = "".join(
            json.dumps({"step": self.step, "tag": tag, "value": _json_number(float(value)),
                        "at": at}) + "\n"
            for tag, value in metrics.items()
        )
        with open(self.metrics_file, "a", encoding="utf-8") as fh:
            fh.write(lines)
            fh.flush()

    def _write_snapshot(self, message: str) -> None:
        self.seq += 1
        snap: dict[str, Any] = {
            "schema": SCHEMA, "seq": self.seq, "updated_at": _now(), "phase": self.phase,
            "step": self.step, "total_steps": self.total_steps,
            "percent": round(100.0 * self.step / self.total_steps, 2) if self.total_steps else None,
            "operations": [{"operation": self.phase or "train", "value": self.step,
                            "final_value": self.total_steps, "units": self.units}],
            "metrics": dict(self.metrics), "message": message,
        }
        if self._first_step_at is not None and self.step > ETA_WARMUP_STEPS:
            elapsed = time.monotonic() - self._first_step_at
            rate = (self.step - 1) / elapsed if elapsed > 0 else 0.0
            if rate > 0:
                snap["rate"] = {"value": round(rate, 3), "units": f"{self.units}/s"}
                snap["eta_seconds"] = round(max(self.total_steps - self.step, 0) / rate, 2)
        print(f"[{self.phase}] {self.step}/{self.total_steps} {message} "
              + " ".join(f"{k}={v}" for k, v in self.metrics.items()), flush=True)
        if not self.progress_file:
            return
        target = Path(self.progress_file)
        # Write a temporary file beside the target, flush it to disk, then rename over it:
        # a reader sees the old snapshot or the new one, never half of one.
        fd, tmp = tempfile.mkstemp(prefix=".progress-", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(snap, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
