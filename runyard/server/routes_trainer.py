"""``POST /v1/attempts/{id}/trainer-status``: Kubeflow Trainer's progress push (KEP-2779),
so training code written for it reports to Runyard unchanged (docs/progress-protocol.md).

The training process posts with the attempt's own credential (the file named by
``KUBEFLOW_TRAINER_STATUS_TOKEN``) and no lease: the server knows the attempt's. What it
sends becomes the run's progress snapshot and metric points exactly as a v1 snapshot would
(:func:`runyard.progress.kubeflow.from_trainer_status`); a metric that is not a number is a
warning event, once per attempt and name. The push does not renew the lease: only the
attempt's supervisor keeps the attempt alive.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any

import pydantic
from fastapi import APIRouter, Depends
from fastapi.exceptions import RequestValidationError

from runyard import errors
from runyard.progress import kubeflow
from runyard.server import auth, schemas
from runyard.server.auth import Principal
from runyard.server.bodies import TrainerStatusRequest, inline_schema, json_body
from runyard.server.routes_workers import WARNING_MAX, snapshot_problem
from runyard.server.state import ServerState, get_state
from runyard.store.base import Row

router = APIRouter(tags=["workers"])

#: The body as documented; it is read with :func:`json_body`, whatever its Content-Type
#: (Kubeflow's own example posts with urllib's default, a form type).
_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": inline_schema(TrainerStatusRequest)}}}}


class _Warned:
    """(attempt, key) pairs already warned about, so a trainer that posts a non-numeric
    metric every few seconds leaves one warning event, not thousands. Bounded, per server
    process (another replica may warn once more)."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._lock = threading.Lock()

    def first(self, attempt_id: str, key: str) -> bool:
        with self._lock:
            if (attempt_id, key) in self._seen:
                return False
            self._seen[(attempt_id, key)] = None
            if len(self._seen) > self.size:
                self._seen.popitem(last=False)
            return True


_warned = _Warned()


def _parse(data: Any) -> TrainerStatusRequest:
    """The body, or a 422 naming the field (as for any other body)."""
    try:
        return TrainerStatusRequest.model_validate(data)
    except pydantic.ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None


def _active(state: ServerState, attempt_id: str) -> tuple[Row, Row]:
    """The attempt and its run while the attempt is the run's current, active one: 404 for
    no such attempt, 409 for one that ended (an attempt's credential ends with it: 401)."""
    found = state.store.get_attempt_and_run(attempt_id)
    att, run = found if found is not None else (None, None)
    if att is None or run is None:
        raise errors.NotFound(f"no attempt {attempt_id!r}")
    if not att["active"] or run["attempt_id"] != attempt_id:
        raise errors.LeaseConflict(f"attempt {attempt_id} of run {run['id']} is no longer "
                                   f"active; the run is {run['status']}")
    return run, att


def _prior(state: ServerState, run: Row, number: int) -> dict[str, Any] | None:
    """The run's latest snapshot when the same attempt sent it (its step stands)."""
    for row in state.store.iter_progress(run["id"], 1):
        snap = row.get("snapshot")
        if row.get("attempt") == number and isinstance(snap, dict):
            return snap
    return None


@router.post("/v1/attempts/{attempt_id}/trainer-status", openapi_extra=_BODY,
             **schemas.doc(schemas.TrainerStatusAnswer))
def trainer_status(attempt_id: str, data: Any = Depends(json_body),
                   who: Principal = Depends(auth.trainer),
                   state: ServerState = Depends(get_state)) -> dict[str, Any]:
    """Take a Kubeflow ``trainerStatus`` as the run's progress and metrics; the answer lists
    what was left out (each also a warning event, once per attempt)."""
    auth.check_attempt(who, attempt_id)
    body = _parse(data)
    run, att = _active(state, attempt_id)
    number = att["number"]
    mapped = kubeflow.from_trainer_status(
        body.trainerStatus.model_dump(exclude_none=True), now=time.time(),
        prior=_prior(state, run, number))
    problem = snapshot_problem(mapped.snapshot)
    if problem:
        raise errors.ValidationError(f"trainerStatus: {problem}", field="trainerStatus")
    problems = dict(mapped.problems)
    rows = mapped.rows()
    if rows:
        try:
            state.rules.ingest_metrics(run, number, [], rows)
            state.metrics.metric_points.inc(len(rows[0][2]))
        except errors.ValidationError as exc:  # the run's tag cap: the progress still counts
            problems["<metrics>"] = f"trainer status metrics not stored: {exc.message}"
    state.queue.record_progress(attempt_id, att["lease"], mapped.snapshot, renew_lease=False)
    for key, text in problems.items():
        if _warned.first(attempt_id, key):
            state.queue.add_event(run["id"], "warning",
                                  {"message": text[:WARNING_MAX], "attempt": number},
                                  actor=who.name)
    return {"warnings": [text[:WARNING_MAX] for text in problems.values()]}
