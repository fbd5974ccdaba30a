"""Preemption end to end (one server for the module, each test its own runs): a real
agent and a real SDK trainer that saves a checkpoint when asked to stop. ``runyard preempt``
stops it, the run is requeued (reason ``preempted``, no error counted) and the next attempt
resumes from that checkpoint."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ..support.agents import AgentProc, Api, resumable_trainer
from ..support.live_server import LiveServer

pytestmark = pytest.mark.timeout(180)

#: Attempt 1 is slow (so it is still running when preempted), later ones are fast.
TRAINER = resumable_trainer(300)


def cli(server: LiveServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RUNYARD_SERVER": server.url, "RUNYARD_TOKEN": server.admin_token}
    return subprocess.run([sys.executable, "-m", "runyard", *args], capture_output=True,
                          text=True, env=env, timeout=60, stdin=subprocess.DEVNULL)


def test_preempt_checkpoints_requeues_and_resumes(tmp_path: Path, server: LiveServer) -> None:
    script = tmp_path / "trainer.py"
    script.write_text(TRAINER)
    api = Api(server)
    agent = AgentProc(server, api.worker_token(), "box-1", tmp_path / "work")
    try:
        run_id = api.submit("preempted", script, max_restarts_on_errors=0, max_attempts=3)
        api.wait(run_id, lambda r: r["status"] == "running"
                 and ((r.get("progress") or {}).get("step") or 0) >= 5, timeout=60)

        done = cli(server, "preempt", run_id, "--grace", "30")
        assert done.returncode == 0, done.stderr
        assert "preemption requested" in done.stdout

        run = api.wait(run_id, ["completed", "failed", "stopped"], timeout=120)
        assert run["status"] == "completed", run
        first, second = run["attempts"][0], run["attempts"][1]
        assert first["termination_reason"] == "preempted"
        assert second["termination_reason"] == "completed" and len(run["attempts"]) == 2

        saved = int(api.logs(run_id, attempt=1).split("saved at ")[1].split()[0])
        assert f"resumed from {saved} {saved}" in api.logs(run_id, attempt=2)
        # Attempt 2 logged from the step after the checkpoint on, nothing before it.
        steps2 = sorted(p["step"] for p in api.metrics(run_id, attempt=2))
        assert steps2[0] == saved + 1 and steps2[-1] == 299

        ckpts = api.http.get(f"/v1/runs/{run_id}/checkpoints").json()["items"]
        assert [(c["attempt"], c["step"], c["status"]) for c in ckpts] == \
            [(1, saved, "complete")]
        statuses = [e for e in api.events(run_id) if e["kind"] == "status"]
        stopping = next(e for e in statuses if e["status"] == "stopping")
        assert stopping["details"]["intent"] == "preempt"
        requeued = next(e for e in statuses if e["status"] == "queued" and e["attempt"] == 1)
        assert requeued["details"]["reason"] == "preempted"
        assert "requeued" in requeued["details"]["decision"]
        # Not an error: the run's error-retry budget (max_restarts_on_errors 0) was not used.
        assert not any(e["status"] == "failed" for e in statuses)
    finally:
        agent.stop()
        api.close()


def test_preempt_refuses_what_cannot_be_preempted(server: LiveServer) -> None:
    api = Api(server)
    try:
        queued = api.http.post("/v1/runs", json={"name": "q", "command": ["true"]}).json()
        r = api.http.post(f"/v1/runs/{queued['id']}/preempt", json={})
        assert r.status_code == 409 and r.json()["error"]["type"] == "IllegalTransition"
        assert api.run(queued["id"])["status"] == "queued"  # not cancelled
        local = api.http.post("/v1/runs", json={"name": "l", "executor": "local"}).json()
        r = api.http.post(f"/v1/runs/{local['run']['id']}/preempt", json={})
        assert r.status_code == 409 and r.json()["error"]["type"] == "NotSchedulable"
        assert api.run(local["run"]["id"])["status"] == "running"
        r = api.http.post(f"/v1/runs/{queued['id']}/preempt", json={"grace_seconds": -1})
        assert r.status_code == 422 and r.json()["error"]["field"] == "grace_seconds"
        r = api.http.post(f"/v1/runs/{queued['id']}/preempt", json={"grace": 1})
        assert r.status_code == 422
        missing = cli(server, "preempt", "0190000000000aaaaaaaaaa")
        assert missing.returncode == 1 and "Traceback" not in missing.stderr
    finally:
        api.close()
