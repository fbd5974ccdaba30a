"""A checkpoint asked of a running loop, end to end: ``runyard checkpoint RUN`` against a real
server and agent, an SDK loop that watches ``run.checkpoint_requested`` and a plain loop that
watches the request file (the protocol for any language), and an HTTP-mode local run."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runyard import sdk
from runyard.client import Client
from runyard.sdk import settings

from ..support.agents import AgentProc, Api, attempt_dir
from ..support.thread_server import ThreadServer

REPO = Path(__file__).resolve().parents[2]

#: Saves a checkpoint each time it is asked, then goes on until it is stopped.
SDK_LOOP = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, {repo!r})
    import runyard

    with runyard.start_run() as run:
        step = 0
        while not run.should_stop and step < 200_000:
            run.log({{"loss": 1.0 / (step + 1)}}, step=step)
            if run.checkpoint_requested:
                path = os.path.join(run.checkpoint_dir, f"requested-{{step}}.pt")
                with open(path, "wb") as fh:
                    fh.write(b"weights" * 64)
                run.checkpoint(path, step=step)
                print("saved at", step, flush=True)
            step += 1
            time.sleep(0.02)
""")

#: The same with no SDK: the request file, and a line in checkpoints.jsonl per checkpoint.
FILE_LOOP = textwrap.dedent("""
    import json, os, time

    request = os.environ["RUNYARD_CHECKPOINT_REQUEST_FILE"]
    records = os.path.join(os.path.dirname(os.environ["RUNYARD_METRICS_FILE"]),
                           "checkpoints.jsonl")
    answered, step = None, 0
    while step < 200_000:
        try:
            with open(request) as fh:
                asked = fh.read()
        except FileNotFoundError:
            asked = None
        if asked and asked != answered:  # each request once, whatever the file's life
            path = os.path.join(os.environ["RUNYARD_CHECKPOINT_DIR"], f"asked-{step}.bin")
            with open(path, "wb") as fh:
                fh.write(b"state" * 64)
            with open(records, "a") as fh:
                fh.write(json.dumps({"path": path, "step": step, "status": "complete",
                                     "metrics": {}}) + "\\n")
            answered = asked
            print("saved at", step, "for", json.loads(asked)["requested_at"], flush=True)
        step += 1
        time.sleep(0.02)
""")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Api, AgentProc, Path]]:
    root = tmp_path_factory.mktemp("checkpoint-fleet")
    server = ThreadServer(root / "server").start()
    api = Api(server)
    agent = AgentProc(server, api.worker_token(), "ckpt-host", root / "work")
    (root / "sdk_loop.py").write_text(SDK_LOOP.format(repo=str(REPO)))
    (root / "file_loop.py").write_text(FILE_LOOP)
    try:
        yield api, agent, root
    finally:
        agent.stop()
        api.close()
        server.stop()


def _submit(api: Api, script: Path) -> str:
    resp = api.http.post("/v1/runs", json={"name": script.stem, "probe_interval_s": 0.2,
                                           "command": [sys.executable, str(script)]})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def _checkpoints(api: Api, run_id: str) -> list[dict[str, Any]]:
    resp = api.http.get(f"/v1/runs/{run_id}/checkpoints")
    resp.raise_for_status()
    return list(resp.json()["items"])


def _until(what: str, cond: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.1)


def _answered(api: Api, run_id: str, count: int) -> list[dict[str, Any]]:
    """Wait until the server holds ``count`` checkpoints and no request is pending."""
    def done() -> list[dict[str, Any]] | None:
        items = _checkpoints(api, run_id)
        pending = api.run(run_id)["checkpoint_requested_at"]
        return items if len(items) == count and pending is None else None

    return list(_until(f"checkpoint {count} of run {run_id}", done))


def _stop(api: Api, run_id: str) -> None:
    api.http.post(f"/v1/runs/{run_id}/stop", json={"grace_seconds": 10}).raise_for_status()
    assert api.wait(run_id, {"stopped", "failed", "completed"}, timeout=60)["status"] == "stopped"


