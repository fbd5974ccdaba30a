"""The Slurm tools against the real test cluster: what the executor submits reaches Slurm,
what Slurm prints is read back, and what it refuses comes back with Slurm's own message."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from runyard import errors, models
from runyard.agent.slurm import commands, partitions, resources, script, states
from runyard.slurm_options import SlurmOptions

from ..support.slurm import SlurmCluster


def _until(what: str, check: Callable[[], object], timeout: float = 60.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _state(cli: commands.SlurmCLI, job: str) -> str:
    info = cli.show_job(job)
    return info.state if info else ""


def test_sinfo_offers_both_nodes(slurm: SlurmCluster) -> None:
    cli = commands.SlurmCLI()
    assert cli.missing() == []
    assert cli.default_partition() == "debug"
    offer = partitions.pick(partitions.offers(cli.sinfo()), "debug")
    assert offer is not None and (offer.nodes, offer.cpus, offer.memory_mb, offer.gpus) == \
        (2, 1, 4000, 0)
    assert cli.sacct(["1"]) is None  # no accounting storage on the test cluster


def test_resources_reach_sbatch(slurm: SlurmCluster, tmp_path: Path) -> None:
    cli = commands.SlurmCLI()
    opts = SlurmOptions.from_dict({"time_limit": 10, "sbatch_args": ["--nice=5"]})
    c = models.Constraints.from_dict({"min_cpus": 1, "min_ram_gib": 0.25})
    args = resources.sbatch_args(c, opts, attempt_id="at_read", run_id="r_read", number=1,
                                 output=str(tmp_path / "slurm-%j.out"), chdir=str(tmp_path),
                                 grace_s=5, default_partition="debug")
    job = cli.sbatch(args, script.render(["sleep", "30"], run_id="r_read", number=1,
                                         cwd=tmp_path))
    try:
        rec = slurm.show_job(job)
        assert rec["JobName"] == "runyard-at_read"
        assert rec["Comment"] == "runyard run r_read attempt 1"
        assert rec["MinMemoryNode"] == "256M" and rec["CPUs/Task"] == "1"
        assert rec["TimeLimit"] == "00:10:00" and rec["Partition"] == "debug"
        assert rec["Requeue"] == "0" and rec["NumNodes"] in ("1", "1-1") and rec["Nice"] == "5"
        found = cli.squeue(names=["runyard-at_read"])
        assert [j.job_id for j in found] == [job]
        assert resources.attempt_of(found[0].name) == "at_read"
    finally:
        cli.scancel(job)
    _until("cancelled", lambda: _state(cli, job) == "CANCELLED")
    assert states.verdict(_state(cli, job)).reason is models.Reason.STOPPED


def test_sbatch_refusal_keeps_slurms_message(slurm: SlurmCluster, tmp_path: Path) -> None:
    cli = commands.SlurmCLI()
    c = models.Constraints.from_dict({"gpus": 1})
    args = resources.resource_args(c, SlurmOptions(), default_partition="debug")
    with pytest.raises(errors.SchedulerError) as exc:
        cli.sbatch([*args, f"--output={tmp_path}/o"], "#!/bin/bash\ntrue\n")
    assert "sbatch exited 1" in exc.value.message
    assert "Invalid generic resource (gres) specification" in exc.value.message
    with pytest.raises(errors.SchedulerError, match="Requested node configuration is not "
                                                    "available"):
        cli.sbatch(["--mem=999999M", f"--output={tmp_path}/o"], "#!/bin/bash\ntrue\n")
    with pytest.raises(errors.SchedulerError, match="Invalid partition name"):
        cli.sbatch(["--partition=nope", f"--output={tmp_path}/o"], "#!/bin/bash\ntrue\n")
    assert cli.show_job("999999") is None
    assert cli.squeue(job_ids=["999999"]) == []


def test_cancel_with_signal_reaches_the_batch_shell(slurm: SlurmCluster, tmp_path: Path) -> None:
    cli = commands.SlurmCLI()
    marker = tmp_path / "got-term"
    body = (f"#!/bin/bash\ntrap 'echo term > {marker}; exit 0' TERM\n"
            "echo started\nsleep 60 & wait\n")
    job = cli.sbatch([f"--output={tmp_path}/out", "--no-requeue"], body)
    _until("running", lambda: _state(cli, job) == "RUNNING")
    _until("started", lambda: (tmp_path / "out").exists()
           and "started" in (tmp_path / "out").read_text())
    cli.scancel(job, signal="TERM", full=True)
    _until("the trap", marker.exists)
    _until("job ended", lambda: not states.verdict(_state(cli, job)).active)


def test_two_node_launch_prefixes_every_rank(slurm: SlurmCluster, tmp_path: Path) -> None:
    """The launch prefix of a 2-node run under a real allocation: srun starts ``runyard
    supervise --task`` on both nodes, each runs the command with its rank and the first
    node's address, and every line says which node and rank printed it."""
    from runyard.agent.slurm import launch

    cli = commands.SlurmCLI()
    cmd = [sys.executable, "-c",
           "import os; print('hello', os.environ['RANK'], os.environ['WORLD_SIZE'], "
           "os.environ['LOCAL_RANK'], os.environ['NODE_RANK'], os.environ['MASTER_ADDR'], "
           "os.environ['MASTER_PORT'])"]
    argv = [*launch.launch_prefix("srun", nodes=2, gpus_per_node=0), *cmd]
    body = script.render(argv, run_id="r", number=1, cwd=Path.cwd(), master_env=[
        sys.executable, "-m", "runyard.agent.slurm.launch", "env"])
    job = cli.sbatch(["--nodes=2", "--ntasks-per-node=1", f"--output={tmp_path}/out"], body)
    _until("job ended", lambda: not states.verdict(_state(cli, job)).active)
    assert _state(cli, job) == "COMPLETED", (tmp_path / "out").read_text()
    lines = (tmp_path / "out").read_text().splitlines()
    hello = sorted(line for line in lines if " hello " in line)
    assert len(hello) == 2, lines
    assert hello[0].startswith("[n1 rank 0] hello 0 2 0 0 127.0.0.1 "), hello
    assert hello[1].startswith("[n2 rank 1] hello 1 2 0 1 127.0.0.1 "), hello
    assert hello[0].split()[-1] == hello[1].split()[-1]  # one MASTER_PORT for both
