"""The worker token stays out of the runs' reach: a real agent, real training processes.

The attack: a user's training script, running as the agent's OS user, reads the agent's
initial environment from ``/proc/<agent pid>/environ`` (or opens its memory) and so learns
the worker token. These tests run as root, and root reads every process's ``/proc`` files
whatever the agent does; so the agent under test is started as the unprivileged ``nobody``
with ``setpriv`` (its training process is then ``nobody`` too, not ptrace-capable: exactly
the attacker's position). ``--train-as`` is tested for real the same way: a root agent whose
run must execute as ``nobody`` and still write its protocol files.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..support.agents import Api
from ..support.live_server import LiveServer

pytestmark = pytest.mark.lease(60)

ROOT = Path(__file__).resolve().parents[1]

#: Prints what of the agent's secrets it can reach, writes a progress snapshot and an artifact
#: (so running as another user still works), and exits 3 when it found the token.
PROBE = textwrap.dedent('''
    import json, os, sys, time
    found = []
    if any("RUNYARD_TOKEN" in k for k in os.environ):
        found.append("own environment")
    agent = os.getppid()
    try:
        with open(f"/proc/{agent}/environ", "rb") as fh:
            if b"RUNYARD_TOKEN=" in fh.read():
                found.append("agent environ")
    except OSError as exc:
        print("environ refused:", exc.strerror, flush=True)
    try:
        open(f"/proc/{agent}/mem", "rb").close()
        found.append("agent memory")
    except OSError as exc:
        print("mem refused:", exc.strerror, flush=True)
    print("uid", os.getuid(), "found", json.dumps(found), flush=True)
    doc = {"schema": "runyard.progress/v1", "seq": 1, "step": 7,
           "updated_at": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())}
    with open(os.environ["RUNYARD_PROGRESS_FILE"] + ".tmp", "w") as fh:
        json.dump(doc, fh)
    os.replace(os.environ["RUNYARD_PROGRESS_FILE"] + ".tmp", os.environ["RUNYARD_PROGRESS_FILE"])
    with open(os.path.join(os.environ["RUNYARD_ARTIFACT_DIR"], "probe.txt"), "w") as fh:
        fh.write("ok")
    time.sleep(0.5)
    sys.exit(3 if found else 0)
''')


def _nobody() -> pwd.struct_passwd:
    if sys.platform != "linux" or os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs Linux, root and setpriv to start an unprivileged agent")
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no 'nobody' user")


@pytest.fixture
def server(own_server: LiveServer) -> LiveServer:
    return own_server  # each test its own: its agents claim whatever is queued


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory ``nobody`` can use (pytest's tmp_path is root's alone)."""
    who = _nobody()
    path = Path(tempfile.mkdtemp(prefix="runyard-secrets-"))
    path.chmod(0o755)
    os.chown(path, who.pw_uid, who.pw_gid)
    (path / "probe.py").write_text(PROBE)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _agent(server: LiveServer, token: str, work: Path, *, prefix: list[str],
           extra: list[str]) -> subprocess.Popen[bytes]:
    args = [*prefix, sys.executable, "-m", "runyard", "agent", "--server", server.url,
            "--host-id", "box", "--work-dir", str(work), "--probe-interval-s", "0.2",
            "--claim-max-wait-s", "0.3", *extra]
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "RUNYARD_TOKEN": token,
           "RUNYARD_LOG_LEVEL": "INFO", "HOME": str(work.parent)}
    log = open(work.parent / "agent.log", "ab")
    try:
        return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env,
                                cwd=work.parent)
    finally:
        log.close()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _run_probe(api: Api, server: LiveServer, shared_dir: Path, *, prefix: list[str],
               extra: list[str]) -> tuple[dict[str, object], str]:
    # The tests' interpreter may live where ``nobody`` cannot run it; the probe needs only
    # the standard library.
    python = "/usr/bin/python3"
    if not os.access(python, os.X_OK):
        pytest.skip("no /usr/bin/python3 for the unprivileged probe")
    run_id = api.submit("probe", shared_dir / "probe.py",
                        command=[python, str(shared_dir / "probe.py")])
    agent = _agent(server, api.worker_token(), shared_dir / "work", prefix=prefix, extra=extra)
    try:
        run = api.wait(run_id, {"completed", "failed"}, timeout=60)
    finally:
        _stop(agent)
    log = (shared_dir / "agent.log").read_text(errors="replace")
    return run, api.logs(run_id) + "\n--- agent log ---\n" + log


def test_a_run_cannot_read_the_agents_token(server: LiveServer, api: Api,
                                            shared_dir: Path) -> None:
    who = _nobody()
    (shared_dir / "work").mkdir()
    os.chown(shared_dir / "work", who.pw_uid, who.pw_gid)
    setpriv = ["setpriv", f"--reuid={who.pw_uid}", f"--regid={who.pw_gid}", "--clear-groups"]
    run, out = _run_probe(api, server, shared_dir, prefix=setpriv, extra=[])
    assert f"uid {who.pw_uid} found []" in out, out
    assert "environ refused" in out and "mem refused" in out, out
    assert run["status"] == "completed", out


def test_train_as_runs_the_command_as_that_user(server: LiveServer, api: Api,
                                                shared_dir: Path) -> None:
    who = _nobody()
    run, out = _run_probe(api, server, shared_dir, prefix=[],
                          extra=["--train-as", who.pw_name])
    assert f"uid {who.pw_uid} found []" in out, out
    assert run["status"] == "completed", out
    progress = api.http.get(f"/v1/runs/{run['id']}/progress").json()
    assert progress["snapshot"]["step"] == 7, json.dumps(progress)
    names = [a["name"] for a in api.http.get(f"/v1/runs/{run['id']}/artifacts").json()["items"]]
    assert names == ["artifacts.tar.zst"], names  # the artifact dir was writable


def test_agent_marks_itself_undumpable() -> None:
    """What the kernel is told, read back in a fresh process (as root the effect on /proc
    cannot be observed; the test above observes it as an unprivileged user)."""
    if sys.platform != "linux":
        pytest.skip("prctl is Linux only")
    code = ("import ctypes; from runyard.agent import isolation; "
            "libc = ctypes.CDLL(None); before = libc.prctl(3, 0, 0, 0, 0); "
            "isolation.make_undumpable(); print(before, libc.prctl(3, 0, 0, 0, 0))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60, check=True)
    assert out.stdout.split() == ["1", "0"]


def test_agent_forgets_the_token_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from runyard.agent import isolation

    monkeypatch.setenv("RUNYARD_TOKEN", "ry_secret")
    isolation.forget_token_env()
    assert "RUNYARD_TOKEN" not in os.environ
