"""Runs: submit, list, read, stop/checkpoint/restart/cancel/requeue/delete, events, progress,
explain."""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import JSONResponse

from runyard import errors, local, models, submission
from runyard.models import Status
from runyard.server import auth, query, schemas, serialize
from runyard.server.auth import Principal
from runyard.server.bodies import (
    EditRequest,
    Empty,
    RestartRequest,
    RunRequest,
    StopRequest,
    ValidateRequest,
)
from runyard.server.progress import progress_out
from runyard.server.state import ServerState, get_state
from runyard.store import keyset, runlist, schema
from runyard.store.base import RunFilter

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/runs", tags=["runs"])

#: Fields a listing may select (``fields=id,name``).
LISTABLE = frozenset(c for c in schema.runs.c.keys()) - {"event_seq", "budget_start", "no_retry",
                                                         "rules"}
MAX_LIMIT = 1000


def submit_request(body: RunRequest) -> tuple[dict[str, Any], str | None]:
    """The queue's request dict (unset fields left out) and the local host id."""
    req = body.model_dump(exclude_unset=True)
    host_id = req.pop("host_id", None)
    return req, host_id


def run_detail(state: ServerState, run: dict[str, Any], who: Principal) -> dict[str, Any]:
    out = serialize.run_out(run)
    if not auth.may_see_env(who, run):
        serialize.hide_env(out)
    prog = progress_out(state.store, run)
    out["progress"] = None if prog["snapshot"] is None else {
        **prog["snapshot"], "eta_seconds": prog["eta_seconds"], "stalled": prog["stalled"]}
    out["stalled"] = prog["stalled"]
    out["attempts"] = [serialize.attempt_out(a) for a in state.store.list_attempts(run["id"])]
    out["rules"] = serialize.json_safe(state.rules.describe(run))
    for rule in out["rules"]:  # the hit's time is stored as UNIX seconds: ISO here
        hit = rule.get("last_hit")
        if isinstance(hit, dict) and isinstance(hit.get("at"), int | float):
            hit["at"] = serialize.iso(float(hit["at"]))
    # Where the latest attempt runs, as its executor recorded it (a Slurm job id, nodes).
    latest = out["attempts"][-1] if out["attempts"] else {}
    out["external_id"] = latest.get("external_id")
    out["nodes"] = latest.get("nodes")
    if run["status"] == Status.QUEUED.value:
        out["explain"] = state.queue.explain(run["id"])
    return out


@router.post("", status_code=201, **schemas.doc(schemas.Run | schemas.LocalStart, 201))
def submit(body: RunRequest, who: Principal = Depends(auth.user),
           state: ServerState = Depends(get_state)) -> dict[str, Any]:
    """Queue a run (or, with ``executor: "local"``, start one held by the caller)."""
    req, host_id = submit_request(body)
    if req.get("job_key") is not None and not who.is_operator:
        # A run holding a manifest job's key is that job to every later reload: a user could
        # otherwise queue any command under the key of a job the operator has yet to load.
        raise errors.Forbidden(f"job_key: token {who.name!r} ({who.role.value}) may not set "
                               "it; manifest jobs are queued by operators", field="job_key")
    if req.get("executor") == "local":
        host = "local" if host_id is None else host_id
        claim = state.queue.start_local(req, host_id=host, actor=who.name, owner=who.name,
                                        workdir=req.get("workdir"))
        return {"run": serialize.run_out(claim.run),
                "attempt": {"id": claim.attempt_id, "number": claim.attempt},
                "lease": claim.lease, "lease_expires_at": serialize.iso(claim.lease_expires_at)}
    run, _created = state.queue.submit(req, actor=who.name, owner=who.name)
    return serialize.run_out(run)


@router.post("/validate", **schemas.doc(schemas.ConfigValid))
def validate(body: ValidateRequest, who: Principal = Depends(auth.user),
             state: ServerState = Depends(get_state)) -> dict[str, Any]:
    """Check a config against a blueprint's schema; 422 lists every violation."""
    bp = _blueprint(state, body.blueprint)
    submission.validate_config(bp.get("config_schema"), body.config)
    return {"valid": True, "blueprint": body.blueprint}


def _blueprint(state: ServerState, name: str) -> dict[str, Any]:
    with state.store.transaction() as tx:
        bp = tx.get_blueprint(name)
    if bp is None:
        raise errors.ValidationError(f"blueprint: no blueprint named {name!r}", field="blueprint")
    return bp


