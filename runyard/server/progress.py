"""The latest progress of a run, with a server-computed ETA when the run sent none."""

from __future__ import annotations

import math
import time
from typing import Any

from runyard.server.serialize import iso, json_safe
from runyard.store.base import Row, Store

#: Snapshots looked at to estimate the step rate.
RATE_WINDOW = 20


def estimate_eta(store: Store, run: Row, now: float | None = None) -> float | None:
    """Seconds left: the snapshot's own ``eta_seconds``, else ``total_steps - step`` over the
    step rate of the current attempt's recent snapshots; None when it cannot be known."""
    snap = run.get("progress") or {}
    own = snap.get("eta_seconds")
    if isinstance(own, int | float) and not isinstance(own, bool) and math.isfinite(own):
        return max(0.0, float(own))
    step, total = snap.get("step"), snap.get("total_steps")
    if not isinstance(step, int) or not isinstance(total, int) or isinstance(step, bool) \
            or isinstance(total, bool) or total <= 0:
        return None
    if step >= total:
        return 0.0
    points: list[tuple[float, int]] = [
        (float(p["received_at"]), int(p["step"]))
        for p in store.iter_progress(run["id"], RATE_WINDOW)
        if p["attempt"] == run["attempt"] and _is_int(p["step"])]
    if len(points) < 2:
        return None
    (t_new, s_new), (t_old, s_old) = points[0], points[-1]
    if t_new <= t_old or s_new <= s_old:
        return None
    rate = (s_new - s_old) / (t_new - t_old)
    eta = (total - step) / rate
    # Count the time since the newest snapshot as already spent.
    elapsed = max(0.0, (now or time.time()) - t_new)
    return round(max(0.0, float(eta) - elapsed), 3)


def progress_out(store: Store, run: Row) -> dict[str, Any]:
    """``GET /v1/runs/{id}/progress``: snapshot, ETA, stalled and when it last changed."""
    snap = run.get("progress")
    return {
        "snapshot": json_safe(snap) if snap is not None else None,
        "eta_seconds": estimate_eta(store, run) if snap is not None else None,
        "stalled": bool(run.get("stalled")),
        "progress_updated_at": iso(run.get("progress_updated_at")),
    }


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
