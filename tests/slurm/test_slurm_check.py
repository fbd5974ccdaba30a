"""``runyard agent --check --executor slurm`` against the real test cluster, and without Slurm."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ..support.slurm import SlurmCluster


def _check(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runyard", "agent", "--check", "--executor",
                           "slurm", "--work-dir", str(cwd / "work")], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=120)


def test_check_prints_partitions_and_what_a_run_may_ask(slurm: SlurmCluster,
                                                        tmp_path: Path) -> None:
    proc = _check(dict(os.environ), tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "* debug" in out and "  bench" in out
    assert "a run may ask for: nodes <= 2, min_cpus <= 1, min_ram_gib <= 3.91, gpus <= 0" in out


def test_check_says_when_slurm_is_missing_or_failing(tmp_path: Path) -> None:
    no_slurm = {**os.environ, "PATH": str(Path(sys.executable).parent)}
    proc = _check(no_slurm, tmp_path)
    assert proc.returncode == 1
    assert "PROBLEM:    Slurm commands not found on PATH: sbatch, squeue" in proc.stdout
    # Installed but with a broken configuration: Slurm's own message is shown. (A missing
    # file makes sinfo look for a configuration server in DNS for a minute.)
    bad = tmp_path / "slurm.conf"
    bad.write_text("NotAKey=1\n")
    proc = _check({**os.environ, "SLURM_CONF": str(bad)}, tmp_path)
    assert proc.returncode == 1, proc.stdout
    assert "PROBLEM:    sinfo exited 1: " in proc.stdout
    assert "Unable to process configuration file" in proc.stdout