@router.get("", **schemas.doc(schemas.RunPage))
def list_runs(
    id: list[str] | None = Query(None, description="run ids (repeat for several)"),
    id_prefix: str | None = Query(None, description="the start of the run id (hex digits)"),
    status: list[str] | None = Query(None, description="statuses (repeat or comma-separate)"),
    project: list[str] | None = Query(None),
    name_like: list[str] | None = Query(None, description="SQL ILIKE patterns (any matches)"),
    version: list[str] | None = Query(None),
    blueprint: list[str] | None = Query(None),
    owner: list[str] | None = Query(None),
    host: list[str] | None = Query(None),
    tag: list[str] | None = Query(None, description="tags (a run must carry every one)"),
    label: list[str] | None = Query(None, description="required labels k=v (every one)"),
    created_after: str | None = None,
    created_before: str | None = None,
    after_id: str | None = None,
    cursor: str | None = Query(None, description="next_cursor of the previous page"),
    limit: int = Query(50, ge=1, le=MAX_LIMIT),
    sort: list[str] | None = Query(None, description="key:asc|desc, repeated (default "
                                                     "created_at:desc); ties by id"),
    fields: str | None = Query(None, description="comma-separated columns"),
    who: Principal = Depends(auth.viewer),
    state: ServerState = Depends(get_state),
) -> JSONResponse:
    """Runs matching every filter given (several values of one: any of them), one keyset
    page at a time in the order of ``sort``; ``next_cursor`` continues it."""
    statuses = tuple(models.Status.parse(s).value
                     for s in query.values(status, "status", split=True))
    cols: list[str] | None = None
    if fields:
        cols = [f.strip() for f in fields.split(",") if f.strip()]
        for f in cols:
            if f not in LISTABLE:
                raise errors.ValidationError(f"fields: unknown field {f!r}", field="fields")
    keys = runlist.parse_sort(sort)
    if cursor and after_id:
        raise errors.ValidationError("cursor: give cursor or after_id, not both", field="cursor")
    position = runlist.decode_cursor(cursor, keys) if cursor else None
    patterns = query.values(name_like, "name_like")
    for p in patterns:
        if (len(p) - len(p.rstrip("\\"))) % 2:
            raise errors.ValidationError(f"name_like: {p!r} ends with a lone escape "
                                         "character (write \\\\ for a backslash)",
                                         field="name_like")
    if id_prefix is not None and not re.fullmatch(r"[0-9a-f]{1,40}", id_prefix):
        raise errors.ValidationError("id_prefix: expected 1-40 lowercase hex digits",
                                     field="id_prefix")
    filt = RunFilter(
        status=statuses, ids=query.values(id, "id"), id_prefix=id_prefix or None,
        projects=query.values(project, "project"),
        name_likes=patterns, versions=query.values(version, "version"),
        blueprints=query.values(blueprint, "blueprint"), owners=query.values(owner, "owner"),
        host_ids=query.values(host, "host"), tags=query.values(tag, "tag"),
        labels=_labels(query.values(label, "label")),
        created_after=serialize.parse_time(created_after, "created_after"),
        created_before=serialize.parse_time(created_before, "created_before"))
    # Whether env values may be shown depends on the run's owner: read it along.
    read = cols + ["owner"] if cols and "env" in cols and "owner" not in cols else cols
    rows = state.store.list_runs(
        filt, after_id=after_id or None, limit=limit + 1, sort=keyset.sort_text(keys),
        fields=read, after=None if position is None else position.values)
    more = len(rows) > limit
    rows = rows[:limit]
    items = [serialize.run_out(r) if auth.may_see_env(who, r)
             else serialize.hide_env(serialize.run_out(r)) for r in rows]
    if cols:
        items = [{k: v for k, v in item.items() if k in cols} for item in items]
    last = rows[-1] if more else None
    # Already JSON-safe (serialize.run_out): FastAPI's recursive re-encoding of a page would
    # cost more than the query that read it.
    return JSONResponse({
        "items": items, "next_after_id": None if last is None else last["id"],
        "next_cursor": None if last is None else keyset.encode_cursor(keys, last)})


