"""Store data-plane benchmark: metric ingest and downsampled series, SQLite and PostgreSQL.

    python benchmarks/store_bench.py [--points 1000000] [--buckets 2000] [--only sqlite]

Prints one JSON object: per dialect, ingest points/s (batches of 1,000, by one writer and by
four concurrent writers each on its own run) and the median of 5 ``metric_series`` calls
over the single writer's run. PostgreSQL: a throwaway database is created on the server of
``RUNYARD_BENCH_PG`` (default postgresql+psycopg://postgres@127.0.0.1:5432/test) and dropped.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from typing import Any

import common
from runyard.queue import Queue
from runyard.store import open_store
from runyard.store.base import Store
from runyard.store.engine import sqlite_url

BATCH = 1000


def ingest(store: Store, run_id: str, n: int, seed: int) -> None:
    rnd = random.Random(seed)
    for start in range(0, n, BATCH):
        batch = [{"step": s, "tag": "loss", "value": rnd.random(), "at": 1.7e9 + s}
                 for s in range(start, min(start + BATCH, n))]
        store.add_metric_points(run_id, 1, batch)


def bench(store: Store, n: int, buckets: int) -> dict[str, Any]:
    queue = Queue(store)
    runs = [queue.submit({"name": f"bench-{i}", "command": ["true"]})[0]["id"]
            for i in range(5)]
    t0 = time.perf_counter()
    ingest(store, runs[0], n, 0)
    one = n / (time.perf_counter() - t0)

    per_writer = max(n // 4, BATCH)
    threads = [threading.Thread(target=ingest, args=(store, runs[1 + i], per_writer, i + 1))
               for i in range(4)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    four = 4 * per_writer / (time.perf_counter() - t0)

    if store.dialect == "postgresql":
        # Steady state: autovacuum would have run by now on a live server.
        with store.engine.connect().execution_options(
                isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE metric_points")
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        series = store.metric_series(runs[0], "loss", points=buckets)
        times.append(time.perf_counter() - t0)
    assert series["total"] == n, series["total"]
    t0 = time.perf_counter()
    half = store.metric_series(runs[0], "loss", points=buckets, min_step=n // 4,
                               max_step=3 * n // 4)
    ranged = time.perf_counter() - t0
    return {
        "ingest_points_per_s_1_writer": round(one),
        "ingest_points_per_s_4_writers": round(four),
        "series_points": n,
        "series_buckets": len(series["points"]),
        "series_ms_median_of_5": round(statistics.median(times) * 1000, 1),
        "series_ms_half_range": round(ranged * 1000, 1),
        "half_range_total": half["total"],
    }


def run_sqlite(n: int, buckets: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(sqlite_url(os.path.join(tmp, "bench.db")))
        try:
            return bench(store, n, buckets)
        finally:
            store.close()


def run_postgres(n: int, buckets: int) -> dict[str, Any]:
    with common.throwaway_database(common.pg_admin_url()) as url:
        store = open_store(url)
        try:
            return bench(store, n, buckets)
        finally:
            store.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--points", type=int, default=1_000_000)
    p.add_argument("--buckets", type=int, default=2000)
    p.add_argument("--only", choices=["sqlite", "postgresql"])
    args = p.parse_args(argv)
    out: dict[str, Any] = {"batch": BATCH, "cpus": os.cpu_count()}
    if args.only != "postgresql":
        out["sqlite"] = run_sqlite(args.points, args.buckets)
    if args.only != "sqlite":
        out["postgresql"] = run_postgres(args.points, args.buckets)
    json.dump(out, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
