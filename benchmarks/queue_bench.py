"""Claim throughput and latency of the queue, against the raw commit rate of the same database.

Prints JSON. For each dialect: 10,000 queued runs, 20 registered workers of mixed
capabilities; claims/s and p50/p99 claim latency with 1, 4 and 16 concurrent claimers; and, in
the same run, the rate of a trivial one-row ``UPDATE ...; COMMIT`` through the same engine (the
physical limit; measured just before and after each round, and each round's ratio taken to
that), and the rate of a claim's writes alone, one claim per commit, for runs chosen
beforehand (the floor under a lone claimer: its run, attempt and event rows and their indexes,
without choosing the run). Each figure is the median of ``--repeat`` rounds. Last, the claim
latency of a host without CUDA when ``--backlog`` runs that need CUDA wait ahead of every run
it may take (GPU hosts are the scarce ones, so their runs gather at the head of the queue).

    python benchmarks/queue_bench.py [--runs 10000] [--claims 2000] [--repeat 3] [--pg URL|none]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import secrets
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

import common
from runyard import models, submission
from runyard.queue import Queue
from runyard.store import open_store
from runyard.store.base import Grant
from runyard.store.engine import sqlite_url
from runyard.store.schema import runs

#: One-row commits per raw-rate measurement.
RAW_COMMITS = 1000


def fleet() -> list[models.Capabilities]:
    out = []
    for i in range(20):
        kind = i % 4
        gpus = [{"index": g, "name": "fake", "vram_gib": 24} for g in range(2)] if kind == 0 else []
        out.append(models.Capabilities.from_dict({
            "host_id": f"host-{i:02d}", "cpus": 32 if kind < 2 else 4,
            "ram_gib": 128 if kind < 2 else 8, "gpus": gpus, "slots": 10_000,
            "labels": {"pool": "a" if i % 2 else "b"},
        }))
    return out


def empty_queue(url: str) -> Queue:
    """A queue over the database at ``url``, emptied of what an earlier round left."""
    store = open_store(url)
    with store.engine.begin() as conn:
        for t in ("events", "attempts", "runs", "workers", "host_policies"):
            conn.exec_driver_sql(f"DELETE FROM {t}")
    return Queue(store)


def fill(q: Queue, n: int) -> None:
    rng = random.Random(1)
    for caps in fleet():
        q.fleet.register(caps)
    kinds: list[dict[str, Any]] = [{}, {}, {"min_ram_gib": 16}, {"require_cuda": True},
                                   {"prefer_cuda": True}, {"labels": {"pool": "a"}}]
    rows = []
    now = time.time()
    for i in range(n):
        req = {"name": f"run-{i}", "command": ["true"], "constraints": rng.choice(kinds),
               "priority": rng.randint(0, 2)}
        rows.append(submission.build_run(req, None, owner="bench", now=now + i * 1e-6))
    common.insert_runs(q.store.engine, rows)


def claim_round(q: Queue, claimers: int, total: int) -> dict[str, float]:
    hosts = [c.host_id for c in fleet()]
    latencies: list[float] = []
    lock = threading.Lock()
    remaining = [total]

    def work(idx: int) -> None:
        host = hosts[idx % len(hosts)]
        mine: list[float] = []
        while True:
            with lock:
                if remaining[0] <= 0:
                    break
                remaining[0] -= 1
            t0 = time.perf_counter()
            c = q.claim(host)
            mine.append(time.perf_counter() - t0)
            if c is None:
                raise RuntimeError(f"{host} found nothing to claim")
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(claimers)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    latencies.sort()
    return {"claims_per_s": len(latencies) / wall,
            "p50_ms": 1000 * latencies[len(latencies) // 2],
            "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)]}


def raw_commit_rate(engine: sa.Engine, n: int = RAW_COMMITS) -> float:
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS bench_raw (id INTEGER PRIMARY KEY, "
                             "v INTEGER NOT NULL)")
        conn.exec_driver_sql("DELETE FROM bench_raw")
        conn.exec_driver_sql("INSERT INTO bench_raw (id, v) VALUES (1, 0)")
    with engine.connect() as conn:
        t0 = time.perf_counter()
        for _ in range(n):
            with conn.begin():
                conn.exec_driver_sql("UPDATE bench_raw SET v = v + 1 WHERE id = 1")
        return n / (time.perf_counter() - t0)


def claim_writes_round(q: Queue, n: int) -> dict[str, float]:
    """Claims/s of the claim's writes alone (``Transaction.claim_runs``, one run per
    transaction and commit), the runs read beforehand."""
    with q.store.engine.connect() as conn:
        chosen = conn.execute(sa.select(runs.c.id, runs.c.attempt, runs.c.event_seq)
                              .where(runs.c.status == "queued").limit(n)).all()
    if len(chosen) < n:
        raise RuntimeError(f"{n} queued runs needed, {len(chosen)} left")
    hosts = [c.host_id for c in fleet()]
    t0 = time.perf_counter()
    for i, (run_id, attempt, seq) in enumerate(chosen):
        now = time.time()
        grant = Grant(run_id=run_id, attempt_id=secrets.token_hex(8), number=attempt + 1,
                      seq=seq + 1, host_id=hosts[i % len(hosts)], lease=secrets.token_hex(16),
                      lease_expires_at=now + 60, at=now, actor="bench")
        with q.store.transaction() as tx:
            tx.claim_runs([grant])
    return {"claims_per_s": n / (time.perf_counter() - t0)}


def backlog_claim_ms(url: str, backlog: int, claims: int = 300) -> float:
    """Median latency of a CPU host's claim with ``backlog`` CUDA-only runs queued ahead."""
    q = empty_queue(url)
    store = q.store
    q.fleet.register(models.Capabilities.from_dict(
        {"host_id": "cpu-host", "cpus": 32, "ram_gib": 64, "gpus": [], "slots": claims}))
    now = time.time()
    rows = [submission.build_run(
        {"name": f"run-{i}", "command": ["true"],
         "constraints": {"require_cuda": True} if i < backlog else {}},
        None, owner="bench", now=now + i * 1e-6) for i in range(backlog + claims)]
    common.insert_runs(store.engine, rows)
    latencies = []
    for _ in range(claims):
        t0 = time.perf_counter()
        if q.claim("cpu-host") is None:
            raise RuntimeError("the CPU host found nothing to claim")
        latencies.append(time.perf_counter() - t0)
    store.close()
    return 1000 * statistics.median(latencies)


