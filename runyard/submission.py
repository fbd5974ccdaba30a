"""Turn a run request (the body of ``POST /v1/runs``) into a validated row, or say why not.

Nothing is written here; :mod:`runyard.queue` stores what this returns.
"""

from __future__ import annotations

import math
import re
import secrets
import time
from collections.abc import Mapping
from typing import Any

from runyard import (
    config_schema,
    defaults,
    eligibility,
    errors,
    models,
    placeholders,
    slurm_options,
)
from runyard.rules import spec as rule_spec

_KNOWN = frozenset({
    "name", "project", "version", "notes", "blueprint", "command", "config", "constraints",
    "priority", "max_attempts", "max_restarts_on_errors", "retry_on_exit_codes",
    "probe_interval_s", "stall_after_s", "env", "job_key", "seed", "source", "executor", "workdir",
    "rules", "launcher", "slurm", "tags",
})
#: Constraint keys a blueprint's defaults hold at their top level (as the manifest keeps them).
_CONSTRAINT_KEYS = frozenset(models.Constraints.__dataclass_fields__)
#: Longest ``notes`` a run may carry.
NOTES_MAX = 10_000
_JOB_KEY_RE = re.compile(r"^[0-9a-f]{64}$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
EXECUTORS = ("agent", "local", "slurm")


def new_id() -> str:
    """A time-ordered id: 12 hex digits of milliseconds, then 10 random hex digits."""
    return f"{int(time.time() * 1000):012x}{secrets.token_hex(5)}"


def _int(req: Mapping[str, Any], key: str, default: int, minimum: int) -> int:
    value = req.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise errors.ValidationError(f"{key}: expected an integer, got {value!r}", field=key)
    if value < minimum:
        raise errors.ValidationError(f"{key}: must be at least {minimum}, got {value}", field=key)
    if value > models.INT32_MAX:
        raise errors.ValidationError(f"{key}: must be below 2**31, got {value}", field=key)
    return value


def _positive(req: Mapping[str, Any], key: str, default: float) -> float:
    value = req.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value <= 0:
        raise errors.ValidationError(f"{key}: expected a number above 0, got {value!r}",
                                     field=key)
    return float(value)


def _probe_interval(req: Mapping[str, Any], bp_defaults: Mapping[str, Any]) -> float | None:
    """The run's own probe interval, or None: then the agent's applies (``runyard agent
    --probe-interval-s``). A null in the request names none, so the blueprint's still counts."""
    for source in (req, bp_defaults):
        if source.get("probe_interval_s") is not None:
            return _positive(source, "probe_interval_s", defaults.PROBE_INTERVAL_S)
    return None


def _str(req: Mapping[str, Any], key: str, default: str, limit: int) -> str:
    value = req.get(key, default)
    if value is None:
        value = default
    if not isinstance(value, str) or len(value) > limit or "\x00" in value:
        raise errors.ValidationError(
            f"{key}: expected text of at most {limit} characters (no NUL)", field=key)
    return value


def edit_values(req: Mapping[str, Any]) -> dict[str, Any]:
    """The ``runs`` values of an edit (``PATCH /v1/runs/{id}``: name, notes, tags), checked
    as at submission."""
    out: dict[str, Any] = {}
    if "name" in req:
        out["name"] = models.validate_name(req["name"], "name")
    if "notes" in req:
        out["notes"] = _str(req, "notes", "", NOTES_MAX)
    if "tags" in req:
        out["tags"] = models.validate_tags(req["tags"] if req["tags"] is not None else [])
    return out


def validate_config(schema: Mapping[str, Any] | None, config: Any, prefix: str = "config"
                    ) -> None:
    """Check ``config`` against a blueprint's JSON Schema; all violations in one error."""
    if not isinstance(config, Mapping):
        raise errors.ValidationError(f"{prefix}: expected an object", field=prefix)
    if not schema:
        return
    try:
        found = sorted(config_schema.validator(schema).iter_errors(dict(config)),
                       key=lambda e: list(e.absolute_path))
    except config_schema.Unresolvable as exc:
        message = f"{prefix}: {config_schema.unresolvable_message(exc)}"
        raise errors.ValidationError(message, field=prefix) from None
    if not found:
        return
    items = []
    for e in found:
        path = prefix + "".join(f"[{p}]" if isinstance(p, int) else f".{p}"
                                for p in e.absolute_path)
        items.append({"field": path, "message": f"{path}: {e.message}"})
    raise errors.ValidationError(items[0]["message"], field=items[0]["field"], errors=items)


def build_run(req: Mapping[str, Any], blueprint: Mapping[str, Any] | None, *,
              owner: str | None, now: float) -> dict[str, Any]:
    """Validate ``req`` and return the ``runs`` row for it (status ``queued``)."""
    if not isinstance(req, Mapping):
        raise errors.ValidationError("body: expected a JSON object", field="body")
    unknown = sorted(set(req) - _KNOWN)
    if unknown:
        raise errors.ValidationError(f"{unknown[0]}: unknown field", field=unknown[0])
    name = models.validate_name(req.get("name"), "name")
    project = models.validate_name(req.get("project") or "default", "project")
    executor = req.get("executor") or "agent"
    if executor not in EXECUTORS:
        raise errors.ValidationError(
            f"executor: expected one of {', '.join(EXECUTORS)}, got {executor!r}",
            field="executor")

    bp_name = req.get("blueprint")
    command = req.get("command")
    if bp_name is not None and command is not None:
        raise errors.ValidationError("command: give a blueprint or a command, not both",
                                     field="command")
    if bp_name is not None:
        if blueprint is None:
            raise errors.ValidationError(f"blueprint: no blueprint named {bp_name!r}",
                                         field="blueprint")
        command = blueprint["command"]
    elif command is not None:
        if not isinstance(command, list) or not command or not all(
                isinstance(a, str) for a in command):
            raise errors.ValidationError("command: expected a non-empty list of strings (argv)",
                                         field="command")
    elif executor != "local":
        raise errors.ValidationError("blueprint: a run needs a blueprint or a command",
                                     field="blueprint")

    config = req.get("config") or {}
    validate_config(blueprint.get("config_schema") if blueprint else None, config)

    bp_defaults: Mapping[str, Any] = (blueprint or {}).get("defaults") or {}
    # A manifest's blueprint keeps its constraint keys at the top of its defaults.
    merged_constraints = {k: v for k, v in bp_defaults.items() if k in _CONSTRAINT_KEYS}
    merged_constraints.update(bp_defaults.get("constraints") or {})
    raw_constraints = req.get("constraints") or {}
    if not isinstance(raw_constraints, Mapping):
        raise errors.ValidationError("constraints: expected an object", field="constraints")
    if "gpus" in raw_constraints or "gpus_per_node" in raw_constraints:
        # Two spellings of one count: the run's replaces the blueprint's, whichever it uses.
        merged_constraints.pop("gpus", None)
        merged_constraints.pop("gpus_per_node", None)
    merged_constraints.update(raw_constraints)
    constraints = models.Constraints.from_dict(merged_constraints)
    launcher, slurm = _slurm_fields(req, bp_defaults, executor)

    policy = {**models.normalise_defaults(), **{k: v for k, v in bp_defaults.items()
                                               if k != "constraints"
                                               and k not in _CONSTRAINT_KEYS}, **req}
    codes = policy.get("retry_on_exit_codes") or []
    if not isinstance(codes, list) or not all(
            isinstance(c, int) and not isinstance(c, bool)
            and models.INT32_MIN <= c <= models.INT32_MAX for c in codes):
        raise errors.ValidationError("retry_on_exit_codes: expected a list of integers",
                                     field="retry_on_exit_codes")
    env = req.get("env") or {}
    if not isinstance(env, Mapping) or not all(
            isinstance(k, str) and _ENV_NAME_RE.match(k) and isinstance(v, str)
            for k, v in env.items()):
        raise errors.ValidationError("env: expected a table of NAME = \"value\" strings",
                                     field="env")
    job_key = req.get("job_key")
    if job_key is not None and (not isinstance(job_key, str) or not _JOB_KEY_RE.match(job_key)):
        raise errors.ValidationError("job_key: expected 64 lowercase hex digits", field="job_key")

    rules = run_rules(req.get("rules"), bp_defaults.get("rules"))

    seed = req.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)
                             or not models.INT64_MIN <= seed <= models.INT64_MAX):
        raise errors.ValidationError("seed: expected a 64-bit integer", field="seed")
    if command is not None:
        # Checked here, not when an agent claims the run and fails it with setup_error.
        placeholders.check_placeholders(command, seed=seed)

    return {
        "id": new_id(),
        "name": name,
        "project": project,
        "version": _str(req, "version", "", 100),
        "notes": _str(req, "notes", "", NOTES_MAX),
        "tags": models.validate_tags(req.get("tags") or []),
        "blueprint": bp_name,
        "command": command,
        "config": dict(config),
        "seed": seed,
        "env": dict(env) or None,
        "owner": owner,
        "job_key": job_key,
        "source": req.get("source"),
        "priority": _int(policy, "priority", 0, -1_000_000),
        **constraint_columns(constraints),
        "status": models.Status.QUEUED.value,
        "executor": executor,
        "launcher": launcher,
        "slurm": slurm,
        "workdir": req.get("workdir"),
        "max_attempts": _int(policy, "max_attempts", defaults.MAX_ATTEMPTS, 1),
        "max_restarts_on_errors": _int(policy, "max_restarts_on_errors",
                                       defaults.MAX_RESTARTS_ON_ERRORS, 0),
        "retry_on_exit_codes": list(codes),
        "probe_interval_s": _probe_interval(req, bp_defaults),
        "stall_after_s": _positive(policy, "stall_after_s", defaults.STALL_AFTER_S),
        "rules": rules,
        "created_at": now,
        "queued_at": now,
        "updated_at": now,
        "status_updated_at": now,
    }


