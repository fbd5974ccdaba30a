"""Jobs: one ``[[jobs]]`` entry, its stable id, and the ``POST /v1/runs`` body it becomes.

Stable job id (``job_key``)
---------------------------
The sha256 (hex) of the canonical JSON (UTF-8, keys sorted, no spaces, no NaN) of::

    {"v": "runyard.job/v1",
     "blueprint": <name or null>,
     "command":   <the blueprint's command template, or the job's own argv>,
     "config":    <the job's config>,
     "seed":      <the seed or null>,
     "constraints": <the effective constraints, blueprint defaults merged, all keys>}

Included: what decides *what is computed and where it may run* -- changing any of it is a new
piece of work, so a reload queues it. The command is the template (``{config_file}`` unfilled)
so the id is the same on every machine. Constraints are included because they can change
results (``require_cuda``: GPU and CPU numerics differ).

Left out on purpose: ``name`` (renaming a job must not retrain it), ``project``, ``version``,
``notes``, ``priority``, where it executes (``executor``, ``launcher``, ``slurm``: moving a
job to Slurm does not change the work) and the retry/probe policy (``max_attempts``,
``max_restarts_on_errors``, ``retry_on_exit_codes``, ``probe_interval_s``, ``stall_after_s``) --
they say how to schedule or supervise the work, not what it is; the blueprint's description
and config schema (tightening a schema does not change valid work). Two jobs of one manifest
with the same id are refused as duplicates.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runyard import defaults, errors, models
from runyard.manifest import fields
from runyard.manifest.blueprint import Blueprint, check_command, config_errors
from runyard.manifest.locator import Path
from runyard.manifest.problems import Problems
from runyard.placeholders import command_placeholders, render_command

JOB_KEY_VERSION = "runyard.job/v1"
DEFAULT_PROJECT = "default"

JOB_KEYS: tuple[str, ...] = (
    ("name", "blueprint", "command", "config", "seed", "project", "version", "notes")
    + fields.CONSTRAINT_KEYS + fields.POLICY_KEYS + ("executor",) + fields.SLURM_KEYS
)


def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, no spaces, UTF-8 kept, NaN/Infinity refused."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def job_key(*, blueprint: str | None, command: list[str] | tuple[str, ...],
            config: Mapping[str, Any], seed: int | None,
            constraints: models.Constraints) -> str:
    """The stable id of a job (see the module docstring for what is included and why)."""
    doc = {
        "v": JOB_KEY_VERSION,
        "blueprint": blueprint,
        "command": list(command),
        "config": config,
        "seed": seed,
        "constraints": constraints.to_dict(),
    }
    return hashlib.sha256(canonical_json(doc).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Job:
    """One validated job; ``key`` is its stable id."""

    name: str
    key: str
    blueprint: str | None
    #: The argv template that runs it: the blueprint's command, or the job's own.
    command: tuple[str, ...]
    config: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    constraints: models.Constraints = field(default_factory=models.Constraints)
    project: str = DEFAULT_PROJECT
    version: str = ""
    notes: str = ""
    priority: int = 0
    max_attempts: int = defaults.MAX_ATTEMPTS
    max_restarts_on_errors: int = defaults.MAX_RESTARTS_ON_ERRORS
    retry_on_exit_codes: tuple[int, ...] = ()
    #: None: the agent's probe interval applies.
    probe_interval_s: float | None = None
    stall_after_s: float = defaults.STALL_AFTER_S
    #: Where it executes (docs/executors.md): None is the fleet's agents; ``slurm``, with
    #: the job's own ``launcher`` and ``slurm`` options (laid over its blueprint's).
    executor: str | None = None
    launcher: str | None = None
    slurm: dict[str, Any] | None = None

    def render_command(self, **values: Any) -> list[str]:
        """The argv with placeholders filled; ``seed`` and ``name`` come from the job."""
        values.setdefault("seed", self.seed)
        values.setdefault("name", self.name)
        return render_command(self.command, **values)

    def to_run_request(self) -> dict[str, Any]:
        """The ``POST /v1/runs`` body (docs/http-api.md) plus ``job_key`` and ``seed``.

        A blueprint job sends ``command: null`` (the server holds the blueprint); a
        blueprint-less job sends its own argv template.
        """
        return {
            "name": self.name,
            "project": self.project,
            "version": self.version,
            "notes": self.notes,
            "blueprint": self.blueprint,
            "command": None if self.blueprint else list(self.command),
            "config": self.config,
            "seed": self.seed,
            "constraints": self.constraints.to_dict(),
            "priority": self.priority,
            "max_attempts": self.max_attempts,
            "max_restarts_on_errors": self.max_restarts_on_errors,
            "retry_on_exit_codes": list(self.retry_on_exit_codes),
            "probe_interval_s": self.probe_interval_s,
            "stall_after_s": self.stall_after_s,
            "job_key": self.key,
            **({"executor": self.executor} if self.executor else {}),
            **({"launcher": self.launcher} if self.launcher else {}),
            **({"slurm": self.slurm} if self.slurm else {}),
        }


def parse_job(data: Any, path: Path, problems: Problems, blueprints: Mapping[str, Blueprint],
              broken_blueprints: set[str], default_project: str) -> Job | None:
    """One ``[[jobs]]`` table; problems are recorded, ``None`` when unusable.

    Constraint and policy keys the job sets replace the blueprint's defaults whole (a job's
    ``labels`` table replaces the blueprint's, it is not merged key by key).

    ``broken_blueprints`` are names defined in the file but invalid: a job naming one is not
    reported again (its blueprint's own problems are).
    """
    if not isinstance(data, Mapping):
        problems.add(path, f"expected a table, got {data!r}")
        return None
    count_before = len(problems.items)
    fields.reject_unknown(data, JOB_KEYS, path, problems)

    name: str | None = None
    if "name" not in data:
        problems.add(path + ("name",), "required")
    else:
        try:
            name = models.validate_name(data["name"], "name")
        except errors.ValidationError as exc:
            problems.add_validation(path, exc)

    bp: Blueprint | None = None
    command: tuple[str, ...] | None = None
    has_bp, has_cmd = "blueprint" in data, "command" in data
    if has_bp and has_cmd:
        problems.add(path + ("command",), "set blueprint or command, not both")
    elif not has_bp and not has_cmd:
        problems.add(path, "set blueprint (a [[blueprints]] name) or command (an argv list)")
    elif has_bp:
        ref = data["blueprint"]
        if not isinstance(ref, str):
            problems.add(path + ("blueprint",), f"expected a blueprint name, got {ref!r}")
        elif ref in blueprints:
            bp = blueprints[ref]
            command = bp.command
        elif ref not in broken_blueprints:
            known = ", ".join(sorted(blueprints)) or "none defined"
            problems.add(path + ("blueprint",), f"no blueprint named {ref!r} (known: {known})")
    else:
        command = check_command(data["command"], path + ("command",), problems)

    config = data.get("config", {})
    if not isinstance(config, dict):
        problems.add(path + ("config",), f"expected a table, got {config!r}")
        config = None
    elif fields.check_json_value(config, path + ("config",), problems) and bp is not None:
        for rel, message in config_errors(bp.config_schema, config):
            problems.add(path + ("config",) + rel, message)

    seed = data.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        problems.add(path + ("seed",), f"expected an integer, got {seed!r}")
        seed = None
    elif seed is None and command is not None and "seed" in command_placeholders(command):
        where = f"blueprint {bp.name!r}" if bp else "the"
        problems.add(path + ("seed",), f"required: {where} command uses {{seed}}")

    merged: dict[str, Any] = dict(bp.defaults) if bp else {}
    merged.update(fields.check_constraints(data, path, problems))
    merged.update(fields.check_policy(data, path, problems))
    project = fields.check_str(data, "project", path, problems, default_project)
    version = fields.check_str(data, "version", path, problems)
    notes = fields.check_str(data, "notes", path, problems)
    executor = fields.check_executor(data, path, problems)
    on_slurm = fields.check_slurm(data, path, problems)
    bad_executor = "executor" in data and executor is None  # already a problem
    if executor != "slurm" and not bad_executor:
        for key in fields.SLURM_KEYS:
            if key in data:
                problems.add(path + (key,), "only a job with executor = \"slurm\" takes it")

    if len(problems.items) != count_before or name is None or command is None or config is None:
        return None
    constraints = models.Constraints.from_dict(
        {k: merged[k] for k in fields.CONSTRAINT_KEYS if k in merged}, prefix=""
    )
    policy = {k: merged[k] for k in fields.POLICY_KEYS if k in merged}
    if "retry_on_exit_codes" in policy:
        policy["retry_on_exit_codes"] = tuple(policy["retry_on_exit_codes"])
    key = job_key(blueprint=bp.name if bp else None, command=command, config=config,
                  seed=seed, constraints=constraints)
    return Job(name=name, key=key, blueprint=bp.name if bp else None, command=command,
               config=config, seed=seed, constraints=constraints, project=project,
               version=version, notes=notes, executor=executor,
               launcher=on_slurm.get("launcher"), slurm=on_slurm.get("slurm"), **policy)
