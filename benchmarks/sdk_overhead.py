"""Benchmark: what ``run.log({3 metrics}, step=i)`` costs the training loop, in every mode.

Prints JSON. For each Runyard mode -- agent files (under a real agent), HTTP (against a real
local ``runyard server``) and embedded (the SQLite store) -- the median, p90 and p99
nanoseconds per call over ``--steps`` steps, and the seconds from the loop's last call until
every point is readable from the server (the embedded store is read directly: it *is* what a
server on that data directory reads). With the ``bench`` extra installed, the same loop with
MLflow ``log_metrics`` against a local ``mlflow server`` (SQLite backend; synchronous and
asynchronous logging) and W&B in offline mode. Each measurement is repeated ``--repeat``
times and the medians are reported with every run's numbers.

    python benchmarks/sdk_overhead.py [--steps 100000] [--repeat 3] [--no-peers]

MLflow and W&B cost far more per call, so they run fewer steps (``--mlflow-sync-steps`` 300,
``--mlflow-async-steps`` 1,000, ``--wandb-steps`` 10,000 by default): synchronous MLflow makes
one HTTP round trip per call, and asynchronous MLflow's queue takes tens of seconds to drain a
few thousand calls into its server. The per-call cost does not depend on the count.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import common

REPO = Path(__file__).resolve().parents[1]
Log = Callable[[dict[str, float], int], Any]
#: Seconds between two reads of the readability poll (see :func:`wait_points`).
POLL_S = 0.05

WORKER = """
import json, sys, time
import runyard
cfg = json.load(open(__import__("os").environ["RUNYARD_CONFIG_FILE"]))
steps = int(cfg["steps"])
timings = [0] * steps
clock = time.perf_counter_ns
with runyard.start_run(total_steps=steps) as run:
    log = run.log
    for i in range(steps):
        loss, acc = 1.0 / (i + 1), i / steps
        t0 = clock()
        log({"loss": loss, "acc": acc, "lr": 0.001}, step=i)
        timings[i] = clock() - t0
    end = time.time()
json.dump({"timings": timings, "loop_end": end, "mode": run.mode}, open(cfg["out"], "w"))
"""


def stats(timings: list[int]) -> dict[str, float]:
    ordered = sorted(timings)
    n = len(ordered)
    return {"median_ns": float(statistics.median(ordered)), "p90_ns": float(ordered[n * 9 // 10]),
            "p99_ns": float(ordered[n * 99 // 100]), "mean_ns": round(sum(ordered) / n, 1)}


def _mlflow_log(mlflow: Any, metrics: dict[str, float], step: int, *,
                synchronous: bool) -> Any:
    return mlflow.log_metrics(metrics, step=step, synchronous=synchronous)


def timed_loop(log: Log, steps: int) -> tuple[list[int], float]:
    """Time each call; returns the timings and the perf_counter at the loop's end."""
    timings = [0] * steps
    clock = time.perf_counter_ns
    for i in range(steps):
        loss, acc = 1.0 / (i + 1), i / steps
        t0 = clock()
        log({"loss": loss, "acc": acc, "lr": 0.001}, i)
        timings[i] = clock() - t0
    return timings, time.perf_counter()


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("RUNYARD_") and k != "RANK"}


# --------------------------------------------------------------------------- processes


@contextlib.contextmanager
def runyard_server(data_dir: Path) -> Iterator[str]:
    env = {**clean_env(), "PYTHONPATH": str(REPO)}
    with open(data_dir.parent / f"server-{data_dir.name}.log", "ab") as log:
        server = common.Server(data_dir, env=env, log=log)
        try:
            yield server.url
        finally:
            server.close()


def wait_points(url: str, run_id: str, want: int, tags: tuple[str, ...] = ("loss", "acc", "lr"),
                timeout: float = 300) -> float:
    """perf_counter when every point is readable: the last step of each tag is (an indexed
    read), then the counts are checked.

    Polled every ``POLL_S``: each poll costs the server about 3.5 ms of CPU on a 2-core
    machine (mostly the web framework), so polling every 10 ms took a fifth of the server
    away from the ingest being measured. The coarser poll can only add to the figure (by
    25 ms on average), never take from it."""
    deadline = time.monotonic() + timeout
    with common.client(url, 30) as http:
        pending = list(tags)
        while pending and time.monotonic() < deadline:
            items = http.get(f"/v1/runs/{run_id}/metrics", params={
                "tag": pending[0], "after_step": want - 2, "limit": 1}).json().get("items", [])
            if items and items[0]["step"] == want - 1:
                pending.pop(0)
                continue
            time.sleep(POLL_S)
        found = time.perf_counter()
        if pending:
            raise RuntimeError(f"run {run_id}: points not readable within {timeout} s")
        counts = {t["tag"]: t["count"] for t in
                  http.get(f"/v1/runs/{run_id}/metrics/tags").json()["items"]}
    if counts != {tag: want for tag in tags}:
        raise RuntimeError(f"run {run_id}: expected {want} points per tag, got {counts}")
    return found


