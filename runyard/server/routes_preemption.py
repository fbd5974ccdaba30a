"""Preemption and resumption: ``POST /v1/runs/{id}/preempt`` gives an active run's slot back
(its process saves a checkpoint on the stop and the run is requeued, docs/lifecycle.md), and
``GET /v1/attempts/{id}/resume`` hands the next attempt the checkpoint to start from."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Header, Response
from fastapi.responses import StreamingResponse

from runyard import errors, models
from runyard.server import auth, serialize
from runyard.server.auth import Principal
from runyard.server.bodies import StopRequest
from runyard.server.state import ServerState, get_state
from runyard.store.base import Row

router = APIRouter(tags=["runs"])


@router.post("/v1/runs/{run_id}/preempt")
def preempt(run_id: str, body: StopRequest | None = None,
            who: Principal = Depends(auth.operator),
            state: ServerState = Depends(get_state)) -> dict[str, Any]:
    """Stop an active agent run within ``grace_seconds`` and requeue it: its attempt ends
    ``preempted`` whatever its exit, never counted as an error. 409 for a run that is not
    active or was started by hand (nothing could run it again)."""
    state.run_or_404(run_id)
    grace = body.grace_seconds if body else 30.0
    return serialize.run_out(state.queue.preempt(run_id, grace_s=grace, actor=who.name))


def resume_checkpoint(checkpoints: list[Row], before_attempt: int) -> Row | None:
    """The checkpoint a new attempt starts from: of the complete checkpoints (with a blob)
    that earlier attempts recorded, the latest attempt's highest step."""
    usable = [c for c in checkpoints if c["status"] == "complete" and c.get("sha256")
              and int(c["attempt"]) < before_attempt]
    return max(usable, key=lambda c: (int(c["attempt"]), int(c["step"]), int(c["id"])),
               default=None)


@router.get("/v1/attempts/{attempt_id}/resume", response_class=StreamingResponse,
            responses={200: {"content": {"application/octet-stream": {}}},
                       204: {"description": "no earlier attempt left a checkpoint"}})
def resume(attempt_id: str,
           x_runyard_lease: str = Header(..., alias="X-Runyard-Lease"),
           who: Principal = Depends(auth.lease_holder),
           state: ServerState = Depends(get_state)) -> Response:
    """The blob of the checkpoint this attempt resumes from, with its name, step and
    attempt in ``X-Runyard-Checkpoint-*`` headers (the name percent-encoded); 204 when
    there is none."""
    att0 = state.store.get_attempt(attempt_id)
    if att0 is None:
        raise errors.NotFound(f"no attempt {attempt_id!r}")
    if who.role is models.Role.USER:
        auth.check_owner(who, state.run_or_404(att0["run_id"]), "resume")
    run, att = state.check_lease(attempt_id, x_runyard_lease)
    found = resume_checkpoint(state.store.list_checkpoints(run["id"]), int(att["number"]))
    if found is None:
        return Response(status_code=204)
    sha = str(found["sha256"])
    size = state.blobs.size(sha)  # 404 when retention removed it meanwhile
    name = str(found.get("name") or f"checkpoint-{found['step']}")
    return StreamingResponse(state.blobs.iter_chunks(sha),
                             media_type="application/octet-stream",
                             headers={"Content-Length": str(size), "X-Content-SHA256": sha,
                                      "X-Runyard-Checkpoint-Name": quote(name, safe="/"),
                                      "X-Runyard-Checkpoint-Step": str(found["step"]),
                                      "X-Runyard-Checkpoint-Attempt": str(found["attempt"])})
