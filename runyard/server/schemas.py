"""What the API answers, as the OpenAPI document declares it (docs/http-api.md).

The routes build their answers as plain dicts (cheap: no model is validated per request);
these models only document them, through :func:`doc`, and the schema test
(tests/integration/test_server_schema.py) checks every answer it provokes against them. A
model with ``extra="forbid"`` declares the whole shape; a run allows more fields, since the
runs table gains columns.

A route names its answer by reference (:func:`answer`), and the models' schemas join the
document when it is first asked for (:func:`add_components`). Given as a route's ``"model"``
instead, each answer would get its own pydantic validator, built for every route of every app
on the route's first request, though nothing but the document reads it: nine of them per
route with the error answers, which was two thirds of an app's first requests.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel, ConfigDict
from pydantic.json_schema import models_json_schema


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


# --------------------------------------------------------------------------- errors


class ErrorItem(_Closed):
    #: Absent for an error that names no field.
    field: str | None = None
    message: str
    #: A manifest's problems also say where: its source name, line and a one-line text.
    file: str | None = None
    line: int | None = None
    text: str | None = None


class ErrorInfo(_Closed):
    #: The exception's class (runyard/errors.py): ``ValidationError``, ``Forbidden``...
    type: str
    message: str
    #: The request field to blame, when one is.
    field: str | None
    errors: list[ErrorItem]


class ErrorBody(_Closed):
    """Every error answer of the API."""

    error: ErrorInfo


_ERROR_STATUSES = {
    400: "Bad request (a setting or header the server cannot use)",
    401: "Missing, unknown or revoked token (AuthError)",
    403: "The token may not do this (Forbidden), naming why",
    404: "No such run, attempt, worker, token or blob (NotFound)",
    409: "The current state refuses it (Conflict, LeaseConflict, IllegalTransition)",
    413: "The body is over the endpoint's limit (RequestTooLarge)",
    422: "Invalid input (ValidationError), naming the field",
    429: "Over a cap on concurrent use (TooManyRequests)",
}

#: Where the OpenAPI document keeps the models' schemas.
_REF = "#/components/schemas/{model}"
#: The models that answers name, in the order they were first named.
_NAMED: list[type[BaseModel]] = []


def answer(model: Any) -> dict[str, Any]:
    """An answer of the OpenAPI document whose JSON body is ``model`` (a model, or a union of
    models), by reference to the document's components."""
    members = get_args(model) or (model,)
    _NAMED.extend(m for m in members if m not in _NAMED)
    refs = [{"$ref": _REF.format(model=m.__name__)} for m in members]
    return {"content": {"application/json": {"schema": refs[0] if len(refs) == 1
                                              else {"anyOf": refs}}}}


def add_components(document: dict[str, Any]) -> None:
    """Add to ``document`` (the app's OpenAPI document) the schemas of the models that answers
    name, and of the models those hold."""
    _, top = models_json_schema([(m, "serialization") for m in _NAMED], ref_template=_REF)
    found = document.setdefault("components", {}).setdefault("schemas", {})
    # Without nulls, as FastAPI writes the rest of the document ("default": null goes).
    for name, schema in jsonable_encoder(top.get("$defs", {}), exclude_none=True).items():
        if found.setdefault(name, schema) != schema:
            raise RuntimeError(f"the OpenAPI document has two models named {name}")
    document["components"]["schemas"] = dict(sorted(found.items()))


#: Error answers every API route may give, declared once for all (app.include_router).
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {**answer(ErrorBody), "description": text}
    for status, text in _ERROR_STATUSES.items()}


def doc(model: Any, status: int = 200, more: dict[int | str, dict[str, Any]] | None = None
        ) -> dict[str, Any]:
    """Route keyword arguments declaring ``model`` as the answer for ``status`` (and the
    ``more`` answers), without making FastAPI validate or filter the answer at run time."""
    return {"response_model": None, "responses": {status: answer(model), **(more or {})}}


# --------------------------------------------------------------------------- server


class Health(_Closed):
    """The answer of ``GET /v1/health`` (503 with the same body when the database fails)."""

    status: Literal["ok", "degraded"]
    database: bool
    dialect: str
    time: str | None


