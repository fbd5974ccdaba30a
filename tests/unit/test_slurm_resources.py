"""A run's resources as sbatch arguments, the allow-list of extra arguments, the job script,
and the multi-node launch command lines (no Slurm needed)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from runyard import models
from runyard.agent.slurm import launch, resources, script
from runyard.slurm_options import SlurmOptions


def _c(**kw: object) -> models.Constraints:
    return models.Constraints.from_dict(kw)


def test_resources_map_to_sbatch_arguments() -> None:
    opts = SlurmOptions.from_dict({"partition": "gpu", "account": "lab", "qos": "hi",
                                             "time_limit": "1:30:00"})
    args = resources.resource_args(_c(min_cpus=3.5, min_ram_gib=1.5, gpus=2), opts,
                                   default_partition="debug", default_account="other")
    assert args == ["--nodes=1", "--ntasks-per-node=1", "--cpus-per-task=4", "--mem=1536M",
                    "--gres=gpu:2", "--time=01:30:00", "--partition=gpu", "--account=lab",
                    "--qos=hi"]


def test_defaults_and_require_cuda() -> None:
    args = resources.resource_args(_c(require_cuda=True), SlurmOptions(),
                                   default_partition="debug", default_account="lab")
    assert args == ["--nodes=1", "--ntasks-per-node=1", "--gres=gpu:1", "--partition=debug",
                    "--account=lab"]
    assert resources.resource_args(_c(), SlurmOptions()) == [
        "--nodes=1", "--ntasks-per-node=1"]


def test_full_sbatch_line_names_the_attempt_and_never_requeues() -> None:
    opts = SlurmOptions.from_dict({"time_limit": 60,
                                             "sbatch_args": ["--constraint=a100", "--exclusive"]})
    args = resources.sbatch_args(_c(), opts, attempt_id="at_1", run_id="r_1", number=2,
                                 output="/w/r_1/2/slurm-%j.out", chdir="/w", grace_s=30)
    assert args[:6] == ["--job-name=runyard-at_1", "--comment=runyard run r_1 attempt 2",
                        "--output=/w/r_1/2/slurm-%j.out", "--chdir=/w", "--no-requeue",
                        "--export=ALL"]
    assert "--time=01:00:00" in args and "--signal=B:TERM@45" in args
    assert args[-2:] == ["--constraint=a100", "--exclusive"]
    assert resources.attempt_of("runyard-at_1") == "at_1"
    assert resources.attempt_of("wrap") is None and resources.attempt_of("runyard-") is None


@pytest.mark.parametrize(("limit", "grace", "want"), [
    (None, 30, None), (60, 30, None), (300, 30, "--signal=B:TERM@45"),
    (3600, 600, "--signal=B:TERM@615")])
def test_warning_signal_only_with_room(limit: float | None, grace: float,
                                       want: str | None) -> None:
    assert resources.warning_signal(limit, grace) == want


def test_job_script_carries_no_secret_and_execs_the_supervisor(tmp_path: Path) -> None:
    text = script.render(["/venv/bin/python", "-m", "runyard", "supervise", "--attempt-file",
                          "/w/r 1/1/attempt.json"], run_id="r1", number=1, cwd="/w/it's")
    assert text.startswith("#!/bin/bash\n")
    assert "exec /venv/bin/python -m runyard supervise --attempt-file '/w/r 1/1/attempt.json'" \
        in text
    assert "cd '/w/it'\"'\"'s' || exit 1" in text
    secret = tmp_path / "a" / "credential"
    script.write_secret(secret, "s3cret")
    assert secret.read_text() == "s3cret"
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600


def test_job_script_exports_the_master_address_for_several_nodes() -> None:
    text = script.render(["/py", "-m", "runyard", "supervise"], run_id="r", number=1, cwd="/w",
                         master_env=["/py", "-m", "runyard.agent.slurm.launch", "env"])
    lines = text.splitlines()
    assert lines[-2] == 'eval "$(/py -m runyard.agent.slurm.launch env)" || exit 1'
    assert lines[-1] == "exec /py -m runyard supervise"


def test_launch_prefixes() -> None:
    assert launch.launch_prefix("srun", nodes=1, gpus_per_node=0, python="/py") == []
    assert launch.launch_prefix("torchrun", nodes=1, gpus_per_node=2, python="/py") == [
        "/py", "-m", "runyard.agent.slurm.launch", "torchrun", "--nnodes=1",
        "--nproc-per-node=2", "--"]
    task = ["srun", "--kill-on-bad-exit=1", "/py", "-m", "runyard.agent.supervise", "--task",
            "--rank-from-env", "--"]
    assert launch.launch_prefix("srun", nodes=3, gpus_per_node=4, python="/py") == task
    assert launch.launch_prefix("torchrun", nodes=2, gpus_per_node=0, python="/py") == [
        *task, "/py", "-m", "runyard.agent.slurm.launch", "torchrun", "--nnodes=2",
        "--nproc-per-node=1", "--"]
    with pytest.raises(ValueError):
        launch.launch_prefix("mpirun", nodes=2, gpus_per_node=1)


def test_torchrun_command_lines() -> None:
    env = {"NODE_RANK": "1", "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "1234"}
    node = launch.torchrun_argv("/py", ["python", "-m", "pkg.train", "x"], nnodes=2,
                                nproc_per_node=1, env=env)
    assert node == ["/py", "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1",
                    "--node-rank=1", "--master-addr=10.0.0.1", "--master-port=1234",
                    "--module", "pkg.train", "x"]
    single = launch.torchrun_argv("/py", ["/usr/bin/python3", "train.py", "--lr", "1"],
                                  nnodes=1, nproc_per_node=2, env={})
    assert single[3:] == ["--nnodes=1", "--nproc-per-node=2", "--standalone", "train.py",
                          "--lr", "1"]
