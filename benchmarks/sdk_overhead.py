"""Micro-benchmark: cost of ``run.log({3 metrics}, step=i)`` in the training thread.

Prints JSON: median, p90 and p99 nanoseconds per call over 100,000 steps, in agent file mode
and in local-directory mode. Run: ``python benchmarks/sdk_overhead.py [--steps N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from runyard import sdk


def measure(env: dict[str, str], steps: int) -> dict[str, float]:
    """Time each log call; the background thread drains concurrently, as in training."""
    timings = [0] * steps
    clock = time.perf_counter_ns
    with sdk.start_run(name="bench", env=env, total_steps=steps, handle_sigterm=False) as run:
        log = run.log
        for i in range(steps):
            loss, acc = 1.0 / (i + 1), i / steps
            t0 = clock()
            log({"loss": loss, "acc": acc, "lr": 0.001}, step=i)
            timings[i] = clock() - t0
    timings.sort()
    return {
        "median_ns": statistics.median(timings),
        "p90_ns": timings[int(steps * 0.9)],
        "p99_ns": timings[int(steps * 0.99)],
        "mean_ns": round(sum(timings) / steps, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=100_000)
    args = parser.parse_args()
    base = {k: v for k, v in os.environ.items() if not k.startswith("RUNYARD_") and k != "RANK"}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        agent = {**base, "RUNYARD_RUN_ID": "bench", "RUNYARD_ATTEMPT": "1",
                 "RUNYARD_PROGRESS_FILE": str(work / "agent" / "progress.json"),
                 "RUNYARD_METRICS_FILE": str(work / "agent" / "metrics.jsonl"),
                 "RUNYARD_STOP_FILE": str(work / "agent" / "STOP")}
        local = {**base, "RUNYARD_DATA_DIR": str(work / "data")}
        result = {
            "python": sys.version.split()[0],
            "steps": args.steps,
            "metrics_per_call": 3,
            "file_mode": measure(agent, args.steps),
            "local_mode": measure(local, args.steps),
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
