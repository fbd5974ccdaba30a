"""Slurm executor benchmark. Prints JSON.

    python benchmarks/slurm_bench.py [--samples 20] [--inflight 100] [--drain 1000]
                                     [--cpu-seconds 30] [--phase-s 1] [--only latency|cpu|drain]

Needs root and Debian's ``slurm-wlm``/``munge`` (``scripts/lib.sh`` ``ensure_slurm``): it starts
the test suite's throwaway two-node cluster (``tests/support/slurm.py``), a real
``runyard server`` (embedded SQLite) and a real ``runyard agent --executor slurm``.

* ``latency``: submit-to-running. A job whose command only writes the time it started
  (``date +%s.%N``) goes through Runyard (``POST /v1/runs`` -> claim -> ``sbatch`` -> the
  supervisor in the job -> the command) and, on the same cluster, through a plain ``sbatch``
  of a script doing the same; one at a time, ``--samples`` of each, alternating. Latency is
  the command's start time minus the submit time (one host, one clock). Medians and the
  overhead (target: at most 1 s). Slurm starts pending jobs at its scheduler's passes, about
  once a second on the test cluster: each submission first waits a random part of
  ``--phase-s`` so that neither side meets that cycle at a favoured point (alternating
  without it, the Runyard job's ``sbatch`` came just after a pass, every time, and waited
  almost a whole cycle more than the plain job).
* ``cpu``: the Slurm agent's CPU (its process and the Slurm commands it ran, as a share of
  one core) over ``--cpu-seconds`` with ``--inflight`` runs in flight. The jobs wait in a
  DOWN partition (the two-node test cluster cannot run 100 supervisors at once), so the agent
  does the most it ever does for them: one ``squeue`` per reconcile and a heartbeat for each
  pending job. Target: at most 5 %.
* ``drain``: ``--drain`` runs queued with no agent, then an agent started with
  ``--max-jobs`` as large: runs/s from its start until every run is a Slurm job (counted with
  ``squeue``). The jobs are held pending in the DOWN partition: this is the agent's claim and
  submission rate, not Slurm's job throughput.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.live_server import LiveServer
from tests.support.slurm import SlurmCluster


class Bench:
    def __init__(self, work: Path, cluster: SlurmCluster) -> None:
        self.work, self.cluster = work, cluster
        os.environ["SLURM_CONF"] = str(cluster.conf)
        self.server = LiveServer(work / "server").start()
        self.http = self.server.client(self.server.headers(), timeout=120)
        r = self.http.post("/v1/tokens", json={"name": "slurm-bench", "role": "worker"})
        r.raise_for_status()
        self.token = r.json()["token"]
        self.marks = work / "marks"
        self.marks.mkdir()
        self.agent: subprocess.Popen[bytes] | None = None

    def start_agent(self, *extra: str) -> psutil.Process:
        log = open(self.work / "agent.log", "ab")
        self.agent = subprocess.Popen(
            [sys.executable, "-m", "runyard", "agent", "--executor", "slurm", "--server",
             self.server.url, "--host-id", "bench-slurm", "--work-dir", str(self.work / "jobs"),
             *extra],
            env={**os.environ, "RUNYARD_TOKEN": self.token}, stdout=log,
            stderr=subprocess.STDOUT, cwd=self.work)
        log.close()
        return psutil.Process(self.agent.pid)

    def stop_agent(self) -> None:
        if self.agent is not None and self.agent.poll() is None:
            self.agent.terminate()
            self.agent.wait(60)
        self.agent = None

    def submit(self, name: str, command: list[str], **extra: Any) -> str:
        r = self.http.post("/v1/runs", json={"name": name, "command": command,
                                             "executor": "slurm", **extra})
        r.raise_for_status()
        return str(r.json()["id"])

    def wait_status(self, run_id: str, statuses: set[str], timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.http.get(f"/v1/runs/{run_id}").json()["status"] in statuses:
                return
            time.sleep(0.05)
        raise RuntimeError(f"run {run_id} not {statuses} after {timeout} s")

    def mark(self, name: str, timeout: float = 300) -> float:
        path = self.marks / name
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = path.read_text().strip() if path.exists() else ""
            if text:
                return float(text)
            time.sleep(0.01)
        raise RuntimeError(f"no start mark {path} after {timeout} s")

    def pending_jobs(self) -> int:
        out = self.cluster.run("squeue", "-h", "-p", "held", "-o", "%i", check=False).stdout
        return len(out.split())

    def cancel_all(self) -> None:
        self.cluster.run("scancel", "-u", "root", check=False)

    def close(self) -> None:
        self.stop_agent()
        self.cancel_all()
        self.http.close()
        self.server.stop()


def measure_latency(b: Bench, samples: int, phase_s: float) -> dict[str, Any]:
    b.start_agent()
    plain_lat: list[float] = []
    ry_lat: list[float] = []
    ry_running: list[float] = []
    ry_claimed: list[float] = []
    for i in range(samples):
        # Plain sbatch of the same one-liner.
        name = f"plain-{i}"
        script = f"#!/bin/sh\ndate +%s.%N > {b.marks / name}\n"
        time.sleep(random.uniform(0, phase_s))
        t0 = time.time()
        subprocess.run(["sbatch", "--parsable", "--nodes=1", "--ntasks-per-node=1",
                        f"--output={b.work / 'plain-%j.out'}"], input=script, text=True,
                       check=True, capture_output=True)
        plain_lat.append(b.mark(name) - t0)
        # Through Runyard.
        name = f"ry-{i}"
        time.sleep(random.uniform(0, phase_s))
        t0 = time.time()
        run_id = b.submit(name, ["sh", "-c", f"date +%s.%N > {b.marks / name}"])
        ry_lat.append(b.mark(name) - t0)
        b.wait_status(run_id, {"completed", "failed"})
        run = b.http.get(f"/v1/runs/{run_id}").json()
        if run["status"] != "completed":
            raise RuntimeError(f"latency run failed: {json.dumps(run)[:2000]}")
        att = run["attempts"][0]
        ry_running.append(_ts(att["running_at"]) - _ts(run["created_at"]))
        ry_claimed.append(_ts(att["claimed_at"]) - _ts(run["created_at"]))
    b.stop_agent()
    return {"samples": samples,
            "plain_sbatch_median_s": round(statistics.median(plain_lat), 3),
            "runyard_median_s": round(statistics.median(ry_lat), 3),
            "overhead_median_s": round(statistics.median(ry_lat)
                                       - statistics.median(plain_lat), 3),
            "runyard_running_status_median_s": round(statistics.median(ry_running), 3),
            "runyard_claimed_median_s": round(statistics.median(ry_claimed), 3),
            "plain_sbatch_s": [round(x, 3) for x in plain_lat],
            "runyard_s": [round(x, 3) for x in ry_lat]}


def _ts(text: str) -> float:
    from runyard import timestamps

    value = timestamps.parse_time(text, "at")
    assert value is not None
    return value


def _cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system + t.children_user + t.children_system)


def measure_cpu(b: Bench, inflight: int, seconds: float) -> dict[str, Any]:
    for i in range(inflight):
        b.submit(f"held-{i}", ["true"], slurm={"partition": "held"})
    proc = b.start_agent("--max-jobs", str(inflight))
    deadline = time.monotonic() + 600
    while b.pending_jobs() < inflight:
        if time.monotonic() > deadline:
            raise RuntimeError("the agent did not submit every run")
        time.sleep(0.5)
    time.sleep(5)  # past the submissions' burst
    c0, t0 = _cpu(proc), time.monotonic()
    time.sleep(seconds)
    c1, t1 = _cpu(proc), time.monotonic()
    b.stop_agent()
    b.cancel_all()
    return {"inflight": inflight, "seconds": round(t1 - t0, 1),
            "agent_cpu_percent_of_one_core": round(100 * (c1 - c0) / (t1 - t0), 2)}


def measure_drain(b: Bench, runs: int) -> dict[str, Any]:
    before = b.pending_jobs()
    for i in range(runs):
        b.submit(f"drain-{i}", ["true"], slurm={"partition": "held"})
    t0 = time.monotonic()
    b.start_agent("--max-jobs", str(runs))
    deadline = time.monotonic() + 1800
    while (n := b.pending_jobs() - before) < runs:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {n} of {runs} runs became Slurm jobs")
        time.sleep(0.25)
    elapsed = time.monotonic() - t0
    b.stop_agent()
    b.cancel_all()
    return {"runs": runs, "seconds": round(elapsed, 1),
            "runs_per_s": round(runs / elapsed, 1),
            "note": "agent start (including its first claim) to the last sbatch; jobs held "
                    "pending in a DOWN partition"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--inflight", type=int, default=100)
    ap.add_argument("--cpu-seconds", type=float, default=30.0)
    ap.add_argument("--drain", type=int, default=1000)
    ap.add_argument("--phase-s", type=float, default=1.0,
                    help="each latency submission first waits a random part of this")
    ap.add_argument("--only", choices=("latency", "cpu", "drain"))
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="slurm-bench-"))
    cluster = SlurmCluster(work / "cluster")
    result: dict[str, Any] = {"load_average_at_start": [round(x, 1) for x in os.getloadavg()]}
    b: Bench | None = None
    try:
        cluster.start()
        b = bench = Bench(work, cluster)
        steps: dict[str, Callable[[], dict[str, Any]]] = {
            "latency": lambda: measure_latency(bench, args.samples, args.phase_s),
            "cpu": lambda: measure_cpu(bench, args.inflight, args.cpu_seconds),
            "drain": lambda: measure_drain(bench, args.drain)}
        for what, fn in steps.items():
            if args.only in (None, what):
                result[what] = fn()
                print(json.dumps({what: result[what]}), file=sys.stderr, flush=True)
    finally:
        result["load_average_at_end"] = [round(x, 1) for x in os.getloadavg()]
        if b is not None:
            b.close()
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