# --------------------------------------------------------------------------- Runyard modes


def bench_http(steps: int, work: Path) -> dict[str, Any]:
    from runyard import sdk

    with runyard_server(work / "server") as url:
        env = {**clean_env(), "RUNYARD_SERVER": url, "RUNYARD_TOKEN": common.TOKEN,
               "RUNYARD_DATA_DIR": str(work / "client")}
        run = sdk.start_run(name="bench-http", env=env, total_steps=steps,
                            handle_sigterm=False)
        assert run.mode == "http", run.mode
        timings, end = timed_loop(lambda m, i: run.log(m, step=i), steps)
        found: list[float] = []
        poller = threading.Thread(target=lambda: found.append(
            wait_points(url, run.run_id, steps)))
        poller.start()
        run.finish()
        poller.join()
        return {**stats(timings), "readable_after_s": round(found[0] - end, 3)}


def bench_embedded(steps: int, work: Path) -> dict[str, Any]:
    from runyard import sdk
    from runyard.store import default_url, open_store

    data = work / "embedded"
    run = sdk.start_run(name="bench-embedded", env={**clean_env(),
                                                    "RUNYARD_DATA_DIR": str(data)},
                        total_steps=steps, handle_sigterm=False)
    assert run.mode == "embedded", run.mode
    timings, end = timed_loop(lambda m, i: run.log(m, step=i), steps)
    run.finish(timeout=120)
    store = open_store(default_url(data))
    try:
        counts = {t["tag"]: t["count"] for t in store.metric_tags(run.run_id)}
    finally:
        store.close()
    assert counts == {"loss": steps, "acc": steps, "lr": steps}, counts
    return {**stats(timings), "readable_after_s": round(time.perf_counter() - end, 3)}


def bench_agent(steps: int, work: Path) -> dict[str, Any]:
    """The loop runs as a training process under a real agent; points go file -> agent ->
    server."""
    script = work / "bench_worker.py"
    script.write_text(WORKER)
    out = work / "agent-result.json"
    with runyard_server(work / "agent-server") as url:
        http = common.client(url, 30)
        worker_token = http.post("/v1/tokens", json={"name": "bench-agent",
                                                     "role": "worker"}).json()["token"]
        env = {**clean_env(), "RUNYARD_TOKEN": worker_token, "PYTHONPATH": str(REPO)}
        agent = subprocess.Popen([sys.executable, "-m", "runyard", "agent", "--server", url,
                                  "--host-id", "bench", "--work-dir", str(work / "agent"),
                                  "--probe-interval-s", "0.2"], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            run_id = http.post("/v1/runs", json={
                "name": "bench-agent", "command": [sys.executable, str(script)],
                "config": {"steps": steps, "out": str(out)},
                "probe_interval_s": 0.2}).json()["id"]
            found = wait_points(url, run_id, steps)
            readable_wall = time.time() - (time.perf_counter() - found)
            result = json.loads(out.read_text())
        finally:
            agent.terminate()
            agent.wait(30)
            http.close()
    assert result["mode"] == "agent"
    return {**stats(result["timings"]),
            "readable_after_s": round(readable_wall - result["loop_end"], 3)}


# --------------------------------------------------------------------------- peers


def bench_mlflow(sync_steps: int, async_steps: int, work: Path) -> dict[str, Any]:
    import mlflow

    port = common.free_port()
    store = work / "mlflow"
    store.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1",
                             "--port", str(port), "--workers", "1",
                             "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}",
                             "--default-artifact-root", str(store / "artifacts")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=clean_env())
    try:
        common.wait_healthy(f"http://127.0.0.1:{port}/health", proc)
        mlflow.set_tracking_uri(f"http://127.0.0.1:{port}")
        out: dict[str, Any] = {}
        for label, steps, synchronous in (("sync", sync_steps, True),
                                          ("async", async_steps, False)):
            with mlflow.start_run(run_name=f"bench-{label}"):
                timings, end = timed_loop(
                    functools.partial(_mlflow_log, mlflow, synchronous=synchronous), steps)
                if not synchronous:
                    mlflow.flush_async_logging()
                flushed = time.perf_counter()
            out[label] = {**stats(timings), "steps": steps,
                          "flush_after_s": round(flushed - end, 3)}
        return out
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(30)
        proc.kill()


