"""HTTP API benchmark: metric ingest, downsampled series, filtered run listing.

Starts a real ``runyard server`` (embedded SQLite, or ``--db URL``) in a temporary directory
and prints one JSON document with medians. When MLflow is available (``import mlflow`` works,
or ``--mlflow-cmd`` names an ``mlflow`` executable), the same three measurements run against a
local MLflow tracking server (SQLite backend) through its REST API: ``log-batch``,
``metrics/get-history`` and ``runs/search``.

    python benchmarks/api_bench.py                 # full sizes (takes a few minutes)
    python benchmarks/api_bench.py --quick         # small sizes, for a smoke test
    python benchmarks/api_bench.py --only ingest   # the ingest rounds alone

Both servers run side by side; ingest rounds alternate between them.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import importlib.util
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

import common

BATCH = 1000


# --------------------------------------------------------------------------- runyard


class Runyard(common.Server):
    def __init__(self, work: Path, db: str | None) -> None:
        super().__init__(work / "runyard", db=db)

    def ingest(self, clients: int, batches: int) -> float:
        """Points per second with ``clients`` concurrent writers (one run each)."""
        runs = [self.local_run(f"ingest-{clients}-{i}") for i in range(clients)]

        def writer(run: tuple[str, str, str]) -> None:
            rid, aid, lease = run
            with self.client() as c:
                for b in range(batches):
                    pts = [{"step": b * BATCH + i, "tag": "loss", "value": 1.0 / (i + 1)}
                           for i in range(BATCH)]
                    c.post(f"/v1/runs/{rid}/metrics", json={
                        "attempt_id": aid, "lease": lease, "points": pts}).raise_for_status()

        t = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
            list(pool.map(writer, runs))
        return round(clients * batches * BATCH / (time.perf_counter() - t))

    def series(self, points: int, repeat: int) -> float:
        rid, aid, lease = self.local_run("series")
        # Load through the store directly: the point is reading, and ingest is measured above.
        from runyard.store import open_store

        store = open_store(self.db, upgrade=False)
        try:
            for start in range(0, points, 50_000):
                store.add_metric_points(rid, 1, [
                    {"step": s, "tag": "loss", "value": 1.0 / (s + 1), "at": 0.0}
                    for s in range(start, min(points, start + 50_000))])
        finally:
            store.close()
        return common.median_ms(
            lambda: self.http.get(f"/v1/runs/{rid}/metrics/loss/series",
                                  params={"points": 2000}).raise_for_status(), repeat)

    def listing(self, runs: int, repeat: int) -> float:
        from runyard import submission
        from runyard.store import open_store

        store = open_store(self.db, upgrade=False)
        statuses = ["queued", "completed", "failed", "cancelled"]
        try:
            rows = []
            for i in range(runs):
                row = submission.build_run({"name": f"r{i}", "command": ["true"]}, None,
                                           owner="bench", now=time.time() - runs + i)
                row["status"] = statuses[i % 4]
                rows.append(row)
            common.insert_runs(store.engine, rows)
        finally:
            store.close()
        return common.median_ms(lambda: self.http.get("/v1/runs", params={
            "status": "failed", "limit": 50}).raise_for_status(), repeat)


# --------------------------------------------------------------------------- mlflow


class MLflow:
    """A local MLflow tracking server (SQLite backend), driven through its REST API."""

    def __init__(self, work: Path, cmd: list[str]) -> None:
        port = common.free_port()
        self.url = f"http://127.0.0.1:{port}"
        db = work / "mlflow.db"
        self.proc = subprocess.Popen(
            [*cmd, "server", "--host", "127.0.0.1", "--port", str(port),
             "--backend-store-uri", f"sqlite:///{db}", "--workers", "4",
             "--default-artifact-root", str(work / "mlruns")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        common.wait_healthy(f"{self.url}/health", self.proc, timeout=300)
        self.http = httpx.Client(base_url=f"{self.url}/api/2.0/mlflow", timeout=600)
        r = self.http.post("/experiments/create", json={"name": "bench"})
        r.raise_for_status()
        self.experiment = r.json()["experiment_id"]

    def close(self) -> None:
        self.http.close()
        common.stop(self.proc)

    def run(self, name: str) -> str:
        r = self.http.post("/runs/create", json={"experiment_id": self.experiment,
                                                 "run_name": name})
        r.raise_for_status()
        return str(r.json()["run"]["info"]["run_id"])

    def ingest(self, clients: int, batches: int) -> float:
        runs = [self.run(f"ingest-{clients}-{i}") for i in range(clients)]

        def writer(rid: str) -> None:
            with httpx.Client(base_url=str(self.http.base_url), timeout=600) as c:
                for b in range(batches):
                    ms = [{"key": "loss", "value": 1.0 / (i + 1), "timestamp": 0,
                           "step": b * BATCH + i} for i in range(BATCH)]
                    c.post("/runs/log-batch", json={"run_id": rid, "metrics": ms}
                           ).raise_for_status()

        t = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
            list(pool.map(writer, runs))
        return round(clients * batches * BATCH / (time.perf_counter() - t))

    def series(self, points: int, repeat: int) -> float:
        rid = self.run("series")
        for start in range(0, points, BATCH):
            ms = [{"key": "loss", "value": 1.0 / (s + 1), "timestamp": 0, "step": s}
                  for s in range(start, min(points, start + BATCH))]
            self.http.post("/runs/log-batch", json={"run_id": rid, "metrics": ms}
                           ).raise_for_status()
        # MLflow has no downsampling: the chart needs the history, page by page.

        def history() -> None:
            token = None
            while True:
                params: dict[str, Any] = {"run_id": rid, "metric_key": "loss",
                                          "max_results": 25000}
                if token:
                    params["page_token"] = token
                r = self.http.get("/metrics/get-history", params=params)
                r.raise_for_status()
                token = r.json().get("next_page_token")
                if not token:
                    return
        return common.median_ms(history, repeat)

    def listing(self, runs: int, repeat: int) -> float:
        statuses = ["RUNNING", "FINISHED", "FAILED", "KILLED"]
        for i in range(runs):
            rid = self.run(f"r{i}")
            self.http.post("/runs/update", json={"run_id": rid, "status": statuses[i % 4]}
                           ).raise_for_status()
        return common.median_ms(lambda: self.http.post("/runs/search", json={
            "experiment_ids": [self.experiment], "filter": "attributes.status = 'FAILED'",
            "max_results": 50}).raise_for_status(), repeat)


MEASUREMENTS = ("ingest", "series", "listing")
CLIENTS = (1, 4)


def ingest_key(clients: int) -> str:
    return f"ingest_points_per_s_{clients}_client{'s' if clients > 1 else ''}"


def measure_ingest(targets: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Ingest medians per system. Rounds alternate between the systems, so a slow spell of
    the machine (they vary by tens of percent here) falls on both rather than on one."""
    rates: dict[str, dict[str, list[float]]] = {
        name: {ingest_key(c): [] for c in CLIENTS} for name in targets}
    for _ in range(args.repeat_ingest):
        for clients in CLIENTS:
            for name, target in targets.items():
                rates[name][ingest_key(clients)].append(target.ingest(clients, args.batches))
    return {name: {key: round(statistics.median(v)) for key, v in by_key.items()}
            for name, by_key in rates.items()}


