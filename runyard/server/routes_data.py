"""The data plane: metrics, logs, checkpoints, artifacts and blobs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse

from runyard import archiving, errors, models
from runyard.artifacts import validate_artifact_name, validate_sha256
from runyard.defaults import MAX_TAGS_PER_RUN
from runyard.server import auth, query, retention, serialize
from runyard.server.auth import Principal
from runyard.server.blobs import put_stream
from runyard.server.bodies import (
    CheckpointRequest,
    MetricsRequest,
    inline_schema,
    json_body,
    metric_batch,
    point_count,
)
from runyard.server.state import ServerState, get_state
from runyard.store import keyset
from runyard.store.blobs import CHECKPOINT_SORT, CHECKPOINT_SORTABLE, CHECKPOINT_STATUSES
from runyard.store.schema import checkpoints, metric_points

router = APIRouter(tags=["data"])

ARTIFACT_KINDS = ("file", "bundle", "checkpoint")
MAX_SERIES_POINTS = 10_000


def _holder(state: ServerState, who: Principal, run_id: str, what: str) -> None:
    if who.role is models.Role.USER:
        auth.check_owner(who, state.run_or_404(run_id), what)


# --------------------------------------------------------------------------- metrics


_METRICS_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": inline_schema(MetricsRequest)}}}}


@router.post("/v1/runs/{run_id}/metrics", openapi_extra=_METRICS_BODY)
def post_metrics(run_id: str, who: Principal = Depends(auth.lease_holder),
                 data: Any = Depends(json_body),
                 state: ServerState = Depends(get_state)) -> dict[str, Any]:
    """A batch of points (the :class:`MetricsRequest` shape); re-sending the same (attempt,
    tag, step) changes nothing.

    Served by :mod:`runyard.server.hotpath` in front of FastAPI (this route documents it in
    the OpenAPI schema and both call :func:`ingest_metrics`).
    """
    return ingest_metrics(state, who, run_id, data)


def ingest_metrics(state: ServerState, who: Principal, run_id: str, data: Any
                   ) -> dict[str, Any]:
    """Check and store one metrics body for ``who`` (already a lease holder by role); the
    envelope is checked by :func:`~runyard.server.bodies.metric_batch`, the points by the
    store."""
    _holder(state, who, run_id, "send metrics for")
    head, points, rows = metric_batch(data, MetricsRequest)
    auth.check_attempt(who, head.attempt_id, run_id)
    run, att = state.check_lease(head.attempt_id, head.lease, run_id=run_id)
    written = state.rules.ingest_metrics(run, att["number"], points, rows)
    state.metrics.metric_points.inc(point_count(points, rows))
    return {"written": int(written)}


def _point_out(p: dict[str, Any]) -> dict[str, Any]:
    return {"step": p["step"], "tag": p["tag"], "value": serialize.number_out(p["value"]),
            "at": serialize.iso(p.get("at")), "attempt": p.get("attempt")}


@router.get("/v1/runs/{run_id}/metrics")
def get_metrics(run_id: str,
                tag: list[str] | None = Query(None, description="tags (repeat for several)"),
                steps: list[str] | None = Query(None, description="global steps (repeat or "
                                                                  "comma-separate)"),
                created_after: str | None = Query(None, description="points logged after"),
                created_before: str | None = Query(None, description="points logged before"),
                after_step: int | None = Query(None, ge=-1, le=models.INT64_MAX),
                cursor: str | None = Query(None, description="next_cursor of the last page"),
                attempt: int | None = Query(None, ge=1, le=models.INT64_MAX),
                limit: int = Query(1000, ge=1, le=10_000),
                who: Principal = Depends(auth.viewer),
                state: ServerState = Depends(get_state)) -> dict[str, Any]:
    """Points by (tag, step): at each step the newest attempt's point, or with ``attempt``
    that attempt's own points (docs/metrics-and-artifacts.md); ``next_cursor`` continues."""
    state.run_or_404(run_id)
    tags = query.values(tag, "tag")
    if after_step is not None and len(tags) != 1:
        raise errors.ValidationError("after_step: needs exactly one tag (or use cursor)",
                                     field="after_step")
    wanted_steps = tuple(_int_value(v, "steps") for v in query.values(steps, "steps",
                                                                      split=True))
    after = _metrics_cursor(cursor) if cursor else None
    rows = state.store.list_metric_points(
        run_id, tags=tags, steps=wanted_steps, after_step=after_step, attempt=attempt,
        limit=limit, after=after,
        at_after=serialize.parse_time(created_after, "created_after"),
        at_before=serialize.parse_time(created_before, "created_before"))
    full = len(rows) >= limit
    nxt = rows[-1]["step"] if full and len(tags) == 1 else None
    return {"items": [_point_out(r) for r in rows], "next_after_step": nxt,
            "next_cursor": _metrics_cursor_of(rows[-1]) if full else None}


