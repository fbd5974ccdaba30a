"""A run's resources as sbatch arguments, the allow-list of extra arguments, the job script,
and the multi-node launch command lines (no Slurm needed)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from runyard import models
from runyard.agent.slurm import launch, rank, resources, script
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


def test_launcher_command_lines() -> None:
    cmd = ["/usr/bin/python3", "train.py", "--lr", "0.1"]
    assert launch.wrap(cmd, launcher="srun", nodes=1, nproc_per_node=1) == cmd
    single = launch.wrap(cmd, launcher="torchrun", nodes=1, nproc_per_node=2, python="/py")
    assert single == ["/py", "-m", "torch.distributed.run", "--nnodes=1", "--nproc-per-node=2",
                      "--tee=3", "--standalone", "train.py", "--lr", "0.1"]
    multi = launch.wrap(cmd, launcher="torchrun", nodes=2, nproc_per_node=1, python="/py")
    assert multi == ["/py", "-m", "runyard.agent.slurm.launch", "--launcher=torchrun",
                     "--nodes=2", "--nproc-per-node=1", "--", *cmd]
    node = launch.torchrun_argv("/py", 2, 1, ["python", "-m", "pkg.train", "x"],
                                rdzv_endpoint="10.0.0.1:1234", rdzv_id="77", is_host=False)
    assert node[-6:] == ["--rdzv-endpoint=10.0.0.1:1234", "--rdzv-id=77",
                         "--rdzv-conf=is_host=0", "--module", "pkg.train", "x"]
    with pytest.raises(ValueError):
        launch.wrap(cmd, launcher="mpirun", nodes=2, nproc_per_node=1)


def test_rank_environment(tmp_path: Path) -> None:
    env = {"SLURM_PROCID": "1", "SLURM_NTASKS": "2", "SLURM_LOCALID": "0", "SLURM_NODEID": "1",
           "SLURM_JOB_NODELIST": "n[1-2]", "SLURMD_NODENAME": "n1",
           "RUNYARD_PROGRESS_FILE": str(tmp_path / "progress.json"),
           "RUNYARD_METRICS_FILE": str(tmp_path / "metrics.jsonl"),
           "RUNYARD_STOP_FILE": str(tmp_path / "STOP")}
    out = rank.rank_env(env)
    assert (out["RANK"], out["WORLD_SIZE"], out["LOCAL_RANK"], out["NODE_RANK"]) == \
        ("1", "2", "0", "1")
    assert out["RUNYARD_PROGRESS_FILE"] == str(tmp_path / "ranks" / "1" / "progress.json")
    assert out["RUNYARD_STOP_FILE"] == str(tmp_path / "STOP")  # every rank sees stop
    assert rank.node_name(env) == "n2"
    zero = rank.rank_env({**env, "SLURM_PROCID": "0"})
    assert zero["RUNYARD_PROGRESS_FILE"] == str(tmp_path / "progress.json")