class Whoami(_Closed):
    name: str
    role: Literal["viewer", "user", "operator", "worker"]
    auth: bool
    can: dict[str, bool]


class Token(_Closed):
    name: str
    role: Literal["viewer", "user", "operator", "worker"]
    #: A worker token's binding: host ids and globs (null: bound on its first claim).
    hosts: list[str] | None
    max_hosts: int | None
    created_at: str | None
    last_used_at: str | None
    revoked_at: str | None


class TokenCreated(_Closed):
    name: str
    role: Literal["viewer", "user", "operator", "worker"]
    #: The secret, shown this once only.
    token: str
    hosts: list[str] | None
    max_hosts: int | None
    created_at: str | None


class SignedIn(_Closed):
    """The answer of ``POST /v1/signin``: the browser's own new token."""

    name: str
    role: Literal["viewer", "user", "operator"]
    #: The secret, shown this once only.
    token: str


class SigninLink(_Closed):
    """A new one-time sign-in link (``POST /v1/signin-links``)."""

    #: Opens the UI's sign-in page with the code in the fragment.
    url: str
    code: str
    expires_at: str


class TokenPage(_Closed):
    items: list[Token]
    next_after_id: str | None


class Blueprint(_Closed):
    name: str
    command: list[str]
    config_schema: dict[str, Any] | None
    defaults: dict[str, Any]
    source: str | None
    updated_at: str | None


class BlueprintPage(_Closed):
    items: list[Blueprint]
    next_after_id: str | None


class ManifestValid(_Closed):
    """A manifest that parsed and validated, counted (problems are a 422)."""

    valid: Literal[True]
    source: str
    hosts: int
    blueprints: int
    jobs: int
    channels: int


# --------------------------------------------------------------------------- workers


class HostPolicy(_Closed):
    allow: list[str]
    deny: list[str]
    slots: int | None
    labels: dict[str, Any] | None


class CurrentRun(_Closed):
    run_id: str
    name: str
    status: str
    attempt: int
    #: Where its executor placed it (a Slurm job id, its nodes); None on a local agent.
    external_id: str | None
    nodes: list[str] | None


class Worker(_Closed):
    host_id: str
    hostname: str
    capabilities: dict[str, Any]
    has_cuda: bool
    #: The kind of agent: ``local`` or ``slurm`` (docs/executors.md).
    executor: str
    slots: int
    drained: bool
    registered_at: str | None
    last_seen_at: str | None
    alive: bool
    active_attempts: int
    #: The token that registered it (or last claimed as it).
    token_name: str | None
    policy: HostPolicy | None
    current: list[CurrentRun]


class WorkerPage(_Closed):
    items: list[Worker]
    next_after_id: str | None


class Drained(_Closed):
    host_id: str
    drained: bool


class Deleted(_Closed):
    host_id: str
    deleted: Literal[True]


# --------------------------------------------------------------------------- runs


class RunFields(_Open):
    """A run as listed: only the columns asked for (``fields``), each of this type."""

    id: str | None = None
    name: str | None = None
    project: str | None = None
    version: str | None = None
    notes: str | None = None
    blueprint: str | None = None
    command: list[str] | None = None
    config: dict[str, Any] | None = None
    seed: int | None = None
    constraints: dict[str, Any] | None = None
    #: Values are null for callers who may not read them (docs/security.md).
    env: dict[str, str | None] | None = None
    owner: str | None = None
    job_key: str | None = None
    source: str | None = None
    priority: int | None = None
    status: str | None = None
    attempt: int | None = None
    attempt_id: str | None = None
    host_id: str | None = None
    executor: str | None = None
    #: The work directory the run asked for (an agent's runs: relative to its directory);
    #: where each attempt ran is its ``workdir``.
    workdir: str | None = None
    #: Where its artifact files are: a local run's directory, or the server's store.
    artifact_store: str | None = None
    #: Whether its artifact directory is in the server's store (docs/metrics-and-artifacts.md).
    archived: bool | None = None
    termination_reason: str | None = None
    exit_code: int | None = None
    stop_intent: str | None = None
    max_attempts: int | None = None
    max_restarts_on_errors: int | None = None
    retry_on_exit_codes: list[int] | None = None
    probe_interval_s: float | None = None
    stall_after_s: float | None = None
    progress: dict[str, Any] | None = None
    stalled: bool | None = None
    created_at: str | None = None
    queued_at: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    updated_at: str | None = None
    progress_updated_at: str | None = None
    stop_requested_at: str | None = None
    status_updated_at: str | None = None
    checkpoint_requested_at: str | None = None
    tags: list[str] | None = None
    #: How many times the run's rules fired (docs/rules.md).
    rule_hits: int | None = None
    launcher: str | None = None
    slurm: dict[str, Any] | None = None
    #: Where its latest attempt runs, as its executor recorded it (docs/executors.md).
    external_id: str | None = None
    nodes: list[str] | None = None


