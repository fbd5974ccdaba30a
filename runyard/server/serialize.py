"""Rows to JSON at the API edge: UNIX floats become ISO 8601 UTC strings, NaN/Inf strings."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from runyard import errors, jsonvalues, nonfinite, timestamps
from runyard.store.base import Row
from runyard.timestamps import parse_time

__all__ = ["parse_time"]  # the API's times are parsed where the agent can share it

#: Run columns that are internal bookkeeping, never shown.
_RUN_HIDDEN = frozenset({"event_seq", "budget_start", "error_restarts", "no_retry",
                         "require_cuda", "prefer_cuda", "gpus", "min_vram_gib", "min_ram_gib",
                         "min_cpus", "labels_key", "stop_deadline", "last_step_at", "rules"})
_RUN_TIMES = frozenset({"created_at", "queued_at", "started_at", "ended_at", "updated_at",
                        "status_updated_at", "progress_updated_at", "stop_requested_at",
                        "checkpoint_requested_at"})


def iso(ts: float | None) -> str | None:
    """``1700000000.5`` -> ``"2023-11-14T22:13:20.500Z"``; None stays None."""
    return None if ts is None else timestamps.format_time(ts)


#: A float for JSON: NaN and infinities as their strings (docs/progress-protocol.md).
number_out = nonfinite.encode


def number_in(value: Any, field: str) -> float:
    """A metric value from JSON: a number or one of "NaN", "Infinity", "-Infinity"."""
    if isinstance(value, str) and value in nonfinite.SPECIALS:
        return nonfinite.SPECIALS[value]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise errors.ValidationError(
            f"{field}: expected a number or \"NaN\"/\"Infinity\"/\"-Infinity\", got {value!r}",
            field=field)
    return float(value)


def json_safe(value: Any) -> Any:
    """Deep copy with non-finite floats replaced by their strings (JSON has no NaN) and
    any invalid Unicode already stored made printable (:func:`runyard.jsonvalues.safe_copy`)."""
    return jsonvalues.safe_copy(value, number_out)


def run_out(row: Row) -> dict[str, Any]:
    """A run row as the API shows it (listing with ``fields`` keeps only those present)."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key in _RUN_HIDDEN:
            continue
        out[key] = iso(value) if key in _RUN_TIMES else json_safe(value)
    if "lease" in out:  # never leak a lease through a read endpoint
        del out["lease"]
    return out


def hide_env(run: dict[str, Any]) -> dict[str, Any]:
    """``run`` as shown to someone who may not read its env: the names, each value null."""
    env = run.get("env")
    if isinstance(env, dict):
        run["env"] = dict.fromkeys(env)
    return run


def attempt_out(row: Row) -> dict[str, Any]:
    """An attempt without its lease (the lease is a secret of its holder)."""
    return {
        "id": row["id"], "run_id": row["run_id"], "number": row["number"],
        "host_id": row["host_id"], "active": bool(row["active"]),
        "claimed_at": iso(row["claimed_at"]), "running_at": iso(row.get("running_at")),
        "ended_at": iso(row.get("ended_at")),
        "lease_expires_at": iso(row["lease_expires_at"]) if row["active"] else None,
        "termination_reason": row.get("termination_reason"),
        "exit_code": row.get("exit_code"), "details": json_safe(row.get("details")),
        "external_id": row.get("external_id"), "nodes": json_safe(row.get("nodes")),
        "workdir": row.get("workdir"),
    }


def event_out(row: Row) -> dict[str, Any]:
    return {
        "id": row.get("id"), "seq": row["seq"], "run_id": row["run_id"],
        "attempt": row["attempt"], "at": iso(row["at"]), "kind": row["kind"],
        "status": row["status"], "actor": row["actor"], "details": json_safe(row["details"]),
    }


def worker_out(row: Row, stale_after_s: float, now: float) -> dict[str, Any]:
    return {
        "host_id": row["host_id"], "hostname": row["hostname"],
        "capabilities": json_safe(row["capabilities"]), "has_cuda": bool(row["has_cuda"]),
        # The kind of agent (docs/executors.md); registered before executors: local.
        "executor": _executor_of(row["capabilities"]),
        "slots": row["slots"], "drained": bool(row["drained"]),
        "registered_at": iso(row["registered_at"]), "last_seen_at": iso(row["last_seen_at"]),
        "alive": now - row["last_seen_at"] <= stale_after_s,
        "active_attempts": int(row.get("active_attempts") or 0),
        "token_name": row.get("token_name"),
        "policy": None if row.get("allow") is None else {
            "allow": row["allow"], "deny": row["deny"], "slots": row.get("policy_slots"),
            "labels": row.get("policy_labels")},
    }


def _executor_of(caps: Any) -> str:
    value = caps.get("executor") if isinstance(caps, dict) else None
    return value if isinstance(value, str) else "local"


def items(rows: Iterable[Row], fn: Any) -> list[dict[str, Any]]:
    return [fn(r) for r in rows]
