"""How Slurm ends a job, end to end: a real server and ``runyard agent --executor slurm``,
and Slurm itself ending the job. A time limit ends the run as ``timeout``; a job of a higher
``PriorityTier`` partition preempts it (``preempted``, requeued as a new attempt that resumes
from the checkpoint the trainer saved on Slurm's SIGTERM); a cgroup memory limit kills it
(``oom``, on a cluster that enforces memory: tests/support/slurm.py).

The memory test is opt-in (``RUNYARD_TEST_SLURM_OOM=1``): it passes on its own and with this
module, but beside the rest of the suite its job has been seen ending CANCELLED two seconds
after its submission, a cause not found yet; until it is, it would fail CI by chance. The
mapping of OUT_OF_MEMORY itself is tested with captured records (tests/unit)."""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..support.agents import resumable_trainer
from ..support.slurm import SlurmCluster, SlurmUnavailable
from .test_slurm_e2e import SlurmSetup, slurm_setup, until

pytestmark = pytest.mark.timeout(300)

ENDED = {"completed", "failed", "stopped"}


@pytest.fixture
def setup(tmp_path: Path, slurm: SlurmCluster) -> Iterator[SlurmSetup]:
    with slurm_setup(tmp_path, slurm) as s:
        yield s


def _attempt(run: dict[str, Any], number: int) -> dict[str, Any]:
    return next(a for a in run["attempts"] if a["number"] == number)


@pytest.mark.slow
def test_a_run_past_its_slurm_time_limit_ends_as_timeout(setup: SlurmSetup) -> None:
    """One minute, Slurm's least: the controller checks limits every 30 s, so the job ends
    60 to 90 s after it started (then KillWait)."""
    s = setup
    s.agent()
    run_id = s.submit("over-time", {"steps": 100000, "sleep": 0.1}, slurm={"time_limit": 1})
    s.wait(run_id, lambda r: (r.get("progress") or {}).get("step", 0) >= 2)
    job = s.job_of(run_id)
    rec = s.slurm.show_job(job)
    # Too short for the warning signal: Slurm's own SIGTERM at the limit is what stops it.
    assert rec["TimeLimit"] == "00:01:00" and "--signal" not in s.agents[0].log()
    run = s.wait(run_id, lambda r: r["status"] in ENDED or len(r["attempts"]) >= 2,
                 timeout=180)
    attempt = _attempt(run, 1)
    assert attempt["termination_reason"] == "timeout", (attempt, s.agents[0].log()[-3000:])
    assert attempt["details"]["slurm_state"] == "TIMEOUT", attempt
    assert "time limit" in attempt["details"]["message"]
    # The run's own doing: max_restarts_on_errors (0 by default) says no retry.
    assert run["status"] == "failed" and len(run["attempts"]) == 1, run
    assert s.slurm.show_job(job)["JobState"] == "TIMEOUT"


#: Saves a checkpoint when told to stop (Slurm's SIGTERM reaches it as ``should_stop``) and
#: resumes from it on a later attempt. Attempt 1 is slow, so it is running when preempted.
TRAINER = resumable_trainer(2000)