def bench_wandb(steps: int, work: Path) -> dict[str, Any]:
    import wandb

    os.environ["WANDB_MODE"] = "offline"
    os.environ["WANDB_SILENT"] = "true"
    run = wandb.init(project="bench", dir=str(work), mode="offline")
    timings, end = timed_loop(lambda m, i: run.log(m, step=i), steps)
    run.finish()
    return {**stats(timings), "steps": steps,
            "finish_after_s": round(time.perf_counter() - end, 3)}


# --------------------------------------------------------------------------- main


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per key, the median over runs (nested dicts alike)."""
    out: dict[str, Any] = {}
    for key, first in runs[0].items():
        if isinstance(first, dict):
            out[key] = medians([r[key] for r in runs])
        else:
            values = [r[key] for r in runs if isinstance(r.get(key), int | float)]
            out[key] = round(float(statistics.median(values)), 3) if values else None
    return out


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {**medians(runs), "runs": runs}


def repeat(fn: Callable[[Path], dict[str, Any]], times: int) -> dict[str, Any]:
    runs = []
    for _ in range(times):
        with tempfile.TemporaryDirectory() as tmp:
            runs.append(fn(Path(tmp)))
    return median_of(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--mlflow-sync-steps", type=int, default=300)
    parser.add_argument("--mlflow-async-steps", type=int, default=1_000)
    parser.add_argument("--wandb-steps", type=int, default=10_000)
    parser.add_argument("--no-peers", action="store_true", help="skip MLflow and W&B")
    parser.add_argument("--modes", default="agent,http,embedded")
    args = parser.parse_args()
    modes = {"agent": bench_agent, "http": bench_http, "embedded": bench_embedded}
    result: dict[str, Any] = {
        "python": sys.version.split()[0], "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "steps": args.steps, "metrics_per_call": 3, "repeat": args.repeat, "runyard": {},
    }
    for name in args.modes.split(","):
        fn = modes[name]
        result["runyard"][name] = repeat(functools.partial(fn, args.steps), args.repeat)
    peers: dict[str, Any] = {}
    if not args.no_peers:
        # The peers print progress lines; stdout is for the JSON result only.
        with contextlib.redirect_stdout(sys.stderr):
            peers = run_peers(args)
    result["peers"] = peers
    result["targets"] = targets(result)
    print(json.dumps(result, indent=2))


def run_peers(args: argparse.Namespace) -> dict[str, Any]:
    peers: dict[str, Any] = {}
    with contextlib.suppress(ImportError):
        import mlflow  # noqa: F401

        peers["mlflow"] = median_of([bench_mlflow(
            args.mlflow_sync_steps, args.mlflow_async_steps, Path(tempfile.mkdtemp()))
            for _ in range(args.repeat)])
    with contextlib.suppress(ImportError):
        import wandb  # noqa: F401

        peers["wandb_offline"] = repeat(lambda work: bench_wandb(args.wandb_steps, work),
                                        args.repeat)
    return peers


def targets(result: dict[str, Any]) -> dict[str, Any]:
    ry = result["runyard"]
    out: dict[str, Any] = {}
    for mode in ("agent", "http"):
        if mode in ry:
            out[f"{mode}_le_5us"] = ry[mode]["median_ns"] <= 5000
    for mode in ("agent", "http", "embedded"):
        if mode in ry and ry[mode].get("readable_after_s") is not None:
            out[f"{mode}_readable_within_2s"] = ry[mode]["readable_after_s"] <= 2.0
    worst = max((ry[m]["median_ns"] for m in ("agent", "http") if m in ry), default=None)
    peers = result.get("peers", {})
    if worst and "mlflow" in peers:
        ratio = peers["mlflow"]["sync"]["median_ns"] / worst
        out["x_cheaper_than_mlflow_sync"] = round(ratio, 1)
        out["mlflow_sync_ge_100x"] = ratio >= 100
        out["x_cheaper_than_mlflow_async"] = round(peers["mlflow"]["async"]["median_ns"] / worst,
                                                   1)
    if worst and "wandb_offline" in peers:
        ratio = peers["wandb_offline"]["median_ns"] / worst
        out["x_cheaper_than_wandb_offline"] = round(ratio, 1)
        out["wandb_offline_ge_10x"] = ratio >= 10
    return out


if __name__ == "__main__":
    main()
