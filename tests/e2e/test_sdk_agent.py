"""Agent file mode end to end: a real server, a real agent, a training script using the SDK."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..support.agents import AgentProc, Api
from ..support.thread_server import ThreadServer

REPO = Path(__file__).resolve().parents[2]

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
    server = ThreadServer(tmp_path / "server", stale_after_s=60).start()
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


#: A foreign writer's metrics stream, every line a case the agent must forward as before or
#: leave out with a warning, then a snapshot and exit 0.
FOREIGN = textwrap.dedent(r'''
    import json, os
    at = "2026-01-01T00:00:00.000Z"
    lines = [
        '{"step": 0, "tag": "loss", "value": 0.5, "at": "%s"}' % at,
        '{"step": 0, "tag": "acc", "value": "NaN", "at": "%s"}' % at,
        'garbage',
        '{"step": 1, "tag": "loss", "value": "Infinity"}',
        '{"step": 2, "tag": "%s", "value": 1}' % ("t" * 100),
        '{"step": 9223372036854775808, "tag": "loss", "value": 1}',
        '{"step": 3, "tag": "lone \\ud800", "value": 1}',
        '{"step": 4, "tag": "loss", "value": 7}',
        '{"step": 5, "tag": "loss", "value": 8, "at": "yesterday"}',
        '{"step": 6, "tag": "loss", "value": 9, "at": "1767225600.5"}',
        '{"step": 9223372036854775807, "tag": "last", "value": 1.5, "at": "%s"}' % at,
    ]
    with open(os.environ["RUNYARD_METRICS_FILE"], "w") as fh:
        fh.write("\n".join(lines) + "\n")
    with open(os.environ["RUNYARD_PROGRESS_FILE"], "w") as fh:
        json.dump({"schema": "runyard.progress/v1", "seq": 1, "step": 4,
                   "updated_at": at}, fh)
''')


def test_a_foreign_writers_stream_through_a_real_agent(fleet: tuple[Api, Path],
                                                       tmp_path: Path) -> None:
    """What reaches the server: the good points (NaN and infinity spelled out, a missing
    time filled, an integer as a float), and a warning for each line or point left out;
    a lone surrogate, a step past 2**63-1 or a time the server cannot read no longer fails
    the attempt or its batch."""
    api, _ = fleet
    script = tmp_path / "foreign.py"
    script.write_text(FOREIGN)
    run_id = submit(api, script)
    run = api.wait(run_id, {"completed", "failed"}, timeout=60)
    assert run["status"] == "completed", api.logs(run_id, stream="stderr")
    got = {(p["tag"], p["step"]): p["value"] for p in api.metrics(run_id)}
    assert got == {("loss", 0): 0.5, ("acc", 0): "NaN", ("loss", 1): "Infinity",
                   ("loss", 4): 7.0, ("loss", 6): 9.0, ("last", 2**63 - 1): 1.5}
    assert all(p["at"] for p in api.metrics(run_id))
    warned = " | ".join(str(e["details"]) for e in api.events(run_id)
                        if e["kind"] == "warning")
    assert "metrics file line 3 skipped: not JSON" in warned
    assert "metrics file line 7 skipped: not valid Unicode" in warned
    # A time the server would refuse costs its own line, not the call it would be part of.
    assert "metrics file line 9 skipped: at: expected an ISO 8601 time, got 'yesterday'" \
        in warned
    assert warned.count("tags longer than 64 characters are not forwarded") == 1
    assert warned.count(f"steps above {2**63 - 1} are not forwarded") == 1
    assert run["progress"]["step"] == 4