def _int_value(text: str, field: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise errors.ValidationError(f"{field}: expected integers, got {text!r}",
                                     field=field) from None
    if not 0 <= value <= models.INT64_MAX:
        raise errors.ValidationError(f"{field}: {value} is out of range", field=field)
    return value


def _metrics_cursor_of(point: dict[str, Any]) -> str:
    return keyset.encode_cursor(_METRIC_KEYS, point)


def _metrics_cursor(text: str) -> tuple[str, int]:
    pos = keyset.decode_cursor(text, _METRIC_KEYS, metric_points)
    tag, step = pos.values
    return str(tag), int(step)


#: The order of metric listings, as a keyset sort (tag, then step; both unique together).
_METRIC_KEYS = (keyset.SortKey("tag", False), keyset.SortKey("step", False))


@router.get("/v1/runs/{run_id}/metrics/tags")
def metric_tags(run_id: str,
                limit: int = Query(MAX_TAGS_PER_RUN, ge=1, le=MAX_TAGS_PER_RUN),
                after: str | None = Query(None, description="the page after this tag"),
                who: Principal = Depends(auth.viewer),
                state: ServerState = Depends(get_state)) -> dict[str, Any]:
    """A run's tags in tag order, ``limit`` at a time; ``next_after`` is the ``after`` of
    the next page (null on the last)."""
    state.run_or_404(run_id)
    rows = state.store.metric_tags(run_id, after=after, limit=limit + 1)
    nxt = rows[limit - 1]["tag"] if len(rows) > limit else None
    return {"items": [{"tag": r["tag"], "count": r["count"], "last_step": r["last_step"],
                       "last_value": serialize.number_out(r["last_value"])}
                      for r in rows[:limit]],
            "next_after": nxt}


# ``tag:path``: tags may hold slashes (the ``sys/`` metrics), sent as ``%2F`` or plain.
@router.get("/v1/runs/{run_id}/metrics/{tag:path}/series")
def metric_series(run_id: str, tag: str, points: int = Query(500, ge=1, le=MAX_SERIES_POINTS),
                  min_step: int | None = None, max_step: int | None = None,
                  who: Principal = Depends(auth.viewer),
                  state: ServerState = Depends(get_state)) -> dict[str, Any]:
    """Downsampled: the step range first, then ``points`` buckets of min, max and last."""
    state.run_or_404(run_id)
    series = state.store.metric_series(
        run_id, tag, points=points, min_step=min_step, max_step=max_step)
    buckets = series["points"] if isinstance(series, dict) else series
    total = series.get("total") if isinstance(series, dict) else None
    return {"tag": tag, "total": total,
            "points": [{k: serialize.number_out(v) if k in ("min", "max", "last") else v
                        for k, v in b.items()} for b in buckets]}


# --------------------------------------------------------------------------- logs


@router.get("/v1/runs/{run_id}/logs")
def get_logs(run_id: str, attempt: int | None = Query(None, ge=1, le=models.INT64_MAX),
             stream: str = Query("stdout", pattern="^(stdout|stderr)$"),
             offset: int = Query(0, ge=0, le=models.INT64_MAX),
             limit_bytes: int = Query(1 << 16, ge=1, le=16 << 20),
             tail: int | None = Query(None, ge=1, le=1_000_000,
                                      description="the last N lines instead of from offset"),
             who: Principal = Depends(auth.viewer),
             state: ServerState = Depends(get_state)) -> dict[str, Any]:
    """Log text from ``offset``, or its last ``tail`` lines; ``attempt`` defaults to the
    run's latest. Follow with ``offset=next_offset``."""
    state.run_or_404(run_id)
    if tail is not None and offset:
        raise errors.ValidationError("tail: give tail or offset, not both", field="tail")
    out: dict[str, Any] = state.store.read_logs(
        run_id, attempt=attempt, stream=stream, offset=offset, limit_bytes=limit_bytes,
        tail=tail)
    return {"data": out["data"], "offset": out["offset"], "next_offset": out["next_offset"],
            "attempt": out["attempt"], "stream": stream}


# --------------------------------------------------------------------------- checkpoints


def _checkpoint_out(c: dict[str, Any]) -> dict[str, Any]:
    return {"id": c.get("id"), "run_id": c["run_id"], "attempt": c["attempt"],
            "step": c["step"], "status": c["status"], "name": c.get("name"),
            "sha256": c.get("sha256"), "size": c.get("size"),
            "metrics": serialize.json_safe(c.get("metrics") or {}),
            "created_at": serialize.iso(c.get("created_at"))}


@router.get("/v1/runs/{run_id}/checkpoints")
def list_checkpoints(
        run_id: str,
        step: list[str] | None = Query(None, description="steps (repeat or comma-separate)"),
        status: list[str] | None = Query(None, description="incomplete, complete"),
        created_after: str | None = None, created_before: str | None = None,
        sort: list[str] | None = Query(None, description="key:asc|desc of id, step, "
                                                         "attempt, created_at"),
        cursor: str | None = Query(None, description="next_cursor of the last page"),
        limit: int = Query(1000, ge=1, le=10_000),
        who: Principal = Depends(auth.viewer),
        state: ServerState = Depends(get_state)) -> dict[str, Any]:
    """A run's checkpoints, filtered and sorted (default by step); ``next_cursor``
    continues a full page."""
    state.run_or_404(run_id)
    statuses = query.values(status, "status", split=True)
    for s in statuses:
        if s not in CHECKPOINT_STATUSES:
            raise errors.ValidationError(
                f"status: expected incomplete or complete, got {s!r}", field="status")
    keys = keyset.parse_sort(sort, CHECKPOINT_SORTABLE, CHECKPOINT_SORT)
    pos = keyset.decode_cursor(cursor, keys, checkpoints) if cursor else None
    rows = state.store.find_checkpoints(
        run_id, steps=[_int_value(v, "step") for v in query.values(step, "step", split=True)],
        statuses=statuses, sort=keyset.sort_text(keys), limit=limit + 1,
        after=None if pos is None else pos.values,
        created_after=serialize.parse_time(created_after, "created_after"),
        created_before=serialize.parse_time(created_before, "created_before"))
    more = len(rows) > limit
    rows = rows[:limit]
    return {"items": [_checkpoint_out(c) for c in rows],
            "next_cursor": keyset.encode_cursor(keys, rows[-1]) if more else None}


@router.post("/v1/attempts/{attempt_id}/checkpoints", status_code=201)
def post_checkpoint(attempt_id: str, body: CheckpointRequest,
                    who: Principal = Depends(auth.lease_holder),
                    state: ServerState = Depends(get_state)) -> dict[str, Any]:
    """Register a checkpoint; a complete one names an uploaded blob and triggers retention."""
    auth.check_attempt(who, attempt_id)
    att0 = state.store.get_attempt(attempt_id)
    if att0 is None:
        raise errors.NotFound(f"no attempt {attempt_id!r}")
    _holder(state, who, att0["run_id"], "register checkpoints for")
    run, att = state.check_lease(attempt_id, body.lease)
    size = body.size
    if body.name is not None:
        validate_artifact_name(body.name)
    if body.sha256 is not None:
        validate_sha256(body.sha256)
        blob = state.store.get_blob(body.sha256)
        if blob is None:
            raise errors.ValidationError(
                f"sha256: no uploaded blob {body.sha256}; upload it with PUT "
                f"/v1/runs/{run['id']}/artifacts/{{name}} first", field="sha256")
        size = blob["size"] if size is None else size
    elif body.status == "complete":
        raise errors.ValidationError("sha256: a complete checkpoint needs its blob",
                                     field="sha256")
    row = state.store.add_checkpoint(
        run["id"], att["number"], body.step, body.status, name=body.name, sha256=body.sha256,
        size=size, metrics=serialize.json_safe(body.metrics))
    state.queue.checkpoint_recorded(run["id"], att["number"],
                                    {"step": body.step, "status": body.status,
                                     "sha256": body.sha256, "attempt": att["number"]},
                                    actor=who.name)
    deleted = retention.apply(state, run) if body.status == "complete" else []
    out = _checkpoint_out(row)
    out["retention_deleted"] = deleted
    return out


# --------------------------------------------------------------------------- artifacts


def _artifact_out(a: dict[str, Any]) -> dict[str, Any]:
    return {"run_id": a["run_id"], "attempt": a["attempt"], "name": a["name"],
            "kind": a["kind"], "size": a["size"], "sha256": a["sha256"],
            "created_at": serialize.iso(a.get("created_at"))}


@router.get("/v1/runs/{run_id}/artifacts")
def list_artifacts(run_id: str, who: Principal = Depends(auth.viewer),
                   state: ServerState = Depends(get_state)) -> dict[str, Any]:
    state.run_or_404(run_id)
    rows = state.store.list_artifacts(run_id)
    return {"items": [_artifact_out(a) for a in rows]}


@router.put("/v1/runs/{run_id}/artifacts/{name:path}", status_code=201)
async def put_artifact(
    run_id: str, name: str, request: Request,
    attempt_id: str = Query(...),
    kind: str = Query("file", pattern="^(file|bundle|checkpoint)$"),
    x_content_sha256: str = Header(..., alias="X-Content-SHA256"),
    x_runyard_lease: str = Header(..., alias="X-Runyard-Lease"),
    who: Principal = Depends(auth.lease_holder),
    state: ServerState = Depends(get_state),
) -> dict[str, Any]:
    """Stream the body into the blob store, verify it, then index blob and artifact."""
    validate_artifact_name(name)
    sha = validate_sha256(x_content_sha256.strip().lower(), "X-Content-SHA256")
    limit = state.settings.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise errors.TooLarge(f"body: {declared} bytes exceeds the size limit of {limit} bytes")
    import anyio.to_thread

    def fence() -> dict[str, Any]:
        auth.check_attempt(who, attempt_id, run_id)
        _holder(state, who, run_id, "upload artifacts for")
        return state.check_lease(attempt_id, x_runyard_lease, run_id=run_id)[1]

    att = await anyio.to_thread.run_sync(fence)
    info = await put_stream(state, request.stream(), sha, limit)

    def index() -> dict[str, Any]:
        row: dict[str, Any] = state.store.add_artifact(
            run_id, att["number"], name, kind, info.size, info.sha256)
        archiving.record_upload(state.queue, run_id, att["number"], kind,
                                state.blobs.root_url, actor=who.name)
        return row

    row = await anyio.to_thread.run_sync(index)
    return {"name": name, "sha256": info.sha256, "size": info.size,
            "created": serialize.iso(row.get("created_at")), "kind": kind,
            "attempt": att["number"], "blob_created": info.created}


@router.get("/v1/blobs/{sha256}", response_class=StreamingResponse,
            responses={200: {"content": {"application/octet-stream": {}}}})
def get_blob(sha256: str, who: Principal = Depends(auth.viewer),
             state: ServerState = Depends(get_state)) -> StreamingResponse:
    """The blob's bytes, streamed."""
    validate_sha256(sha256)
    size = state.blobs.size(sha256)  # NotFound (404) when absent
    return StreamingResponse(state.blobs.iter_chunks(sha256), media_type="application/octet-stream",
                             headers={"Content-Length": str(size), "ETag": f'"{sha256}"'})
