"""Helpers for agent end-to-end tests: real agent processes, real training scripts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx

from .live_server import LiveServer

#: A training script driven by its config file (RUNYARD_CONFIG_FILE) and env. It writes the
#: progress protocol files by hand (no SDK), so the tests see exactly what went in:
#:   steps, sleep         how many steps, seconds per step
#:   exit_code            exit status at the end
#:   on_sigterm           "exit0" (stop cleanly), "ignore", or "default"
#:   bad_progress         "corrupt" | "partial" | "oversized": write one bad snapshot midway
#:   artifact             text written to RUNYARD_ARTIFACT_DIR/model.txt at the end
#:   checkpoint           register a checkpoint file in checkpoints.jsonl at the end
#:   points_per_step      metric points written per step (tags m0, m1, ...)
#:   sleep_by_attempt     {"2": 0.01}: a different pace for some attempt numbers
TRAIN_SCRIPT = textwrap.dedent('''
    import json, os, signal, sys, time

    cfg = json.load(open(os.environ["RUNYARD_CONFIG_FILE"]))
    progress = os.environ["RUNYARD_PROGRESS_FILE"]
    metrics = os.environ["RUNYARD_METRICS_FILE"]
    stop_file = os.environ["RUNYARD_STOP_FILE"]
    steps = int(cfg.get("steps", 10))
    sleep = float(cfg.get("sleep_by_attempt", {}).get(os.environ["RUNYARD_ATTEMPT"],
                                                      cfg.get("sleep", 0.05)))
    stop = {"flag": False}
    mode = cfg.get("on_sigterm", "default")
    if mode == "ignore":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    elif mode == "exit0":
        signal.signal(signal.SIGTERM, lambda *a: stop.update(flag=True))
    print("pid", os.getpid(), flush=True)
    print("cuda", os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>"), flush=True)
    print("attempt", os.environ["RUNYARD_ATTEMPT"], "token",
          os.environ.get("RUNYARD_TOKEN", "<none>"), flush=True)
    print("argv", json.dumps(sys.argv[1:]), flush=True)
    print("run", os.environ["RUNYARD_RUN_ID"], "cwd", os.getcwd(), flush=True)

    def snapshot(seq, step):
        now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + ".000Z"
        doc = {"schema": "runyard.progress/v1", "seq": seq, "updated_at": now,
               "phase": "train", "step": step, "total_steps": steps,
               "metrics": {"loss": 1.0 / (step + 1)}}
        tmp = progress + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(doc, fh)
        os.replace(tmp, progress)

    per = int(cfg.get("points_per_step", 1))
    bad = cfg.get("bad_progress")
    with open(metrics, "a") as mf:
        for step in range(steps):
            if stop["flag"] or (mode == "exit0" and os.path.exists(stop_file)):
                print("stopping cleanly at", step, flush=True)
                sys.exit(0)
            for k in range(per):
                mf.write(json.dumps({"step": step, "tag": f"m{k}", "value": step * 0.5,
                                     "at": "2026-01-01T00:00:00.000Z"}) + "\\n")
            mf.flush()
            if bad and step == steps // 2:
                with open(progress, "w") as fh:
                    if bad == "corrupt":
                        fh.write("{not json at all")
                    elif bad == "partial":
                        fh.write('{"schema": "runyard.progress/v1", "seq": 9')
                    else:
                        fh.write(json.dumps({"schema": "runyard.progress/v1",
                                             "updated_at": "x", "pad": "x" * 70000}))
                time.sleep(float(cfg.get("bad_hold", 0.6)))
            else:
                snapshot(step + 1, step)
            time.sleep(sleep)
    if cfg.get("artifact"):
        with open(os.path.join(os.environ["RUNYARD_ARTIFACT_DIR"], "model.txt"), "w") as fh:
            fh.write(cfg["artifact"])
    if cfg.get("checkpoint"):
        path = os.path.join(os.environ["RUNYARD_CHECKPOINT_DIR"], "final.ckpt")
        with open(path, "w") as fh:
            fh.write("weights")
        rec = {"path": path, "step": steps, "metrics": {"loss": 0.1}, "status": "complete",
               "at": "2026-01-01T00:00:00.000Z"}
        with open(os.path.join(os.path.dirname(metrics), "checkpoints.jsonl"), "a") as fh:
            fh.write(json.dumps(rec) + "\\n")
    print("done", flush=True)
    sys.stderr.write("the end\\n")
    sys.exit(int(cfg.get("exit_code", 0)))
''')


def write_train_script(directory: Path) -> Path:
    path = directory / "train.py"
    path.write_text(TRAIN_SCRIPT)
    return path


class Api:
    """A thin admin client of the live server, for tests."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.http = httpx.Client(base_url=server.url, headers=server.headers(), timeout=15)

    def close(self) -> None:
        self.http.close()

    def worker_token(self, name: str = "agent", hosts: list[str] | None = None) -> str:
        """A worker token; with ``hosts``, bound to them (else to its first claim's host)."""
        body: dict[str, Any] = {"name": name, "role": "worker"}
        if hosts is not None:
            body["hosts"] = hosts
        resp = self.http.post("/v1/tokens", json=body)
        resp.raise_for_status()
        return str(resp.json()["token"])

    def submit(self, name: str, script: Path, config: dict[str, Any] | None = None,
               **extra: Any) -> str:
        body = {"name": name, "command": [sys.executable, str(script), "--config",
                                          "{config_file}"],
                "config": config or {}, "probe_interval_s": 0.2, **extra}
        resp = self.http.post("/v1/runs", json=body)
        assert resp.status_code == 201, resp.text
        return str(resp.json()["id"])

    def run(self, run_id: str) -> dict[str, Any]:
        resp = self.http.get(f"/v1/runs/{run_id}")
        resp.raise_for_status()
        return dict(resp.json())

    def events(self, run_id: str) -> list[dict[str, Any]]:
        resp = self.http.get(f"/v1/runs/{run_id}/events", params={"limit": 1000})
        resp.raise_for_status()
        return list(resp.json()["items"])

    def metrics(self, run_id: str, attempt: int | None = None) -> list[dict[str, Any]]:
        """The run's points, tag by tag (keyset pages need a tag): at each step the newest
        attempt's, or with ``attempt`` that attempt's own."""
        tags = self.http.get(f"/v1/runs/{run_id}/metrics/tags")
        tags.raise_for_status()
        items: list[dict[str, Any]] = []
        for tag in (t["tag"] for t in tags.json()["items"]):
            after: int | None = None
            while True:
                params: dict[str, Any] = {"limit": 1000, "tag": tag}
                if attempt is not None:
                    params["attempt"] = attempt
                if after is not None:
                    params["after_step"] = after
                resp = self.http.get(f"/v1/runs/{run_id}/metrics", params=params)
                resp.raise_for_status()
                body = resp.json()
                items += body["items"]
                if body.get("next_after_step") is None or not body["items"]:
                    break
                after = body["next_after_step"]
        return items

    def logs(self, run_id: str, attempt: int | None = None, stream: str = "stdout") -> str:
        params: dict[str, Any] = {"stream": stream}
        if attempt is not None:
            params["attempt"] = attempt
        resp = self.http.get(f"/v1/runs/{run_id}/logs", params=params)
        resp.raise_for_status()
        return str(resp.json()["data"])

    def wait(self, run_id: str, until: Callable[[dict[str, Any]], bool] | Iterable[str],
             timeout: float = 90.0) -> dict[str, Any]:
        """Poll the run until ``until`` holds (or its status is one of ``until``); the deadline
        is generous because a loaded machine can take tens of seconds to start an agent."""
        check = until if callable(until) else (lambda r, s=set(until): r["status"] in s)
        deadline = time.monotonic() + timeout
        run: dict[str, Any] = {}
        while time.monotonic() < deadline:
            run = self.run(run_id)
            if check(run):
                return run
            time.sleep(0.1)
        raise AssertionError(f"run {run_id} did not get there in {timeout} s: "
                             f"{json.dumps(run, default=str)[:2000]}")