def test_a_higher_tier_job_preempts_the_run_which_is_requeued_and_resumes(
        setup: SlurmSetup) -> None:
    s = setup
    s.agent()
    script = s.tmp / "trainer.py"
    script.write_text(TRAINER)
    resp = s.api.http.post("/v1/runs", json={
        "name": "preempted-by-slurm", "executor": "slurm",
        "command": [sys.executable, str(script)], "probe_interval_s": 0.2,
        "slurm": {"sbatch_args": ["--nodelist=n1"]}})
    assert resp.status_code == 201, resp.text
    run_id = resp.json()["id"]
    s.wait(run_id, lambda r: r["status"] == "running"
           and ((r.get("progress") or {}).get("step") or 0) >= 5)
    job = s.job_of(run_id)

    # A plain job of the `high` partition that needs the whole node the run is on.
    urgent = s.slurm.run("sbatch", "--parsable", "--partition=high", "--nodelist=n1",
                         "--exclusive", "--output=/dev/null", "--wrap", "sleep 5").stdout.strip()
    run = s.wait(run_id, lambda r: len(r["attempts"]) >= 2 or r["status"] in ENDED)
    first = _attempt(run, 1)
    assert first["termination_reason"] == "preempted", (first, s.agents[0].log()[-3000:])
    assert first["details"]["slurm_state"] == "PREEMPTED", first
    assert first["external_id"] == job
    # Slurm did not requeue the job behind Runyard's back (--no-requeue): it ended.
    rec = s.slurm.show_job(job)
    assert (rec["JobState"], rec["Requeue"], rec["Restarts"]) == ("PREEMPTED", "0", "0"), rec
    until("the urgent job running", lambda: s.slurm.show_job(urgent)["JobState"] in (
        "RUNNING", "COMPLETED"))

    run = s.wait(run_id, ENDED, timeout=180)
    assert run["status"] == "completed", (run, s.agents[0].log()[-3000:])
    second = _attempt(run, 2)
    assert second["termination_reason"] == "completed" and len(run["attempts"]) == 2
    assert second["external_id"] not in (None, job)  # a new job for the new attempt
    saved = int(s.api.logs(run_id, attempt=1).split("saved at ")[1].split()[0])
    assert f"resumed from {saved}" in s.api.logs(run_id, attempt=2)
    ckpts = s.api.http.get(f"/v1/runs/{run_id}/checkpoints").json()["items"]
    assert [(c["attempt"], c["step"]) for c in ckpts] == [(1, saved)]
    # A system reason: the error budget (max_restarts_on_errors 0) was not spent.
    statuses = [e for e in s.api.events(run_id) if e["kind"] == "status"]
    requeued = next(e for e in statuses if e["status"] == "queued" and e["attempt"] == 1)
    assert requeued["details"]["reason"] == "preempted", requeued


@pytest.fixture
def memory_slurm(slurm: SlurmCluster, tmp_path: Path,
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[SlurmCluster]:
    """A one-node cluster that holds jobs to their ``--mem`` (cgroup v1 memory), beside the
    session's (whose ``munged`` it shares). Skipped where slurmd cannot use the memory
    cgroup."""
    if not Path("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists():
        pytest.skip("no cgroup v1 memory controller at /sys/fs/cgroup/memory")
    cluster = SlurmCluster(tmp_path / "mem-slurm", memory_enforced=True)
    try:
        cluster.start()
    except SlurmUnavailable as exc:
        pytest.skip(f"memory-enforcing Slurm cluster unavailable: {exc}")
    monkeypatch.setenv("SLURM_CONF", str(cluster.conf))
    try:
        yield cluster
    finally:
        cluster.stop(keep_munged=True)


#: Takes memory 8 MiB at a time (written, so it is resident) until something stops it.
HOG = textwrap.dedent('''
    import sys, time
    print("taking memory", flush=True)
    held = []
    for i in range(512):
        held.append(b"x" * (8 << 20))
        time.sleep(0.02)
    print("never killed", flush=True)
''')


@pytest.mark.skipif(not os.environ.get("RUNYARD_TEST_SLURM_OOM"),
                    reason="opt-in (RUNYARD_TEST_SLURM_OOM=1): not yet reliable beside the "
                           "rest of the suite (see the module's docstring)")
def test_a_run_over_its_memory_is_killed_and_ends_as_oom(
        tmp_path: Path, memory_slurm: SlurmCluster) -> None:
    with slurm_setup(tmp_path, memory_slurm) as s:
        s.agent()
        script = s.tmp / "hog.py"
        script.write_text(HOG)
        resp = s.api.http.post("/v1/runs", json={
            "name": "hog", "executor": "slurm", "command": [sys.executable, str(script)],
            "constraints": {"min_ram_gib": 0.25}})
        assert resp.status_code == 201, resp.text
        run_id = resp.json()["id"]
        run = s.wait(run_id, lambda r: r["status"] in ENDED or len(r["attempts"]) >= 2,
                     timeout=120)
        attempt = _attempt(run, 1)
        assert attempt["termination_reason"] == "oom", (attempt, s.agents[0].log()[-3000:])
        assert attempt["details"]["slurm_state"] == "OUT_OF_MEMORY", attempt
        # Slurm's own word on the kill is in what the attempt kept of the job's output.
        assert "oom-kill event" in " ".join(attempt["details"]["stderr_tail"]), attempt
        assert run["status"] == "failed" and len(run["attempts"]) == 1, run
        job = str(attempt["external_id"])
        assert memory_slurm.show_job(job)["MinMemoryNode"] == "256M"
        assert "taking memory" in s.api.logs(run_id)
        assert "never killed" not in s.api.logs(run_id)
