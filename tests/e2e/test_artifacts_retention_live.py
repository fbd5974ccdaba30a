"""Checkpoint retention frees the disk: a real server, its blob directory, and checkpoints
uploaded the ways runs upload them (a real ``runyard agent`` and the SDK in HTTP mode)."""

from __future__ import annotations

import hashlib
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runyard import sdk
from runyard.sdk import settings

from ..support.agents import AgentProc, Api
from ..support.live_server import LiveServer

pytestmark = pytest.mark.lease(60)

#: Registers one checkpoint per entry of ``checkpoints`` ({"step", "loss", "data"}), each in
#: its own file, in ``checkpoints.jsonl`` for the agent to upload at exit.
CHECKPOINT_SCRIPT = textwrap.dedent('''
    import json, os

    cfg = json.load(open(os.environ["RUNYARD_CONFIG_FILE"]))
    ckdir = os.environ["RUNYARD_CHECKPOINT_DIR"]
    jsonl = os.path.join(os.path.dirname(os.environ["RUNYARD_METRICS_FILE"]),
                         "checkpoints.jsonl")
    for ck in cfg["checkpoints"]:
        path = os.path.join(ckdir, "step-%d.pt" % ck["step"])
        with open(path, "w") as fh:
            fh.write(ck["data"])
        with open(jsonl, "a") as fh:
            fh.write(json.dumps({"path": path, "step": ck["step"], "status": "complete",
                                 "metrics": {"loss": ck["loss"]},
                                 "at": "2026-01-01T00:00:00.000Z"}) + "\\n")
''')


@pytest.fixture
def server(own_server: LiveServer) -> LiveServer:
    return own_server  # each test its own: its agents claim whatever is queued


@pytest.fixture(autouse=True)
def _reset_settings() -> Iterator[None]:
    settings.reset()
    yield
    settings.reset()


def sha(data: str) -> str:
    return hashlib.sha256(data.encode()).hexdigest()


def blob_files(server: LiveServer) -> list[str]:
    """The blobs on the server's disk, by sha256."""
    root = server.data_dir / "artifacts"
    return sorted(p.name for p in root.rglob("*") if p.is_file() and len(p.name) == 64)


def listed(api: Api, run_id: str, what: str) -> list[dict[str, Any]]:
    resp = api.http.get(f"/v1/runs/{run_id}/{what}")
    resp.raise_for_status()
    return list(resp.json()["items"])


def test_agent_uploads_retired_by_keep_last_and_keep_best_leave_the_disk(
        tmp_path: Path, server: LiveServer, api: Api) -> None:
    script = tmp_path / "ckpts.py"
    script.write_text(CHECKPOINT_SCRIPT)
    checkpoints = [{"step": 100, "loss": 0.5, "data": "w100"},
                   {"step": 200, "loss": 0.2, "data": "w200"},
                   {"step": 300, "loss": 0.4, "data": "w300"},
                   {"step": 400, "loss": 0.3, "data": "w400"}]
    run_id = api.submit("ckpts", script, {
        "checkpoints": checkpoints, "runyard.keep_last_checkpoints": 1,
        "runyard.keep_best_checkpoints": 1, "runyard.checkpoint_metric": "loss"})
    agent = AgentProc(server, api.worker_token(), "box", tmp_path / "work")
    try:
        run = api.wait(run_id, {"completed", "failed"})
    finally:
        agent.stop()
    assert run["status"] == "completed", agent.log()
    kept = listed(api, run_id, "checkpoints")
    assert [c["step"] for c in kept] == [200, 400]  # the best loss and the last one
    # The two retired checkpoints' blobs are gone from the disk, and from the listing.
    assert blob_files(server) == sorted([sha("w200"), sha("w400")])
    artifacts = listed(api, run_id, "artifacts")
    assert sorted((a["name"], a["kind"], a["sha256"]) for a in artifacts) == [
        ("checkpoints/step-200.pt", "checkpoint", sha("w200")),
        ("checkpoints/step-400.pt", "checkpoint", sha("w400"))]
    for c in kept:
        assert api.http.get(f"/v1/blobs/{c['sha256']}").status_code == 200


def test_http_sdk_checkpoints_retired_leave_the_disk_unless_shared(
        tmp_path: Path, server: LiveServer, api: Api) -> None:
    contents = {1: "same weights", 2: "other weights", 3: "newer weights", 4: "same weights"}
    env = {"RUNYARD_SERVER": server.url, "RUNYARD_TOKEN": server.admin_token,
           "RUNYARD_DATA_DIR": str(tmp_path / "data")}
    with sdk.start_run(name="http-ckpts", env=env, handle_sigterm=False,
                       config={"runyard.keep_last_checkpoints": 1}) as run:
        assert run.mode == "http"
        for step, data in contents.items():
            path = tmp_path / f"model-{step}.pt"
            path.write_text(data)
            run.checkpoint(path, step=step)
    kept = listed(api, run.run_id, "checkpoints")
    assert [(c["step"], c["sha256"]) for c in kept] == [(4, sha("same weights"))]
    # Step 1's blob is step 4's too: it stays; the other two retired blobs are gone.
    assert blob_files(server) == [sha("same weights")]
    artifacts = listed(api, run.run_id, "artifacts")
    assert [(a["name"], a["sha256"]) for a in artifacts] == [
        ("checkpoints/model-4.pt", sha("same weights"))]
    assert api.http.get(f"/v1/blobs/{sha('same weights')}").content == b"same weights"
