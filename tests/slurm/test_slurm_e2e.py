"""End to end through Slurm: a real server, a real ``runyard agent --executor slurm`` and the
test cluster's two nodes. Runs go through ``sbatch``, ``runyard supervise`` inside the job
reports them, and what Slurm does to a job from outside (``scancel``, a dead ``slurmd``) ends
its run with the reason it means."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ..support.agents import AgentProc, Api, write_train_script
from ..support.live_server import LiveServer
from ..support.slurm import SlurmCluster

pytestmark = pytest.mark.timeout(300)

#: Long enough for a loaded 2-core machine to start a job and a supervisor in it.
WAIT_S = 90.0


def until(what: str, check: Callable[[], Any], timeout: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class SlurmSetup:
    """A server, its admin client and Slurm agents on one work directory."""

    def __init__(self, server: LiveServer, tmp_path: Path, slurm: SlurmCluster) -> None:
        self.server, self.tmp, self.slurm = server, tmp_path, slurm
        self.api = Api(server)
        self.token = self.api.worker_token("slurm-agent")
        self.work = tmp_path / "work"
        self.script = write_train_script(tmp_path)
        self.agents: list[AgentProc] = []

    def agent(self, *extra: str) -> AgentProc:
        a = AgentProc(self.server, self.token, "login-slurm", self.work, stop_grace_s=5,
                      extra_args=["--executor", "slurm", *extra], cwd=self.tmp)
        self.agents.append(a)
        return a

    def submit(self, name: str, config: dict[str, Any], **extra: Any) -> str:
        return self.api.submit(name, self.script, config, executor="slurm", **extra)

    def job_of(self, run_id: str) -> str:
        run = until("the run's Slurm job id",
                    lambda: (r := self.api.run(run_id)).get("external_id") and r)
        return str(run["external_id"])

    def jobs_named(self, attempt_id: str) -> list[str]:
        out = self.slurm.run("squeue", "-h", "-t", "all", "-n", f"runyard-{attempt_id}",
                             "-o", "%i").stdout
        return out.split()

    def wait(self, run_id: str, until_: Any, timeout: float = WAIT_S) -> dict[str, Any]:
        try:
            return self.api.wait(run_id, until_, timeout=timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- agent logs:\n" + "\n".join(
                a.log()[-4000:] for a in self.agents)) from exc

    def close(self) -> None:
        for a in self.agents:
            a.stop()
        self.api.close()


def _setup(server: LiveServer, tmp_path: Path, slurm: SlurmCluster) -> Iterator[SlurmSetup]:
    s = SlurmSetup(server, tmp_path, slurm)
    try:
        yield s
    finally:
        s.close()
        # Nothing of this test stays in the cluster for the next one.
        slurm.run("scancel", "-u", "root", check=False)


@pytest.fixture
def setup(tmp_path: Path, slurm: SlurmCluster) -> Iterator[SlurmSetup]:
    server = LiveServer(tmp_path / "server", stale_after_s=30).start()
    try:
        yield from _setup(server, tmp_path, slurm)
    finally:
        server.stop()


@pytest.fixture
def db_setup(tmp_path: Path, slurm: SlurmCluster, db_url: str) -> Iterator[SlurmSetup]:
    server = LiveServer(tmp_path / "server", db_url, stale_after_s=30).start()
    try:
        yield from _setup(server, tmp_path, slurm)
    finally:
        server.stop()


def _cli(server: LiveServer, *args: str) -> str:
    env = {**os.environ, "RUNYARD_SERVER": server.url,
           "RUNYARD_TOKEN": server.headers()["Authorization"].split()[1]}
    proc = subprocess.run([sys.executable, "-m", "runyard", *args], capture_output=True,
                          text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_a_run_goes_through_slurm_with_progress_metrics_and_its_resources(
        db_setup: SlurmSetup) -> None:
    s = db_setup
    s.agent()
    run_id = s.submit("through-slurm", {"steps": 40, "sleep": 0.25, "points_per_step": 3,
                                        "artifact": "weights"},
                      constraints={"min_cpus": 1, "min_ram_gib": 0.5},
                      slurm={"time_limit": 30, "sbatch_args": ["--nice=3"]})
    job = s.job_of(run_id)
    # Live progress while Slurm runs it.
    s.wait(run_id, lambda r: r["status"] == "running"
           and (r.get("progress") or {}).get("step", 0) >= 3)
    rec = s.slurm.show_job(job)
    assert rec["JobName"].startswith("runyard-") and rec["MinMemoryNode"] == "512M"
    assert rec["CPUs/Task"] == "1" and rec["TimeLimit"] == "00:30:00" and rec["Nice"] == "3"
    assert rec["Requeue"] == "0" and rec["Partition"] == "debug"
    run = s.wait(run_id, lambda r: bool(r.get("nodes")))
    assert run["external_id"] == job and run["nodes"] in (["n1"], ["n2"])
    shown = _cli(s.server, "show", run_id)
    assert job in shown and run["nodes"][0] in shown
    workers = _cli(s.server, "workers")
    assert "login-slurm" in workers and "slurm" in workers and f"job {job}" in workers

    run = s.wait(run_id, {"completed", "failed", "stopped"}, timeout=120)
    assert run["status"] == "completed", run
    points = s.api.metrics(run_id)
    assert sorted((p["tag"], p["step"]) for p in points
                  if not p["tag"].startswith("sys/")) == sorted(
        (f"m{k}", st) for k in range(3) for st in range(40))
    assert "done" in s.api.logs(run_id)
    names = {a["name"] for a in s.api.http.get(f"/v1/runs/{run_id}/artifacts").json()["items"]}
    assert "artifacts.tar.zst" in names
    # The supervisor reported under the attempt's own credential.
    actors = {e["actor"] for e in s.api.events(run_id) if e["status"] == "completed"}
    assert actors == {"login-slurm/attempt-1"}, actors