def test_cli_checkpoint_reaches_an_sdk_loop_under_an_agent(
        fleet: tuple[Api, AgentProc, Path]) -> None:
    api, agent, root = fleet
    run_id = _submit(api, root / "sdk_loop.py")
    api.wait(run_id, lambda r: (r.get("progress") or {}).get("step", 0) > 3, timeout=60)
    assert _checkpoints(api, run_id) == []
    cli = subprocess.run(  # what a user types
        [sys.executable, "-m", "runyard", "checkpoint", run_id, "--server", api.server.url,
         "--token", api.server.admin_token], capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})
    assert cli.returncode == 0, cli.stderr
    assert f"run {run_id}: checkpoint requested; now running" in cli.stdout
    [ck] = _answered(api, run_id, 1)
    assert ck["status"] == "complete" and ck["name"] == f"checkpoints/requested-{ck['step']}.pt"
    assert ck["size"] == len(b"weights" * 64) and ck["attempt"] == 1
    request_file = attempt_dir(agent, run_id, 1) / "CHECKPOINT"
    _until("the request file goes", lambda: not request_file.exists())
    # Asked once, saved once: the loop goes on without saving again.
    step = api.run(run_id)["progress"]["step"]
    api.wait(run_id, lambda r: r["progress"]["step"] > step + 10, timeout=60)
    # The log goes with the next probe, the checkpoint from its own thread: either may
    # arrive first.
    _until("the log line", lambda: api.logs(run_id).count("saved at") == 1)
    kinds = [(e["kind"], e["actor"]) for e in api.events(run_id)]
    assert ("checkpoint_requested", "admin") in kinds
    answer = [e for e in api.events(run_id) if e["kind"] == "checkpoint"]
    assert len(answer) == 1 and answer[0]["details"]["answers_request"] is True
    # Asking a run that ended is refused, with why.
    _stop(api, run_id)
    cli = subprocess.run(
        [sys.executable, "-m", "runyard", "checkpoint", run_id, "--server", api.server.url,
         "--token", api.server.admin_token], capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})
    assert cli.returncode == 1 and "only a running run" in cli.stderr
    assert not request_file.exists()


def test_a_loop_without_the_sdk_answers_through_the_request_file(
        fleet: tuple[Api, AgentProc, Path]) -> None:
    api, agent, root = fleet
    run_id = _submit(api, root / "file_loop.py")
    api.wait(run_id, {"running"}, timeout=60)
    with Client(api.server.url, token=api.server.admin_token) as client:
        asked = client.request_checkpoint(run_id)
        assert asked.status == "running" and asked.checkpoint_requested_at is not None
        [first] = _answered(api, run_id, 1)
        assert first["status"] == "complete" and first["name"].startswith("checkpoints/asked-")
        client.request_checkpoint(run_id)  # a second request is a new one
        second = _answered(api, run_id, 2)[-1]
        assert second["step"] > first["step"]
    _until("the log lines", lambda: api.logs(run_id).count("saved at") == 2)
    _stop(api, run_id)


def test_http_mode_run_sees_and_answers_each_request(tmp_path: Path) -> None:
    server = ThreadServer(tmp_path / "server").start()
    api = Api(server)
    settings.configure(server=server.url, token=server.admin_token,
                       data_dir=tmp_path / "data", heartbeat_interval_s=0.2)
    try:
        with sdk.start_run(name="asked-over-http", env={}, handle_sigterm=False) as run, \
                Client(server.url, token=server.admin_token) as client:
            assert run.mode == "http" and run.checkpoint_dir is not None
            step = 0

            def train_until_asked() -> None:
                nonlocal step
                deadline = time.monotonic() + 60
                while not run.checkpoint_requested:
                    assert time.monotonic() < deadline, "the request never reached the run"
                    run.log({"loss": 1.0 / (step + 1)}, step=step)
                    step += 1
                    time.sleep(0.01)

            for n in (1, 2):
                client.request_checkpoint(run.run_id)
                train_until_asked()
                path = run.checkpoint_dir / f"asked-{n}.pt"
                path.write_bytes(b"weights" * n)
                run.checkpoint(path, step=step)
                assert not run.checkpoint_requested  # answered at once, upload or not
                _answered(api, run.run_id, n)
        got = api.run(run.run_id)
        assert got["status"] == "completed" and got["checkpoint_requested_at"] is None
        items = _checkpoints(api, run.run_id)
        assert [c["name"] for c in items] == ["checkpoints/asked-1.pt", "checkpoints/asked-2.pt"]
        assert all(c["status"] == "complete" for c in items)
    finally:
        settings.reset()
        api.close()
        server.stop()
