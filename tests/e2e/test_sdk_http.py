"""HTTP mode end to end against a real ``runyard server`` process (its SQLite file, no mocks).

Also the spool's order and no-duplicate guarantees with ``httpx.MockTransport`` standing in
for a server that fails on purpose (the one fake: a real server cannot be told to fail the
third request).
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from runyard import defaults, sdk
from runyard.sdk import http_sink, settings
from runyard.sdk.notice import RunyardWarning

from ..support.agents import Api
from ..support.live_server import LiveServer

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(server_process: LiveServer) -> LiveServer:
    """A server process: some tests kill it mid-run and start it again."""
    return server_process


@pytest.fixture(autouse=True)
def _reset_settings() -> Iterator[None]:
    settings.reset()
    yield
    settings.reset()


def http_env(server: LiveServer, tmp_path: Path, token: str | None = None) -> dict[str, str]:
    return {"RUNYARD_SERVER": server.url, "RUNYARD_TOKEN": token or server.admin_token,
            "RUNYARD_DATA_DIR": str(tmp_path / "data"),
            # No system metrics: a slow machine stretching a run past their interval would
            # add sys/ tags to runs whose points the tests count.
            "RUNYARD_SYS_INTERVAL_S": "0"}


def test_http_mode_end_to_end(server: LiveServer, api: Api, tmp_path: Path) -> None:
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"weights" * 100)
    with sdk.start_run(name="http-e2e", project="p", config={"lr": 0.1},
                       env=http_env(server, tmp_path), total_steps=500,
                       handle_sigterm=False) as run:
        assert run.mode == "http"
        for step in range(500):
            run.log({"loss": 1.0 / (step + 1), "acc": step / 500, "lr": 0.1}, step=step)
        run.checkpoint(ckpt, step=499)
        run.progress(phase="eval", message="done")
    got = api.run(run.run_id)
    assert got["status"] == "completed" and got["executor"] == "local"
    assert got["name"] == "http-e2e" and got["project"] == "p" and got["config"] == {"lr": 0.1}
    assert got["workdir"] and got["progress"]["step"] == 499
    assert got["progress"]["total_steps"] == 500 and got["progress"]["status"] == "completed"
    points = api.metrics(run.run_id)
    assert len(points) == 1500
    assert {p["tag"] for p in points} == {"loss", "acc", "lr"}
    loss = sorted((p["step"], p["value"]) for p in points if p["tag"] == "loss")
    assert loss[0] == (0, 1.0) and loss[-1][0] == 499
    ck = api.http.get(f"/v1/runs/{run.run_id}/checkpoints").json()["items"]
    assert len(ck) == 1 and ck[0]["status"] == "complete" and ck[0]["step"] == 499
    assert ck[0]["size"] == 700 and ck[0]["metrics"]["loss"] == pytest.approx(1 / 500)
    kinds = [e["status"] for e in api.events(run.run_id) if e["kind"] == "status"]
    assert kinds == ["queued", "claimed", "running", "completed"]  # as a scheduled run
    assert not (tmp_path / "data" / "local-runs" / run.run_id / "spool").exists()


def test_exception_marks_failed_with_traceback(server: LiveServer, api: Api,
                                               tmp_path: Path) -> None:
    with pytest.raises(ZeroDivisionError), \
            sdk.start_run(name="boom", env=http_env(server, tmp_path),
                          handle_sigterm=False) as run:
        run.log({"loss": 1.0}, step=0)
        _ = 1 / 0
    got = api.run(run.run_id)
    assert got["status"] == "failed" and got["termination_reason"] == "user_error"
    last = [e for e in api.events(run.run_id) if e["kind"] == "status"][-1]
    assert "ZeroDivisionError" in last["details"]["error"]
    assert "1 / 0" in last["details"]["traceback"]
    assert any("ZeroDivisionError" in line for line in last["details"]["stderr_tail"])


def test_bad_values_over_http(server: LiveServer, api: Api, tmp_path: Path) -> None:
    with pytest.warns(RunyardWarning), \
            sdk.start_run(name="bad", env=http_env(server, tmp_path),
                          handle_sigterm=False) as run:
        run.log({"nan": math.nan, "inf": math.inf, "text": "x", "ok": 2}, step=0)
        run.log({"big": 1.0}, step=2**63 - 1)
        run.log({"huge": 1.0}, step=10**30)
        run.log({"t" * 65: 1.0, "fine": 1.0}, step=1)
        for i in range(defaults.MAX_TAGS_PER_RUN + 10):
            run.log({f"tag{i}": 0.5}, step=2)
    tags = {t["tag"]: t for t in
            api.http.get(f"/v1/runs/{run.run_id}/metrics/tags").json()["items"]}
    assert len(tags) == defaults.MAX_TAGS_PER_RUN  # the documented bound, the rest dropped
    assert "text" not in tags and "huge" not in tags and "t" * 65 not in tags
    assert tags["nan"]["last_value"] == "NaN" and tags["inf"]["last_value"] == "Infinity"
    assert tags["ok"]["last_value"] == 2 and tags["fine"]["last_value"] == 1.0
    assert tags["big"]["last_step"] == 2**63 - 1
    assert api.run(run.run_id)["status"] == "completed"
    warned = [e["details"]["message"] for e in api.events(run.run_id) if e["kind"] == "warning"]
    assert any("non-numeric value for 'text'" in w for w in warned)  # visible on the run too
    assert any("distinct metric names" in w for w in warned)


def test_numpy_scalars_over_http(server: LiveServer, api: Api, tmp_path: Path) -> None:
    """numpy scalars arrive as plain numbers (numpy.float64 is a float subclass with a repr
    of its own; the agent-mode file sink wrote that repr before it was coerced)."""
    np = pytest.importorskip("numpy")
    with sdk.start_run(name="np", env=http_env(server, tmp_path), handle_sigterm=False) as run:
        run.log({"loss": np.float64(0.5), "acc": np.float32(0.25), "n": np.int64(3),
                 "plain": 1.0}, step=0)
    tags = {t["tag"]: t for t in
            api.http.get(f"/v1/runs/{run.run_id}/metrics/tags").json()["items"]}
    assert {tag: t["last_value"] for tag, t in tags.items()} == {
        "loss": 0.5, "acc": 0.25, "n": 3.0, "plain": 1.0}


def test_stop_requested_from_the_server_reaches_the_run(server: LiveServer, api: Api,
                                                        tmp_path: Path) -> None:
    settings.configure(server=server.url, token=server.admin_token,
                       data_dir=tmp_path / "data", heartbeat_interval_s=0.2)
    with sdk.start_run(name="stoppable", env={}, handle_sigterm=False) as run:
        assert run.mode == "http"
        cli = subprocess.run(  # what a user types
            [sys.executable, "-m", "runyard", "stop", run.run_id, "--server", server.url,
             "--token", server.admin_token], capture_output=True, text=True, timeout=60,
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})
        assert cli.returncode == 0, cli.stderr
        deadline = time.monotonic() + 10
        step = 0
        while not run.should_stop and time.monotonic() < deadline:
            run.log({"loss": 1.0}, step=step)
            step += 1
            time.sleep(0.01)
        assert run.should_stop
    got = api.run(run.run_id)
    assert got["status"] == "stopped" and got["termination_reason"] == "stopped"


def test_a_user_token_runs_its_own_local_runs(server: LiveServer, api: Api,
                                              tmp_path: Path) -> None:
    token = api.http.post("/v1/tokens", json={"name": "alice", "role": "user"}).json()["token"]
    with sdk.start_run(name="mine", env=http_env(server, tmp_path, token),
                       handle_sigterm=False) as run:
        run.log({"loss": 1.0}, step=0)
    got = api.run(run.run_id)
    assert got["status"] == "completed" and got["owner"] == "alice"
    assert len(api.metrics(run.run_id)) == 1


def test_server_down_during_the_run_then_back_loses_nothing(server: LiveServer, api: Api,
                                                            tmp_path: Path) -> None:
    settings.configure(retry_interval_s=0.2, heartbeat_interval_s=0.2)
    steps = 600
    with pytest.warns(RunyardWarning) as caught, \
            sdk.start_run(name="outage", env=http_env(server, tmp_path),
                          total_steps=steps, handle_sigterm=False) as run:
        spool = tmp_path / "data" / "local-runs" / run.run_id / "spool"
        for step in range(steps):
            if step == 200:
                server.kill()  # SIGKILL: the server vanishes mid-run
            if step == 400:
                assert (spool / "ops.jsonl").exists()  # what it could not send is on disk
                server.start()
            run.log({"loss": 1.0 / (step + 1), "acc": 0.5}, step=step)
            time.sleep(0.002)
    said = " ".join(str(w.message) for w in caught)
    assert "spooling" in said and "is back" in said
    points = api.metrics(run.run_id)
    assert len(points) == 2 * steps  # every point, once
    per_tag = {t: sorted(p["step"] for p in points if p["tag"] == t) for t in ("loss", "acc")}
    assert per_tag["loss"] == list(range(steps)) == per_tag["acc"]
    got = api.run(run.run_id)
    assert got["status"] == "completed" and got["progress"]["step"] == steps - 1
    assert not spool.exists()


def test_sigterm_in_http_mode_records_stopped(server: LiveServer, api: Api,
                                              tmp_path: Path) -> None:
    code = textwrap.dedent("""
        import time, runyard
        with runyard.start_run(name="sigterm") as run:
            print(run.run_id, flush=True)
            step = 0
            while not run.should_stop:
                run.log({"loss": 1.0}, step=step)
                step += 1
                time.sleep(0.01)
    """)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), **http_env(server, tmp_path)}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    run_id = proc.stdout.readline().strip()
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    got = api.run(run_id)
    assert got["status"] == "stopped"
    last = [e for e in api.events(run_id) if e["kind"] == "status"][-1]
    assert last["details"]["stop_reason"] == "sigterm"


# --------------------------------------------------------------------------- spool, in-process


class FlakyServer:
    """Answers like the server, but refuses connections while ``down`` (a fake: see top)."""

    def __init__(self) -> None:
        self.down = False
        self.metric_bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        path = request.url.path
        self.paths.append(path)
        if path == "/v1/runs":
            return httpx.Response(201, json={"run": {"id": "r1", "config": {}},
                                             "attempt": {"id": "a1", "number": 1},
                                             "lease": "L"})
        if path.endswith("/metrics"):
            self.metric_bodies.append(json.loads(request.content))
        if path.endswith("/heartbeat"):
            return httpx.Response(200, json={"stop": False})
        return httpx.Response(200, json={})


def test_spool_replays_in_order_without_duplicates(tmp_path: Path) -> None:
    fake = FlakyServer()
    cfg = settings.configure(server="http://fake", token="t", data_dir=tmp_path,
                             transport=httpx.MockTransport(fake), retry_interval_s=0.05,
                             heartbeat_interval_s=0.05)
    said: list[str] = []
    sink = http_sink.HttpSink.create(settings.resolve({}), sdk.RunInfo(name="x"),
                                     warn=lambda key, text: said.append(text))
    assert cfg.server == "http://fake"
    sink.write_rows([(0, 1.0, {"a": 0.0})])
    time.sleep(0.1)
    fake.down = True
    for step in range(1, 30):
        sink.write_rows([(step, 1.0, {"a": float(step)})])
    time.sleep(0.2)
    assert sink.spool.pending
    fake.down = False
    sink.close("completed", {})
    assert any("spooling" in t for t in said) and any("is back" in t for t in said)
    steps = [row[0] for body in fake.metric_bodies for row in body["rows"]]
    assert steps == list(range(30))  # in order, each once
    assert fake.paths[-1] == "/v1/attempts/a1/complete"
    assert not sink.spool.directory.exists()


def test_unreachable_server_at_close_leaves_the_spool_for_sync(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    monkeypatch.setattr(http_sink, "CLOSE_WAIT_S", 0.3)
    fake = FlakyServer()
    settings.configure(server="http://fake", data_dir=tmp_path,
                       transport=httpx.MockTransport(fake), retry_interval_s=0.05)
    said: list[str] = []
    sink = http_sink.HttpSink.create(settings.resolve({}), sdk.RunInfo(name="x"),
                                     warn=lambda key, text: said.append(text))
    fake.down = True
    sink.write_rows([(0, 1.0, {"a": 1.0})])
    sink.close("completed", {})
    assert any("`runyard sync` sends it" in t for t in said)
    ops = (sink.spool.directory / "ops.jsonl").read_text().splitlines()
    assert [json.loads(line)["path"] for line in ops] == ["/v1/runs/r1/metrics",
                                                          "/v1/attempts/a1/complete"]
    assert sink.spool.read_meta() == {"server": "http://fake", "run_id": "r1",
                                      "attempt_id": "a1", "attempt": 1, "lease": "L"}


def test_spool_left_at_exit_is_sent_by_runyard_sync(server: LiveServer, api: Api,
                                                    tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_sink, "CLOSE_WAIT_S", 0.5)
    settings.configure(retry_interval_s=0.1)
    data = tmp_path / "data"
    with pytest.warns(RunyardWarning) as caught, \
            sdk.start_run(name="left", env=http_env(server, tmp_path),
                          handle_sigterm=False) as run:
        run.log({"loss": 0.0}, step=0)
        time.sleep(0.3)  # the first batch reaches the server
        server.kill()
        for step in range(1, 100):
            run.log({"loss": float(step)}, step=step)
        ckpt = tmp_path / "late.pt"
        ckpt.write_bytes(b"late weights")
        run.checkpoint(ckpt, step=99)
    assert any("`runyard sync` sends it" in str(w.message) for w in caught)
    spool = data / "local-runs" / run.run_id / "spool"
    assert (spool / "ops.jsonl").exists()
    server.start()
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "runyard", "sync", "--server", server.url,
                           "--token", server.admin_token, "--data-dir", str(data), "--json"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["spools_sent"] == [run.run_id]
    assert not spool.exists()
    assert sorted(p["step"] for p in api.metrics(run.run_id)) == list(range(100))
    assert api.run(run.run_id)["status"] == "completed"  # the final status was spooled too
    ck = api.http.get(f"/v1/runs/{run.run_id}/checkpoints").json()["items"]
    assert [(c["step"], c["status"], c["size"]) for c in ck] == [(99, "complete", 12)]


class EndingServer(FlakyServer):
    """Refuses one metrics batch (422), then says the run was ended (409 on heartbeat)."""

    def __init__(self) -> None:
        super().__init__()
        self.heartbeats = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/metrics") and b'"bad"' in request.content:
            self.paths.append(path)
            return httpx.Response(422, json={"error": {"type": "ValidationError",
                                                       "message": "rows[0]: bad"}})
        if path.endswith("/heartbeat"):
            self.heartbeats += 1
            if self.heartbeats >= 2:
                return httpx.Response(409, json={"error": {
                    "type": "LeaseConflict", "message": "the run is stopped"}})
        return super().__call__(request)


def test_refused_batches_are_dropped_and_an_ended_run_stops(tmp_path: Path) -> None:
    fake = EndingServer()
    settings.configure(server="http://fake", data_dir=tmp_path, heartbeat_interval_s=0.05,
                       transport=httpx.MockTransport(fake))
    said: list[str] = []
    sink = http_sink.HttpSink.create(settings.resolve({}), sdk.RunInfo(name="x", archive=True),
                                     warn=lambda key, text: said.append(text))
    assert sink.artifact_dir is not None
    (sink.artifact_dir / "kept.txt").write_text("the run's files")
    sink.write_rows([(0, 1.0, {"bad": 1.0})])
    sink.write_rows([(1, 1.0, {"good": 1.0})])
    deadline = time.monotonic() + 30
    while not sink.stop_requested() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sink.stop_requested()  # the server ended the run: the loop is told to stop
    sink.write_rows([(2, 1.0, {"late": 1.0})])
    sink.close("completed", {})
    assert any("refused a request, which is dropped: rows[0]: bad" in t for t in said)
    assert any("was ended on the server" in t for t in said)
    steps = [row[0] for body in fake.metric_bodies for row in body["rows"]]
    assert steps == [1, 2]  # the refused batch is not retried
    # After the end only points and the archive are sent, through the ended run's import;
    # no status.
    assert fake.paths.count("/v1/runs/r1/import/metrics") == 1
    assert fake.paths[-1] == "/v1/runs/r1/import/artifacts/artifacts.tar.zst"
    assert sink.archived
    assert "/v1/attempts/a1/complete" not in fake.paths


def test_an_outage_longer_than_the_lease_loses_neither_the_run_nor_a_point(
        tmp_path: Path) -> None:
    """The server is away longer than the lease while the run logs on: the outage was the
    server's, so the restarted server gives the lease a fresh grace (docs/lifecycle.md), the
    run goes on under it and every point arrives once."""
    stale = 5
    server = LiveServer(tmp_path / "short-lease", stale_after_s=stale).start()
    api = Api(server)
    settings.configure(retry_interval_s=0.1, heartbeat_interval_s=0.2)
    try:
        with pytest.warns(RunyardWarning), \
                sdk.start_run(name="long-outage", env=http_env(server, tmp_path),
                              handle_sigterm=False) as run:
            for step in range(100):
                run.log({"loss": float(step)}, step=step)
            time.sleep(0.5)
            server.kill()
            for step in range(100, 200):
                run.log({"loss": float(step)}, step=step)
            time.sleep(stale + 1)  # the lease lapses while the server is away
            server.start()
            deadline = time.monotonic() + 20
            while len(api.metrics(run.run_id)) < 200 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not run.should_stop
        assert sorted(p["step"] for p in api.metrics(run.run_id)) == list(range(200))
        got = api.run(run.run_id)
        assert got["status"] == "completed" and got["attempt"] == 1, got
    finally:
        api.close()
        server.stop()


def test_sync_delivers_the_points_of_a_spool_whose_run_was_ended(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_sink, "CLOSE_WAIT_S", 0.3)
    server = LiveServer(tmp_path / "short", stale_after_s=1).start()
    api = Api(server)
    settings.configure(retry_interval_s=0.1, heartbeat_interval_s=0.2)
    data = tmp_path / "data"
    try:
        with pytest.warns(RunyardWarning), sdk.start_run(
                name="ended", env=http_env(server, tmp_path), handle_sigterm=False,
                archive=True) as run:
            run.log({"loss": 0.0}, step=0)
            assert run.artifact_dir is not None
            (run.artifact_dir / "report.txt").write_text("kept")
            time.sleep(0.3)
            server.kill()
            for step in range(1, 60):
                run.log({"loss": float(step)}, step=step)
        time.sleep(1.5)  # the lease lapses while nobody can send
        server.start()
        # The restart gives the lease a fresh grace; nobody renews it, so it lapses again.
        deadline = time.monotonic() + 30
        while api.run(run.run_id)["status"] != "failed" and time.monotonic() < deadline:
            time.sleep(0.1)
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
        proc = subprocess.run([sys.executable, "-m", "runyard", "sync", "--server", server.url,
                               "--token", server.admin_token, "--data-dir", str(data),
                               "--json"], env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        report = json.loads(proc.stdout)
        assert report["spools_sent"] == [] and len(report["spools_dropped"]) == 1
        assert "points were still delivered" in report["spools_dropped"][0]
        assert sorted(p["step"] for p in api.metrics(run.run_id)) == list(range(60))
        got = api.run(run.run_id)
        assert got["termination_reason"] == "lost"
        # Its archive went too, through the ended run's import.
        assert report["archived"] == [run.run_id] and got["archived"] is True
        (bundle,) = api.http.get(f"/v1/runs/{run.run_id}/artifacts").json()["items"]
        assert bundle["name"] == "artifacts.tar.zst" and bundle["kind"] == "bundle"
    finally:
        api.close()
        server.stop()
