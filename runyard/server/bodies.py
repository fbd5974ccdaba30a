"""Request bodies as pydantic models: unknown fields are refused, so a typo is a 422 that
names it. Deep validation (names, constraints, schemas) stays in the domain modules."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

import orjson
from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from runyard import errors, jsonvalues
from runyard.server.limits import LOG_CHUNK_MAX


async def json_body(request: Request) -> Any:
    """The request's JSON, for routes that check their body themselves (hot paths)."""
    return parse_json(await request.body())


def parse_json(body: bytes) -> Any:
    """A body's JSON, or a 422 naming ``body``.

    Parsed by orjson, about four times faster than :mod:`json` on a metrics batch. What
    orjson refuses goes to :mod:`json` too, which accepts a little more (``NaN`` literals,
    lone surrogates) and words the error as before.
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        value = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise errors.ValidationError(f"body: not JSON: {exc}", field="body") from None
    # orjson refuses lone surrogates and deep nesting; json takes them, so they are
    # looked for here, off the common path.
    jsonvalues.check(value, "body")
    return value


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON Schema with its ``$defs`` inlined, for ``openapi_extra``."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    out: dict[str, Any] = resolve(schema)
    return out


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _valid_json_values(cls, data: Any) -> Any:
        """Every value is stored and shown to other users: no invalid Unicode, no
        pathological nesting (docs/security.md)."""
        if isinstance(data, dict):
            for key, value in data.items():
                jsonvalues.check(value, str(key))
        return data


class RunRequest(Body):
    """``POST /v1/runs`` (docs/http-api.md)."""

    name: str
    project: str | None = None
    version: str | None = None
    notes: str | None = None
    blueprint: str | None = None
    command: list[str] | None = None
    config: dict[str, Any] | None = None
    constraints: dict[str, Any] | None = None
    priority: int | None = None
    max_attempts: int | None = None
    max_restarts_on_errors: int | None = None
    retry_on_exit_codes: list[int] | None = None
    probe_interval_s: float | None = None
    stall_after_s: float | None = None
    env: dict[str, str] | None = None
    job_key: str | None = None
    seed: StrictInt | None = None
    executor: Literal["agent", "local", "slurm"] | None = None
    workdir: str | None = None
    #: For ``executor: "local"``: the machine the run executes on (default: "local").
    host_id: str | None = None


class ValidateRequest(Body):
    blueprint: str
    config: dict[str, Any] = Field(default_factory=dict)


class StopRequest(Body):
    grace_seconds: float = Field(default=30.0, ge=0)


class RestartRequest(Body):
    resources: dict[str, Any] | None = None
    grace_seconds: float = Field(default=30.0, ge=0)


class Empty(Body):
    pass


class ClaimRequest(Body):
    host_id: str
    capabilities: dict[str, Any] = Field(default_factory=dict)
    free_slots: int | None = Field(default=None, ge=0)


class HeartbeatRequest(Body):
    lease: str
    running: bool = False


class ProgressRequest(Body):
    lease: str
    snapshot: dict[str, Any] | None = None
    warnings: list[str] = Field(default_factory=list, max_length=100)


class MetricPoint(Body):
    step: int = Field(ge=0)
    tag: str = Field(min_length=1, max_length=64)
    #: A number, or "NaN", "Infinity", "-Infinity" (checked by the route, naming the point).
    value: Any = Field(json_schema_extra={"anyOf": [
        {"type": "number"}, {"enum": ["NaN", "Infinity", "-Infinity"]}]})
    at: float | str | None = None


#: One logged step in the compact form: ``[step, at, {tag: value, ...}]`` -- the points of one
#: ``log()`` call share their step and time, so they travel once (what the SDK sends).
MetricRow = tuple[Annotated[int, Field(ge=0)], float | str | None, dict[str, float | str]]


class MetricColumns(Body):
    """One item per step in every list (``null``: no point of that tag at that step); steps
    strictly increasing; ``at`` UNIX seconds (left out: the time of the request)."""

    step: list[Annotated[int, Field(ge=0)]]
    at: list[float] | None = None
    values: dict[str, list[float | str | None]]


class MetricsRequest(Body):
    """Points as ``points`` (one object each), ``rows`` (compact), or both; or ``columns``
    alone (the most compact: what agents send); at most 100,000 points in all."""

    attempt_id: str
    lease: str
    points: list[MetricPoint] = Field(default_factory=list, max_length=100_000)
    rows: list[MetricRow] = Field(default_factory=list, max_length=100_000)
    columns: MetricColumns | None = None


class LogChunk(Body):
    stream: Literal["stdout", "stderr"]
    offset: int = Field(ge=0)
    data: str = Field(max_length=LOG_CHUNK_MAX)


class LogsRequest(Body):
    lease: str
    chunks: list[LogChunk] = Field(max_length=10_000)


class CheckpointRequest(Body):
    lease: str
    step: int = Field(ge=0)
    status: Literal["incomplete", "complete"]
    name: str | None = None
    sha256: str | None = None
    size: int | None = Field(default=None, ge=0)
    metrics: dict[str, Any] = Field(default_factory=dict)


class CompleteRequest(Body):
    lease: str
    exit_code: int = 0
    details: dict[str, Any] = Field(default_factory=dict)


class FailRequest(Body):
    lease: str
    reason: str
    exit_code: int | None = None
    stderr_tail: list[str] = Field(default_factory=list)
    details: dict[str, Any] = Field(default_factory=dict)
    no_retry: bool = False


class TokenRequest(Body):
    name: str
    role: Literal["viewer", "user", "operator", "worker"]


class ManifestRequest(Body):
    text: str
    source: str = "manifest.toml"
    #: The texts of the ``config_schema_file``s the manifest names, keyed by those names.
    files: dict[str, str] = Field(default_factory=dict)