def against_raw(engine: sa.Engine, measure: Callable[[], dict[str, float]]
                ) -> dict[str, float]:
    """``measure()``'s figures, with the raw commit rate taken just before and just after it
    and the claim rate's ratio to their mean: the machine's speed drifts (other tenants), and
    a raw rate from another moment would skew the ratio more than the code does."""
    before = raw_commit_rate(engine, RAW_COMMITS)
    out = measure()
    raw = (before + raw_commit_rate(engine, RAW_COMMITS)) / 2
    return {**out, "raw_per_s": raw, "ratio_to_raw": out["claims_per_s"] / raw}


def bench(url: str, args: argparse.Namespace) -> dict[str, Any]:
    rounds: dict[str, list[dict[str, float]]] = {"1": [], "4": [], "16": [], "writes": []}
    for _ in range(args.repeat):
        q = empty_queue(url)
        store = q.store
        engine = store.engine
        fill(q, args.runs)
        for n in (1, 4, 16):
            rounds[str(n)].append(against_raw(
                engine, functools.partial(claim_round, q, n, args.claims)))
        rounds["writes"].append(against_raw(
            engine, functools.partial(claim_writes_round, q, args.claims)))
        store.close()

    def median(key: str, of: str, digits: int = 1) -> float:
        return round(statistics.median(r[key] for r in rounds[of]), digits)

    result: dict[str, Any] = {
        "raw_update_commit_per_s": round(statistics.median(
            r["raw_per_s"] for rs in rounds.values() for r in rs), 1),
        "claimers": {},
        "claim_writes_alone": {"claims_per_s": median("claims_per_s", "writes"),
                               "ratio_to_raw": median("ratio_to_raw", "writes", 3)},
    }
    for level in ("1", "4", "16"):
        result["claimers"][level] = {
            "claims_per_s": median("claims_per_s", level),
            "p50_ms": median("p50_ms", level, 3), "p99_ms": median("p99_ms", level, 3),
            "ratio_to_raw": median("ratio_to_raw", level, 3)}
    result["cpu_claim_behind_cuda_backlog"] = {
        "cuda_runs_ahead": args.backlog,
        "p50_ms": round(statistics.median(backlog_claim_ms(url, args.backlog)
                                          for _ in range(args.repeat)), 3)}
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=10_000,
                   help="queued runs (at least 4 x --claims: three rounds and the writes alone)")
    p.add_argument("--claims", type=int, default=2_000, help="claims per round and concurrency")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--backlog", type=int, default=5_000,
                   help="CUDA-only runs queued ahead of a CPU host's runs (last figure)")
    p.add_argument("--pg", default=common.pg_admin_url(),
                   help="PostgreSQL admin URL, or 'none'")
    args = p.parse_args()
    if args.runs < 4 * args.claims:
        p.error(f"--runs: {args.runs} is fewer than 4 x --claims ({4 * args.claims})")
    out: dict[str, Any] = {"runs": args.runs, "claims_per_round": args.claims,
                           "repeat": args.repeat, "python": sys.version.split()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        out["sqlite"] = bench(sqlite_url(os.path.join(tmp, "bench.db")), args)
    if args.pg != "none":
        with common.throwaway_database(args.pg) as url:
            out["postgresql"] = bench(url, args)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
