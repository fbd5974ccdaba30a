"""Embedded mode (no server, no agent) and ``runyard sync``, with real SQLite files and real
``runyard server`` processes reading what the SDK wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runyard import defaults, sdk
from runyard.queue import Queue
from runyard.sdk import choose, settings
from runyard.store import default_url, open_store

from ..support.agents import Api
from ..support.thread_server import ThreadServer

REPO = Path(__file__).resolve().parents[2]


def embedded_env(data: Path) -> dict[str, str]:
    """An embedded run's environment, without system metrics (their sys/ tags would join
    the points these tests count when a slow machine stretches a run)."""
    return {"RUNYARD_DATA_DIR": str(data), "RUNYARD_SYS_INTERVAL_S": "0"}


@pytest.fixture(autouse=True)
def _reset_settings() -> Iterator[None]:
    settings.reset()
    yield
    settings.reset()


def embedded_run(data: Path, name: str, steps: int, ckpt: Path | None = None) -> sdk.Run:
    with sdk.start_run(name=name, project="nb", config={"lr": 0.01}, total_steps=steps,
                       env=embedded_env(data), handle_sigterm=False) as run:
        assert run.mode == "embedded"
        for step in range(steps):
            run.log({"loss": 1.0 / (step + 1), "acc": 0.5}, step=step)
        if ckpt is not None:
            run.checkpoint(ckpt, step=steps - 1)
    return run


def test_embedded_run_is_visible_to_a_server_on_the_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ckpt = tmp_path / "ck"
    ckpt.mkdir()
    (ckpt / "weights.bin").write_bytes(b"w" * 1000)  # a directory checkpoint (HF style)
    run = embedded_run(data, "emb", 300, ckpt)
    assert (data / "runyard.db").exists()
    server = ThreadServer(data, stale_after_s=60).start()  # `runyard up` uses this database
    api = Api(server)
    try:
        got = api.run(run.run_id)
        assert got["status"] == "completed" and got["executor"] == "local"
        assert got["project"] == "nb" and got["config"] == {"lr": 0.01}
        assert got["progress"]["step"] == 299 and got["progress"]["percent"] == pytest.approx(
            99.667, abs=0.01)
        assert len(api.metrics(run.run_id)) == 600
        ck = api.http.get(f"/v1/runs/{run.run_id}/checkpoints").json()["items"]
        assert ck[0]["status"] == "complete" and ck[0]["name"] == "checkpoints/ck.tar"
        blob = api.http.get(f"/v1/blobs/{ck[0]['sha256']}")
        assert blob.status_code == 200 and len(blob.content) == ck[0]["size"]
        statuses = [e["status"] for e in api.events(run.run_id) if e["kind"] == "status"]
        assert statuses == ["queued", "claimed", "running", "completed"]
    finally:
        api.close()
        server.stop()


def test_stop_from_a_server_on_the_same_data_dir_reaches_the_run(tmp_path: Path) -> None:
    data = tmp_path / "data"
    open_store(default_url(data)).close()
    server = ThreadServer(data, stale_after_s=60).start()
    api = Api(server)
    try:
        settings.configure(heartbeat_interval_s=0.2)
        with sdk.start_run(name="stop-me", env=embedded_env(data),
                           handle_sigterm=False) as run:
            assert run.mode == "embedded"
            assert api.run(run.run_id)["status"] == "running"  # live, while it trains
            api.http.post(f"/v1/runs/{run.run_id}/stop", json={"grace_seconds": 10})
            deadline = time.monotonic() + 10
            while not run.should_stop and time.monotonic() < deadline:
                run.log({"loss": 1.0})
                time.sleep(0.01)
            assert run.should_stop
        assert api.run(run.run_id)["status"] == "stopped"
    finally:
        api.close()
        server.stop()


def test_a_local_run_whose_lease_lapses_fails_and_is_never_requeued(tmp_path: Path) -> None:
    store = open_store(default_url(tmp_path / "db"))
    now = [time.time()]
    queue = Queue(store, stale_after_s=30, clock=lambda: now[0])
    claim = queue.start_local({"name": "killed"}, host_id="laptop")
    assert queue.sweep().lost == []
    now[0] += 31  # the process was killed: no more heartbeats
    result = queue.sweep()
    assert result.lost == [claim.run["id"]] and result.requeued == []
    run = store.get_run(claim.run["id"])
    assert run is not None and run["status"] == "failed" and run["termination_reason"] == "lost"
    store.close()


def sync(data: Path, server: ThreadServer, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNYARD_")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-m", "runyard", "sync", "--server", server.url,
                           "--token", server.admin_token, "--data-dir", str(data), *extra],
                          env=env, capture_output=True, text=True, timeout=120)


def test_sync_uploads_embedded_and_file_runs_once(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"abc" * 50)
    emb = embedded_run(data, "emb", 200, ckpt)
    with pytest.raises(RuntimeError), sdk.start_run(
            name="crashed", env=embedded_env(data), handle_sigterm=False) as bad:
        bad.log({"loss": 3.0}, step=0)
        raise RuntimeError("diverged")
    monkeypatch.setattr(choose, "embedded_available", lambda: False)  # as without SQLAlchemy
    with sdk.start_run(name="files", env=embedded_env(data),
                       handle_sigterm=False) as files:
        assert files.mode == "local"
        for step in range(50):
            files.log({"loss": float(step)}, step=step)
    monkeypatch.undo()
    # Another writer's points beyond the server's bounds stay behind, not the whole request.
    with open(data / "local-runs" / files.run_id / "metrics.jsonl", "a") as fh:
        fh.write(json.dumps({"step": 2**63, "tag": "loss", "value": 1.0}) + "\n")
        fh.write(json.dumps({"step": 60, "tag": "t" * 65, "value": 1.0}) + "\n")
        fh.write(json.dumps({"step": 61, "tag": "loss", "value": 1.0, "at": "soon"}) + "\n")
        fh.write(json.dumps({"step": 50, "tag": "loss", "value": 50.0}) + "\n")

    server = ThreadServer(tmp_path / "remote", stale_after_s=60).start()
    api = Api(server)
    try:
        first = sync(data, server, "--json")
        assert first.returncode == 0, first.stderr
        report = json.loads(first.stdout)
        assert sorted(report["created"]) == sorted([emb.run_id, bad.run_id, files.run_id])
        assert report["points"] == 400 + 1 + 51 and report["checkpoints"] == 1
        got = api.run(emb.run_id)
        assert got["status"] == "completed" and got["executor"] == "local"
        assert got["name"] == "emb" and got["progress"]["step"] == 199
        assert len(api.metrics(emb.run_id)) == 400
        ck = api.http.get(f"/v1/runs/{emb.run_id}/checkpoints").json()["items"]
        assert ck[0]["status"] == "complete" and ck[0]["size"] == 150
        failed = api.run(bad.run_id)
        assert failed["status"] == "failed"
        last = [e for e in api.events(bad.run_id) if e["kind"] == "status"][-1]
        assert "diverged" in json.dumps(last["details"])
        assert api.run(files.run_id)["status"] == "completed"
        assert len(api.metrics(files.run_id)) == 51
        kinds = [e["kind"] for e in api.events(emb.run_id)]
        assert kinds[-1] == "imported"
        runs_before = api.http.get("/v1/runs", params={"limit": 100}).json()["items"]
        events_before = {r["id"]: len(api.events(r["id"])) for r in runs_before}

        second = sync(data, server, "--json")  # idempotent: nothing new
        assert second.returncode == 0, second.stderr
        again = json.loads(second.stdout)
        assert again["created"] == [] and again["points"] == 0
        assert sorted(again["skipped"]) == sorted([emb.run_id, bad.run_id, files.run_id])
        (data / "synced.json").unlink()  # even forgetting what was synced creates nothing
        third = sync(data, server)
        assert third.returncode == 0, third.stderr
        assert "uploaded 0 new run(s), resent 3" in third.stdout
        runs_after = api.http.get("/v1/runs", params={"limit": 100}).json()["items"]
        assert sorted(r["id"] for r in runs_after) == sorted(events_before)
        assert {r["id"]: len(api.events(r["id"])) for r in runs_after} == events_before
        assert len(api.metrics(emb.run_id)) == 400
    finally:
        api.close()
        server.stop()


def test_bad_values_in_embedded_mode(tmp_path: Path) -> None:
    import math

    from runyard.sdk.notice import RunyardWarning

    data = tmp_path / "data"
    with pytest.warns(RunyardWarning), sdk.start_run(
            name="bad", env=embedded_env(data), handle_sigterm=False) as run:
        run.log({"nan": math.nan, "inf": -math.inf, "text": "x", "ok": 1}, step=0)
        run.log({"big": 1.0}, step=2**63 - 1)
        run.log({"huge": 1.0}, step=2**63)
        for i in range(defaults.MAX_TAGS_PER_RUN + 5):
            run.log({f"t{i}": 0.5}, step=1)
    store = open_store(default_url(data))
    try:
        tags = {t["tag"]: t for t in store.metric_tags(run.run_id)}
        row = store.get_run(run.run_id)
    finally:
        store.close()
    assert len(tags) == defaults.MAX_TAGS_PER_RUN and "text" not in tags and "huge" not in tags
    assert tags["nan"]["last_value"] == "NaN" and tags["inf"]["last_value"] == "-Infinity"
    assert tags["big"]["last_step"] == 2**63 - 1
    assert row is not None and row["status"] == "completed"
