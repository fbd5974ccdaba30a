"""A run's resources as ``sbatch`` arguments (docs/executors.md, "Slurm").

==============================  =========================================================
run                             sbatch
==============================  =========================================================
``constraints.min_cpus``        ``--cpus-per-task=N`` (rounded up)
``constraints.min_ram_gib``     ``--mem=NM`` (per node, rounded up to a MiB)
``constraints.gpus`` /          ``--gres=gpu:N`` (per node; ``require_cuda`` alone asks for
``gpus_per_node``               one)
``constraints.nodes``           ``--nodes=N --ntasks-per-node=1`` (one launcher per node)
``slurm.time_limit``            ``--time=D-HH:MM:SS`` (minutes, or ``"HH:MM:SS"``)
``slurm.partition/account/qos`` ``--partition``, ``--account``, ``--qos`` (the run's, else
                                the agent's ``--partition``/``--account``)
``slurm.sbatch_args``           passed on (checked against an allow-list at submission,
                                :mod:`runyard.slurm_options`)
==============================  =========================================================

The agent adds what is its own: the job name and comment that find the job again, the output
file, ``--no-requeue`` (Runyard requeues, as a new attempt, never Slurm behind its back) and,
with a time limit, ``--signal=B:TERM@S`` so the supervisor can stop the training process
gracefully before Slurm kills it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from runyard import models
from runyard.agent.slurm import parse
from runyard.slurm_options import SlurmOptions

#: Seconds before the time limit the supervisor is warned (beyond the stop grace), and the
#: most Slurm may send it early (its check period): see :func:`warning_signal`.
WARN_EXTRA_S = 15
SLURM_SIGNAL_SLACK_S = 60


def limit_s(opts: SlurmOptions) -> float | None:
    """The run's time limit in seconds (stored in minutes)."""
    return None if opts.time_limit is None else float(opts.time_limit * 60)


def gpus_per_node(c: models.Constraints) -> int:
    """GPUs asked for on each node (``require_cuda`` without a count asks for one)."""
    if c.gpus:
        return c.gpus
    return 1 if c.require_cuda or c.min_vram_gib > 0 else 0


def nodes_of(c: models.Constraints) -> int:
    return max(int(getattr(c, "nodes", 1) or 1), 1)


def resource_args(c: models.Constraints, opts: SlurmOptions, *,
                  default_partition: str | None = None,
                  default_account: str | None = None) -> list[str]:
    """The resource part of the ``sbatch`` command line."""
    nodes = nodes_of(c)
    args = [f"--nodes={nodes}", "--ntasks-per-node=1"]
    if c.min_cpus > 0:
        args.append(f"--cpus-per-task={math.ceil(c.min_cpus)}")
    if c.min_ram_gib > 0:
        args.append(f"--mem={math.ceil(c.min_ram_gib * 1024)}M")
    gpus = gpus_per_node(c)
    if gpus:
        args.append(f"--gres=gpu:{gpus}")
    limit = limit_s(opts)
    if limit is not None:
        args.append(f"--time={parse.format_duration(limit)}")
    partition = opts.partition or default_partition
    if partition:
        args.append(f"--partition={partition}")
    account = opts.account or default_account
    if account:
        args.append(f"--account={account}")
    if opts.qos:
        args.append(f"--qos={opts.qos}")
    return args


def warning_signal(time_limit_s: float | None, grace_s: float) -> str | None:
    """``--signal=B:TERM@S`` when there is a time limit with room for it: the batch shell (the
    supervisor) gets SIGTERM ``S`` seconds before the limit (Slurm may send it up to 60 s
    earlier still), and stops the training process within its grace. None when the limit is
    too short for a warning to mean anything."""
    if time_limit_s is None:
        return None
    # Slurm counts whole minutes: the real limit is the rounded-up one.
    limit = math.ceil(time_limit_s / 60) * 60
    lead = math.ceil(grace_s) + WARN_EXTRA_S
    if limit < 2 * (lead + SLURM_SIGNAL_SLACK_S):
        return None
    return f"--signal=B:TERM@{min(lead, 65535)}"


def job_name(attempt_id: str) -> str:
    """The job name that finds an attempt's job again: ``runyard-<attempt id>``."""
    return f"runyard-{attempt_id}"


def attempt_of(name: str) -> str | None:
    """The attempt id in a job name of :func:`job_name`, else None."""
    return name[len("runyard-"):] if name.startswith("runyard-") and len(name) > 8 else None


def sbatch_args(c: models.Constraints, opts: SlurmOptions, *, attempt_id: str, run_id: str,
                number: int, output: str, chdir: str, grace_s: float,
                default_partition: str | None = None, default_account: str | None = None
                ) -> list[str]:
    """Every ``sbatch`` argument of an attempt's job."""
    args = [f"--job-name={job_name(attempt_id)}",
            f"--comment=runyard run {run_id} attempt {number}",
            f"--output={output}", f"--chdir={chdir}", "--no-requeue", "--export=ALL",
            *resource_args(c, opts, default_partition=default_partition,
                           default_account=default_account)]
    warn = warning_signal(limit_s(opts), grace_s)
    if warn:
        args.append(warn)
    args.extend(opts.sbatch_args)
    return args


def describe(args: Sequence[str]) -> str:
    """A short human form of the resource arguments, for logs and events."""
    return " ".join(a for a in args if not a.startswith(("--output=", "--chdir=", "--comment=")))
