"""The worker side: claim, and the leased attempt calls; plus the workers listing."""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi import APIRouter, Depends, Response

from runyard import defaults, errors, models, placement
from runyard.progress import snapshot as snapshot_types
from runyard.server import auth, schemas, serialize
from runyard.server.auth import Principal
from runyard.server.bodies import (
    ClaimRequest,
    CompleteRequest,
    FailRequest,
    HeartbeatRequest,
    LogsRequest,
    PlacementRequest,
    ProgressRequest,
)
from runyard.server.state import ServerState, get_state
from runyard.store.base import RunFilter

router = APIRouter(tags=["workers"])

ACTIVE = tuple(s.value for s in models.ACTIVE)
#: Longest warning kept as an event, in characters.
WARNING_MAX = 2000


@router.post("/v1/workers/claim", **schemas.doc(
    schemas.Claim, more={204: {"description": "nothing eligible"}}))
def claim(body: ClaimRequest, who: Principal = Depends(auth.worker),
          state: ServerState = Depends(get_state)) -> Any:
    """Register or refresh the worker from its capabilities, then claim its best run."""
    started = time.perf_counter()
    models.validate_host_id(body.host_id, "host_id")
    caps_in = dict(body.capabilities)
    if caps_in.setdefault("host_id", body.host_id) != body.host_id:
        raise errors.ValidationError(
            "capabilities.host_id: differs from host_id", field="capabilities.host_id")
    caps = models.Capabilities.from_dict(caps_in)
    worker_token = who.role is models.Role.WORKER
    if worker_token and who.hosts is not None:  # known bound: refused without the database
        auth.check_host(who, body.host_id, lambda: None)
    state.queue.fleet.register(caps, token_name=who.name, worker_token=worker_token,
                               bound=who.hosts)
    got = state.queue.claim(body.host_id, free_slots=body.free_slots, actor=who.name)
    state.metrics.claim_latency.observe(time.perf_counter() - started)
    state.metrics.claims.labels("claimed" if got else "empty").inc()
    if got is None:
        return Response(status_code=204)
    run = state.store.get_run(got.run["id"]) or got.run
    return {
        "run": serialize.run_out(run),
        "attempt": {"id": got.attempt_id, "number": got.attempt},
        "lease": got.lease, "lease_expires_at": serialize.iso(got.lease_expires_at),
        "command": run.get("command"), "env": run.get("env") or {},
        "config": serialize.json_safe(run.get("config") or {}),
        "probe_interval_s": run.get("probe_interval_s"),
        "stall_after_s": run.get("stall_after_s"), "seed": run.get("seed"),
        # Scoped to this attempt alone (docs/security.md): what an executor hands to the
        # supervisor on a compute node instead of the worker token.
        "attempt_token": got.attempt_token,
    }


def _attempt_owner(state: ServerState, who: Principal, attempt_id: str, what: str) -> None:
    """Users may hold leases of their own local runs, an attempt's credential its own
    attempt's; the lease itself is checked later."""
    auth.check_attempt(who, attempt_id)
    if who.role is models.Role.USER:
        att = state.store.get_attempt(attempt_id)
        if att is None:
            raise errors.NotFound(f"no attempt {attempt_id!r}")
        auth.check_owner(who, state.run_or_404(att["run_id"]), what)


@router.post("/v1/attempts/{attempt_id}/heartbeat", **schemas.doc(schemas.StopOrder))
def heartbeat(attempt_id: str, body: HeartbeatRequest,
              who: Principal = Depends(auth.lease_holder),
              state: ServerState = Depends(get_state)) -> dict[str, Any]:
    _attempt_owner(state, who, attempt_id, "heartbeat for")
    if who.role is models.Role.WORKER:
        # A worker token keeps alive only the attempts of hosts it may act as.
        att = state.store.get_attempt(attempt_id)
        if att is not None:
            auth.check_host(who, att["host_id"], lambda: state.store.get_token(who.name))
    order = state.queue.heartbeat(attempt_id, body.lease, running=body.running, actor=who.name)
    return {"lease_expires_at": serialize.iso(order.lease_expires_at), "stop": order.stop,
            "intent": order.intent, "grace_s": order.grace_s, "checkpoint": order.checkpoint,
            "checkpoint_requested_at": serialize.iso(order.checkpoint_requested_at)}


def snapshot_problem(snapshot: dict[str, Any]) -> str | None:
    """Why a snapshot breaks the protocol's bounds or types (docs/progress-protocol.md), or
    None. Viewers' browsers render what is kept, so a field of the wrong type (an object for
    ``message``) is never kept."""
    size = len(json.dumps(snapshot, default=str).encode())
    if size > defaults.SNAPSHOT_MAX_BYTES:
        return f"snapshot of {size} bytes exceeds {defaults.SNAPSHOT_MAX_BYTES}"
    wrong = snapshot_types.check_types(snapshot)
    if wrong:
        return "; ".join(wrong)
    metrics = snapshot.get("metrics")
    if metrics:
        if len(metrics) > defaults.SNAPSHOT_MAX_METRICS:
            return f"snapshot has {len(metrics)} metrics, at most " \
                   f"{defaults.SNAPSHOT_MAX_METRICS} allowed"
        long = [k for k in metrics if len(k) > defaults.METRIC_NAME_MAX]
        if long:
            return f"snapshot metric name {long[0][:80]!r} is longer than " \
                   f"{defaults.METRIC_NAME_MAX} characters"
    return None


