"""Web UI benchmark: how long the runs page and the run page take to load in headless
Chromium with many runs in the database and a long metric history.

Starts a real ``runyard server`` on an embedded SQLite file in a temporary directory, fills
it with ``--runs`` runs (bulk-inserted through the store; 50 of them running with progress)
and one run, driven through the worker HTTP API with a real lease, whose ``loss`` metric has
``--points`` points (plus a 10,000-point ``val_loss``, drawn on the same chart). Then it opens
each page ``--repeat`` times in Debian's Chromium and prints one JSON document.

A load is timed from navigation start (``performance.now()`` in the page) until the page
shows what a person came for: the first 50 rows with their progress bars, or the run's
chart drawn from the downsampled series and its events.

    python benchmarks/ui_bench.py                 # 10,000 runs, 1,000,000 points
    python benchmarks/ui_bench.py --quick         # small sizes, for a smoke test
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import common

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]
CHUNK = 50_000


def stats(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 1), "min": round(min(values), 1),
            "max": round(max(values), 1), "n": len(values)}


def seed_runs(db: str, count: int) -> None:
    """``count`` runs of mixed status; 50 running ones carry a progress snapshot."""
    from runyard import submission
    from runyard.store import open_store

    store = open_store(db, upgrade=False)
    statuses = ["completed", "failed", "queued", "stopped"]
    now = time.time()
    try:
        rows = []
        for i in range(count):
            row = submission.build_run({"name": f"bench-{i:05d}", "project": f"p{i % 7}",
                                        "command": ["true"]}, None, owner="bench",
                                       now=now - count + i)
            if i >= count - 50:
                step = 40 * (i % 25)
                row.update(status="running", host_id=f"host-{i % 5}", attempt=1,
                           started_at=now - 600, progress_updated_at=now,
                           progress={"schema": "runyard.progress/v1", "step": step,
                                     "total_steps": 1000, "epoch": step / 100,
                                     "metrics": {"loss": 1 / (1 + step), "accuracy": 0.9}})
            else:
                row["status"] = statuses[i % 4]
            rows.append(row)
        common.insert_runs(store.engine, rows)
    finally:
        store.close()


def long_run(server: common.Server, points: int) -> str:
    """One running run (real claim and lease) with a ``points``-long ``loss`` history."""
    r = server.http.post("/v1/tokens", json={"name": "bench-worker", "role": "worker"})
    r.raise_for_status()
    worker = common.client(server.url, 600, token=r.json()["token"])
    server.http.post("/v1/runs", json={"name": "the-long-one", "project": "bench",
                                       "priority": 100, "command": ["true"]}).raise_for_status()
    claim = worker.post("/v1/workers/claim", json={"host_id": "bench-box", "capabilities": {
        "host_id": "bench-box", "cpus": 16, "ram_gib": 64, "slots": 1}})
    claim.raise_for_status()
    body = claim.json()
    run_id, attempt, lease = body["run"]["id"], body["attempt"]["id"], body["lease"]
    worker.post(f"/v1/attempts/{attempt}/heartbeat", json={"lease": lease, "running": True}
                ).raise_for_status()
    stamp = datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    worker.post(f"/v1/attempts/{attempt}/progress", json={"lease": lease, "snapshot": {
        "schema": "runyard.progress/v1", "updated_at": stamp, "step": points - 1,
        "total_steps": points * 2, "metrics": {"loss": 0.1}}}).raise_for_status()
    worker.close()
    # The history goes in through the store: reading is measured here, ingest in api_bench.
    from runyard.store import open_store

    store = open_store(server.db, upgrade=False)
    try:
        for start in range(0, points, CHUNK):
            store.add_metric_points(run_id, 1, [
                {"step": s, "tag": "loss", "value": 2.0 / (1 + s / 1000) + (s % 97) / 1000,
                 "at": 0.0} for s in range(start, min(points, start + CHUNK))])
        val = max(1, points // 10_000)
        store.add_metric_points(run_id, 1, [
            {"step": s, "tag": "val_loss", "value": 2.1 / (1 + s / 1000), "at": 0.0}
            for s in range(0, points, val)])
    finally:
        store.close()
    return str(run_id)


def timed_loads(page: Any, url: str, ready: Callable[[Any], None], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        page.goto(url)
        ready(page)
        out.append(float(page.evaluate("() => performance.now()")))
    return out


def runs_ready(page: Any) -> None:
    page.wait_for_function(
        "() => document.querySelectorAll('tr[data-run-id] .progress').length === 50",
        timeout=120_000)


def run_ready(page: Any) -> None:
    page.wait_for_function(
        "() => +(document.querySelector(\".chartcard g.series[data-label='loss']\")"
        "?.dataset.points || 0) > 0 && document.querySelector('ol.events li') !== null",
        timeout=120_000)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="500 runs, 20,000 points, 3 loads")
    args = ap.parse_args()
    if args.quick:
        args.runs, args.points, args.repeat = 500, 20_000, 3
    if args.runs < 50 or args.points < 2 or args.repeat < 1:
        ap.error("need --runs >= 50, --points >= 2, --repeat >= 1")
    if not Path(CHROMIUM).exists():
        sys.exit(f"ui_bench: {CHROMIUM} is missing (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="runyard-ui-bench-") as tmp:
        server = common.Server(Path(tmp), http_timeout=600)
        try:
            t = time.perf_counter()
            seed_runs(server.db, args.runs)
            run_id = long_run(server, args.points)
            seed_s = time.perf_counter() - t
            series_ms = common.times_ms(
                lambda: server.http.get(f"/v1/runs/{run_id}/metrics/loss/series",
                                        params={"points": 1300}).raise_for_status(),
                args.repeat)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=CHROMIUM_ARGS)
                context = browser.new_context(viewport={"width": 1400, "height": 900})
                context.add_init_script(
                    f"localStorage.setItem('runyard.token', '{common.TOKEN}')")
                page = context.new_page()
                runs = timed_loads(page, server.url + "/", runs_ready, args.repeat + 1)
                run = timed_loads(page, f"{server.url}/runs/{run_id}", run_ready,
                                  args.repeat + 1)
                card = page.locator(".chartcard").nth(0)
                drawn = int(card.locator("g.series[data-label='loss']")
                            .get_attribute("data-points") or 0)
                zoom = []
                for i in range(args.repeat):
                    lo = (i + 1) * args.points // (args.repeat + 2)
                    hi = lo + args.points // 10
                    card.locator("input[aria-label='min step']").fill(str(lo))
                    card.locator("input[aria-label='max step']").fill(str(hi))
                    t = time.perf_counter()
                    card.locator("button", has_text="Apply").click()
                    page.wait_for_selector(f".chartcard[data-range='{lo}:{hi}']",
                                           timeout=120_000)
                    zoom.append((time.perf_counter() - t) * 1000)
                version = browser.version
                browser.close()
        finally:
            server.close()
    print(json.dumps({
        "runs": args.runs + 1, "metric_points": args.points, "seed_s": round(seed_s, 1),
        "chromium": version,
        "runs_page_load_ms": {"first": round(runs[0], 1), **stats(runs[1:])},
        "run_page_load_ms": {"first": round(run[0], 1), **stats(run[1:])},
        "run_page_loss_points_drawn": drawn,
        "series_api_ms": stats(series_ms),
        "zoom_redraw_ms": stats(zoom),
    }, indent=2))


if __name__ == "__main__":
    main()
