"""Request bodies as pydantic models: unknown fields are refused, so a typo is a 422 that
names it. Deep validation (names, constraints, schemas) stays in the domain modules."""

from __future__ import annotations

import json
import operator
from typing import Annotated, Any, Literal, TypeVar

import orjson
import pydantic
from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator

from runyard import defaults, enrolment, errors, jsonvalues, models, nonfinite
from runyard.progress import kubeflow
from runyard.server.limits import LOG_CHUNK_MAX

#: Integers the database columns hold (models.INT32_MAX): anything wider is a 422 naming
#: its field. Counts, priorities and exit codes:
Int32 = Annotated[int, Field(ge=models.INT32_MIN, le=models.INT32_MAX)]
#: Steps, sizes and offsets:
UInt63 = Annotated[int, Field(ge=0, le=models.INT64_MAX)]


async def json_body(request: Request) -> Any:
    """The request's JSON, for routes that check their body themselves (metric batches)."""
    return parse_json(await request.body())


def parse_json(body: bytes) -> Any:
    """A body's JSON, or a 422 naming ``body``.

    Parsed by orjson, which decodes a metrics batch much faster than :mod:`json`. What
    orjson refuses goes to :mod:`json` too, which accepts a little more (``NaN`` literals;
    lone surrogates and deep nesting, which are then refused) and words the error.
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


B = TypeVar("B", bound=Body)


class RunRequest(Body):
    """``POST /v1/runs`` (docs/http-api.md)."""

    name: str
    project: str | None = None
    version: str | None = None
    notes: str | None = None
    tags: list[str] | None = None
    blueprint: str | None = None
    command: list[str] | None = None
    config: dict[str, Any] | None = None
    constraints: dict[str, Any] | None = None
    priority: Int32 | None = None
    max_attempts: Int32 | None = None
    max_restarts_on_errors: Int32 | None = None
    retry_on_exit_codes: list[Int32] | None = None
    probe_interval_s: float | None = None
    stall_after_s: float | None = None
    env: dict[str, str] | None = None
    job_key: str | None = None
    seed: Annotated[StrictInt, Field(ge=models.INT64_MIN, le=models.INT64_MAX)] | None = None
    executor: Literal["agent", "local", "slurm"] | None = None
    #: Slurm runs only (docs/executors.md): ``srun`` (default) or ``torchrun``.
    launcher: str | None = None
    #: Slurm runs only: ``{partition, account, qos, time_limit, sbatch_args}``.
    slurm: dict[str, Any] | None = None
    workdir: str | None = None
    #: For ``executor: "local"``: the machine the run executes on (default: "local").
    host_id: str | None = None
    #: Rule objects (docs/rules.md), checked by :mod:`runyard.rules.spec`.
    rules: list[Any] | None = None


class EditRequest(Body):
    """``PATCH /v1/runs/{id}``: what an owner may change after submission (checked by
    :func:`runyard.submission.edit_values`)."""

    name: str | None = None
    notes: str | None = None
    tags: list[str] | None = None


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
    free_slots: UInt63 | None = None


class HeartbeatRequest(Body):
    lease: str
    running: bool = False


class ProgressRequest(Body):
    lease: str
    snapshot: dict[str, Any] | None = None
    warnings: list[str] = Field(default_factory=list, max_length=100)

    @field_validator("snapshot")
    @classmethod
    def _step_fits(cls, snapshot: dict[str, Any] | None) -> dict[str, Any] | None:
        """The step and seq are stored in columns of the progress history."""
        for key, top in (("step", models.INT64_MAX), ("seq", models.INT32_MAX)):
            value = (snapshot or {}).get(key)
            if isinstance(value, int) and not -top - 1 <= value <= top:
                raise ValueError(f"{key}: must be below 2**{top.bit_length()}")
        return snapshot


class TrainerMetric(Body):
    """One metric of a Kubeflow trainer status: its value a string (KEP-2779), or a number."""

    name: str = Field(min_length=1, max_length=defaults.METRIC_NAME_MAX)
    value: Any = Field(json_schema_extra={"anyOf": [{"type": "string"}, {"type": "number"}]})

    @field_validator("value")
    @classmethod
    def _text_or_number(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValueError("expected a string (or a number)")
        return value


#: A trainer status's times and amounts: JSON numbers, never NaN or a string.
_Amount = Annotated[float, Field(ge=0, strict=True, allow_inf_nan=False)]


class TrainerStatus(Body):
    """``trainerStatus`` of Kubeflow Trainer's progress tracking (KEP-2779); each field is
    optional. The names are Kubeflow's, so code written for it posts here unchanged."""

    progressPercentage: Annotated[_Amount, Field(le=100)] | None = None
    estimatedRemainingSeconds: Annotated[_Amount, Field(le=models.INT64_MAX)] | None = None
    metrics: list[TrainerMetric] | None = Field(None, max_length=defaults.SNAPSHOT_MAX_METRICS)
    lastUpdatedTime: str | None = None

    @field_validator("lastUpdatedTime")
    @classmethod
    def _a_time(cls, value: str | None) -> str | None:
        try:
            kubeflow.parse_time(value, "lastUpdatedTime")
        except errors.ValidationError as exc:
            raise ValueError(exc.message.removeprefix("lastUpdatedTime: ")) from None
        return value