def measure_reads(target: Any, args: argparse.Namespace, runs: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "series" in args.only:
        out[f"series_2000_of_{args.series_points}_ms"] = target.series(args.series_points,
                                                                       args.repeat)
    if "listing" in args.only:
        out[f"list_50_by_status_of_{runs}_runs_ms"] = target.listing(runs, args.repeat)
    return out


def mlflow_command(explicit: str | None) -> list[str] | None:
    if explicit:
        return [explicit]
    if importlib.util.find_spec("mlflow") is not None:
        return [sys.executable, "-m", "mlflow"]
    return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", help="database URL for runyard (default: embedded SQLite)")
    p.add_argument("--batches", type=int, default=50, help="1,000-point batches per client")
    p.add_argument("--series-points", type=int, default=1_000_000)
    p.add_argument("--runs", type=int, default=100_000)
    p.add_argument("--repeat", type=int, default=7, help="timed reads per median")
    p.add_argument("--repeat-ingest", type=int, default=3)
    p.add_argument("--mlflow-cmd", help="path of an mlflow executable (default: python -m "
                                        "mlflow when importable)")
    p.add_argument("--mlflow-runs", type=int, default=10_000,
                   help="runs for MLflow's listing: it creates them one request each, so "
                        "100,000 would take most of an hour (0: as many as --runs)")
    p.add_argument("--only", default=",".join(MEASUREMENTS),
                   help="comma-separated measurements to run (default: all of "
                        f"{', '.join(MEASUREMENTS)})")
    p.add_argument("--no-mlflow", action="store_true",
                   help="measure Runyard alone, even where MLflow is installed")
    p.add_argument("--quick", action="store_true", help="small sizes for a smoke test")
    args = p.parse_args()
    args.only = {m.strip() for m in args.only.split(",") if m.strip()}
    if not args.only or args.only - set(MEASUREMENTS):
        p.error(f"--only: choose among {', '.join(MEASUREMENTS)}")
    if args.quick:
        args.batches, args.series_points, args.runs, args.repeat = 5, 20_000, 2_000, 3
        args.mlflow_runs = 0
        args.repeat_ingest = 1
    work = Path(tempfile.mkdtemp(prefix="runyard-bench-"))
    out: dict[str, Any] = {"python": sys.version.split()[0], "batch": BATCH,
                           "database": args.db or "sqlite (embedded)"}
    cmd = None if args.no_mlflow else mlflow_command(args.mlflow_cmd)
    targets: dict[str, Any] = {}
    try:
        targets["runyard"] = Runyard(work, args.db)
        if args.no_mlflow:
            out["mlflow"] = "skipped: --no-mlflow"
        elif cmd is None:
            out["mlflow"] = "skipped: mlflow not installed (pip install 'runyard[bench]')"
        else:
            targets["mlflow"] = MLflow(work, cmd)
        results: dict[str, dict[str, Any]] = {name: {} for name in targets}
        if "ingest" in args.only:
            for name, figures in measure_ingest(targets, args).items():
                results[name].update(figures)
        for name, target in targets.items():
            runs = args.mlflow_runs or args.runs if name == "mlflow" else args.runs
            results[name].update(measure_reads(target, args, runs))
            # Runyard's figures come first and are worth having even if MLflow's never come.
            print(json.dumps({name: results[name]}), file=sys.stderr, flush=True)
        out.update(results)
        if "mlflow" in results and "ingest" in args.only:
            out["ingest_ratio_runyard_to_mlflow"] = {
                key: round(results["runyard"][key] / results["mlflow"][key], 1)
                for key in map(ingest_key, CLIENTS)}
    finally:
        for target in targets.values():
            target.close()
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