class Run(RunFields):
    """A run with every column shown."""

    id: str
    name: str
    project: str
    status: str
    attempt: int
    executor: str
    priority: int
    created_at: str


class Attempt(_Closed):
    id: str
    run_id: str
    number: int
    host_id: str
    active: bool
    claimed_at: str | None
    running_at: str | None
    ended_at: str | None
    lease_expires_at: str | None
    termination_reason: str | None
    exit_code: int | None
    details: dict[str, Any] | None
    external_id: str | None = None
    nodes: list[str] | None = None
    #: The directory its process ran in, as its holder reported it.
    workdir: str | None = None


class RunDetail(Run):
    """``GET /v1/runs/{id}``: the run, its attempts, and why it waits (queued runs)."""

    attempts: list[Attempt]
    #: Its effective rules, each with its source, hits and last hit (docs/rules.md).
    rules: list[dict[str, Any]] = []
    explain: dict[str, Any] | None = None


class RunPage(_Closed):
    items: list[RunFields]
    next_after_id: str | None
    #: The next page's keyset cursor under the same sort (docs/http-api.md).
    next_cursor: str | None = None


class AttemptRef(_Closed):
    id: str
    number: int


class LocalStart(_Closed):
    """``POST /v1/runs`` with ``executor: "local"``: the run, held by the caller."""

    run: Run
    attempt: AttemptRef
    lease: str
    lease_expires_at: str | None


class ConfigValid(_Closed):
    """``POST /v1/runs/validate``: the config fits the blueprint (problems are a 422)."""

    valid: Literal[True]
    blueprint: str


class QueuedRun(_Closed):
    position: int
    run: RunFields
    #: Why it is not running yet (``GET /v1/runs/{id}/explain``); left out with explain=false.
    explain: dict[str, Any] | None = None


class QueuePage(_Closed):
    items: list[QueuedRun]
    total: int
    next_after_id: str | None


class Event(_Closed):
    id: int | None
    seq: int
    run_id: str
    attempt: int
    at: str | None
    kind: str
    status: str
    actor: str
    details: dict[str, Any] | None


class EventPage(_Closed):
    items: list[Event]
    next_after_seq: int | None


# --------------------------------------------------------------------------- the worker side


class Claim(_Closed):
    """A claimed run: everything the agent needs to start it."""

    run: Run
    attempt: AttemptRef
    lease: str
    lease_expires_at: str | None
    command: list[str] | None
    env: dict[str, str]
    config: dict[str, Any]
    probe_interval_s: float | None
    stall_after_s: float | None
    seed: int | None
    #: The credential of this one attempt's leased calls (docs/security.md).
    attempt_token: str


class StopOrder(_Closed):
    """A heartbeat's answer: the lease's new end, and whether to stop."""

    lease_expires_at: str | None
    stop: bool
    intent: str | None
    grace_s: float | None
    #: Whether the loop is asked for a checkpoint, and since when (docs/lifecycle.md).
    checkpoint: bool
    checkpoint_requested_at: str | None


class Accepted(_Closed):
    """Accepted; nothing to say."""


class TrainerStatusAnswer(_Closed):
    """A Kubeflow trainer status, taken: what of it was left out, each a warning event."""

    warnings: list[str]
