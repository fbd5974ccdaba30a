"""Code written for Kubeflow Trainer reports to Runyard unchanged: a real server, a real
agent, and training scripts that use only Kubeflow's environment variables (the push form
with urllib, the file form by writing the progression file), as the KEP's examples do."""

from __future__ import annotations

import os
import pwd
import shutil
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..support.agents import AgentProc, Api, attempt_dir
from ..support.live_server import LiveServer
from .test_supervise import _claim, _supervise

pytestmark = pytest.mark.timeout(120)

#: The push form, as the KEP's example: URL, token file, optional CA; nothing of Runyard's.
PUSH_SCRIPT = textwrap.dedent('''
    import json, os, ssl, stat, sys, urllib.error, urllib.request

    url = os.environ["KUBEFLOW_TRAINER_STATUS_URL"]
    token_file = os.environ["KUBEFLOW_TRAINER_STATUS_TOKEN"]
    ca = os.environ.get("KUBEFLOW_TRAINER_STATUS_CA_CERT")
    st = os.stat(token_file)
    print("token file mode", oct(stat.S_IMODE(st.st_mode)), "owner", st.st_uid, "me",
          os.getuid(), flush=True)
    print("ca", ca or "<unset>", "worker token", os.environ.get("RUNYARD_TOKEN", "<none>"),
          flush=True)

    def update_training_status(status):
        token = open(token_file).read()
        payload = json.dumps({"trainerStatus": status}).encode()
        req = urllib.request.Request(url, data=payload,
                                     headers={"Authorization": f"Bearer {token}"})
        context = ssl.create_default_context(cafile=ca) if ca else None
        try:
            with urllib.request.urlopen(req, context=context) as resp:
                print("status", resp.status, resp.read().decode(), flush=True)
        except urllib.error.HTTPError as exc:
            print("refused", exc.code, exc.read().decode(), flush=True)
            sys.exit(5)

    update_training_status({"progressPercentage": 10, "lastUpdatedTime": "2026-03-01T10:00:00Z",
                            "metrics": [{"name": "loss", "value": "0.9"},
                                        {"name": "currentEpoch", "value": "0"},
                                        {"name": "totalEpochs", "value": "4"}]})
    update_training_status({"progressPercentage": 75, "estimatedRemainingSeconds": 30,
                            "lastUpdatedTime": "2026-03-01T10:05:00Z",
                            "metrics": [{"name": "loss", "value": "0.2347"},
                                        {"name": "eval_accuracy", "value": "0.9876"},
                                        {"name": "best_model", "value": "checkpoint-300"},
                                        {"name": "currentEpoch", "value": "3"},
                                        {"name": "totalEpochs", "value": "4"}]})
    print("done", flush=True)
''')

#: The file form, as the TrainJob progression callbacks write it (a temporary file renamed
#: over the target); midway one corrupt write. Each stage waits for the test to have seen the
#: last (a file named ``<argv[1]>.<stage>``), so no probe tick can be missed.
FILE_SCRIPT = textwrap.dedent('''
    import json, os, sys, time

    path = os.environ["TRAINJOB_PROGRESSION_FILE_PATH"]
    start = int(time.time()) - 100

    def seen(stage):
        deadline = time.time() + 60
        while not os.path.exists(f"{sys.argv[1]}.{stage}") and time.time() < deadline:
            time.sleep(0.05)

    def write_status(step, metrics, message):
        status = {"current_step": step, "total_steps": 1000, "current_epoch": step // 250,
                  "total_epochs": 4, "message": message, "timestamp": start + 100,
                  "start_time": start, "training_metrics": metrics,
                  "metrics": {"eval_accuracy": str(step / 1000)}}
        with open(path + ".tmp", "w") as f:
            json.dump(status, f, indent=2)
        os.rename(path + ".tmp", path)

    write_status(100, {"loss": "0.9", "learning_rate": "0.001"}, "Training started")
    seen(1)
    with open(path, "w") as f:  # in place and cut short: the agent must only warn
        f.write('{"current_step": 2')
    seen(2)
    write_status(300, {"loss": "0.5", "learning_rate": "0.001",
                       "latest_checkpoint_path": "/out/checkpoint-300"}, "Completed epoch 1")
    seen(3)
    print("done", flush=True)
''')


