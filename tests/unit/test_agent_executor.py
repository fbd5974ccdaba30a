"""The executor seam of the agent: the registry, the config check, a custom executor behind
the claim loop, and the pieces of ``runyard supervise`` that need no server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from runyard import errors
from runyard.agent import daemon, supervise
from runyard.agent import executor as executors
from runyard.agent.api import WorkerAPI
from runyard.agent.assignment import Assignment


class FakeExecutor(executors.Executor):
    """Holds attempts in memory; finishes each on its second poll."""

    name = "fake"
    detach_on_exit = True

    def __init__(self, config: daemon.AgentConfig, api: WorkerAPI) -> None:
        super().__init__(config, api)
        self.started: list[Assignment] = []
        self.polls: dict[str, int] = {}

    @property
    def host_id(self) -> str:
        return "fake-host"

    def capabilities(self) -> dict[str, Any]:
        return {"host_id": self.host_id, "executor": self.name, "nodes": 3}

    def max_in_flight(self) -> int:
        return 2

    def start(self, assignment: Assignment) -> executors.Handle:
        self.started.append(assignment)
        return executors.Handle(assignment.run_id, assignment.attempt_id, assignment.number,
                                external_id=f"job-{len(self.started)}")

    def poll(self, handle: executors.Handle) -> executors.Poll:
        self.polls[handle.attempt_id] = self.polls.get(handle.attempt_id, 0) + 1
        if self.polls[handle.attempt_id] < 2:
            return executors.RUNNING
        return executors.Poll(finished=True, outcome="completed")

    def signal(self, handle: executors.Handle, *, grace_s: float, force: bool = False) -> None:
        raise AssertionError("a detached executor is never signalled at exit")


@pytest.fixture
def fake_registered() -> Iterator[None]:
    executors.register(FakeExecutor)
    yield
    executors._REGISTRY.pop("fake", None)


def test_unknown_executors_are_refused_with_the_available_ones() -> None:
    with pytest.raises(errors.ConfigError) as exc:
        daemon.AgentConfig(server="http://x", executor="k8s").validate()
    assert exc.value.details == {"field": "executor"}
    assert "'k8s' is not available in this agent (available: local" in exc.value.message
    assert "local" in executors.available()
    daemon.AgentConfig(server="http://x").validate()


def test_the_claim_loop_drives_any_registered_executor(fake_registered: None) -> None:
    assert "fake" in executors.available()
    claims: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        import json

        body = json.loads(request.content)
        claims.append(body)
        n = len(claims)
        return httpx.Response(200, json={
            "run": {"id": f"r{n}", "name": "x"}, "attempt": {"id": f"a{n}", "number": 1},
            "lease": "l", "lease_expires_at": "2030-01-01T00:00:00Z", "command": ["true"],
            "attempt_token": "rya_t"})

    api = WorkerAPI("http://server", None, transport=httpx.MockTransport(handler))
    agent = daemon.Agent(daemon.AgentConfig(server="http://server", executor="fake"), api)
    assert isinstance(agent.executor, FakeExecutor) and agent.host_id == "fake-host"
    first = agent.claim_once()
    assert first is not None and first.external_id == "job-1"
    assert claims[0]["capabilities"]["executor"] == "fake"
    assert claims[0]["free_slots"] == 2
    agent.claim_once()
    assert agent.free_slots() == 0
    agent.reap()  # first poll: both still running
    assert len(agent.handles) == 2
    agent.reap()
    assert agent.handles == {} and agent.free_slots() == 2
    started = agent.executor.started
    assert [a.run_id for a in started] == ["r1", "r2"]
    # What an executor hands on to a supervisor elsewhere: the credential apart.
    assert started[0].attempt_token == "rya_t" and "rya_t" not in repr(started[0])
    spec = started[0].spec(["srun", "--"])
    assert "attempt_token" not in spec and spec["launch_prefix"] == ["srun", "--"]
    assert spec["attempt"] == {"id": "a1", "number": 1}
    api.close()


def test_supervise_reads_the_credential_only_from_a_private_file_or_the_env(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token = tmp_path / "t"
    token.write_text("rya_secret\n")
    token.chmod(0o640)
    with pytest.raises(errors.ConfigError, match="make it 0600"):
        supervise.read_token(token)
    token.chmod(0o600)
    monkeypatch.setenv(supervise.TOKEN_ENV, "rya_from_env")
    assert supervise.read_token(token) == "rya_secret"
    import os

    assert supervise.TOKEN_ENV not in os.environ  # never inherited by the training process
    monkeypatch.setenv(supervise.TOKEN_ENV, "rya_from_env")
    assert supervise.read_token(None) == "rya_from_env"
    with pytest.raises(errors.ConfigError, match="RUNYARD_ATTEMPT_TOKEN"):
        supervise.read_token(None)


def test_task_env_sets_ranks_from_slurm_unless_set() -> None:
    slurm = {"SLURM_PROCID": "5", "SLURM_LOCALID": "1", "SLURM_NTASKS": "8",
             "SLURM_NODEID": "2"}
    env = supervise.task_env(slurm, rank_from_env=True)
    assert (env["RANK"], env["LOCAL_RANK"], env["WORLD_SIZE"], env["NODE_RANK"]) == \
        ("5", "1", "8", "2")
    assert supervise.task_env({**slurm, "RANK": "0"}, rank_from_env=True)["RANK"] == "0"
    assert "RANK" not in supervise.task_env(slurm, rank_from_env=False)


def test_a_spec_names_its_launcher_as_an_argv(tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    base = {"run": {"id": "r"}, "attempt": {"id": "a", "number": 2}, "lease": "l",
            "lease_expires_at": "2030-01-01T00:00:00Z", "command": ["python", "t.py"]}
    import json

    spec.write_text(json.dumps({**base, "launch_prefix": ["srun", "--"]}))
    got = supervise.Spec.read(spec)
    assert got.launch_prefix == ("srun", "--") and got.assignment.number == 2
    spec.write_text(json.dumps({**base, "launch_prefix": "srun --"}))
    with pytest.raises(errors.ConfigError) as exc:
        supervise.Spec.read(spec)
    assert exc.value.details == {"field": "spec.launch_prefix"}
    spec.write_text("not json")
    with pytest.raises(errors.ConfigError):
        supervise.Spec.read(spec)


def test_the_idle_claim_pause_defaults_by_executor() -> None:
    local = daemon.AgentConfig(server="http://x")
    slurm = daemon.AgentConfig(server="http://x", executor="slurm")
    assert (local.idle_claim_cap_s, slurm.idle_claim_cap_s) == (5.0, 1.0)
    assert daemon.AgentConfig(server="http://x", executor="slurm",
                              claim_max_wait_s=3.0).idle_claim_cap_s == 3.0
    with pytest.raises(errors.ValidationError, match="claim_max_wait_s: must be positive"):
        daemon.AgentConfig(server="http://x", claim_max_wait_s=0.0).validate()