@router.post("/v1/attempts/{attempt_id}/progress", **schemas.doc(schemas.Accepted))
def progress(attempt_id: str, body: ProgressRequest,
             who: Principal = Depends(auth.lease_holder),
             state: ServerState = Depends(get_state)) -> dict[str, Any]:
    """Keep the snapshot (an out-of-bounds one becomes a warning); warnings become events."""
    _attempt_owner(state, who, attempt_id, "report progress for")
    run, att = state.check_lease(attempt_id, body.lease)
    warnings = [w[:WARNING_MAX] for w in body.warnings]
    if body.snapshot is not None:
        problem = snapshot_problem(body.snapshot)
        if problem:
            warnings.append(f"progress snapshot rejected: {problem}")
        else:
            state.queue.record_progress(attempt_id, body.lease, body.snapshot)
    for text in warnings:
        state.queue.add_event(run["id"], "warning", {"message": text, "attempt": att["number"]},
                              actor=who.name)
    return {}


@router.post("/v1/attempts/{attempt_id}/logs", **schemas.doc(schemas.Accepted))
def logs(attempt_id: str, body: LogsRequest, who: Principal = Depends(auth.lease_holder),
         state: ServerState = Depends(get_state)) -> dict[str, Any]:
    """Append log chunks; idempotent by (attempt, stream, offset)."""
    _attempt_owner(state, who, attempt_id, "send logs for")
    run, att = state.check_lease(attempt_id, body.lease)
    if body.chunks:
        chunks = [c.model_dump() for c in body.chunks]
        state.store.add_log_chunks(run["id"], att["number"], chunks, at=time.time())
        state.rules.on_logs(run, att["number"], chunks)
    return {}


@router.post("/v1/attempts/{attempt_id}/placement")
def set_placement(attempt_id: str, body: PlacementRequest,
                  who: Principal = Depends(auth.lease_holder),
                  state: ServerState = Depends(get_state)) -> dict[str, Any]:
    """Where the executor placed the attempt: its job id, nodes and work directory, and where
    the run's artifact files are (docs/executors.md)."""
    _attempt_owner(state, who, attempt_id, "record the placement of")
    return placement.record(state.queue, attempt_id, body.lease, external_id=body.external_id,
                            nodes=body.nodes, workdir=body.workdir,
                            artifact_store=body.artifact_store, actor=who.name)


@router.post("/v1/attempts/{attempt_id}/complete", **schemas.doc(schemas.Run))
def complete(attempt_id: str, body: CompleteRequest,
             who: Principal = Depends(auth.lease_holder),
             state: ServerState = Depends(get_state)) -> dict[str, Any]:
    _attempt_owner(state, who, attempt_id, "complete")
    run = state.queue.complete(attempt_id, body.lease, exit_code=body.exit_code,
                               details=body.details, actor=who.name)
    return serialize.run_out(run)


@router.post("/v1/attempts/{attempt_id}/fail", **schemas.doc(schemas.Run))
def fail(attempt_id: str, body: FailRequest, who: Principal = Depends(auth.lease_holder),
         state: ServerState = Depends(get_state)) -> dict[str, Any]:
    _attempt_owner(state, who, attempt_id, "fail")
    run = state.queue.fail(attempt_id, body.lease, reason=body.reason, exit_code=body.exit_code,
                           stderr_tail=body.stderr_tail, details=body.details,
                           no_retry=body.no_retry, actor=who.name)
    return serialize.run_out(run)


@router.get("/v1/workers", **schemas.doc(schemas.WorkerPage))
def list_workers(who: Principal = Depends(auth.viewer),
                 state: ServerState = Depends(get_state)) -> dict[str, Any]:
    """Workers with capabilities, last heartbeat, liveness and their current runs."""
    now = time.time()
    items = []
    for w in state.store.list_workers():
        out = serialize.worker_out(w, state.settings.stale_after_s, now)
        current = state.store.list_runs(RunFilter(status=ACTIVE, host_ids=(w["host_id"],)),
                                        limit=100, fields=["id", "name", "status", "attempt"])
        # Where an executor placed them (a Slurm job id, its nodes): one read per worker
        # that has any to show.
        placed = {a["run_id"]: a for a in state.store.active_attempts_of(w["host_id"])} \
            if out["executor"] != "local" and current else {}
        out["current"] = [{"run_id": r["id"], "name": r["name"], "status": r["status"],
                           "attempt": r["attempt"],
                           "external_id": placed.get(r["id"], {}).get("external_id"),
                           "nodes": placed.get(r["id"], {}).get("nodes")} for r in current]
        items.append(out)
    return {"items": items, "next_after_id": None}


@router.post("/v1/workers/{host_id}/drain", **schemas.doc(schemas.Drained))
def drain(host_id: str, who: Principal = Depends(auth.operator),
          state: ServerState = Depends(get_state)) -> dict[str, Any]:
    state.queue.fleet.set_drained(host_id, True)
    return {"host_id": host_id, "drained": True}


@router.post("/v1/workers/{host_id}/resume", **schemas.doc(schemas.Drained))
def resume(host_id: str, who: Principal = Depends(auth.operator),
           state: ServerState = Depends(get_state)) -> dict[str, Any]:
    state.queue.fleet.set_drained(host_id, False)
    return {"host_id": host_id, "drained": False}


@router.delete("/v1/workers/{host_id}", **schemas.doc(schemas.Deleted))
def delete_worker(host_id: str, who: Principal = Depends(auth.operator),
                  state: ServerState = Depends(get_state)) -> dict[str, Any]:
    """Forget a worker (409 while it holds active attempts); it registers again on its next
    claim."""
    state.queue.fleet.remove(host_id)
    return {"host_id": host_id, "deleted": True}