def run_rules(own: Any, inherited: Any) -> list[dict[str, Any]] | None:
    """The ``rules`` column of a run: its blueprint's rules (already checked when the
    blueprint was stored), then its own (``rules`` of the request, checked here); a rule
    of its own replaces the blueprint's of the same name. Each carries its ``source``."""
    mine = rule_spec.parse_rules(own, "rules")
    names = {r.name for r in mine}
    out = [{**r, "source": "blueprint"} for r in inherited or ()
           if isinstance(r, Mapping) and r.get("name") not in names]
    out += [{**r.to_dict(), "source": "run"} for r in mine]
    if len(out) > rule_spec.MAX_RULES:
        raise errors.ValidationError(f"rules: at most {rule_spec.MAX_RULES} rules with the "
                                     f"blueprint's, got {len(out)}", field="rules")
    return out or None
def _slurm_fields(req: Mapping[str, Any], bp_defaults: Mapping[str, Any],
                  executor: str) -> tuple[str | None, dict[str, Any] | None]:
    """``(launcher, slurm)`` of the run: a Slurm run's launcher (default ``srun``) and its
    options over its blueprint's; ``(None, None)`` for any other run. A blueprint's Slurm
    defaults apply to its Slurm runs only (one blueprint may run either way), but a request
    that gives Slurm options for a run that does not go to Slurm is refused."""
    if executor != "slurm":
        for key in ("slurm", "launcher"):
            if req.get(key) is not None:
                raise errors.ValidationError(
                    f"{key}: only a run with executor 'slurm' takes it (this run's executor "
                    f"is {executor!r})", field=key)
        return None, None
    base = slurm_options.SlurmOptions.from_dict(bp_defaults.get("slurm"))
    own = slurm_options.SlurmOptions.from_dict(req.get("slurm"))
    launcher = req.get("launcher") or bp_defaults.get("launcher") or \
        slurm_options.DEFAULT_LAUNCHER
    return (slurm_options.check_launcher(launcher),
            base.merged(own).to_dict() or None)


def constraint_columns(constraints: models.Constraints) -> dict[str, Any]:
    """The ``runs`` columns that hold ``constraints``: the document, and the values the claim's
    SQL prefilter compares."""
    return {
        "constraints": constraints.to_dict(),
        "require_cuda": constraints.require_cuda or constraints.needs_cuda,
        "prefer_cuda": constraints.prefer_cuda,
        "gpus": constraints.gpus,
        "min_vram_gib": constraints.min_vram_gib,
        "min_ram_gib": constraints.min_ram_gib,
        "min_cpus": constraints.min_cpus,
        "labels_key": eligibility.labels_key(constraints.labels),
    }
