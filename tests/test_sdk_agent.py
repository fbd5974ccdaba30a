"""Agent file mode end to end: a real server, a real agent, a training script using the SDK."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from .agent_helpers import AgentProc, Api
from .live_server import LiveServer

REPO = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, {repo!r})
    import runyard

    with runyard.start_run(total_steps=200) as run:
        steps = int(run.config.get("steps", 200))
        for step in range(steps):
            if run.should_stop:
                print("stopping at", step, flush=True)
                break
            run.log({{"loss": 1.0 / (step + 1), "acc": step / steps}}, step=step)
            time.sleep(float(run.config.get("sleep", 0.0)))
        else:
            path = os.path.join(run.checkpoint_dir, "final.pt")
            with open(path, "wb") as fh:
                fh.write(b"weights" * 10)
            run.checkpoint(path, step=steps - 1)
    print("mode", run.mode, flush=True)
""")


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[tuple[Api, Path]]:
    server = LiveServer(tmp_path / "server", stale_after_s=10).start()
    api = Api(server)
    agent = AgentProc(server, api.worker_token(), "sdk-host", tmp_path / "work")
    script = tmp_path / "train_sdk.py"
    script.write_text(SCRIPT.format(repo=str(REPO)))
    try:
        yield api, script
    finally:
        agent.stop()
        api.close()
        server.stop()


def submit(api: Api, script: Path, **config: float) -> str:
    resp = api.http.post("/v1/runs", json={"name": "sdk-under-agent",
                                           "command": [sys.executable, str(script)],
                                           "config": config, "probe_interval_s": 0.2})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def test_sdk_under_a_real_agent(fleet: tuple[Api, Path]) -> None:
    api, script = fleet
    run_id = submit(api, script, steps=200)
    run = api.wait(run_id, {"completed", "failed"}, timeout=60)
    assert run["status"] == "completed", api.logs(run_id, stream="stderr")
    assert "mode agent" in api.logs(run_id)
    assert len(api.metrics(run_id)) == 400
    assert run["progress"]["step"] == 199 and run["progress"]["total_steps"] == 200
    assert run["progress"]["status"] == "completed"
    ck = api.http.get(f"/v1/runs/{run_id}/checkpoints").json()["items"]
    assert len(ck) == 1 and ck[0]["status"] == "complete" and ck[0]["step"] == 199


def test_stop_from_the_server_reaches_the_sdk_under_an_agent(fleet: tuple[Api, Path]) -> None:
    api, script = fleet
    run_id = submit(api, script, steps=100_000, sleep=0.01)
    api.wait(run_id, lambda r: (r.get("progress") or {}).get("step", 0) > 5, timeout=60)
    api.http.post(f"/v1/runs/{run_id}/stop", json={"grace_seconds": 20})
    run = api.wait(run_id, {"stopped", "completed", "failed"}, timeout=60)
    assert run["status"] == "stopped"
    assert "stopping at" in api.logs(run_id)  # it saw should_stop and left cleanly
