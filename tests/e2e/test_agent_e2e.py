"""End to end: a real server, real ``runyard agent`` processes, real training subprocesses.

One GPU agent in these tests is a FAKE: ``RUNYARD_FAKE_GPUS`` makes a CPU box report GPUs,
so scheduling by CUDA constraints can be tested on any machine.
"""

from __future__ import annotations

import json
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from ..support.agents import AgentProc, Api, attempt_dir, write_train_script
from ..support.live_server import LiveServer

pytestmark = pytest.mark.lease(30)


@pytest.fixture
def server(own_server: LiveServer) -> LiveServer:
    return own_server  # each test its own: its agents claim whatever is queued


def _events(api: Api, run_id: str, kind: str) -> list[dict]:  # type: ignore[type-arg]
    return [e for e in api.events(run_id) if e["kind"] == kind]


def test_runs_report_progress_metrics_logs_artifacts_and_failures(
        tmp_path: Path, server: LiveServer, api: Api, agents: list[AgentProc]) -> None:
    script = write_train_script(tmp_path)
    ok = api.submit("ok", script, {"steps": 12, "points_per_step": 3, "artifact": "weights",
                                   "checkpoint": True}, seed=4,
                    env={"MY_VAR": "x"})
    bad = api.submit("bad", script, {"steps": 2, "exit_code": 3})
    missing = api.submit("missing", script, command=["no-such-binary-xyz", "{config_file}"])
    # A placeholder that cannot be filled is refused at submission, naming the argument,
    # instead of failing the run with setup_error once an agent claims it.
    refused = api.http.post("/v1/runs", json={"name": "unknown", "command": ["python", "{seed}"]})
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "command[1]"
    # A relative command means a file of the directory the agent runs in (its checkout).
    relative = api.submit("relative", script, {"steps": 1},
                          command=["{python}", script.name, "--config", "{config_file}"])
    agents.append(AgentProc(server, api.worker_token(), "box", tmp_path / "work", slots=2,
                            cwd=script.parent))

    run = api.wait(ok, {"completed", "failed"})
    assert run["status"] == "completed", run
    points = api.metrics(ok)
    assert len(points) == 36
    assert {(p["tag"], p["step"]) for p in points} == {
        (f"m{k}", s) for k in range(3) for s in range(12)}
    assert {p["attempt"] for p in points} == {1}
    progress = api.http.get(f"/v1/runs/{ok}/progress").json()
    assert progress["snapshot"]["seq"] == 12 and progress["snapshot"]["step"] == 11
    out = api.logs(ok)
    assert "done" in out and "token <none>" in out  # the worker token never reaches a run
    assert f"run {ok} cwd {script.parent}\n" in out  # RUNYARD_RUN_ID, the agent's directory
    assert "cuda \n" in out  # CPU run on a GPU-less host: no GPUs visible
    argv = json.loads(next(line[5:] for line in out.splitlines() if line.startswith("argv ")))
    assert argv == ["--config", str(attempt_dir(agents[0], ok, 1) / "config.json")]
    assert "the end" in api.logs(ok, stream="stderr")
    artifacts = {a["name"]: a for a in api.http.get(f"/v1/runs/{ok}/artifacts").json()["items"]}
    assert artifacts["artifacts.tar.zst"]["kind"] == "bundle"
    assert artifacts["checkpoints/final.ckpt"]["kind"] == "checkpoint"
    checkpoints = api.http.get(f"/v1/runs/{ok}/checkpoints").json()["items"]
    assert [(c["step"], c["status"]) for c in checkpoints] == [(12, "complete")]
    blob = api.http.get(f"/v1/blobs/{artifacts['checkpoints/final.ckpt']['sha256']}")
    assert blob.content == b"weights"
    # Where it ran, and its artifacts archived in the server's store by the agent's upload.
    assert (run["executor"], run["host_id"]) == ("agent", "box")
    assert [a["workdir"] for a in run["attempts"]] == [str(script.parent)]
    store = (server.data_dir / "artifacts").absolute()
    assert run["archived"] is True and run["artifact_store"] == store.as_uri()
    bundle = artifacts["artifacts.tar.zst"]["sha256"]
    assert (store / bundle[:2] / bundle[2:4] / bundle).is_file()
    assert [e["details"]["artifact_store"] for e in _events(api, ok, "archived")] \
        == [store.as_uri()]

    run = api.wait(bad, {"failed"})
    assert run["termination_reason"] == "user_error" and run["exit_code"] == 3
    final = _events(api, bad, "status")[-1]
    assert "the end" in final["details"]["stderr_tail"]
    run = api.wait(missing, {"failed"})
    assert run["termination_reason"] == "setup_error", run
    assert run["archived"] is False  # it left no artifacts: nothing was archived
    detail = _events(api, missing, "status")[-1]["details"]
    assert "no-such-binary-xyz" in detail["error"]
    assert api.wait(relative, {"completed", "failed"})["status"] == "completed"
    assert _events(api, relative, "status")[-1]["details"]["workdir"] == str(script.parent)


