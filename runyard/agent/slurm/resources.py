"""A run's resources as ``sbatch`` arguments (docs/executors.md, "Slurm").

==============================  =========================================================
run                             sbatch
==============================  =========================================================
``constraints.min_cpus``        ``--cpus-per-task=N`` (rounded up)
``constraints.min_ram_gib``     ``--mem=NM`` (per node, rounded up to a MiB)
``constraints.gpus`` /          ``--gres=gpu:N`` (per node; ``require_cuda`` alone asks for
``gpus_per_node``               one)
``constraints.nodes``           ``--nodes=N --ntasks-per-node=1`` (one launcher per node)
``slurm.time_limit``            ``--time=D-HH:MM:SS`` (seconds, or a Slurm duration string)
``slurm.partition/account/qos`` ``--partition``, ``--account``, ``--qos`` (the run's, else
                                the agent's ``--partition``/``--account``)
``slurm.sbatch_args``           passed on when every one is on :data:`ALLOWED_ARGS`
==============================  =========================================================

The agent adds what is its own: the job name and comment that find the job again, the output
file, ``--no-requeue`` (Runyard requeues, as a new attempt, never Slurm behind its back) and,
with a time limit, ``--signal=B:TERM@S`` so the supervisor can stop the training process
gracefully before Slurm kills it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runyard import errors, models
from runyard.agent.slurm import parse

#: ``sbatch`` options a run may add (``--name=value`` or ``--flag``). Anything that decides
#: where output goes, what runs, whose environment or which job this is stays the agent's.
ALLOWED_ARGS = frozenset({
    "--constraint", "--prefer", "--exclusive", "--reservation", "--nice", "--mem-per-cpu",
    "--mem-per-gpu", "--gres", "--gpus", "--gpus-per-node", "--gpus-per-task",
    "--cpus-per-gpu", "--gpu-bind", "--gpu-freq", "--tmp", "--exclude", "--nodelist",
    "--licenses", "--mail-type", "--mail-user", "--begin", "--hint", "--cpu-freq",
    "--switches", "--wckey", "--network", "--mem-bind", "--distribution",
    "--threads-per-core", "--cores-per-socket", "--sockets-per-node", "--time-min",
    "--deadline", "--dependency", "--contiguous", "--spread-job", "--clusters",
    "--cluster-constraint", "--priority", "--overcommit", "--oversubscribe", "--power",
    "--thread-spec", "--core-spec", "--use-min-nodes", "--ntasks-per-core",
    "--ntasks-per-socket", "--ntasks-per-gpu", "--extra-node-info", "--no-kill",
})
#: Longest extra argument, and most of them.
MAX_ARG_LEN = 500
MAX_ARGS = 32
_ARG_RE = re.compile(r"^(--[a-z][a-z0-9-]*)(=(.*))?$", re.S)
#: Seconds before the time limit the supervisor is warned (beyond the stop grace), and the
#: most Slurm may send it early (its check period): see :func:`warning_signal`.
WARN_EXTRA_S = 15
SLURM_SIGNAL_SLACK_S = 60


@dataclass(frozen=True)
class SlurmOptions:
    """The run's ``slurm`` table (all optional)."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time_limit_s: float | None = None
    sbatch_args: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, prefix: str = "slurm.") -> SlurmOptions:
        data = data or {}
        if not isinstance(data, Mapping):
            raise errors.ValidationError(f"{prefix.rstrip('.')}: expected an object",
                                         field=prefix.rstrip("."))
        known = {"partition", "account", "qos", "time_limit", "sbatch_args"}
        for key in data:
            if key not in known:
                raise errors.ValidationError(f"{prefix}{key}: unknown key", field=f"{prefix}{key}")
        return cls(partition=_name(data.get("partition"), f"{prefix}partition"),
                   account=_name(data.get("account"), f"{prefix}account"),
                   qos=_name(data.get("qos"), f"{prefix}qos"),
                   time_limit_s=time_limit(data.get("time_limit"), f"{prefix}time_limit"),
                   sbatch_args=check_args(data.get("sbatch_args") or [], f"{prefix}sbatch_args"))


_SLURM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _name(value: Any, field: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _SLURM_NAME.match(value):
        raise errors.ValidationError(f"{field}: expected a Slurm name (letters, digits, ._-), "
                                     f"got {value!r}", field=field)
    return value


def time_limit(value: Any, field: str = "slurm.time_limit") -> float | None:
    """A time limit in seconds from seconds or a Slurm duration (``"2-00:00:00"``)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise errors.ValidationError(f"{field}: expected seconds or a Slurm duration",
                                     field=field)
    if isinstance(value, int | float):
        if not math.isfinite(value) or value <= 0 or value > 366 * 86400:
            raise errors.ValidationError(f"{field}: expected 1 s to 366 days, got {value!r}",
                                         field=field)
        return float(value)
    if isinstance(value, str) and len(value) <= 32:
        seconds = parse.duration_s(value)
        if seconds is not None and 0 < seconds <= 366 * 86400:
            return seconds
    raise errors.ValidationError(f"{field}: expected seconds or a Slurm duration such as "
                                 f"'1:30:00' or '2-00:00:00', got {value!r}", field=field)


def check_args(args: Any, field: str = "slurm.sbatch_args") -> tuple[str, ...]:
    """The run's extra ``sbatch`` arguments, each ``--option=value`` or ``--flag`` from
    :data:`ALLOWED_ARGS`; anything else is refused, naming the argument."""
    if not isinstance(args, list | tuple) or len(args) > MAX_ARGS:
        raise errors.ValidationError(f"{field}: expected a list of at most {MAX_ARGS} "
                                     "arguments", field=field)
    out = []
    for i, arg in enumerate(args):
        path = f"{field}[{i}]"
        if not isinstance(arg, str) or not arg or len(arg) > MAX_ARG_LEN \
                or any(ch in arg for ch in "\x00\n\r"):
            raise errors.ValidationError(f"{path}: expected one '--option=value' argument",
                                         field=path)
        m = _ARG_RE.match(arg)
        if not m:
            raise errors.ValidationError(
                f"{path}: {arg[:80]!r} is not '--option=value' or '--flag' (short options "
                "and separate values are not accepted)", field=path)
        if m.group(1) not in ALLOWED_ARGS:
            raise errors.ValidationError(
                f"{path}: {m.group(1)} is not an sbatch option a run may set (the agent owns "
                "job names, output, environment and requeueing)", field=path)
        out.append(arg)
    return tuple(out)


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
    if opts.time_limit_s is not None:
        args.append(f"--time={parse.format_duration(opts.time_limit_s)}")
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
    warn = warning_signal(opts.time_limit_s, grace_s)
    if warn:
        args.append(warn)
    args.extend(opts.sbatch_args)
    return args


def describe(args: Sequence[str]) -> str:
    """A short human form of the resource arguments, for logs and events."""
    return " ".join(a for a in args if not a.startswith(("--output=", "--chdir=", "--comment=")))
