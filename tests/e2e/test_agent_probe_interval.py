"""Whose probe interval an attempt uses: the run's when it names one, else the agent's
(``runyard agent --probe-interval-s``). A real server, the agent's daemon in-process."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from runyard import errors, submission
from runyard.agent import daemon
from runyard.agent.local_executor import LocalHandle

from ..support.agents import Api
from ..support.live_server import LiveServer

pytestmark = pytest.mark.lease(60)


@pytest.fixture
def server(own_server: LiveServer) -> LiveServer:
    return own_server  # each test its own: its agents claim whatever is queued


def _submit(api: Api, **extra: Any) -> str:
    resp = api.http.post("/v1/runs", json={"name": "probe", "command": [
        sys.executable, "-c", "pass"], **extra})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def test_a_run_without_a_probe_interval_uses_the_agents(tmp_path: Path, server: LiveServer,
                                                        api: Api) -> None:
    agent = daemon.Agent(daemon.AgentConfig(
        server=server.url, token=api.worker_token(), host_id="box", work_dir=tmp_path / "work",
        probe_interval_s=0.35))
    try:
        for named, expected in [(None, 0.35), (0.2, 0.2)]:
            run_id = _submit(api) if named is None else _submit(api, probe_interval_s=named)
            handle = agent.claim_once()
            assert isinstance(handle, LocalHandle) and handle.run_id == run_id
            assert handle.runner is not None and handle.thread is not None
            assert handle.runner.probe_interval_s == expected  # what its loop waits
            assert api.run(run_id)["probe_interval_s"] == named
            handle.thread.join(60)
            assert api.wait(run_id, {"completed", "failed"})["status"] == "completed"
            agent.reap()
    finally:
        for handle in agent.handles.values():
            agent.executor.join(handle, 60)  # an attempt reports through the agent's client
        agent.api.close()


def test_submission_stores_no_interval_unless_the_run_or_its_blueprint_names_one() -> None:
    blueprint = {"command": ["python", "t.py"], "defaults": {"probe_interval_s": 0.5}}

    def probe(req: dict[str, Any], bp: dict[str, Any] | None = None) -> Any:
        row = submission.build_run({"name": "r", **req}, bp, owner=None, now=1.0)
        return row["probe_interval_s"]

    assert probe({"command": ["x"]}) is None
    assert probe({"command": ["x"], "probe_interval_s": None}) is None
    assert probe({"command": ["x"], "probe_interval_s": 2}) == 2.0
    assert probe({"blueprint": "b"}, blueprint) == 0.5
    assert probe({"blueprint": "b", "probe_interval_s": None}, blueprint) == 0.5
    assert probe({"blueprint": "b", "probe_interval_s": 0.25}, blueprint) == 0.25
    for bad in (0, -1, "1", True):
        with pytest.raises(errors.ValidationError) as info:
            probe({"command": ["x"], "probe_interval_s": bad})
        assert info.value.field == "probe_interval_s"