def _git_head() -> str | None:
    out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else None


def test_scheduling_across_two_agents(tmp_path: Path, server: LiveServer, api: Api,
                                      agents: list[AgentProc]) -> None:
    """Each run is eligible on exactly one of two agents, for exactly one reason."""
    script = write_train_script(tmp_path)
    manifest = textwrap.dedent("""
        [[hosts]]
        id = "gpu-box"
        deny = ["nogpu-*"]
        [[hosts]]
        id = "cpu-box"
        allow = ["cuda-*", "pinned", "nogpu-*", "bigmem", "lab", "huge"]
    """)
    resp = api.http.post("/v1/manifest/reload", json={"text": manifest, "source": "f.toml"})
    assert resp.status_code == 200, resp.text
    cfg = {"steps": 3, "sleep": 0.01}
    # Long enough that both CUDA runs hold a GPU at the same time.
    cuda = [api.submit(f"cuda-{i}", script, {"steps": 15, "sleep": 0.1},
                       constraints={"require_cuda": True}) for i in range(2)]
    cpu_only = api.submit("pinned", script, cfg, constraints={"allowed_hosts": ["cpu-*"]})
    denied = [api.submit(f"nogpu-{i}", script, cfg) for i in range(2)]
    bigmem = api.submit("bigmem", script, cfg, constraints={"min_ram_gib": 100})
    labelled = api.submit("lab", script, cfg, constraints={"labels": {"disk": "ssd"}})
    not_allowed = api.submit("special", script, cfg)  # cpu-box's allow list lacks it
    huge = api.submit("huge", script, cfg, constraints={"min_ram_gib": 100000})
    token = api.worker_token(hosts=["gpu-box", "cpu-box"])  # one token, two hosts
    head_before = _git_head()
    # FAKE capabilities (test-only overrides, see runyard.agent.capabilities): a CPU machine
    # reports two GPUs and 8 GiB on one agent, no GPU and 256 GiB on the other.
    fake = json.dumps([{"name": "Fake GPU A", "vram_gib": 24}, {"name": "Fake GPU B",
                                                                  "vram_gib": 24}])
    agents.append(AgentProc(server, token, "gpu-box", tmp_path / "gpu", slots=2,
                            labels="disk=ssd", env={"RUNYARD_FAKE_GPUS": fake,
                                                    "RUNYARD_FAKE_RAM_GIB": "8"}))
    agents.append(AgentProc(server, token, "cpu-box", tmp_path / "cpu", slots=2,
                            env={"RUNYARD_FAKE_RAM_GIB": "256"}))

    def host(rid: str) -> str:
        return str(api.wait(rid, {"completed"})["host_id"])

    assert [host(r) for r in cuda] == ["gpu-box", "gpu-box"]
    assert host(cpu_only) == "cpu-box"
    assert [host(r) for r in denied] == ["cpu-box", "cpu-box"]
    assert host(bigmem) == "cpu-box"
    assert host(labelled) == "gpu-box"
    assert host(not_allowed) == "gpu-box"
    # Each CUDA run saw exactly one GPU of the fake box, and not the same one.
    gpus = sorted(api.logs(r).split("cuda ")[1].split("\n")[0] for r in cuda)
    assert gpus == ["0", "1"]
    assert "cuda \n" in api.logs(bigmem)  # a CPU run sees no GPU
    run = api.run(huge)
    assert run["status"] == "queued"
    assert "min_ram_gib" in json.dumps(run["explain"])
    workers = {w["host_id"]: w for w in api.http.get("/v1/workers").json()["items"]}
    assert workers["gpu-box"]["capabilities"]["fake_gpus"] is True  # marked as fake
    assert workers["cpu-box"]["capabilities"]["ram_gib"] == 256
    heads = {head_before, _git_head()} - {None}
    if heads:  # the agents run in this checkout: they report its commit (others may commit)
        assert workers["cpu-box"]["capabilities"]["git_commit"] in heads
    assert "capabilities:\nhost id      cpu-box" in agents[1].log()  # the self-test, logged


#: Longer than a heartbeat (5 s at most) and a loaded machine's delay: the server counts the
#: grace period from the stop request, and the agent hears of the stop at its next heartbeat.
GRACE = 12.0


