"""``runyard sync`` uploads: ended local runs, their metric points and checkpoint blobs.

A user may sync runs as itself (it owns them on the server); only synced runs take points and
checkpoints without a lease (:func:`runyard.sync.importer.check_importable`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from pydantic import Field

from runyard import archiving, errors, models
from runyard.artifacts import validate_artifact_name, validate_sha256
from runyard.server import auth, serialize
from runyard.server.auth import Principal
from runyard.server.blobs import put_stream
from runyard.server.bodies import (
    Body,
    ImportMetricsRequest,
    UInt63,
    inline_schema,
    json_body,
    metric_batch,
)
from runyard.server.state import ServerState, get_state
from runyard.sync import importer

router = APIRouter(tags=["sync"])


class ImportRequest(Body):
    """An ended run as recorded locally (see :func:`runyard.sync.importer.import_run`)."""

    run: dict[str, Any]
    attempts: list[dict[str, Any]] = Field(default_factory=list, max_length=1000)
    events: list[dict[str, Any]] = Field(default_factory=list, max_length=100_000)
    #: Where the run was recorded, e.g. ``host:/home/me/.runyard`` (kept in an event).
    origin: str = Field(default="unknown", max_length=400)


class ImportCheckpointRequest(Body):
    attempt: int = Field(ge=1, le=models.INT32_MAX)
    step: UInt63
    status: str = Field(pattern="^(incomplete|complete)$")
    name: str | None = None
    sha256: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)


def _synced_run(state: ServerState, who: Principal, run_id: str) -> dict[str, Any]:
    run = state.run_or_404(run_id)
    auth.check_owner(who, run, "sync")
    importer.check_importable(run)
    return run


@router.post("/v1/runs/import", status_code=201)
def import_run(body: ImportRequest, response: Response, who: Principal = Depends(auth.user),
               state: ServerState = Depends(get_state)) -> dict[str, Any]:
    """Create an ended local run with its id, once: 201 when created, 200 when known."""
    run, created = importer.import_run(state.queue, body.model_dump(), owner=who.name,
                                       origin=body.origin)
    if not created:
        auth.check_owner(who, run, "sync")
        response.status_code = 200
    return {"id": run["id"], "created": created, "run": serialize.run_out(run)}


_IMPORT_METRICS_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": inline_schema(ImportMetricsRequest)}}}}


@router.post("/v1/runs/{run_id}/import/metrics", openapi_extra=_IMPORT_METRICS_BODY)
def import_metrics(run_id: str, who: Principal = Depends(auth.user),
                   data: Any = Depends(json_body),
                   state: ServerState = Depends(get_state)) -> dict[str, Any]:
    """Points of a synced run (the :class:`ImportMetricsRequest` shape, checked as a metrics
    batch is); the same (attempt, tag, step) again changes nothing."""
    _synced_run(state, who, run_id)
    head, points, rows = metric_batch(data, ImportMetricsRequest)
    written = state.store.add_metric_points(run_id, head.attempt, points, rows)
    return {"written": int(written)}


@router.put("/v1/runs/{run_id}/import/artifacts/{name:path}", status_code=201)
async def import_artifact(run_id: str, name: str, request: Request,
                          attempt: int = Query(..., ge=1, le=models.INT32_MAX),
                          kind: str = Query("checkpoint", pattern="^(file|bundle|checkpoint)$"),
                          x_content_sha256: str = Header(..., alias="X-Content-SHA256"),
                          who: Principal = Depends(auth.user),
                          state: ServerState = Depends(get_state)) -> dict[str, Any]:
    """A synced run's blob (a checkpoint file, or its artifact bundle, which archives it),
    verified against its sha256."""
    import anyio.to_thread

    validate_artifact_name(name)
    sha = validate_sha256(x_content_sha256.strip().lower(), "X-Content-SHA256")
    await anyio.to_thread.run_sync(_synced_run, state, who, run_id)
    info = await put_stream(state, request.stream(), sha, state.settings.max_upload_bytes)

    def index() -> dict[str, Any]:
        row: dict[str, Any] = state.store.add_artifact(run_id, attempt, name, kind, info.size,
                                                       info.sha256)
        archiving.record_upload(state.queue, run_id, attempt, kind, state.blobs.root_url,
                                actor=who.name)
        return row

    await anyio.to_thread.run_sync(index)
    return {"name": name, "sha256": info.sha256, "size": info.size}


@router.post("/v1/runs/{run_id}/import/checkpoints", status_code=201)
def import_checkpoint(run_id: str, body: ImportCheckpointRequest,
                      who: Principal = Depends(auth.user),
                      state: ServerState = Depends(get_state)) -> dict[str, Any]:
    """A synced run's checkpoint record; a complete one names a blob uploaded before."""
    _synced_run(state, who, run_id)
    size = None
    if body.sha256 is not None:
        blob = state.store.get_blob(validate_sha256(body.sha256))
        if blob is None:
            raise errors.ValidationError(f"sha256: no uploaded blob {body.sha256}",
                                         field="sha256")
        size = blob["size"]
    elif body.status == "complete":
        raise errors.ValidationError("sha256: a complete checkpoint needs its blob",
                                     field="sha256")
    row = state.store.add_checkpoint(run_id, body.attempt, body.step, body.status,
                                     name=body.name, sha256=body.sha256, size=size,
                                     metrics=serialize.json_safe(body.metrics))
    return {"id": row.get("id"), "step": row["step"], "status": row["status"]}