class TrainerStatusRequest(Body):
    """``POST /v1/attempts/{id}/trainer-status`` (docs/progress-protocol.md)."""

    trainerStatus: TrainerStatus


#: Points one metrics request may carry, ``points`` and ``rows`` together.
MAX_POINTS = 100_000


class MetricPoint(Body):
    step: UInt63
    tag: str = Field(min_length=1, max_length=64)
    #: A number, or "NaN", "Infinity", "-Infinity".
    value: Any = Field(json_schema_extra={"anyOf": [
        {"type": "number"}, {"enum": list(nonfinite.SPECIALS)}]})
    at: float | str | None = None


#: One logged step in the compact form: ``[step, at, {tag: value, ...}]`` -- the points of one
#: ``log()`` call share their step and time, so they travel once (what the SDK and agents send).
MetricRow = tuple[UInt63, float | str | None, dict[str, float | str]]


class MetricsRequest(Body):
    """Points as ``points`` (one object each), ``rows`` (compact), or both; at most
    :data:`MAX_POINTS` points in all."""

    attempt_id: str
    lease: str
    points: list[MetricPoint] = Field(default_factory=list, max_length=MAX_POINTS)
    rows: list[MetricRow] = Field(default_factory=list, max_length=MAX_POINTS)


class ImportMetricsRequest(Body):
    """``POST /v1/runs/{id}/import/metrics``: a synced run's points, by attempt number."""

    attempt: int = Field(ge=1)
    points: list[MetricPoint] = Field(default_factory=list, max_length=MAX_POINTS)
    rows: list[MetricRow] = Field(default_factory=list, max_length=MAX_POINTS)


_ROW_VALUES = operator.itemgetter(2)
#: Fields of a compact form the API does not take: refused by name, with what to send.
_DROPPED = {"columns": "columns: not accepted; send the points as points or rows "
                       "(docs/http-api.md)"}


