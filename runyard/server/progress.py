"""The latest progress of a run, with a server-computed ETA when the run sent none."""

from __future__ import annotations

import math
import time
from typing import Any

from runyard import errors, timestamps
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


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def history_out(snapshots: list[Row], *, full: bool) -> list[dict[str, Any]]:
    """Entries of ``GET /v1/runs/{id}/progress/history``, oldest first: the fields a chart
    needs, ``steps_per_s`` (the step rate since the entry before it of the same attempt, by
    the snapshots' own ``updated_at``, else when the server got them), and with ``full``
    the whole snapshot."""
    out: list[dict[str, Any]] = []
    prev: tuple[int, float, int] | None = None  # attempt, time, step
    for row in snapshots:
        snap = row["snapshot"] if isinstance(row["snapshot"], dict) else {}
        at = _time(snap.get("updated_at"), float(row["received_at"]))
        step = row["step"] if _is_int(row["step"]) else None
        rate = snap.get("rate")
        speed = None
        if prev is not None and step is not None and prev[0] == row["attempt"] \
                and at > prev[1] and step >= prev[2]:
            speed = round((step - prev[2]) / (at - prev[1]), 6)
        if step is not None:
            prev = (int(row["attempt"]), at, step)
        entry: dict[str, Any] = {
            "id": row["id"], "attempt": row["attempt"], "seq": row["seq"], "step": step,
            "total_steps": snap.get("total_steps") if _is_int(snap.get("total_steps")) else None,
            "epoch": _number(snap.get("epoch")), "percent": _number(snap.get("percent")),
            "phase": snap.get("phase") if isinstance(snap.get("phase"), str) else None,
            "rate": _number(rate.get("value")) if isinstance(rate, dict) else None,
            "steps_per_s": speed, "eta_seconds": _number(snap.get("eta_seconds")),
            "at": iso(at), "received_at": iso(row["received_at"])}
        if "count" in row:
            entry["count"] = row["count"]
        if full:
            entry["snapshot"] = json_safe(snap)
        out.append(entry)
    return out


def _time(value: Any, default: float) -> float:
    """A snapshot's own time as UNIX seconds, or ``default`` when it has no readable one."""
    try:
        seconds = timestamps.parse_time(value, "updated_at") if isinstance(value, str) else None
    except errors.ValidationError:
        seconds = None
    return default if seconds is None else seconds
