"""A claimer loop shared by the concurrency test's threads and processes."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from runyard import errors
from runyard.queue import Queue
from runyard.store import open_store


def retries_once(run_id: str) -> bool:
    """About one run in ten fails its first attempt with worker_shutdown (so it requeues)."""
    return hashlib.sha256(run_id.encode()).digest()[0] < 26


T = TypeVar("T")


def _retrying(call: Callable[[], T], deadline: float) -> T:
    """``call()``, tried again when it waited for SQLite's write lock past the busy timeout:
    nothing was done then, the server answers 503 and an agent tries again. 32 processes on a
    loaded machine can starve one that long (the lock is not granted fairly)."""
    while True:
        try:
            return call()
        except errors.StoreError as exc:
            if "database is locked" not in str(exc) or time.time() > deadline:
                raise


def claim_loop(url: str, host_id: str, deadline: float,
               queue: Queue | None = None) -> list[tuple[str, int, str]]:
    """Claim and finish runs until nothing is left to do; return (run, attempt, host) claimed."""
    own = queue is None
    q = queue or Queue(open_store(url, upgrade=False), stale_after_s=600)
    got: list[tuple[str, int, str]] = []
    try:
        while time.time() < deadline:
            c = _retrying(lambda: q.claim(host_id), deadline)
            if c is None:
                counts = _retrying(q.store.count_runs_by_status, deadline)
                if not any(counts.get(s) for s in ("queued", "claimed", "running")):
                    return got
                time.sleep(0.005)
                continue
            got.append((c.run["id"], c.attempt, host_id))
            if c.attempt == 1 and retries_once(c.run["id"]):
                _retrying(partial(q.fail, c.attempt_id, c.lease, reason="worker_shutdown"),
                          deadline)
            else:
                _retrying(partial(q.complete, c.attempt_id, c.lease), deadline)
        raise TimeoutError(f"{host_id}: work left at the deadline")
    finally:
        if own:
            q.store.close()


def process_main(args: tuple[str, str, float, str, int]) -> dict[str, Any]:
    """One claimer process: it starts claiming once all ``expected`` processes are up (each
    leaves a file in ``ready_dir``), so that a late starter does not find the work done.
    Returns its claims and when it started, or the error it met."""
    url, host_id, deadline, ready_dir, expected = args
    try:
        ready = Path(ready_dir)
        (ready / host_id).touch()
        while sum(1 for _ in ready.iterdir()) < expected:
            if time.time() > deadline:
                raise TimeoutError(f"{host_id}: the other claimers did not start")
            time.sleep(0.01)
        started = time.time()
        return {"claims": claim_loop(url, host_id, deadline), "started": started}
    except Exception as exc:  # report instead of hanging the pool
        return {"error": repr(exc)}
