"""The SDK end to end in real subprocesses: agent-mode files, local runs, stop, SIGTERM, ranks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from runyard.progress.reader import MetricsTail, read_snapshot
from runyard.sdk import signals as sdk_signals

REPO = Path(__file__).resolve().parents[2]


def agent_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment an agent gives a training process (docs/progress-protocol.md)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNYARD_") and k != "RANK"}
    work = tmp_path / "attempt"
    for sub in ("checkpoints", "artifacts"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    (work / "config.json").write_text(json.dumps({"lr": 0.5, "hidden": 8}))
    env.update({
        "PYTHONPATH": str(REPO),
        "RUNYARD_DATA_DIR": str(tmp_path / "data"),
        "RUNYARD_RUN_ID": "run-123", "RUNYARD_ATTEMPT": "2",
        "RUNYARD_PROGRESS_FILE": str(work / "progress.json"),
        "RUNYARD_METRICS_FILE": str(work / "metrics.jsonl"),
        "RUNYARD_CHECKPOINT_DIR": str(work / "checkpoints"),
        "RUNYARD_ARTIFACT_DIR": str(work / "artifacts"),
        "RUNYARD_CONFIG_FILE": str(work / "config.json"),
        "RUNYARD_STOP_FILE": str(work / "STOP"),
    })
    env.update(extra)
    return env


def run_script(code: str, env: dict[str, str],
               timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, text=True,
                          capture_output=True, timeout=timeout)


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


TRAIN_1000 = """
    import math, runyard.sdk as sdk
    with sdk.start_run(name="mlp", project="demo", config={"lr": 0.1, "epochs": 3},
                       total_steps=1000) as run:
        assert run.mode == "agent" and run.run_id == "run-123" and run.attempt == 2
        print(json.dumps(run.config))
        ckpt = run.checkpoint_dir / "step500.pt"
        for step in range(1000):
            run.log({"loss": 1.0 / (step + 1), "acc": step / 1000, "lr": 0.1}, step=step)
            if step == 500:
                ckpt.write_bytes(b"weights")
                run.checkpoint(ckpt, step=step)
        run.progress(phase="eval", message="final eval")
        run.log({"val_loss": float("nan")}, step=999)
"""


def test_file_mode_end_to_end(tmp_path: Path) -> None:
    env = agent_env(tmp_path)
    proc = run_script("import json\n" + textwrap.dedent(TRAIN_1000), env)
    assert proc.returncode == 0, proc.stderr
    # The agent's validated config wins over the defaults given in code.
    assert json.loads(proc.stdout) == {"lr": 0.5, "epochs": 3, "hidden": 8}
    work = tmp_path / "attempt"

    result = read_snapshot(work / "progress.json")
    assert result.ok, result
    snap = result.snapshot
    assert snap is not None
    assert snap["status"] == "completed" and snap["phase"] == "eval"
    assert snap["step"] == 999 and snap["total_steps"] == 1000
    assert snap["percent"] == 99.9 and snap["message"] == "final eval"
    assert snap["metrics"]["val_loss"] == "NaN" and snap["metrics"]["loss"] == 0.001
    assert snap["rate"]["units"] == "steps/s" and snap["rate"]["value"] > 0
    assert snap["run_id"] == "run-123" and snap["attempt"] == 2
    assert snap["seq"] >= 2

    batch = MetricsTail(work / "metrics.jsonl").read_all()
    assert not batch.warnings
    assert len(batch.points) == 3001
    loss = [p for p in batch.points if p.tag == "loss"]
    assert [p.step for p in loss] == list(range(1000))
    assert all(p.at and p.at.endswith("Z") for p in batch.points)

    (ckpt,) = jsonl(work / "checkpoints.jsonl")
    assert ckpt["path"] == str(work / "checkpoints" / "step500.pt")
    assert ckpt["step"] == 500 and ckpt["status"] == "complete"
    assert ckpt["metrics"]["loss"] == 1 / 501

    events = jsonl(work / "events.jsonl")
    assert [e["kind"] for e in events] == ["start", "status"]
    assert events[-1]["status"] == "completed"
    # Nothing went to the local data directory in agent mode.
    assert not (tmp_path / "data" / "local-runs").exists()


def test_exception_in_with_block_records_failed_with_traceback(tmp_path: Path) -> None:
    env = agent_env(tmp_path)
    proc = run_script("""
        import runyard.sdk as sdk
        def train(run):
            run.log({"loss": 1.0}, step=0)
            raise ValueError("exploding gradients")
        with sdk.start_run() as run:
            train(run)
    """, env)
    assert proc.returncode == 1
    assert "exploding gradients" in proc.stderr  # the exception still propagates
    work = tmp_path / "attempt"
    status = jsonl(work / "events.jsonl")[-1]
    assert status["status"] == "failed"
    assert status["error"] == "ValueError: exploding gradients"
    assert "in train" in status["traceback"]
    snap = read_snapshot(work / "progress.json").snapshot
    assert snap is not None and snap["status"] == "failed"


def test_plain_call_without_finish_is_finished_at_exit(tmp_path: Path) -> None:
    env = agent_env(tmp_path)
    ok = run_script("""
        import runyard.sdk as sdk
        run = sdk.start_run()
        run.log({"loss": 2.0}, step=3)
    """, env)
    assert ok.returncode == 0, ok.stderr
    work = tmp_path / "attempt"
    assert jsonl(work / "events.jsonl")[-1]["status"] == "completed"
    assert [p.step for p in MetricsTail(work / "metrics.jsonl").read().points] == [3]

    crash = run_script("""
        import runyard.sdk as sdk
        run = sdk.start_run()
        raise RuntimeError("no finish")
    """, env)
    assert crash.returncode == 1
    last = jsonl(work / "events.jsonl")[-1]
    assert last["status"] == "failed" and "no finish" in last["error"]


STOPPABLE = """
    import sys, time, runyard.sdk as sdk
    with sdk.start_run(total_steps=100000) as run:
        for step in range(100000):
            run.log({"loss": 1.0}, step=step)
            if step == 5:
                print("ready", flush=True)
            if CHECK and run.should_stop:
                print("stopping at", step, flush=True)
                break
            time.sleep(0.01)