class AgentProc:
    """One ``python -m runyard agent`` process."""

    def __init__(self, server: LiveServer, token: str, host_id: str, work_dir: Path, *,
                 slots: int = 1, labels: str = "", env: dict[str, str] | None = None,
                 stop_grace_s: float = 5.0, extra_args: list[str] | None = None,
                 cwd: Path | None = None) -> None:
        self.host_id = host_id
        self.work_dir = work_dir
        self.log_path = work_dir.parent / f"agent-{host_id}.log"
        work_dir.mkdir(parents=True, exist_ok=True)
        # An idle agent claims at most every second (5 s by default): queued runs start
        # soon, and the idle agents of a test run do not keep the machine's cores busy.
        args = [sys.executable, "-m", "runyard", "agent", "--server", server.url,
                "--host-id", host_id, "--slots", str(slots), "--work-dir", str(work_dir),
                "--probe-interval-s", "0.2", "--claim-max-wait-s", "1.0",
                "--stop-grace-s", str(stop_grace_s), *(extra_args or [])]
        if labels:
            args += ["--labels", labels]
        full_env = {**os.environ, "RUNYARD_TOKEN": token, "RUNYARD_LOG_LEVEL": "INFO",
                    **(env or {})}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                         env=full_env, cwd=cwd)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        """End it whatever its state (test teardown)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()


def attempt_dir(agent: AgentProc, run_id: str, number: int) -> Path:
    return agent.work_dir / run_id / str(number)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def training_pid(agent: AgentProc, run_id: str, number: int, timeout: float = 10.0) -> int:
    """The pid the training script printed first in its stdout log."""
    log = attempt_dir(agent, run_id, number) / "logs" / "stdout.log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists():
            for line in log.read_text().splitlines():
                if line.startswith("pid "):
                    return int(line.split()[1])
        time.sleep(0.05)
    raise AssertionError(f"no pid in {log}")


def kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def resumable_trainer(steps: int) -> str:
    """An SDK training script that saves a checkpoint when asked to stop and resumes from it:
    attempt 1 is slow (still running when it is stopped or preempted), later ones fast. It
    prints ``saved at STEP`` and, resumed, ``resumed from STEP RUNYARD_RESUME_STEP``."""
    return textwrap.dedent(f'''
        import os, time
        import runyard.sdk as sdk

        STEPS = {steps}
        with sdk.start_run(total_steps=STEPS) as run:
            start = 0
            if run.resume_from is not None:
                start = int(run.resume_from.read_text()) + 1
                print("resumed from", run.resume_from.read_text(),
                      os.environ["RUNYARD_RESUME_STEP"], flush=True)
            pace = 0.05 if run.attempt == 1 else 0.0
            for step in range(start, STEPS):
                run.log({{"loss": 1.0 / (step + 1)}}, step=step)
                run.progress(step=step)
                if run.should_stop:
                    path = run.checkpoint_dir / "state.txt"
                    path.write_text(str(step))
                    run.checkpoint(path, step=step)
                    print("saved at", step, flush=True)
                    break
                time.sleep(pace)
    ''')