def test_stop_with_grace_period(tmp_path: Path, server: LiveServer, api: Api,
                                agents: list[AgentProc]) -> None:
    script = write_train_script(tmp_path)
    polite = api.submit("polite", script, {"steps": 400, "sleep": 0.05, "on_sigterm": "exit0"})
    # It trains for 50 s or more: still running when its grace period ends.
    stubborn = api.submit("stubborn", script, {"steps": 1000, "sleep": 0.05,
                                               "on_sigterm": "ignore"})
    agents.append(AgentProc(server, api.worker_token(), "box", tmp_path / "work", slots=2))
    for rid in (polite, stubborn):
        api.wait(rid, lambda r: r["status"] == "running" and r.get("progress") is not None)
    started = time.monotonic()
    for rid in (polite, stubborn):
        resp = api.http.post(f"/v1/runs/{rid}/stop", json={"grace_seconds": GRACE})
        assert resp.status_code == 200, resp.text
    run = api.wait(polite, {"stopped"}, timeout=60)
    assert run["exit_code"] == 0 and run["termination_reason"] == "stopped"
    assert "stopping cleanly" in api.logs(polite)
    stop_file = attempt_dir(agents[0], polite, run["attempt"]) / "STOP"
    assert 0 < json.loads(stop_file.read_text())["grace_s"] <= GRACE  # RUNYARD_STOP_FILE
    # It did not need its grace period: it ended on the SIGTERM, not on the SIGKILL after it.
    # (Measured by what happened, not by the clock: the stop reaches the agent with its next
    # heartbeat.)
    detail = _events(api, polite, "status")[-1]["details"]
    assert detail.get("signal") != "SIGKILL", detail
    assert "after the stop grace period" not in str(detail.get("message", "")), detail
    run = api.wait(stubborn, {"stopped"}, timeout=60)
    assert run["termination_reason"] == "stopped"
    assert time.monotonic() - started >= GRACE - 0.1  # not before its grace period ran out
    detail = _events(api, stubborn, "status")[-1]["details"]
    assert "after the stop grace period" in detail["message"]
    assert detail["signal"] == "SIGKILL"


def test_bad_progress_files_become_warnings(tmp_path: Path, server: LiveServer, api: Api,
                                            agents: list[AgentProc]) -> None:
    script = write_train_script(tmp_path)
    runs = {kind: api.submit(f"bad-{kind}", script, {"steps": 6, "sleep": 0.1,
                                                     "bad_progress": kind})
            for kind in ("corrupt", "partial", "oversized")}
    agents.append(AgentProc(server, api.worker_token(), "box", tmp_path / "work", slots=3))
    for kind, rid in runs.items():
        assert api.wait(rid, {"completed", "failed"})["status"] == "completed"
        warnings = [e["details"]["message"] for e in _events(api, rid, "warning")]
        assert len([w for w in warnings if f"progress file {kind}" in w]) == 1, warnings
        assert api.http.get(f"/v1/runs/{rid}/progress").json()["snapshot"]["seq"] == 6


def test_drained_agent_finishes_its_run_and_claims_nothing(
        tmp_path: Path, server: LiveServer, api: Api, agents: list[AgentProc]) -> None:
    script = write_train_script(tmp_path)
    first = api.submit("first", script, {"steps": 20, "sleep": 0.1})
    agents.append(AgentProc(server, api.worker_token(), "box", tmp_path / "work", slots=2))
    api.wait(first, {"running"})
    assert api.http.post("/v1/workers/box/drain").status_code == 200
    second = api.submit("second", script, {"steps": 2, "sleep": 0.01})
    assert api.wait(first, {"completed", "failed"})["status"] == "completed"
    time.sleep(1.0)  # several claim rounds
    assert api.run(second)["status"] == "queued"
    assert api.http.post("/v1/workers/box/resume").status_code == 200
    assert api.wait(second, {"completed"})["host_id"] == "box"


def test_agent_sigterm_requeues_its_runs_as_worker_shutdown(
        tmp_path: Path, server: LiveServer, api: Api, agents: list[AgentProc]) -> None:
    script = write_train_script(tmp_path)
    rid = api.submit("long", script, {"steps": 400, "sleep": 0.05})
    agent = AgentProc(server, api.worker_token(), "box", tmp_path / "work", stop_grace_s=5)
    agents.append(agent)
    api.wait(rid, lambda r: r["status"] == "running" and r.get("progress") is not None)
    agent.signal(signal.SIGTERM)
    assert agent.wait(20) == 0
    run = api.wait(rid, {"queued"}, timeout=30)
    assert run["termination_reason"] == "worker_shutdown"
    assert "worker_shutdown" in agent.log()
