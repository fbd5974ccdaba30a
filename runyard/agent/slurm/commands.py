"""Slurm's command-line tools, called as argv lists (never through a shell).

:class:`SlurmCLI` runs ``sbatch``, ``squeue``, ``scontrol``, ``sacct``, ``sinfo`` and
``scancel`` with a timeout each, and turns what they print into the records of
:mod:`runyard.agent.slurm.parse`. A command that is missing, times out or exits non-zero
raises :class:`runyard.errors.SchedulerError` with Slurm's own message, so the agent can put
it in a run's events or in ``runyard agent --check``.

The environment given to the tools is the agent's, without the agent's own settings (the
worker token above all): ``sbatch`` exports the environment it runs in into the job, and the
job must never see the worker token.
"""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence

from runyard import errors
from runyard.agent.slurm import parse

#: The tools the executor uses; ``sacct`` is optional (accounting may be off).
REQUIRED = ("sbatch", "squeue", "scontrol", "scancel", "sinfo")
#: Seconds one command may take (a busy slurmctld answers slowly, but answers).
TIMEOUT_S = 60.0
#: The agent settings never handed to Slurm (or, through ``sbatch``, to a job).
SECRET_ENV = ("RUNYARD_TOKEN", "RUNYARD_ADMIN_TOKEN")


def clean_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's) without the agent's settings and tokens."""
    source = os.environ if env is None else env
    return {k: v for k, v in source.items()
            if k not in SECRET_ENV and not (k.startswith("RUNYARD_") and k != "RUNYARD_LOG_LEVEL")}


class SlurmCLI:
    """One Slurm cluster's tools, as the submitting user sees them."""

    def __init__(self, env: Mapping[str, str] | None = None,
                 timeout_s: float = TIMEOUT_S) -> None:
        self.env = clean_env(env)
        self.timeout_s = timeout_s
        self.user = getpass.getuser()

    def missing(self) -> list[str]:
        """The required tools not on ``PATH``."""
        path = self.env.get("PATH")
        return [c for c in REQUIRED if shutil.which(c, path=path) is None]

    def run(self, argv: Sequence[str], *, input_text: str | None = None,
            ok_codes: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
        """Run one tool; its failure is a :class:`~runyard.errors.SchedulerError`."""
        what = argv[0] if len(argv) < 2 or argv[1].startswith("-") else " ".join(argv[:2])
        try:
            proc = subprocess.run(list(argv), capture_output=True, text=True, env=self.env,
                                  timeout=self.timeout_s, input=input_text,
                                  stdin=None if input_text is not None else subprocess.DEVNULL)
        except FileNotFoundError as exc:
            raise errors.SchedulerError(f"{argv[0]}: command not found (is Slurm installed "
                                        f"and on PATH?)", command=what) from exc
        except subprocess.TimeoutExpired as exc:
            raise errors.SchedulerError(f"{what}: no answer in {self.timeout_s:.0f} s",
                                        command=what) from exc
        except OSError as exc:
            raise errors.SchedulerError(f"{what}: {exc}", command=what) from exc
        if proc.returncode not in ok_codes:
            message = (proc.stderr.strip() or proc.stdout.strip() or "no message").splitlines()
            # The last lines say why (sbatch prints "sbatch: error: ..." lines).
            raise errors.SchedulerError(f"{what} exited {proc.returncode}: "
                                        f"{' '.join(message[-3:])[:2000]}",
                                        command=what, returncode=proc.returncode)
        return proc

    # --- the tools --------------------------------------------------------------------------

    def sbatch(self, args: Sequence[str], script: str) -> str:
        """Submit ``script`` (its text, on stdin) with ``args``; the job id."""
        out = self.run(["sbatch", "--parsable", *args], input_text=script).stdout.strip()
        job_id = out.splitlines()[-1].split(";", 1)[0].strip() if out else ""
        if not job_id.isdigit():
            raise errors.SchedulerError(f"sbatch answered no job id: {out[:200]!r}",
                                        command="sbatch")
        return job_id

    def squeue(self, *, names: Sequence[str] = (), job_ids: Sequence[str] = ()
               ) -> list[parse.JobInfo]:
        """This user's jobs, finished ones too while Slurm keeps them (``-t all``)."""
        argv = ["squeue", "-h", "-t", "all", "-u", self.user, "-o", parse.SQUEUE_FORMAT]
        if names:
            argv += ["-n", ",".join(names)]
        if job_ids:
            argv += ["-j", ",".join(job_ids)]
        # squeue -j with only unknown ids exits 1 ("Invalid job id specified").
        proc = self.run(argv, ok_codes=(0, 1) if job_ids else (0,))
        if proc.returncode != 0 and "Invalid job id" not in proc.stderr:
            raise errors.SchedulerError(f"squeue exited {proc.returncode}: "
                                        f"{proc.stderr.strip()[:500]}", command="squeue",
                                        returncode=proc.returncode)
        return parse.squeue_jobs(proc.stdout)

    def show_job(self, job_id: str) -> parse.JobInfo | None:
        """``scontrol show job``; None once Slurm forgot the job (``MinJobAge``)."""
        proc = self.run(["scontrol", "show", "job", "-o", job_id], ok_codes=(0, 1))
        if proc.returncode != 0:
            if "Invalid job id" in proc.stderr:
                return None
            raise errors.SchedulerError(f"scontrol show job {job_id} exited "
                                        f"{proc.returncode}: {proc.stderr.strip()[:500]}",
                                        command="scontrol show", returncode=proc.returncode)
        return parse.scontrol_job(proc.stdout)

    def sacct(self, job_ids: Sequence[str]) -> list[parse.JobInfo] | None:
        """Jobs from accounting, or None when accounting is off or ``sacct`` is missing."""
        if not job_ids or shutil.which("sacct", path=self.env.get("PATH")) is None:
            return None
        try:
            proc = self.run(["sacct", "-P", "-n", "-X", "-j", ",".join(job_ids), "-o",
                             ",".join(parse.SACCT_FIELDS)], ok_codes=(0, 1))
        except errors.SchedulerError:
            return None
        if proc.returncode != 0:  # "Slurm accounting storage is disabled"
            return None
        return parse.sacct_jobs(proc.stdout)

    def sinfo(self, partition: str | None = None) -> list[parse.NodeInfo]:
        argv = ["sinfo", "-h", "-N", "-o", parse.SINFO_FORMAT]
        if partition:
            argv += ["-p", partition]
        return parse.sinfo_nodes(self.run(argv).stdout)

    def default_partition(self) -> str | None:
        """The cluster's default partition (``sinfo`` marks it with ``*``)."""
        for line in self.run(["sinfo", "-h", "-o", "%P"]).stdout.splitlines():
            if line.strip().endswith("*"):
                return line.strip().rstrip("*")
        return None

    def node_addr(self, node: str) -> str | None:
        """A node's address (``NodeAddr``), for ``MASTER_ADDR``."""
        proc = self.run(["scontrol", "show", "node", "-o", node], ok_codes=(0, 1))
        rec = parse.scontrol_record(proc.stdout.strip().splitlines()[0]) if proc.stdout else {}
        return rec.get("NodeAddr") or None

    def scancel(self, job_id: str, *, signal: str | None = None, full: bool = False) -> None:
        """Cancel a job, or send it ``signal`` (``full``: the batch shell and every step)."""
        argv = ["scancel"]
        if signal:
            argv.append(f"--signal={signal}")
        if full:
            argv.append("--full")
        self.run([*argv, job_id])