def metric_batch(data: Any, model: type[B]) -> tuple[B, list[Any], list[Any]]:
    """A metrics body shaped as ``model``: its other fields (as ``model``, with no points),
    then its ``points`` and ``rows``.

    Only the envelope is checked here (unknown fields, types of the other fields, 413 past
    :data:`MAX_POINTS`): the points themselves are checked once, by the store
    (:meth:`runyard.store.ingest.Batch.of`), which names the first bad field. A model per
    point would cost more than storing it.
    """
    if not isinstance(data, dict):
        raise errors.ValidationError("body: expected a JSON object", field="body")
    fields = model.model_fields
    for key in data:
        if key in _DROPPED:
            raise errors.ValidationError(_DROPPED[key], field=key)
        if key not in fields:
            raise errors.ValidationError(f"{key}: unknown field", field=key)
    lead = {k: v for k, v in data.items() if k not in ("points", "rows")}
    try:
        head = model.model_validate(lead)
    except pydantic.ValidationError as exc:
        field = ".".join(str(p) for p in exc.errors()[0]["loc"]) or "body"
        raise errors.ValidationError(f"{field}: {exc.errors()[0]['msg']}", field=field) from None
    points, rows = data.get("points", []), data.get("rows", [])
    for key, value in (("points", points), ("rows", rows)):
        if not isinstance(value, list):
            raise errors.ValidationError(f"{key}: expected a list", field=key)
    if point_count(points, rows) > MAX_POINTS:
        raise errors.TooLarge(f"body: more than {MAX_POINTS} points in one request")
    return head, points, rows


def point_count(points: list[Any], rows: list[Any]) -> int:
    """Points in a body; a row not shaped ``[step, at, {...}]`` counts one (the store
    refuses it)."""
    if rows and set(map(type, rows)) == {list} and set(map(len, rows)) == {3}:
        values = list(map(_ROW_VALUES, rows))
        if set(map(type, values)) == {dict}:
            return len(points) + sum(map(len, values))
    return len(points) + sum(len(r[2]) if type(r) is list and len(r) == 3
                             and type(r[2]) is dict else 1 for r in rows)


class PlacementRequest(Body):
    """``POST /v1/attempts/{id}/placement``: where the executor placed the attempt (checked
    by :func:`runyard.placement.record`)."""

    lease: str
    #: The executor's id of the attempt's job (a Slurm job id).
    external_id: str | None = Field(default=None, max_length=200)
    #: The nodes it runs on.
    nodes: list[str] | None = Field(default=None, max_length=4096)
    #: The directory its process runs in.
    workdir: str | None = None
    #: Where the run's artifact files are (a local run's artifact directory); ignored once
    #: the run is archived.
    artifact_store: str | None = None


class LogChunk(Body):
    stream: Literal["stdout", "stderr"]
    offset: UInt63
    data: str = Field(max_length=LOG_CHUNK_MAX)


class LogsRequest(Body):
    lease: str
    chunks: list[LogChunk] = Field(max_length=10_000)


class CheckpointRequest(Body):
    lease: str
    step: UInt63
    status: Literal["incomplete", "complete"]
    name: str | None = None
    sha256: str | None = None
    size: UInt63 | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)


class CompleteRequest(Body):
    lease: str
    exit_code: Int32 = 0
    details: dict[str, Any] = Field(default_factory=dict)


class FailRequest(Body):
    lease: str
    reason: str
    exit_code: Int32 | None = None
    stderr_tail: list[str] = Field(default_factory=list)
    details: dict[str, Any] = Field(default_factory=dict)
    no_retry: bool = False


class TokenRequest(Body):
    name: str
    role: Literal["viewer", "user", "operator", "worker"]
    #: A worker token's binding: host ids or globs (checked by runyard.enrolment); None
    #: binds it to the first host it claims as.
    hosts: list[str] | None = None
    max_hosts: Annotated[int, Field(ge=1, le=enrolment.MAX_HOSTS_LIMIT)] | None = None


class ManifestRequest(Body):
    text: str
    source: str = "manifest.toml"
    #: The texts of the ``config_schema_file``s the manifest names, keyed by those names.
    files: dict[str, str] = Field(default_factory=dict)


class ChannelRequest(Body):
    """``POST /v1/channels``: checked in depth by :func:`runyard.notifications.channels.
    check_channel` (each problem a 422 naming its field)."""

    name: str
    kind: str
    url: str
    secret: str | None = None
