"""End to end: ``runyard supervise`` driven by hand, as an executor drives it on a compute
node: a claim made with the worker token, then a supervisor process holding only the
attempt's own credential (docs/executors.md). And a local agent next to a Slurm run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..support.agents import AgentProc, Api, write_train_script
from ..support.live_server import LiveServer

pytestmark = pytest.mark.timeout(120)

TASK = [sys.executable, "-m", "runyard", "supervise", "--task", "--rank-from-env", "--"]


@pytest.fixture
def server(own_server: LiveServer) -> LiveServer:
    """The test's own server (tests/e2e/conftest.py)."""
    return own_server


def _claim(server: LiveServer, worker_token: str) -> dict[str, Any]:
    with httpx.Client(base_url=server.url, timeout=15,
                      headers={"Authorization": f"Bearer {worker_token}"}) as http:
        r = http.post("/v1/workers/claim", json={"host_id": "login", "capabilities": {
            "host_id": "login", "executor": "slurm", "cpus": 4, "ram_gib": 8, "nodes": 2}})
    assert r.status_code == 200, r.text
    return dict(r.json())


def _private(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


def _supervise(tmp_path: Path, server: LiveServer, answer: dict[str, Any], *,
               prefix: list[str] | None = None, env: dict[str, str] | None = None
               ) -> subprocess.Popen[bytes]:
    """Start ``runyard supervise`` as an executor would: the spec without the credential,
    the credential in a 0600 file, no worker token anywhere in its environment."""
    token = answer.pop("attempt_token")
    spec = {**answer, **({"launch_prefix": prefix} if prefix else {})}
    spec_file = _private(tmp_path / "spec.json", json.dumps(spec))
    token_file = _private(tmp_path / "attempt-token", token)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RUNYARD_")}
    log = open(tmp_path / "supervise.log", "wb")  # the child keeps its own copy
    proc = subprocess.Popen(
        [sys.executable, "-m", "runyard", "supervise", "--server", server.url,
         "--spec", str(spec_file), "--token-file", str(token_file),
         "--work-dir", str(tmp_path / "node-work"), "--probe-interval-s", "0.2",
         "--stop-grace-s", "5"],
        stdout=log, stderr=subprocess.STDOUT, env={**clean, "RUNYARD_LOG_LEVEL": "INFO",
                                                   **(env or {})})
    log.close()
    return proc


def test_supervise_runs_an_attempt_with_only_its_own_credential(
        tmp_path: Path, server: LiveServer, api: Api) -> None:
    script = write_train_script(tmp_path)
    run_id = api.submit("on-slurm", script, {"steps": 8, "points_per_step": 2,
                                             "artifact": "weights", "checkpoint": True},
                        executor="slurm")
    answer = _claim(server, api.worker_token("login-node"))
    assert answer["run"]["id"] == run_id
    proc = _supervise(tmp_path, server, answer)
    assert proc.wait(60) == 0, (tmp_path / "supervise.log").read_text()

    run = api.wait(run_id, {"completed", "failed"})
    assert run["status"] == "completed", run
    points = api.metrics(run_id)
    assert {(p["tag"], p["step"]) for p in points} == {
        (f"m{k}", s) for k in range(2) for s in range(8)}
    snap = api.http.get(f"/v1/runs/{run_id}/progress").json()["snapshot"]
    assert snap["step"] == 7 and snap["seq"] == 8
    out = api.logs(run_id)
    assert "done" in out and "token <none>" in out
    assert "the end" in api.logs(run_id, stream="stderr")
    names = {a["name"] for a in api.http.get(f"/v1/runs/{run_id}/artifacts").json()["items"]}
    assert {"artifacts.tar.zst", "checkpoints/final.ckpt"} <= names
    assert api.http.get(f"/v1/runs/{run_id}/checkpoints").json()["items"][0]["status"] == \
        "complete"
    # Every report was made under the attempt's credential, not the worker token.
    actors = {e["actor"] for e in api.events(run_id) if e["status"] in ("running", "completed")}
    assert actors == {"login/attempt-1"}
    # And that credential is done with: it ended with its attempt.
    with httpx.Client(base_url=server.url, timeout=15) as http:
        r = http.get("/v1/whoami", headers={
            "Authorization": f"Bearer {(tmp_path / 'attempt-token').read_text()}"})
    assert r.status_code == 401


def test_a_launcher_prefix_runs_each_node_under_a_task_wrapper_and_stops_it(
        tmp_path: Path, server: LiveServer, api: Api) -> None:
    script = write_train_script(tmp_path)
    run_id = api.submit("multi", script, {"steps": 600, "sleep": 0.05, "on_sigterm": "exit0"},
                        executor="slurm")
    answer = _claim(server, api.worker_token("login-node"))
    proc = _supervise(tmp_path, server, answer, prefix=TASK,
                      env={"SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NTASKS": "2",
                           "SLURM_NODEID": "0", "SLURMD_NODENAME": "node0"})
    try:
        api.wait(run_id, lambda r: (r.get("progress") or {}).get("step", 0) >= 3)
        r = api.http.post(f"/v1/runs/{run_id}/stop", json={"grace_seconds": 20})
        assert r.status_code == 200, r.text
        run = api.wait(run_id, {"stopped", "completed", "failed"})
        # Reported either way: completed (it exited 0 at the stop file; the server records
        # the stop) or failed (a signal ended it first).
        assert proc.wait(60) in (0, 1), (tmp_path / "supervise.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert run["status"] == "stopped", run
    out = api.logs(run_id)
    # The node's lines carry its node and rank; the stop reached the training process as
    # the stop file the wrapper saw (it exits cleanly at its next step).
    assert "[node0 rank 0] done" not in out
    assert "[node0 rank 0] stopping cleanly at" in out, out[-2000:]
    assert "[node0 rank 0] attempt 1 token <none>" in out


def test_supervise_refuses_a_credential_others_may_read(tmp_path: Path,
                                                        server: LiveServer) -> None:
    spec = _private(tmp_path / "spec.json", "{}")
    loose = tmp_path / "token"
    loose.write_text("rya_x")
    loose.chmod(0o644)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RUNYARD_")}
    for extra, needle in ((["--token-file", str(loose)], "make it 0600"),
                          ([], "RUNYARD_ATTEMPT_TOKEN")):
        done = subprocess.run([sys.executable, "-m", "runyard", "supervise", "--server",
                               server.url, "--spec", str(spec), *extra],
                              capture_output=True, text=True, env=clean, timeout=60)
        assert done.returncode == 1 and needle in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


def test_a_local_agent_never_claims_a_slurm_run(tmp_path: Path, server: LiveServer,
                                                api: Api) -> None:
    script = write_train_script(tmp_path)
    slurm = api.submit("on-slurm", script, {"steps": 1}, executor="slurm", priority=10)
    fleet = api.submit("on-fleet", script, {"steps": 1})
    agent = AgentProc(server, api.worker_token(), "box", tmp_path / "work")
    try:
        assert api.wait(fleet, {"completed", "failed"})["status"] == "completed"
        shown = api.run(slurm)
        assert shown["status"] == "queued" and shown["attempts"] == []
        assert shown["explain"]["summary"] == "no slurm agent is connected"
        workers = api.http.get("/v1/workers").json()["items"]
        assert [(w["host_id"], w["executor"]) for w in workers] == [("box", "local")]
    finally:
        agent.stop()
