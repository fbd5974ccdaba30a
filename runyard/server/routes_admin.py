"""Operators' endpoints: health, tokens, blueprints and the manifest."""

from __future__ import annotations

import json
import time
from typing import Any

import pydantic
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse

from runyard import enrolment, errors, jsonvalues
from runyard.manifest import Blueprint, Manifest, parse_manifest
from runyard.manifest.apply import apply_manifest
from runyard.server import auth, schemas, serialize
from runyard.server.auth import Principal
from runyard.server.bodies import ManifestRequest, TokenRequest
from runyard.server.state import ServerState, get_state

router = APIRouter(tags=["admin"])
#: Largest manifest accepted, in bytes.
MANIFEST_MAX = 4 * 1024 * 1024


@router.get("/v1/health", **schemas.doc(
    schemas.Health, more={503: {"model": schemas.Health, "description": "database unreachable"}}))
def health(state: ServerState = Depends(get_state)) -> Any:
    """Liveness and database reachability (no token needed)."""
    ok = state.store.ping()
    body = {"status": "ok" if ok else "degraded", "database": ok,
            "dialect": state.store.dialect, "time": serialize.iso(time.time())}
    return body if ok else JSONResponse(body, status_code=503)


# --------------------------------------------------------------------------- tokens


def _binding(row: dict[str, Any]) -> dict[str, Any]:
    patterns = enrolment.decode(row.get("hosts"))
    return {"hosts": list(patterns) if patterns is not None else None,
            "max_hosts": row.get("max_hosts")}


def _token_out(row: dict[str, Any]) -> dict[str, Any]:
    return {"name": row["name"], "role": row["role"], **_binding(row),
            "created_at": serialize.iso(row.get("created_at")),
            "last_used_at": serialize.iso(row.get("last_used_at")),
            "revoked_at": serialize.iso(row.get("revoked_at"))}


@router.post("/v1/tokens", status_code=201, **schemas.doc(schemas.TokenCreated, 201))
def create_token(body: TokenRequest, who: Principal = Depends(auth.operator),
                 state: ServerState = Depends(get_state)) -> dict[str, Any]:
    """Create a token; the secret is in this answer only. A worker token is bound to
    ``hosts`` (host ids or globs; none: the first host it claims as)."""
    row, secret = auth.create_token(state.store, body.name, body.role, hosts=body.hosts,
                                    max_hosts=body.max_hosts)
    return {"name": body.name, "role": body.role, "token": secret, **_binding(row),
            "created_at": serialize.iso(row.get("created_at") if row else time.time())}


@router.get("/v1/tokens", **schemas.doc(schemas.TokenPage))
def list_tokens(who: Principal = Depends(auth.operator),
                state: ServerState = Depends(get_state)) -> dict[str, Any]:
    rows = state.store.list_tokens()
    return {"items": [_token_out(r) for r in rows], "next_after_id": None}


@router.delete("/v1/tokens/{name}", status_code=204)
def revoke_token(name: str, who: Principal = Depends(auth.operator),
                 state: ServerState = Depends(get_state)) -> Response:
    if not state.store.revoke_token(name):
        raise errors.NotFound(f"no active token named {name!r}")
    state.auth.forget()
    return Response(status_code=204)


# --------------------------------------------------------------------------- blueprints


def _blueprint_out(row: dict[str, Any]) -> dict[str, Any]:
    return {"name": row["name"], "command": row["command"],
            "config_schema": row.get("config_schema"), "defaults": row.get("defaults") or {},
            "source": row.get("source"), "updated_at": serialize.iso(row.get("updated_at"))}


def _put_blueprint(state: ServerState, bp: Blueprint, source: str | None) -> dict[str, Any]:
    row: dict[str, Any] = state.store.put_blueprint(
        bp.name, list(bp.command), bp.config_schema, dict(bp.defaults), source)
    return row


@router.get("/v1/blueprints", **schemas.doc(schemas.BlueprintPage))
def list_blueprints(who: Principal = Depends(auth.viewer),
                    state: ServerState = Depends(get_state)) -> dict[str, Any]:
    rows = state.store.list_blueprints()
    return {"items": [_blueprint_out(r) for r in rows], "next_after_id": None}


@router.post("/v1/blueprints", status_code=201, **schemas.doc(schemas.Blueprint, 201))
def post_blueprint(body: dict[str, Any], who: Principal = Depends(auth.operator),
                   state: ServerState = Depends(get_state)) -> dict[str, Any]:
    """Create or replace a blueprint (``name``, ``command``, ``config_schema``, defaults)."""
    jsonvalues.check(body, "body")
    bp = Blueprint.from_dict(body)
    return _blueprint_out(_put_blueprint(state, bp, "api"))


# --------------------------------------------------------------------------- manifest


async def _manifest_body(request: Request, source: str | None) -> ManifestRequest:
    """The TOML, its source name and schema files, from JSON ``{text, source, files}`` or a
    text/plain body (``?source=`` names it)."""
    raw = await request.body()
    if len(raw) > MANIFEST_MAX:
        raise errors.TooLarge(f"body: a manifest may be at most {MANIFEST_MAX} bytes")
    ctype = request.headers.get("content-type", "")
    if "json" in ctype:
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise errors.ValidationError(f"body: not JSON: {exc}", field="body") from None
        if not isinstance(data, dict):
            raise errors.ValidationError("body: expected an object with 'text'", field="body")
        try:
            return ManifestRequest.model_validate(data)
        except pydantic.ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "body"
            raise errors.ValidationError(f"{field}: {first['msg']}", field=field) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise errors.ValidationError("body: the manifest must be UTF-8 text",
                                     field="body") from None
    return ManifestRequest(text=text, source=source or "manifest.toml")


async def _parsed(request: Request, source: str | None = Query(
        None, description="the text/plain body's name, for error messages")) -> Manifest:
    """The manifest of the body (a dependency, after the route's token check)."""
    body = await _manifest_body(request, source)
    return parse_manifest(body.text, source=body.source, files=body.files)


_MANIFEST_BODY = {"requestBody": {"content": {
    "application/json": {"schema": ManifestRequest.model_json_schema()},
    "text/plain": {"schema": {"type": "string"}}}}}


@router.post("/v1/manifest/validate", openapi_extra=_MANIFEST_BODY,
             **schemas.doc(schemas.ManifestValid))
async def validate_manifest(who: Principal = Depends(auth.operator),
                            manifest: Manifest = Depends(_parsed)) -> dict[str, Any]:
    """Parse and validate; 422 with every problem (file, line, field, message)."""
    return {"valid": True, "source": manifest.source, "hosts": len(manifest.hosts),
            "blueprints": len(manifest.blueprints), "jobs": len(manifest.jobs),
            "channels": len(manifest.channels)}


@router.post("/v1/manifest/reload", openapi_extra=_MANIFEST_BODY)
async def reload_manifest(dry_run: bool = Query(False),
                          who: Principal = Depends(auth.operator),
                          state: ServerState = Depends(get_state),
                          manifest: Manifest = Depends(_parsed)) -> dict[str, Any]:
    """Queue new jobs, update host policies and blueprints; ``dry_run`` only plans."""
    import anyio.to_thread

    result: dict[str, Any] = await anyio.to_thread.run_sync(
        lambda: apply_manifest(state.queue, manifest, dry_run=dry_run, actor=who.name))
    return result