"""


def _start(code: str, env: dict[str, str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_sigterm_sets_should_stop_and_records_stopped(tmp_path: Path) -> None:
    env = agent_env(tmp_path)
    proc = _start("CHECK = True\n" + textwrap.dedent(STOPPABLE), env)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopping at" in out
    work = tmp_path / "attempt"
    kinds = [e["kind"] for e in jsonl(work / "events.jsonl")]
    assert kinds == ["start", "stop_requested", "status"]
    last = jsonl(work / "events.jsonl")[-1]
    assert last["status"] == "stopped" and last["stop_reason"] == "sigterm"
    snap = read_snapshot(work / "progress.json").snapshot
    assert snap is not None and snap["status"] == "stopped"


def test_second_sigterm_ends_a_script_that_ignores_should_stop(tmp_path: Path) -> None:
    env = agent_env(tmp_path)
    proc = _start("CHECK = False\n" + textwrap.dedent(STOPPABLE), env)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    assert proc.poll() is None  # the first one only asks
    proc.send_signal(signal.SIGTERM)  # within the window: the same stop again
    time.sleep(sdk_signals.REPEAT_WINDOW_S)
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM
    last = jsonl(tmp_path / "attempt" / "events.jsonl")[-1]
    assert last["status"] == "stopped"


def test_two_sigterms_at_once_are_one_stop(tmp_path: Path) -> None:
    """Slurm's end of a job and the supervisor's stop reach the trainer together: it still
    stops at its own pace (where it would save a checkpoint), not by the second one."""
    env = agent_env(tmp_path)
    proc = _start("CHECK = True\n" + textwrap.dedent(STOPPABLE), env)
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopping at" in out


def test_stop_file_sets_should_stop(tmp_path: Path) -> None:
    env = agent_env(tmp_path)
    proc = _start("CHECK = True\n" + textwrap.dedent(STOPPABLE), env)
    (tmp_path / "attempt" / "STOP").touch()
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopping at" in out
    last = jsonl(tmp_path / "attempt" / "events.jsonl")[-1]
    assert last["status"] == "stopped" and last["stop_reason"] == "stop_file"


def test_non_zero_rank_writes_nothing_but_sees_config_and_stop(tmp_path: Path) -> None:
    env = agent_env(tmp_path, RANK="1")
    (tmp_path / "attempt" / "STOP").touch()
    proc = run_script("""
        import runyard.sdk as sdk
        with sdk.start_run(config={"lr": 0.1}) as run:
            run.log({"loss": 1.0}, step=0)
            run.progress(step=1, phase="train")
            run.checkpoint("x.pt")
            print(run.mode, run.config["lr"], run.should_stop)
    """, env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["inactive", "0.5", "True"]
    work = tmp_path / "attempt"
    assert sorted(p.name for p in work.iterdir()) == ["STOP", "artifacts", "checkpoints",
                                                     "config.json"]
    assert not (tmp_path / "data").exists()
    # all_ranks=True makes any rank write.
    proc = run_script("""
        import runyard.sdk as sdk
        with sdk.start_run(all_ranks=True) as run:
            run.log({"loss": 1.0}, step=0)
    """, env)
    assert proc.returncode == 0, proc.stderr
    assert (work / "metrics.jsonl").exists()


def test_files_mode_writes_under_data_dir(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNYARD_") and k != "RANK"}
    env.update({"PYTHONPATH": str(REPO), "RUNYARD_DATA_DIR": str(tmp_path / "data")})
    proc = run_script("""
        import runyard.sdk as sdk
        import runyard.sdk.choose as choose
        choose.embedded_available = lambda: False  # as without the server extra (no SQLAlchemy)
        with sdk.start_run(name="nb", project="p", config={"lr": 0.1}, total_steps=10) as run:
            for i in range(10):
                run.log({"loss": 1.0 / (i + 1)}, step=i)
        print(run.run_id)
    """, env)
    assert proc.returncode == 0, proc.stderr
    root = tmp_path / "data" / "local-runs" / proc.stdout.strip()
    meta = json.loads((root / "run.json").read_text())
    assert meta["status"] == "completed" and meta["name"] == "nb" and meta["executor"] == "local"
    assert json.loads((root / "config.json").read_text()) == {"lr": 0.1}
    snap = read_snapshot(root / "progress.json").snapshot
    assert snap is not None and snap["step"] == 9 and snap["percent"] == 90.0
    assert len(MetricsTail(root / "metrics.jsonl").read().points) == 10
    assert (root / "checkpoints").is_dir() and (root / "artifacts").is_dir()