@pytest.fixture
def server(own_server: LiveServer) -> LiveServer:
    """The test's own server (tests/e2e/conftest.py)."""
    return own_server


@pytest.fixture
def agent(tmp_path: Path, server: LiveServer, api: Api) -> Iterator[AgentProc]:
    proc = AgentProc(server, api.worker_token(), "kf-box", tmp_path / "work")
    yield proc
    proc.stop()


def _progress(api: Api, run_id: str) -> dict[str, Any]:
    resp = api.http.get(f"/v1/runs/{run_id}/progress")
    resp.raise_for_status()
    return dict(resp.json())


def _warnings(api: Api, run_id: str) -> list[str]:
    return [e["details"]["message"] for e in api.events(run_id) if e["kind"] == "warning"]


def _wait_for(check: Any, what: str, timeout: float = 45.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s: {what}")


def test_the_push_form_reports_with_only_kubeflows_variables(
        tmp_path: Path, api: Api, agent: AgentProc) -> None:
    script = tmp_path / "push.py"
    script.write_text(PUSH_SCRIPT)
    run_id = api.submit("kf-push", script, command=[sys.executable, str(script)])
    run = api.wait(run_id, {"completed", "failed"}, timeout=60)
    out = api.logs(run_id)
    assert run["status"] == "completed", out + agent.log()
    assert f"token file mode 0o600 owner {os.getuid()} me {os.getuid()}" in out, out
    assert "ca <unset> worker token <none>" in out, out
    assert out.count("status 200") == 2, out
    progress = _progress(api, run_id)
    snap = progress["snapshot"]
    assert (snap["percent"], snap["step"], snap["total_steps"]) == (75.0, 75, 100)
    assert (snap["epoch"], snap["total_epochs"]) == (3.0, 4.0)
    assert snap["metrics"] == {"loss": 0.2347, "eval_accuracy": 0.9876}
    assert snap["updated_at"] == "2026-03-01T10:05:00.000Z"
    assert progress["eta_seconds"] == 30.0
    points = {(p["tag"], p["step"]): p["value"] for p in api.metrics(run_id)}
    assert points == {("loss", 10): 0.9, ("loss", 75): 0.2347, ("eval_accuracy", 75): 0.9876}
    assert [w for w in _warnings(api, run_id) if "best_model" in w] == [
        "trainerStatus.metrics[2]: metric 'best_model' has the value 'checkpoint-300', which "
        "is not a number; left out"]
    # The credential's file went with the attempt; the credential is dead anyway.
    assert not (attempt_dir(agent, run_id, 1) / "trainer-status-token").exists()


def test_the_push_form_under_runyard_supervise(tmp_path: Path, server: LiveServer,
                                               api: Api) -> None:
    """A supervisor holding only the attempt's credential (a Slurm allocation) hands the
    training process its own copy, in the file Kubeflow's variable names."""
    script = tmp_path / "push.py"
    script.write_text(PUSH_SCRIPT)
    run_id = api.submit("kf-slurm", script, command=[sys.executable, str(script)],
                        executor="slurm")
    answer = _claim(server, api.worker_token("login-node"))
    proc = _supervise(tmp_path, server, answer)
    assert proc.wait(60) == 0, (tmp_path / "supervise.log").read_text()
    run = api.wait(run_id, {"completed", "failed"})
    out = api.logs(run_id)
    assert run["status"] == "completed" and out.count("status 200") == 2, out
    snap = _progress(api, run_id)["snapshot"]
    assert (snap["percent"], snap["epoch"], snap["source"]) == (75.0, 3.0,
                                                                "kubeflow/trainerStatus")


def test_the_file_form_is_probed_like_the_v1_file(tmp_path: Path, api: Api,
                                                  agent: AgentProc) -> None:
    script, go = tmp_path / "progression.py", tmp_path / "go"
    script.write_text(FILE_SCRIPT)
    run_id = api.submit("kf-file", script, command=[sys.executable, str(script), str(go)])

    def step() -> int | None:
        snap = _progress(api, run_id)["snapshot"]
        return None if snap is None else int(snap["step"])

    _wait_for(lambda: step() == 100, "the first progression")
    Path(f"{go}.1").touch()
    _wait_for(lambda: any(w.startswith("progression file partial: ")
                          for w in _warnings(api, run_id)),
              "a warning for the cut-short progression file")
    # The run went on, with the last good progression.
    assert api.run(run_id)["status"] == "running" and step() == 100
    Path(f"{go}.2").touch()
    _wait_for(lambda: step() == 300, "the last progression, while the run goes on")
    Path(f"{go}.3").touch()
    run = api.wait(run_id, {"completed", "failed"}, timeout=60)
    assert run["status"] == "completed", api.logs(run_id) + agent.log()
    progress = _progress(api, run_id)
    snap = progress["snapshot"]
    assert (snap["step"], snap["total_steps"], snap["epoch"], snap["total_epochs"]) == \
        (300, 1000, 1, 4)
    assert snap["message"] == "Completed epoch 1"
    assert snap["metrics"] == {"loss": 0.5, "learning_rate": 0.001, "eval_accuracy": 0.3}
    assert progress["eta_seconds"] == pytest.approx(700 * 100 / 300, abs=0.01)
    points = {(p["tag"], p["step"]): p["value"] for p in api.metrics(run_id)}
    assert points == {("loss", 100): 0.9, ("learning_rate", 100): 0.001,
                      ("eval_accuracy", 100): 0.1, ("loss", 300): 0.5,
                      ("learning_rate", 300): 0.001, ("eval_accuracy", 300): 0.3}
    warnings = _warnings(api, run_id)
    assert sum(w.startswith("progression file partial: ") for w in warnings) == 1, warnings
    assert [w for w in warnings if "latest_checkpoint_path" in w] == [
        "progression file training_metrics: metric 'latest_checkpoint_path' has the value "
        "'/out/checkpoint-300', which is not a number; left out"]
    # The run writes no v1 snapshot: that is not worth a warning once Kubeflow's file came.
    assert not any("progress file was never written" in w for w in warnings), warnings


def test_the_token_file_is_the_training_users_under_train_as(server: LiveServer,
                                                             api: Api) -> None:
    """``--train-as``: the run runs as ``nobody``, reads its credential's file (mode 0600,
    its own) and posts with it."""
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("needs Linux and root to start runs as another user")
    try:
        who = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no 'nobody' user")
    python = "/usr/bin/python3"  # the tests' interpreter may be out of nobody's reach
    if not os.access(python, os.X_OK):
        pytest.skip("no /usr/bin/python3 for the unprivileged script")
    shared = Path(tempfile.mkdtemp(prefix="runyard-kf-"))  # pytest's tmp_path is root's alone
    try:
        shared.chmod(0o755)
        (shared / "push.py").write_text(PUSH_SCRIPT)
        run_id = api.submit("kf-train-as", shared / "push.py",
                            command=[python, str(shared / "push.py")])
        agent = AgentProc(server, api.worker_token(), "kf-root", shared / "work", cwd=shared,
                          extra_args=["--train-as", who.pw_name])
        try:
            run = api.wait(run_id, {"completed", "failed"}, timeout=60)
        finally:
            agent.stop()
        out = api.logs(run_id)
        assert run["status"] == "completed", out + agent.log()
        assert f"token file mode 0o600 owner {who.pw_uid} me {who.pw_uid}" in out, out
        assert out.count("status 200") == 2, out
        assert _progress(api, run_id)["snapshot"]["percent"] == 75.0
    finally:
        shutil.rmtree(shared, ignore_errors=True)
