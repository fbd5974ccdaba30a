"""32 concurrent claimers over 600 runs: each run claimed exactly once per attempt, none lost,
none claimed by an ineligible worker — with threads and with separate processes."""

from __future__ import annotations

import multiprocessing
import random
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from runyard import eligibility, models
from runyard.queue import Queue
from runyard.store.base import RunFilter

from ..support.claimers import claim_loop, process_main, retries_once
from ..support.factories import caps

#: Its tests run one after another on one xdist worker, first (scripts/test.sh): each one
#: loads both cores on its own, and two at once could starve a claimer past SQLite's busy wait.
#: The deadlines are generous: 32 claimers on 2 loaded cores hand SQLite's lock on slowly.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("queue-concurrency"),
              pytest.mark.timeout(900)]

N_RUNS = 600
N_CLAIMERS = 32


def _fleet() -> list[models.Capabilities]:
    fleet = []
    for i in range(N_CLAIMERS):
        if i % 4 == 0:
            fleet.append(caps(f"gpu-{i}", gpus=2, vram=24, ram=128, cpus=32, slots=4,
                              labels={"pool": "a"}))
        elif i % 4 == 1:
            fleet.append(caps(f"big-{i}", ram=64, cpus=16, slots=4))
        else:
            fleet.append(caps(f"cpu-{i}", ram=8, cpus=4, slots=4,
                              labels={"pool": "b" if i % 2 else "a"}))
    return fleet


def _fill(q: Queue) -> None:
    rng = random.Random(7)
    for fleet_caps in _fleet():
        q.fleet.register(fleet_caps)
    q.fleet.set_host_policies([models.HostPolicy(host_id="big-1", deny=("secret-*",))])
    kinds = [{}, {"require_cuda": True}, {"min_ram_gib": 32}, {"labels": {"pool": "b"}},
             {"allowed_hosts": ["cpu-*"]}, {"prefer_cuda": True}]
    for i in range(N_RUNS):
        c = rng.choice(kinds)
        name = f"secret-{i}" if i % 50 == 0 else f"run-{i}"
        q.submit({"name": name, "command": ["true"], "constraints": c,
                  "priority": rng.randint(0, 3)})


def _check(q: Queue, claims: list[tuple[str, int, str]]) -> None:
    runs = {r["id"]: r for r in q.store.list_runs(RunFilter(), limit=N_RUNS + 1)}
    assert len(runs) == N_RUNS
    assert Counter(r["status"] for r in runs.values()) == {"completed": N_RUNS}
    # Exactly once per attempt: no (run, attempt) twice, and nothing claimed went unrecorded.
    pairs = Counter((run_id, attempt) for run_id, attempt, _ in claims)
    assert max(pairs.values()) == 1
    expected = {(rid, 1) for rid in runs} | {(rid, 2) for rid in runs if retries_once(rid)}
    assert set(pairs) == expected
    fleet = {c.host_id: c for c in _fleet()}
    policies = {"big-1": models.HostPolicy(host_id="big-1", deny=("secret-*",))}
    for run_id, _attempt, host in claims:
        unmet = eligibility.unmet(runs[run_id], fleet[host], policies.get(host))
        assert unmet == [], (run_id, host, unmet)
    n_attempts = sum(len(q.store.list_attempts(rid)) for rid in list(runs)[:200])
    assert n_attempts == sum(1 for rid in list(runs)[:200] for _ in
                             ([1, 2] if retries_once(rid) else [1]))


def test_threads(queue: Queue, db_url: str) -> None:
    _fill(queue)
    deadline = time.time() + 600
    with ThreadPoolExecutor(N_CLAIMERS) as pool:
        futures = [pool.submit(claim_loop, db_url, c.host_id, deadline, queue)
                   for c in _fleet()]
        claims = [item for f in futures for item in f.result()]
    _check(queue, claims)


def test_processes(queue: Queue, db_url: str, tmp_path: Path) -> None:
    _fill(queue)
    deadline = time.time() + 600
    ready = tmp_path / "ready"
    ready.mkdir()
    # Fresh processes forked from a server that imported the claimer once (not 32 times).
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["tests.support.claimers"])
    with ctx.Pool(N_CLAIMERS) as pool:
        results = pool.map(process_main, [(db_url, c.host_id, deadline, str(ready),
                                           N_CLAIMERS) for c in _fleet()])
    errors = [r for r in results if "error" in r]
    assert errors == []
    claims = [tuple(item) for r in results for item in r["claims"]]
    # The 32 processes claimed concurrently: each one was claiming before the last claim was
    # made. (Not that each got a run: SQLite's lock is not granted fairly across processes,
    # and a process may lose every race.)
    with queue.store.engine.connect() as conn:  # type: ignore[attr-defined]
        last_claim = conn.exec_driver_sql("SELECT max(claimed_at) FROM attempts").scalar_one()
    assert max(r["started"] for r in results) < last_claim
    assert len({host for _, _, host in claims}) > N_CLAIMERS // 2
    _check(queue, claims)