def _labels(pairs: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    out = []
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise errors.ValidationError(f"label: expected key=value, got {pair!r}",
                                         field="label")
        out.append((key, value))
    return tuple(out)


@router.get("/{run_id}", **schemas.doc(schemas.RunDetail))
def get_run(run_id: str, who: Principal = Depends(auth.viewer),
            state: ServerState = Depends(get_state)) -> dict[str, Any]:
    return run_detail(state, state.run_or_404(run_id), who)


@router.patch("/{run_id}", **schemas.doc(schemas.Run))
def edit(run_id: str, body: EditRequest, who: Principal = Depends(auth.user),
         state: ServerState = Depends(get_state)) -> dict[str, Any]:
    """Change the run's ``name``, ``notes`` or ``tags`` (its owner or an operator); recorded as
    an ``edited`` event."""
    auth.check_owner(who, state.run_or_404(run_id), "edit")
    run = state.queue.edit(run_id, body.model_dump(exclude_unset=True), actor=who.name)
    out = serialize.run_out(run)
    return out if auth.may_see_env(who, run) else serialize.hide_env(out)


@router.post("/{run_id}/stop", **schemas.doc(schemas.Run))
def stop(run_id: str, body: StopRequest | None = None, who: Principal = Depends(auth.user),
         state: ServerState = Depends(get_state)) -> dict[str, Any]:
    auth.check_owner(who, state.run_or_404(run_id), "stop")
    grace = body.grace_seconds if body else 30.0
    return serialize.run_out(state.queue.stop(run_id, grace_s=grace, actor=who.name))


@router.post("/{run_id}/checkpoint", **schemas.doc(schemas.Run))
def checkpoint(run_id: str, body: Empty | None = None, who: Principal = Depends(auth.user),
               state: ServerState = Depends(get_state)) -> dict[str, Any]:
    """Ask a running run's training loop to save a checkpoint (409 unless it is running)."""
    auth.check_owner(who, state.run_or_404(run_id), "request a checkpoint of")
    return serialize.run_out(state.queue.request_checkpoint(run_id, actor=who.name))


@router.post("/{run_id}/restart", **schemas.doc(schemas.Run))
def restart(run_id: str, body: RestartRequest | None = None,
            who: Principal = Depends(auth.user),
            state: ServerState = Depends(get_state)) -> dict[str, Any]:
    auth.check_owner(who, state.run_or_404(run_id), "restart")
    body = body or RestartRequest()
    return serialize.run_out(state.queue.restart(run_id, constraints=body.resources,
                                                 grace_s=body.grace_seconds, actor=who.name))


@router.post("/{run_id}/cancel", **schemas.doc(schemas.Run))
def cancel(run_id: str, body: Empty | None = None, who: Principal = Depends(auth.operator),
           state: ServerState = Depends(get_state)) -> dict[str, Any]:
    return serialize.run_out(state.queue.cancel(run_id, actor=who.name))


@router.post("/{run_id}/requeue", **schemas.doc(schemas.Run))
def requeue(run_id: str, body: Empty | None = None, who: Principal = Depends(auth.operator),
            state: ServerState = Depends(get_state)) -> dict[str, Any]:
    return serialize.run_out(state.queue.requeue(run_id, actor=who.name))


@router.delete("/{run_id}", status_code=204)
def delete(run_id: str, who: Principal = Depends(auth.user),
           state: ServerState = Depends(get_state)) -> Response:
    """Remove an ended run, its metrics, logs, index rows, blobs nobody else uses, and its
    own folder under the server's data directory (a local run's files). Operators delete
    any run; a user its own local runs (403 otherwise); an active run is 409."""
    from runyard.server.blobs import remove_blobs

    auth.check_delete(who, state.run_or_404(run_id))
    orphans = state.queue.delete(run_id, actor=who.name)
    remove_blobs(state, orphans)
    local.remove_local_run(state.settings.data_dir, run_id)
    return Response(status_code=204)


@router.get("/{run_id}/events", **schemas.doc(schemas.EventPage))
def events(run_id: str, after_seq: int = Query(0, ge=0, le=models.INT64_MAX),
           limit: int = Query(100, ge=1, le=1000),
           order: str = Query("asc", pattern="^(asc|desc)$"),
           who: Principal = Depends(auth.viewer),
           state: ServerState = Depends(get_state)) -> dict[str, Any]:
    """A run's events; ``next_after_seq`` continues an ascending read (tail with it)."""
    state.run_or_404(run_id)
    rows = state.store.list_events(run_id, after_seq=after_seq, limit=limit, order=order)
    nxt: int | None
    if order == "asc":
        nxt = rows[-1]["seq"] if rows else after_seq
    else:
        nxt = None
    return {"items": [serialize.event_out(r) for r in rows], "next_after_seq": nxt}


@router.get("/{run_id}/progress")
def progress(run_id: str, who: Principal = Depends(auth.viewer),
             state: ServerState = Depends(get_state)) -> dict[str, Any]:
    return progress_out(state.store, state.run_or_404(run_id))


@router.get("/{run_id}/explain")
def explain(run_id: str, who: Principal = Depends(auth.viewer),
            state: ServerState = Depends(get_state)) -> dict[str, Any]:
    return state.queue.explain(run_id)
