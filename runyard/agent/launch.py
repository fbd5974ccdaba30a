"""What an attempt's training process starts with (docs/progress-protocol.md,
docs/lifecycle.md): its directories and config file, its rendered command line, and its
environment, which carries the protocol's file paths and none of the agent's own secrets.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from runyard import errors, placeholders
from runyard.agent import process, trainer_status
from runyard.agent.assignment import Assignment, AttemptPaths, AttemptSettings

log = logging.getLogger(__name__)

#: Agent options that must not leak into the training process (the token above all).
AGENT_ENV = ("RUNYARD_SERVER", "RUNYARD_TOKEN", "RUNYARD_HOST_ID", "RUNYARD_SLOTS",
             "RUNYARD_LABELS", "RUNYARD_WORK_DIR", "RUNYARD_PROBE_INTERVAL_S",
             "RUNYARD_EXECUTOR", "RUNYARD_STOP_GRACE_S", "RUNYARD_CLAIM_MAX_WAIT_S",
             "RUNYARD_ATTEMPT_TOKEN", "RUNYARD_ATTEMPT_TOKEN_FILE")


@dataclass(frozen=True)
class Prepared:
    """A launch ready to start, or why none can be (a ``setup_error``)."""

    launch: process.Launch | None
    setup_error: str | None
    cwd: Path | None = None


def prepare(a: Assignment, paths: AttemptPaths, settings: AttemptSettings, *, server: str,
            gpus: Sequence[int] | None, resume_env: Callable[[], Mapping[str, str]],
            warn: Callable[[str], None]) -> Prepared:
    """Make the attempt's directories and config file, render its command and build its
    environment. ``resume_env`` is called only for a command that renders; ``warn`` sends a
    warning event for what the run goes on without."""
    p = paths
    for d in (p.checkpoint_dir, p.artifact_dir, p.log_dir):
        d.mkdir(parents=True, exist_ok=True)
    user = settings.train_user
    if user is not None:
        # The run writes its progress, metrics, checkpoints and artifacts; its logs and the
        # agent's spool stay the agent's.
        user.hand_over(p.root, p.checkpoint_dir, p.artifact_dir)
    p.config_file.write_text(json.dumps(a.config, indent=2, sort_keys=True), "utf-8")
    if not a.command or not all(isinstance(x, str) for x in a.command):
        return Prepared(None, f"command: expected a non-empty argv list, got {a.command!r}")
    try:
        argv = placeholders.render_command(
            a.command, config_file=p.config_file, run_id=a.run_id, attempt=a.number,
            artifact_dir=p.artifact_dir, checkpoint_dir=p.checkpoint_dir,
            progress_file=p.progress_file, metrics_file=p.metrics_file, stop_file=p.stop_file,
            seed=a.seed, name=a.run.get("name"), python=sys.executable)
        argv = [*settings.launch_prefix, *argv]
    except (errors.ValidationError, ValueError) as exc:
        return Prepared(None, getattr(exc, "message", str(exc)))
    env = {k: v for k, v in os.environ.items() if k not in AGENT_ENV}
    if user is not None:
        env.update(user.env())
    env.update(a.env)
    env.update({
        "RUNYARD_RUN_ID": a.run_id, "RUNYARD_ATTEMPT": str(a.number),
        "RUNYARD_PROGRESS_FILE": str(p.progress_file),
        "RUNYARD_METRICS_FILE": str(p.metrics_file),
        "RUNYARD_CHECKPOINT_DIR": str(p.checkpoint_dir),
        "RUNYARD_ARTIFACT_DIR": str(p.artifact_dir),
        "RUNYARD_CONFIG_FILE": str(p.config_file), "RUNYARD_STOP_FILE": str(p.stop_file),
        "RUNYARD_CHECKPOINT_REQUEST_FILE": str(p.checkpoint_request_file),
        **resume_env(),
        **_trainer_env(a, p, settings, server, warn),
    })
    if gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in gpus)
    cwd = settings.run_cwd or settings.work_dir
    named = a.run.get("workdir")
    if isinstance(named, str) and named:
        cwd = cwd / named  # an absolute path replaces the base
    launch = process.Launch(argv=argv, cwd=cwd, env=env, log_dir=p.log_dir,
                            stop_file=p.stop_file, inherit_env=False,
                            uid=user.uid if user else None, gid=user.gid if user else None,
                            groups=user.groups if user else None)
    return Prepared(launch, None, cwd)


def _trainer_env(a: Assignment, p: AttemptPaths, settings: AttemptSettings, server: str,
                 warn: Callable[[str], None]) -> dict[str, str]:
    """Kubeflow Trainer's variables (runyard.agent.trainer_status): its push form with this
    attempt's own credential, never the worker token, and its progression file."""
    try:
        return trainer_status.trainer_env(
            server=server, attempt_id=a.attempt_id, token=a.attempt_token,
            token_file=p.trainer_token_file, progression_file=p.progression_file,
            user=settings.train_user)
    except OSError as exc:  # the push form is optional: the run goes on without it
        log.warning("run %s: no Kubeflow trainer status credential: %s", a.run_id, exc)
        warn(f"KUBEFLOW_TRAINER_STATUS_TOKEN not set: its file could not be written "
             f"({str(exc)[:500]})")
        return trainer_status.trainer_env(
            server=server, attempt_id=a.attempt_id, token=None,
            token_file=p.trainer_token_file, progression_file=p.progression_file)
