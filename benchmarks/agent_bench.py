"""Agent benchmark: progress freshness and the agent's own CPU cost. Prints JSON.

* **freshness**: a training process writes a snapshot every ``--write-interval-s`` and logs
  each write's wall-clock time; the benchmark polls ``GET /v1/runs/{id}/progress`` every 5 ms.
  For each write, freshness is the delay until GET first returned that snapshot or a newer
  one. Measured at probe intervals 1.0 s and 0.1 s (p50, p95, max in seconds).
* **cpu**: the agent's CPU time (psutil, the agent process only, not the training child)
  while a run writes 10 snapshots/s and ``--points-per-s`` metric points/s, as a percentage
  of one core. Target: below 2 %.

Everything is real: a ``runyard server`` on 127.0.0.1 (embedded SQLite) and a
``runyard agent`` process. Run: ``python benchmarks/agent_bench.py [--seconds 10]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import psutil

import common

WRITER = textwrap.dedent('''
    import json, os, sys, time
    cfg = json.load(open(os.environ["RUNYARD_CONFIG_FILE"]))
    progress = os.environ["RUNYARD_PROGRESS_FILE"]
    writes = open(os.path.join(os.path.dirname(progress), "writes.jsonl"), "a")
    end = time.time() + cfg["seconds"]
    interval, pps = cfg["write_interval_s"], cfg["points_per_s"]
    seq, step, next_write = 0, 0, 0.0
    with open(os.environ["RUNYARD_METRICS_FILE"], "a") as mf:
        while time.time() < end:
            now = time.time()
            if pps:
                # Points in bursts of 1/10 s, as a training loop logging every step would.
                for _ in range(max(int(pps / 10), 1)):
                    at = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
                    mf.write('{"step":%d,"tag":"loss","value":%r,"at":"%s"}\\n'
                             % (step, 1.0 / (step + 1), at))
                    step += 1
                mf.flush()
            if now >= next_write:
                seq += 1
                doc = {"schema": "runyard.progress/v1", "seq": seq, "step": step,
                       "updated_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
                       + ".000Z", "written_at": now}
                with open(progress + ".tmp", "w") as fh:
                    json.dump(doc, fh)
                os.replace(progress + ".tmp", progress)
                writes.write(json.dumps({"seq": seq, "at": now}) + "\\n")
                writes.flush()
                next_write = now + interval
            time.sleep(0.1 if pps else min(interval, 0.01))
''')


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(len(ordered) * q), len(ordered) - 1)]


class Bench:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.log = open(work / "server.log", "ab")  # closed in close()
        self.server = common.Server(work / "server", "--stale-after-s", "30", log=self.log,
                                    http_timeout=10)
        self.url, self.http = self.server.url, self.server.http
        token = self.http.post("/v1/tokens", json={"name": "bench-agent", "role": "worker"})
        token.raise_for_status()
        self.script = work / "writer.py"
        self.script.write_text(WRITER)
        agent_env = {k: v for k, v in os.environ.items() if not k.startswith("RUNYARD_")}
        agent_env["RUNYARD_TOKEN"] = token.json()["token"]
        self.agent = subprocess.Popen(
            [sys.executable, "-m", "runyard", "agent", "--server", self.url, "--host-id",
             "bench", "--work-dir", str(work / "agent"), "--claim-max-wait-s", "0.2"],
            stdout=self.log, stderr=subprocess.STDOUT, env=agent_env)

    def close(self) -> None:
        common.stop(self.agent, 20)
        self.server.close()
        self.log.close()

    def submit(self, name: str, probe_s: float, config: dict[str, Any]) -> str:
        resp = self.http.post("/v1/runs", json={
            "name": name, "command": [sys.executable, str(self.script)], "config": config,
            "probe_interval_s": probe_s})
        resp.raise_for_status()
        return str(resp.json()["id"])

    def wait_running(self, run_id: str) -> None:
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.http.get(f"/v1/runs/{run_id}").json()["status"] == "running":
                return
            time.sleep(0.02)
        raise RuntimeError(f"run {run_id} never started")

    def wait_ended(self, run_id: str) -> str:
        deadline = time.time() + 60
        while time.time() < deadline:
            status = str(self.http.get(f"/v1/runs/{run_id}").json()["status"])
            if status in ("completed", "failed", "stopped"):
                return status
            time.sleep(0.1)
        raise RuntimeError(f"run {run_id} did not end")

    def freshness(self, probe_s: float, seconds: float, write_interval_s: float
                  ) -> dict[str, Any]:
        """For every snapshot written: the delay until GET first returned it or a newer one."""
        rid = self.submit(f"fresh-{probe_s}", probe_s, {
            "seconds": seconds, "write_interval_s": write_interval_s, "points_per_s": 0})
        self.wait_running(rid)
        seen: list[tuple[float, int]] = []  # (when GET answered, seq it returned), in order
        end = time.time() + seconds + 2 * probe_s
        while time.time() < end:
            snap = self.http.get(f"/v1/runs/{rid}/progress").json().get("snapshot") or {}
            seq = snap.get("seq")
            if isinstance(seq, int) and (not seen or seq > seen[-1][1]):
                seen.append((time.time(), seq))
            time.sleep(0.005)
        self.wait_ended(rid)
        writes = [json.loads(line) for line in
                  (self.work / "agent" / rid / "1" / "writes.jsonl").read_text().splitlines()]
        lat = []
        for w in writes:
            first = next((t for t, seq in seen if seq >= w["seq"]), None)
            if first is not None:
                lat.append(first - float(w["at"]))
        return {"probe_interval_s": probe_s, "write_interval_s": write_interval_s,
                "snapshots_written": len(writes), "measured": len(lat),
                "p50_s": round(statistics.median(lat), 4),
                "p95_s": round(_percentile(lat, 0.95), 4), "max_s": round(max(lat), 4)}

    def cpu(self, seconds: float, points_per_s: int) -> dict[str, Any]:
        rid = self.submit("cpu", 1.0, {"seconds": seconds + 3, "write_interval_s": 0.1,
                                       "points_per_s": points_per_s})
        self.wait_running(rid)
        time.sleep(1.5)  # past start-up
        agent = psutil.Process(self.agent.pid)
        before, t0 = agent.cpu_times(), time.monotonic()
        time.sleep(seconds)
        after, elapsed = agent.cpu_times(), time.monotonic() - t0
        used = (after.user - before.user) + (after.system - before.system)
        status = self.wait_ended(rid)
        points = self.http.get(f"/v1/runs/{rid}/metrics/tags").json()["items"]
        return {"points_per_s": points_per_s, "snapshots_per_s": 10, "seconds": round(elapsed, 2),
                "agent_cpu_percent_of_one_core": round(100 * used / elapsed, 3),
                "target_percent": 2.0, "run_status": status,
                "points_stored": sum(t["count"] for t in points)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--write-interval-s", type=float, default=0.37,
                        help="Seconds between snapshot writes (not a multiple of a probe).")
    parser.add_argument("--points-per-s", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(Path(tmp))
        try:
            result = {
                "freshness": [bench.freshness(p, args.seconds, args.write_interval_s)
                              for p in (1.0, 0.1)],
                "cpu": bench.cpu(args.seconds, args.points_per_s),
                "cpus": os.cpu_count(), "python": sys.version.split()[0],
            }
        finally:
            bench.close()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
